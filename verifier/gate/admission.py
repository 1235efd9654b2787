"""One AdmissionReview, from bytes to the answer: parsed defensively, decided, bounded.

Fail closed on every malformed review (docs/webhook.md promises never a 500):

- the body is bounded (:data:`MAX_REVIEW_BYTES`) and so is its nesting *before* parsing
  (:func:`json_depth_exceeds`): Python's parser recurses, and 50,000 ``[`` raised
  ``RecursionError``, which is no ``ValueError``;
- a review that is not an ``admission.k8s.io/v1`` AdmissionReview with a string
  ``request.uid`` is a 400 (there is no uid to answer to);
- ``CREATE`` / ``UPDATE`` without an ``object``, or an unknown operation, is a denial
  (something will run, and we did not see it);
- the denial message and the warnings are capped (:data:`MAX_MESSAGE_BYTES`): the first
  denials, then "and N more"; a Pod with 3,000 unapproved images gave a 350 KB message.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from imgseal.errors import Error
from verifier.gate.evaluator import Evaluator, PullIdentity, Run
from verifier.gate.kube import ImageSite, find_images, pinned_image
from verifier.gate.pull_secrets import KubeSecrets, PullSecretError, pull_request
from verifier.gate.scope import is_namespace
from verifier.gate.verdict import Verdict

MAX_REVIEW_BYTES: Final = 3 << 20  # etcd's object limit is 1.5 MiB; an AdmissionReview carries two objects
MAX_JSON_DEPTH: Final = 100  # a Pod review nests ~12 deep; CRDs rarely past 40
MAX_MESSAGE_BYTES: Final = 4096
MAX_WARNINGS: Final = 20
MAX_WARNING_CHARS: Final = 512
MAX_CACHED_PATH_IMAGES: Final = 64  # more, and the answer is worked out in a thread
ADMISSION_API: Final = "admission.k8s.io/v1"
OPERATIONS: Final = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})

# JSON strings (which may hold any bracket) and everything that is not a bracket, removed by
# C-speed regex and bytes.translate, leave only the nesting to measure.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


class BadReview(Exception):
    """A body we cannot answer as a review at all: HTTP ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays/objects deeper than ``limit`` (strings ignored)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    depth = 0
    for b in brackets:
        if b in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_review(body: bytes) -> dict[str, Any]:
    """The ``request`` of an AdmissionReview body; :class:`BadReview` when there is none to answer."""
    if len(body) > MAX_REVIEW_BYTES:
        raise BadReview(413, f"AdmissionReview over {MAX_REVIEW_BYTES} bytes")
    if json_depth_exceeds(body):
        raise BadReview(400, f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise BadReview(400, "body is not JSON") from None
    req = doc.get("request") if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("kind") != "AdmissionReview" or not isinstance(req, dict)
            or not isinstance(req.get("uid"), str)):
        raise BadReview(400, f"expected an {ADMISSION_API} AdmissionReview with request.uid")
    return req


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


def capped(head: str, items: Sequence[str], limit: int = MAX_MESSAGE_BYTES, noun: str = "more") -> str:
    """``head`` and as many ``items`` as fit in ``limit`` UTF-8 bytes, then "and N more".

    Each item is first cut to half the limit, so the first one always shows.
    """
    half = limit // 2
    text = head
    for i, item in enumerate(items):
        if len(item.encode()) > half:
            item = item.encode()[: half - 3].decode(errors="ignore") + "..."
        sep = "" if i == 0 else "; "
        after = len(items) - i - 1
        reserve = len(f"; and {after} {noun}".encode()) if after else 0
        if i > 0 and len((text + sep + item).encode()) + reserve > limit:
            return f"{text}; and {len(items) - i} {noun}"
        text += sep + item
    return text


