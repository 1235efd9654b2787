"""Kubernetes admission webhook: ``POST /validate`` and ``POST /mutate`` (AdmissionReview v1).

- Every container image of the object (Pod, workload templates, CronJob job templates, Lists)
  is checked against the policy by the shared :class:`~verifier.gate.evaluator.Evaluator` (one
  verification per distinct image, bounded workers, success cache in memory).
- Private images are verified with the credentials the kubelet will use: the pod spec's and
  its ServiceAccount's pull secrets (:mod:`verifier.gate.pull_secrets`), then the webhook's own.
- The API server waits ``timeoutSeconds`` (default 10, at most 30) and then applies the
  webhook's failurePolicy; peers overrun it (Kyverno #8635, #16657; Ratify against a 3 s
  budget). We answer ourselves before it gives up: past ``deadline`` seconds an unfinished
  image is undecided, which denies (or admits, if its rule says ``on_error: allow``) with a
  message saying so.
- ``/mutate`` answers like ``/validate`` and, when admitting, adds a JSON Patch (RFC 6902,
  base64, ``patchType: JSONPatch``) that pins each tag to the digest that was verified
  (Kyverno ``mutateDigest``, Connaisseur), so the kubelet pulls exactly what was checked.
- ``dryRun`` requests have no side effects: nothing is written to the success cache.
- warn-mode rules admit with ``warnings`` (shown by kubectl).
- Malformed reviews get a 400 or a denial, never a 500 (:mod:`verifier.gate.admission`).
- The policy and TLS files reload when they change (:mod:`verifier.gate.reload`);
  ``GET /metrics`` serves Prometheus metrics (:mod:`verifier.gate.metrics`).
- One JSON log line per request on stderr.
"""

from __future__ import annotations

import contextlib
import gc
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from verifier.gate.admission import BadReview, Decision, decide, decide_cached, parse_review, review_response
from verifier.gate.evaluator import Evaluator
from verifier.gate.metrics import CONTENT_TYPE, CountingCache, WebhookMetrics
from verifier.gate.pull_secrets import KubeSecrets
from verifier.gate.reload import DEFAULT_INTERVAL, LiveCertificate, LivePolicy

MAX_LOG_FIELD: Final = 256  # request fields are the caller's: a 3 MB name must not become a 3 MB log line


def log(event: str, **fields: Any) -> None:
    """One structured JSON line on stderr."""
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    sys.stderr.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stderr.flush()


