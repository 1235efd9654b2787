"""Kubernetes admission webhook: ``POST /validate`` and ``POST /mutate`` (AdmissionReview v1).

- Every container image of the object (Pod, workload templates, CronJob job templates, Lists)
  is checked against the policy by the shared :class:`verifier.gate.Evaluator` (one
  verification per distinct image, bounded workers, success cache in memory).
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
- One JSON log line per request on stderr.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from imgseal.errors import Error
from verifier.gate.evaluator import Evaluator
from verifier.gate.kube import ImageSite, find_images, pinned_image
from verifier.gate.scope import is_namespace
from verifier.gate.verdict import Verdict

MAX_REVIEW_BYTES: Final = 3 << 20  # etcd's object limit is 1.5 MiB; an AdmissionReview carries two objects
ADMISSION_API: Final = "admission.k8s.io/v1"


def log(event: str, **fields: Any) -> None:
    """One structured JSON line on stderr."""
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    sys.stderr.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stderr.flush()


def review_response(uid: str, allowed: bool, *, message: str | None = None, warnings: list[str] | None = None,
                    patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": 403, "message": message or "denied", "reason": "Forbidden"}
    elif message:
        response["status"] = {"code": 200, "message": message}
    if warnings:
        response["warnings"] = warnings
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return {"apiVersion": ADMISSION_API, "kind": "AdmissionReview", "response": response}


def decide(request: Mapping[str, Any], evaluator: Evaluator, *, mutate: bool, deadline: float) -> dict[str, Any]:
    """The AdmissionReview response for one request (runs in a worker thread; ``deadline`` is monotonic)."""
    uid = str(request.get("uid", ""))
    obj = request.get("object")
    if request.get("operation") == "DELETE" or obj is None:
        return review_response(uid, True)
    try:
        sites = find_images(obj, where="object")
    except Error as e:
        return review_response(uid, False, message=f"imgseal: {e.one_line()}")
    if not sites:
        return review_response(uid, True)
    dry_run = bool(request.get("dryRun"))
    # The review's namespace selects namespaced rules and exceptions; absent or not a namespace
    # name (never, from an API server: Pods and workloads are namespaced), namespace-dependent
    # images are undecided and so denied.
    given = request.get("namespace")
    namespace = given if isinstance(given, str) and is_namespace(given) else None
    verdicts = evaluator.evaluate_many([s.image for s in sites], deadline=deadline, record=not dry_run,
                                       namespace=namespace)
    for v in verdicts.values():
        if v.exception is not None:  # a waiver in use is something an auditor must be able to find
            log("exception", uid=uid, namespace=namespace, image=v.image, exception=v.exception)
    denied = [v for v in verdicts.values() if not v.admitted]
    warnings = [f"imgseal: {v.message}" for v in verdicts.values() if v.decision == "warn"]
    if denied:
        lines = "; ".join(f"{_site_names(sites, v.image)}: {v.message}" for v in denied)
        return review_response(uid, False, message=f"imgseal: image(s) denied: {lines}", warnings=warnings)
    patch = _pin_patch(sites, verdicts) if mutate else None
    return review_response(uid, True, warnings=warnings, patch=patch)


def _site_names(sites: list[ImageSite], image: str) -> str:
    where = sorted({s.pointer for s in sites if s.image == image})
    return f"{image} ({', '.join(where)})"


def _pin_patch(sites: list[ImageSite], verdicts: Mapping[str, Verdict]) -> list[dict[str, Any]]:
    """``replace`` ops pinning each admitted tag reference to its verified digest."""
    ops: list[dict[str, Any]] = []
    for site in sites:
        pinned = pinned_image(site.image, verdicts[site.image])
        if pinned is not None:
            ops.append({"op": "replace", "path": site.pointer, "value": pinned})
    return ops


def create_app(evaluator: Evaluator, *, deadline: float = 8.0) -> Starlette:
    """The ASGI application. ``deadline`` seconds per request, kept below the webhook's timeoutSeconds."""

    async def review(request: Request, *, mutate: bool) -> JSONResponse:
        started = time.monotonic()
        body = await request.body()
        if len(body) > MAX_REVIEW_BYTES:
            return JSONResponse({"error": f"AdmissionReview over {MAX_REVIEW_BYTES} bytes"}, status_code=413)
        try:
            review_doc = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        req = review_doc.get("request") if isinstance(review_doc, dict) else None
        if (not isinstance(review_doc, dict) or review_doc.get("kind") != "AdmissionReview"
                or not isinstance(req, dict) or not isinstance(req.get("uid"), str)):
            return JSONResponse({"error": "expected an admission.k8s.io/v1 AdmissionReview with request.uid"},
                                status_code=400)

        def work() -> dict[str, Any]:
            try:
                return decide(req, evaluator, mutate=mutate, deadline=started + deadline)
            except Exception as e:  # noqa: BLE001 - never answer with a 500: fail closed with a reason
                log("error", uid=req.get("uid"), error=f"{type(e).__name__}: {e}")
                return review_response(str(req.get("uid")), False, message=f"imgseal: internal error: "
                                       f"{type(e).__name__}")

        answer = await anyio.to_thread.run_sync(work)
        response = answer["response"]
        kind = req.get("kind") if isinstance(req.get("kind"), dict) else {}
        log("admission", path="/mutate" if mutate else "/validate", uid=req.get("uid"),
            kind=kind.get("kind") if isinstance(kind, dict) else None, namespace=req.get("namespace"),
            name=req.get("name"), operation=req.get("operation"), dryRun=bool(req.get("dryRun")),
            allowed=response["allowed"], patched="patch" in response,
            message=response.get("status", {}).get("message"), warnings=len(response.get("warnings", [])),
            ms=round((time.monotonic() - started) * 1000, 1))
        return JSONResponse(answer)

    async def validate(request: Request) -> JSONResponse:
        return await review(request, mutate=False)

    async def mutate(request: Request) -> JSONResponse:
        return await review(request, mutate=True)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "rules": len(evaluator.policy.rules)})

    return Starlette(routes=[
        Route("/validate", validate, methods=["POST"]),
        Route("/mutate", mutate, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ])