def capped_warnings(warnings: Sequence[str]) -> list[str]:
    shown = [w if len(w) <= MAX_WARNING_CHARS else w[: MAX_WARNING_CHARS - 3] + "..." for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        shown.append(f"imgseal: and {len(warnings) - MAX_WARNINGS} more warning(s)")
    return shown


@dataclass(frozen=True)
class Decision:
    """The answer to one request, with the verdicts it rests on (for logs and metrics)."""

    answer: dict[str, Any]
    verdicts: tuple[Verdict, ...] = ()
    pull_sources: tuple[str, ...] = ()


def _namespace(request: Mapping[str, Any]) -> str | None:
    """The review's namespace; None when absent or not a namespace name.

    It selects namespaced rules and exceptions (None: namespace-dependent images are undecided,
    so denied) and whose pull secrets are read. An API server always sends it for Pods and
    workloads, which are namespaced.
    """
    given = request.get("namespace")
    return given if isinstance(given, str) and is_namespace(given) else None


def decide(request: Mapping[str, Any], evaluator: Evaluator, *, mutate: bool, deadline: float,
           secrets: KubeSecrets | None = None) -> Decision:
    """The AdmissionReview answer for one request (runs in a worker thread; ``deadline`` is monotonic)."""
    uid = str(request["uid"])
    operation = request.get("operation")
    obj = request.get("object")
    if operation not in OPERATIONS:
        return Decision(review_response(uid, False, message=f"imgseal: unknown operation {str(operation)[:40]!r}"))
    if operation == "DELETE":
        return Decision(review_response(uid, True))
    if obj is None:
        if operation == "CONNECT":  # exec/attach/port-forward options: nothing new will run
            return Decision(review_response(uid, True))
        return Decision(review_response(uid, False, message=f"imgseal: {operation} request without an object: "
                                        "nothing to check, so nothing is admitted"))
    namespace = _namespace(request)
    try:
        sites = find_images(obj, where="object")
        pull = _pull(secrets, namespace, obj) if sites else None
    except Error as e:
        return Decision(review_response(uid, False, message=capped("imgseal: ", [e.one_line()])))
    if not sites:
        return Decision(review_response(uid, True))
    run = Run(evaluator.factory, pull=pull)
    dry_run = bool(request.get("dryRun"))  # anything truthy: no side effects, to be safe
    verdicts = evaluator.evaluate_many([s.image for s in sites], deadline=deadline, record=not dry_run, run=run,
                                       namespace=namespace)
    return _answer(uid, sites, verdicts, mutate=mutate, run=run)


def decide_cached(request: Mapping[str, Any], evaluator: Evaluator, *, mutate: bool,
                  secrets: KubeSecrets | None = None) -> Decision | None:
    """The answer, if the policy and the caches alone give it (no registry, no API server); else None.

    Cheap enough to run on the event loop: a warm request then never waits for a thread (at
    32 concurrent requests the hand-offs and the GIL convoy behind them were the tail latency).
    Anything not decided this way is decided by :func:`decide` in a thread, from scratch.
    """
    if request.get("operation") not in ("CREATE", "UPDATE") or request.get("object") is None:
        return None
    obj = request["object"]
    namespace = _namespace(request)
    try:
        sites = find_images(obj, where="object")
        pull = _pull(secrets, namespace, obj, cached_only=True) if sites else None
    except Error:
        return None
    if not sites or len(sites) > MAX_CACHED_PATH_IMAGES:
        return None  # none to decide, or too many to decide without holding up the event loop
    run = Run(evaluator.factory, pull=pull)
    verdicts: dict[str, Verdict] = {}
    for image in dict.fromkeys(s.image for s in sites):
        plan = evaluator.plan(image, namespace=namespace)
        verdict = plan.verdict if plan.verdict is not None else evaluator.cached_verdict(plan, run, peek=True)[0]
        if verdict is None:
            return None
        verdicts[image] = verdict
    return _answer(str(request["uid"]), sites, verdicts, mutate=mutate, run=run)


def _answer(uid: str, sites: list[ImageSite], verdicts: Mapping[str, Verdict], *, mutate: bool, run: Run) -> Decision:
    sources = tuple(dict.fromkeys(e.source for e in getattr(run.pulled, "entries", ())))
    denied = [v for v in verdicts.values() if not v.admitted]
    warnings = capped_warnings([f"imgseal: {v.message}" for v in verdicts.values() if v.decision == "warn"])
    if denied:
        lines = [f"{_site_names(sites, v.image)}: {v.message}" for v in denied]
        message = capped("imgseal: image(s) denied: ", lines, noun="more denied")
        return Decision(review_response(uid, False, message=message, warnings=warnings), tuple(verdicts.values()),
                        sources)
    patch = _pin_patch(sites, verdicts) if mutate else None
    return Decision(review_response(uid, True, warnings=warnings, patch=patch), tuple(verdicts.values()), sources)


def _pull(secrets: KubeSecrets | None, namespace: str | None, obj: Any, *, cached_only: bool = False
          ) -> Callable[[], PullIdentity] | None:
    """How the run gets the object's pull credentials (None: the webhook's own configuration only)."""
    if secrets is None:
        return None
    wanted = pull_request(obj)  # malformed fields raise here: a definite denial
    if not wanted.secrets and not wanted.service_accounts:
        return None

    def pull() -> PullIdentity:
        if namespace is None:  # only the images that need a registry are affected (undecided)
            raise PullSecretError("the review names no namespace: whose pull secrets?", reason="namespace-unknown")
        return secrets.pull_credentials(namespace, wanted, cached_only=cached_only)

    return pull


def _site_names(sites: list[ImageSite], image: str) -> str:
    where = sorted({s.pointer for s in sites if s.image == image})
    if len(where) > 3:
        where = [*where[:3], f"and {len(where) - 3} more"]
    return f"{image} ({', '.join(where)})"


def _pin_patch(sites: list[ImageSite], verdicts: Mapping[str, Verdict]) -> list[dict[str, Any]]:
    """``replace`` ops pinning each admitted tag reference to its verified digest."""
    ops: list[dict[str, Any]] = []
    for site in sites:
        pinned = pinned_image(site.image, verdicts[site.image])
        if pinned is not None:
            ops.append({"op": "replace", "path": site.pointer, "value": pinned})
    return ops