def _field(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_LOG_FIELD else value[:MAX_LOG_FIELD] + "..."
    if value is None or isinstance(value, bool | int | float):
        return value
    return _field(str(value))


class Webhook:
    """The running webhook's state: the policy in force, metrics, pull secrets, watched files."""

    def __init__(self, evaluator: Evaluator, *, deadline: float = 8.0, policy_path: Path | None = None,
                 secrets: KubeSecrets | None = None, reload_interval: float = DEFAULT_INTERVAL,
                 log: Callable[..., None] = log) -> None:
        self.metrics = WebhookMetrics()
        if evaluator.cache is not None and not isinstance(evaluator.cache, CountingCache):
            evaluator.cache = CountingCache(evaluator.cache, self.metrics)
        self.deadline = deadline
        self.secrets = secrets
        self.reload_interval = reload_interval
        self.log = log
        self.live = LivePolicy(policy_path, evaluator, self.metrics, log) if policy_path else None
        self._evaluator = evaluator
        self.certificate: LiveCertificate | None = None

    @property
    def evaluator(self) -> Evaluator:
        return self.live.evaluator if self.live else self._evaluator

    def watch_tls(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.certificate = LiveCertificate(context, cert, key, self.log)

    async def poll(self) -> None:
        """Check the watched files every ``reload_interval`` seconds, for as long as the app runs."""
        while True:
            await anyio.sleep(self.reload_interval)
            try:
                if self.live is not None:
                    await anyio.to_thread.run_sync(self.live.check)
                if self.certificate is not None:
                    self.certificate.check()  # in the event loop's thread: no handshake sees a half-loaded context
            except Exception as e:  # noqa: BLE001 - a bad file must never stop the watching, nor the webhook
                self.log("reload-error", error=_field(f"{type(e).__name__}: {e}"))

    def answer_cached(self, request: dict[str, Any], *, mutate: bool) -> Decision | None:
        """The answer from the caches alone, on the event loop; None: decide in a thread."""
        try:
            return decide_cached(request, self.evaluator, mutate=mutate, secrets=self.secrets)
        except Exception as e:  # noqa: BLE001 - the thread path decides, and reports, instead
            self.log("error", uid=_field(request.get("uid")), error=_field(f"cached path: {type(e).__name__}: {e}"))
            return None

    def answer(self, request: dict[str, Any], *, mutate: bool, started: float) -> Decision:
        """Decide in a worker thread; any failure is a denial with a reason, never an HTTP 500."""
        evaluator = self.evaluator  # one policy for the whole request, even if a reload lands meanwhile
        try:
            return decide(request, evaluator, mutate=mutate, deadline=started + self.deadline, secrets=self.secrets)
        except Exception as e:  # noqa: BLE001 - never answer with a 500: fail closed with a reason
            self.log("error", uid=_field(request.get("uid")), error=_field(f"{type(e).__name__}: {e}"))
            return Decision(review_response(str(request.get("uid")), False,
                                            message=f"imgseal: internal error: {type(e).__name__}"))


def create_app(evaluator: Evaluator | Webhook, *, deadline: float = 8.0) -> Starlette:
    """The ASGI application. ``deadline`` seconds per request, kept below the webhook's timeoutSeconds."""
    hook = evaluator if isinstance(evaluator, Webhook) else Webhook(evaluator, deadline=deadline)

    async def review(request: Request, *, mutate: bool) -> Response:
        started = time.monotonic()
        path = "/mutate" if mutate else "/validate"
        body = await request.body()
        try:
            req = parse_review(body)
        except BadReview as e:
            hook.metrics.requests.labels(path, "bad-request").inc()
            hook.log("bad-request", path=path, status=e.status, error=e.message, bytes=len(body))
            return JSONResponse({"error": e.message}, status_code=e.status)
        decision = hook.answer_cached(req, mutate=mutate)
        if decision is not None:
            hook.metrics.cache_hits.inc(sum(v.cached for v in decision.verdicts))
        else:
            decision = await anyio.to_thread.run_sync(lambda: hook.answer(req, mutate=mutate, started=started))
        response = decision.answer["response"]
        seconds = time.monotonic() - started
        hook.metrics.observe_request(path, response["allowed"], seconds, decision.verdicts)
        for v in decision.verdicts:
            if v.exception is not None:  # a waiver in use is something an auditor must be able to find
                hook.log("exception", uid=_field(req.get("uid")), namespace=_field(req.get("namespace")),
                         image=_field(v.image), exception=_field(v.exception))
        kind = req.get("kind")
        hook.log("admission", path=path, uid=_field(req.get("uid")),
                 kind=_field(kind.get("kind")) if isinstance(kind, dict) else None,
                 namespace=_field(req.get("namespace")), name=_field(req.get("name")),
                 operation=_field(req.get("operation")), dryRun=bool(req.get("dryRun")),
                 allowed=response["allowed"], patched="patch" in response,
                 message=response.get("status", {}).get("message"), warnings=len(response.get("warnings", [])),
                 pullSecrets=list(decision.pull_sources) or None, ms=round(seconds * 1000, 1))
        return JSONResponse(decision.answer)

    async def validate(request: Request) -> Response:
        return await review(request, mutate=False)

    async def mutate(request: Request) -> Response:
        return await review(request, mutate=True)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> JSONResponse:
        # Ready even when the newest policy failed to load: the last good one is in force, and
        # taking every replica out of service over a bad ConfigMap would block the cluster
        # (failurePolicy: Fail). The failure shows here and in the metrics.
        doc: dict[str, Any] = {"ok": True, "rules": len(hook.evaluator.policy.rules)}
        if hook.live is not None:
            doc["policy"] = hook.live.status.as_json()
        if hook.certificate is not None and hook.certificate.error:
            doc["tlsReloadError"] = hook.certificate.error
        return JSONResponse(doc)

    async def metrics(request: Request) -> Response:
        return Response(hook.metrics.exposition(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            if hook.live is not None or hook.certificate is not None:
                tasks.start_soon(hook.poll)
            yield
            tasks.cancel_scope.cancel()

    return Starlette(routes=[
        Route("/validate", validate, methods=["POST"]),
        Route("/mutate", mutate, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)


def make_server(hook: Webhook, *, host: str, port: int, cert: Path, key: Path) -> Any:
    """A uvicorn server for ``hook`` over TLS, its certificate files watched for rotation."""
    import uvicorn

    config = uvicorn.Config(create_app(hook), host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                            log_level="warning", access_log=False, log_config=None, lifespan="on",
                            # On SIGTERM, idle keep-alive TLS connections wait for the client's
                            # close_notify; do not let them hold the Pod past its grace period.
                            timeout_graceful_shutdown=5)
    config.load()  # builds the SSL context now, so its errors come before we serve, and we can reload into it
    assert config.ssl is not None
    hook.watch_tls(config.ssl, cert, key)
    # The policy, keys, trust roots and imported modules live as long as the process: moved out
    # of the collector's reach, they are not walked again by every full collection (tail latency).
    gc.freeze()
    return uvicorn.Server(config)

