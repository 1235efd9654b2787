"""The gate over manifest files, and its reports: text rows (in the CLI), JSON and SARIF 2.1.0."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from imgseal.errors import UsageError
from verifier.gate.evaluator import Evaluator
from verifier.gate.kube import ImageSite, ManifestFile
from verifier.gate.verdict import Verdict

#: A decision is per image and namespace: the same image may be decided differently in two.
DecisionKey = tuple[str | None, str]


@dataclass
class GateReport:
    files: list[ManifestFile]
    verdicts: dict[DecisionKey, Verdict]  # (namespace or None, image) -> verdict
    namespace: str | None = None  # --namespace: for objects that do not say

    def namespace_of(self, site: ImageSite) -> str | None:
        return site.namespace or self.namespace

    def verdict_of(self, site: ImageSite) -> Verdict:
        return self.verdicts[self.namespace_of(site), site.image]

    def uses(self) -> Iterator[tuple[ManifestFile, int, ImageSite]]:
        for mf in self.files:
            for doc_index, sites in enumerate(mf.sites):
                for site in sites:
                    yield mf, doc_index, site

    @property
    def exit_code(self) -> int:
        """0 every image admitted; 1 any denied (a definite no outranks an unknown); 3 any undecidable."""
        decisions = {v.decision for v in self.verdicts.values()}
        if "deny" in decisions:
            return 1
        if "error" in decisions:
            return 3
        return 0


def run_gate(files: list[ManifestFile], evaluator: Evaluator, *, namespace: str | None = None) -> GateReport:
    """Decide every image of ``files``, each distinct (namespace, image) once.

    An object's ``metadata.namespace`` is where it runs; ``namespace`` (``gate --namespace``)
    covers objects without one. An object naming another namespace than ``namespace`` is an
    error, as ``kubectl apply --namespace`` refuses it.
    """
    report = GateReport(files, {}, namespace)
    by_namespace: dict[str | None, list[str]] = {}
    for mf in files:
        for doc_index, sites in enumerate(mf.sites):
            for site in sites:
                if namespace is not None and site.namespace not in (None, namespace):
                    raise UsageError(f"{mf.path} document {doc_index + 1}: {site.kind} {site.name} is in namespace "
                                     f"{site.namespace!r}, not --namespace {namespace!r} (kubectl refuses that too)")
                by_namespace.setdefault(report.namespace_of(site), []).append(site.image)
    for ns, images in by_namespace.items():
        for image, verdict in evaluator.evaluate_many(images, namespace=ns).items():
            report.verdicts[ns, image] = verdict
    return report


SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"


def report_json(report: GateReport) -> dict[str, Any]:
    locations: dict[DecisionKey, list[dict[str, Any]]] = {}
    for mf, doc_index, site in report.uses():
        locations.setdefault((report.namespace_of(site), site.image), []).append(
            {"file": mf.path, "line": site.line or None, "document": doc_index + 1, "path": site.pointer,
             "kind": site.kind, "name": site.name})
    results = []
    for (namespace, image), v in report.verdicts.items():
        results.append({"image": image, "namespace": namespace, "decision": v.decision, "admitted": v.admitted,
                        "reason": v.reason, "message": v.message, "rule": v.rule, "reference": v.reference,
                        "digest": v.digest, "cached": v.cached, "exception": v.exception,
                        "locations": locations.get((namespace, image), [])})
    return {"ok": report.exit_code == 0, "exitCode": report.exit_code, "images": len(results), "results": results}


_SARIF_LEVEL: Final = {"allow": "note", "warn": "warning", "deny": "error", "error": "error"}


def report_sarif(report: GateReport) -> dict[str, Any]:
    """SARIF 2.1.0: one result per image use, ruleId = the decision's reason code."""
    results: list[dict[str, Any]] = []
    rule_ids: dict[str, str] = {}
    for mf, _, site in report.uses():
        v = report.verdict_of(site)
        rule_ids.setdefault(v.reason, v.decision)
        region = {"startLine": site.line} if site.line else {}
        location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": mf.path if mf.path != "-"
                                                                              else "stdin"}}}
        if region:
            location["physicalLocation"]["region"] = region
        results.append({"ruleId": v.reason, "level": _SARIF_LEVEL[v.decision],
                        "message": {"text": f"{site.kind} {site.name} {site.pointer}: {v.message}"},
                        "locations": [location],
                        "properties": {"image": site.image, "decision": v.decision, "digest": v.digest,
                                       "policyRule": v.rule, "namespace": report.namespace_of(site)}})
    rules = [{"id": rid, "shortDescription": {"text": f"image {decision}: {rid}"}} for rid, decision in
             sorted(rule_ids.items())]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "imgseal", "informationUri": "https://github.com/imgseal/imgseal",
                                          "rules": rules}},
                      "results": results}]}
