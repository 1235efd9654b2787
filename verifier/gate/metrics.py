"""The webhook's Prometheus metrics (``GET /metrics``): stable names, low-cardinality labels.

Names follow the Prometheus conventions (prometheus.io/docs/practices/naming): ``_total``
counters, ``_seconds`` durations, labels with few values — a rule name, a decision, a
registry host, an error reason; never an image or a digest. The names are an interface
(dashboards and alerts are built on them): docs/webhook.md lists them, and a test reads
them back from the endpoint.

One registry per application, not prometheus_client's global one, so two webhooks in one
process (tests) do not share counters. The webhook runs as one process (docs/webhook.md,
"Workers"), so no multiprocess collector is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from imgseal.reference import parse_reference
from verifier.gate.cache import SuccessCache
from verifier.gate.verdict import Verdict

# Admission latency: a warm answer takes milliseconds, the deadline is timeoutSeconds - 2 s.
DURATION_BUCKETS: Final = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 10.0, 30.0)
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


class WebhookMetrics:
    """Every metric the webhook exports, in its own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[object, ...], Counter] = {}  # bounded by rules x decisions x paths
        r = self.registry
        self.requests = Counter("imgseal_admission_requests", "AdmissionReview requests answered.",
                                ["path", "allowed"], registry=r)
        self.duration = Histogram("imgseal_admission_duration_seconds", "Time to answer one AdmissionReview.",
                                  buckets=DURATION_BUCKETS, registry=r)
        self.decisions = Counter("imgseal_image_decisions", "Decisions per distinct image of a request.",
                                 ["rule", "decision"], registry=r)
        self.cache_hits = Counter("imgseal_cache_hits", "Success-cache lookups that found a verified digest.",
                                  registry=r)
        self.cache_misses = Counter("imgseal_cache_misses", "Success-cache lookups that found nothing.",
                                    registry=r)
        self.registry_errors = Counter("imgseal_registry_errors", "Images left undecided (registry, API server or "
                                       "deadline), by registry host and reason.", ["registry", "kind"], registry=r)
        self.reloads = Counter("imgseal_policy_reloads", "Policy file reloads, by result.", ["result"], registry=r)
        self.last_reload_success = Gauge("imgseal_policy_last_reload_success",
                                         "1 if the last policy (re)load succeeded, 0 if the webhook runs on an "
                                         "older policy because the newest one did not load.", registry=r)
        self.last_reload_success.set(1)
        for result in ("success", "failure"):
            self.reloads.labels(result)  # exported at 0 from the start, so rate() and alerts see them

    def observe_request(self, path: str, allowed: bool, seconds: float, verdicts: Iterable[Verdict]) -> None:
        self._child(self.requests, path, "true" if allowed else "false").inc()
        self.duration.observe(seconds)
        for v in verdicts:
            self._child(self.decisions, v.rule or "(default)", v.decision).inc()
            if v.undecided:
                self.registry_errors.labels(_registry(v), v.reason or "unknown").inc()

    def _child(self, metric: Counter, *labels: str) -> Counter:
        """``metric.labels(*labels)``, remembered: label lookups were a tenth of a warm request's Python time."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def reloaded(self, ok: bool) -> None:
        self.reloads.labels("success" if ok else "failure").inc()
        self.last_reload_success.set(1 if ok else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _registry(verdict: Verdict) -> str:
    try:
        ref = parse_reference(verdict.reference or verdict.image)
    except Exception:  # noqa: BLE001 - a label must never fail a request
        return "(invalid)"
    return str(getattr(ref, "registry", "(layout)"))


class CountingCache:
    """A :class:`SuccessCache` that counts its hits and misses into the metrics."""

    def __init__(self, inner: SuccessCache, metrics: WebhookMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def hit(self, digest: str, fingerprint: str) -> bool:
        found = self.inner.hit(digest, fingerprint)
        (self.metrics.cache_hits if found else self.metrics.cache_misses).inc()
        return found

    def peek(self, digest: str, fingerprint: str) -> bool:
        """A lookup not counted (the webhook counts the hits of its cache-only answers itself)."""
        return self.inner.hit(digest, fingerprint)

    def record(self, digest: str, fingerprint: str) -> None:
        self.inner.record(digest, fingerprint)
