"""The deploy gate: images found in Kubernetes manifests, verified against a policy, once each.

Why it is shaped this way (REFERENCE.md §7): admission webhooks have 10 s, and peers blow it
by re-verifying the same image for every container (Kyverno #16657: one image 8× ≈ 21 s) and
by pulling every signature once per key (policy-controller #278). So:

- every distinct reference is evaluated once; references that resolve to the same digest
  share one verification (:class:`Evaluator` memoises per (rule, repository, digest));
- one :class:`~imgseal.store.StoreFactory` serves every image, so connections and registry
  tokens are pooled, and a per-run :class:`CachingStore` fetches each manifest and blob by
  digest at most once;
- verification runs on a bounded pool of threads;
- successes (only successes) are remembered by (digest, rule fingerprint) for a TTL, on disk
  for the CLI (:class:`DiskCache`) and in memory for the webhook (:class:`MemoryCache`), as
  Kyverno does (60 min). A tag is never cached: it is resolved on every run.

Each requirement type is one small function (``_check_*``) calling the verifier module that
owns it: :mod:`verifier.image` (keys), :mod:`verifier.keyless`, :mod:`verifier.attestation`,
:mod:`verifier.notation_image`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

from imgseal import attach
from imgseal.digest import Digest
from imgseal.errors import Error, InvalidInputError, UndecidableError, UsageError, VerificationError
from imgseal.manifest import MANIFEST_TYPES, Descriptor, Manifest
from imgseal.reference import Reference
from imgseal.store import StoreFactory
from imgseal.store.base import Store
from imgseal.store.registry import ACCEPT_MANIFESTS, RegistryStore
from verifier.policy import (
    AttestationRequirement,
    KeylessSigner,
    NotationRequirement,
    Policy,
    PolicyKey,
    Rule,
    SignatureRequirement,
    reference_name,
)

T = TypeVar("T")

DEFAULT_TTL: Final = 3600.0
DEFAULT_WORKERS: Final = 8
MAX_MANIFEST_FILE_BYTES: Final = 16 << 20

DecisionKind = Literal["allow", "warn", "deny", "error"]

#: Where pod specs live, by kind (Kubernetes API: core/v1 Pod, apps/v1, batch/v1).
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")


# --- finding images -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSite:
    """One ``image:`` field: where it is (a JSON pointer into its document) and what it says."""

    image: str
    pointer: str
    kind: str
    name: str
    line: int = 0  # 1-based line in its file, when known


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def find_images(obj: Any, *, where: str = "document") -> list[ImageSite]:
    """Every container image in one Kubernetes object (a List's items included).

    Objects of other kinds have no images and yield nothing; a known kind with a malformed
    container list, or a container whose ``image`` is not a string, is an error — an image we
    failed to see would be an image we failed to check.
    """
    sites: list[ImageSite] = []
    _find(obj, "", where, sites)
    return sites


def _find(obj: Any, prefix: str, where: str, sites: list[ImageSite]) -> None:
    if obj is None:
        return
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"{where}: a Kubernetes object must be a mapping", reason="invalid-manifest")
    kind = obj.get("kind")
    if not isinstance(kind, str):
        return
    if kind == "List" or (kind.endswith("List") and isinstance(obj.get("items"), list)):
        items = obj.get("items") or []
        if not isinstance(items, list):
            raise InvalidInputError(f"{where}: {kind}.items is not a list", reason="invalid-manifest")
        for i, item in enumerate(items):
            _find(item, f"{prefix}/items/{i}", f"{where} items[{i}]", sites)
        return
    path = POD_SPEC_PATHS.get(kind)
    if path is None:
        return
    metadata = obj.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    spec: Any = obj
    for step in path:
        spec = spec.get(step) if isinstance(spec, Mapping) else None
        if spec is None:
            return  # a workload without a template (e.g. a partial patch) has no images to check
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"{where}: {kind} {name}: {'.'.join(path)} is not a mapping", reason="invalid-manifest")
    spec_pointer = prefix + "".join(f"/{step}" for step in path)
    for list_name in CONTAINER_LISTS:
        containers = spec.get(list_name)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise InvalidInputError(f"{where}: {kind} {name}: {list_name} is not a list", reason="invalid-manifest")
        for i, container in enumerate(containers):
            image = container.get("image") if isinstance(container, Mapping) else None
            if not isinstance(image, str) or not image:
                raise InvalidInputError(f"{where}: {kind} {name}: {list_name}[{i}] has no image string",
                                        reason="invalid-manifest")
            line = 0
            if isinstance(container, _LineDict):
                line = container.value_lines.get("image", -1) + 1
            else:
                lc = getattr(container, "lc", None)
                if lc is not None:
                    with contextlib.suppress(KeyError, TypeError, AttributeError):
                        line = int(lc.value("image")[0]) + 1
            sites.append(ImageSite(image, f"{spec_pointer}/{list_name}/{i}/image", kind, name, line))


@dataclass
class ManifestFile:
    """A YAML stream and the images in it.

    ``round_trip`` tells how ``documents`` were read: ruamel's round-trip loader (so they
    can be written back with comments, for ``--pin``), or the fast loader (PyYAML's libyaml
    parser), which is enough to find images. :func:`render_pinned` re-reads a fast-loaded
    file in round-trip form when it needs to.
    """

    path: str  # "-" for stdin
    text: str
    documents: list[Any]
    sites: list[list[ImageSite]] = field(default_factory=list)  # per document
    round_trip: bool = True


class _LineDict(dict[Any, Any]):
    """A mapping from the fast loader that remembers the 0-based line of each value (for reports)."""

    value_lines: dict[Any, int]


@functools.cache
def _fast_loader() -> Any:
    """A PyYAML SafeLoader on libyaml (``CSafeLoader``) whose mappings record value lines.

    Reading 100 Deployments with ruamel's pure-Python round-trip loader takes ~0.6 s, most of
    a warm gate run; libyaml parses the same in a few milliseconds. Two differences from the
    round-trip loader are closed here or fail closed: duplicate keys are refused (as ruamel
    and kubectl's strict decoding do: the API server must not see another ``image`` than we
    checked), and YAML 1.1 scalars such as ``1:20`` (sexagesimal) become numbers, so such an
    ``image`` is refused as "no image string" rather than checked as something else.
    """
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        pass

    def construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[_LineDict]:
        data = _LineDict()
        data.value_lines = {}
        yield data
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=False)
            try:
                hash(key)
            except TypeError as e:
                raise yaml.constructor.ConstructorError(None, None, "unhashable mapping key",
                                                        key_node.start_mark) from e
            if key in data:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {str(key)[:60]!r}",
                                                        key_node.start_mark)
            data[key] = loader.construct_object(value_node, deep=False)
            data.value_lines[key] = value_node.start_mark.line

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    return Loader



def _yaml_rt() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines
    return y


def _load_fast(path: str, text: str) -> list[Any]:
    import yaml

    try:
        return list(yaml.load_all(text, Loader=_fast_loader()))  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InvalidInputError(f"{where}: not valid YAML: {e.problem or e.context}", reason="invalid-manifest") from e
    except (yaml.YAMLError, RecursionError) as e:
        raise InvalidInputError(f"{path}: not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                                reason="invalid-manifest") from e


def _load_round_trip(path: str, text: str) -> list[Any]:
    from ruamel.yaml.error import YAMLError

    try:
        return list(_yaml_rt().load_all(text))
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidInputError(f"{where}: not valid YAML: {problem}", reason="invalid-manifest") from e


def read_manifest(path: str, text: str, *, round_trip: bool = False) -> ManifestFile:
    """Parse one YAML stream and find its images; ``round_trip`` keeps comments for writing back."""
    documents = _load_round_trip(path, text) if round_trip else _load_fast(path, text)
    mf = ManifestFile(path, text, documents, round_trip=round_trip)
    mf.sites = [find_images(doc, where=f"{path} document {i + 1}") for i, doc in enumerate(documents)]
    return mf


def collect_manifests(paths: Sequence[str], stdin: Callable[[], str] | None = None, *,
                      round_trip: bool = False) -> list[ManifestFile]:
    """Read files, directories (``*.yaml``, ``*.yml``, ``*.json``, recursively, sorted) and ``-`` (stdin)."""
    files: list[ManifestFile] = []
    for given in paths:
        if given == "-":
            files.append(read_manifest("-", (stdin or sys.stdin.read)(), round_trip=round_trip))
            continue
        p = Path(given)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".yaml", ".yml", ".json"))
            if not found:
                raise UsageError(f"{given}: no .yaml, .yml or .json files in this directory")
            candidates = found
        elif p.is_file():
            candidates = [p]
        else:
            raise UsageError(f"{given}: no such file or directory")
        for f in candidates:
            if f.stat().st_size > MAX_MANIFEST_FILE_BYTES:
                raise InvalidInputError(f"{f}: over the {MAX_MANIFEST_FILE_BYTES}-byte limit for a manifest file")
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InvalidInputError(f"cannot read {f}: {e}", reason="invalid-manifest") from e
            files.append(read_manifest(str(f), text, round_trip=round_trip))
    return files


# --- verdicts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for one image reference."""

    image: str
    decision: DecisionKind
    reason: str
    message: str
    rule: str | None = None
    reference: str | None = None
    digest: str | None = None
    cached: bool = False

    @property
    def admitted(self) -> bool:
        return self.decision in ("allow", "warn")


@dataclass(frozen=True)
class Plan:
    """The parsed reference and the rule that decides it (no network needed to get here)."""

    image: str
    ref: Reference | None
    rule: Rule | None
    verdict: Verdict | None  # already decided without the registry


class CheckFailed(VerificationError):
    """A requirement failed; ``check`` names which (signatures, keyless, attestation …)."""

    def __init__(self, check: str, cause: Error) -> None:
        super().__init__(f"{check}: {cause.one_line()}", reason=cause.reason)
        self.check = check


# --- caches -----------------------------------------------------------------------------------


def _cache_key(digest: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{digest}\n{fingerprint}".encode()).hexdigest()


class MemoryCache:
    """Successes in memory with a TTL and a bound (the webhook's cache)."""

    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = 1000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, float] = {}
        self._lock = threading.Lock()

    def hit(self, digest: str, fingerprint: str) -> bool:
        key = _cache_key(digest, fingerprint)
        with self._lock:
            expires = self._entries.get(key)
            if expires is None:
                return False
            if expires < time.time():
                del self._entries[key]
                return False
            return True

    def record(self, digest: str, fingerprint: str) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                oldest = min(self._entries, key=self._entries.__getitem__)
                del self._entries[oldest]
            self._entries[_cache_key(digest, fingerprint)] = time.time() + self.ttl


class DiskCache:
    """Successes on disk, one JSON file per (digest, rule fingerprint), written atomically with mode 0600.

    A file that is unreadable, malformed, expired or for another key is a miss, never a hit.
    """

    def __init__(self, directory: Path, ttl: float = DEFAULT_TTL) -> None:
        self.directory = directory
        self.ttl = ttl

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def hit(self, digest: str, fingerprint: str) -> bool:
        key = _cache_key(digest, fingerprint)
        try:
            data = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return False
        if not isinstance(data, dict) or data.get("digest") != digest or data.get("rule") != fingerprint:
            return False
        verified_at = data.get("verifiedAt")
        return isinstance(verified_at, int | float) and 0 <= time.time() - verified_at < self.ttl

    def record(self, digest: str, fingerprint: str) -> None:
        key = _cache_key(digest, fingerprint)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            body = json.dumps({"digest": digest, "rule": fingerprint, "verifiedAt": time.time()}).encode()
            write_atomic(self._path(key), body, mode=0o600)
        except OSError:
            pass  # a cache that cannot be written only costs time


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("imgseal")) / "gate"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write via a temporary file in the same directory and ``os.replace``: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class SuccessCache(Protocol):
    """What :class:`Evaluator` needs of a cache (both caches above fit)."""

    def hit(self, digest: str, fingerprint: str) -> bool: ...

    def record(self, digest: str, fingerprint: str) -> None: ...


class Memo:
    """Compute each key's value once; concurrent callers of the same key wait for the first."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, ...], Any] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._lock = threading.Lock()

    def once(self, key: tuple[str, ...], fn: Callable[[], T]) -> T:
        with self._lock:
            if key in self._memo:
                return self._memo[key]  # type: ignore[no-any-return]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._memo:
                    return self._memo[key]  # type: ignore[no-any-return]
            value = fn()
            with self._lock:
                self._memo[key] = value
            return value


class CachingStore:
    """A :class:`Store` that fetches each manifest (by digest) and blob at most once per run.

    Only content addressed by digest is memoised (its bytes are checked against the digest);
    tags and tag listings are asked each time they are needed within one evaluation.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._once = Memo().once

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def repository(self) -> str:
        return self.inner.repository

    def get_manifest(self, ref: str | Digest) -> Manifest:
        if isinstance(ref, Digest):
            return self._once(("manifest", str(ref)), lambda: self.inner.get_manifest(ref))
        return self.inner.get_manifest(ref)

    def has_manifest(self, ref: str | Digest) -> bool:
        return self.inner.has_manifest(ref)

    def blob_chunks(self, desc: Descriptor) -> Iterator[bytes]:
        return self.inner.blob_chunks(desc)

    def get_blob(self, desc: Descriptor, *, max_bytes: int) -> bytes:
        data = self._once(("blob", str(desc.digest)), lambda: self.inner.get_blob(desc, max_bytes=max_bytes))
        if len(data) > max_bytes:
            return self.inner.get_blob(desc, max_bytes=max_bytes)  # let the store raise its own error
        return data

    def has_blob(self, digest: Digest) -> bool:
        return self.inner.has_blob(digest)

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
        raise UsageError("the gate never writes to registries")

    def put_blob_file(self, path: Path, digest: Digest, size: int) -> None:
        raise UsageError("the gate never writes to registries")

    def put_manifest(self, raw: bytes, media_type: str, *, tag: str | None = None) -> Digest:
        raise UsageError("the gate never writes to registries")

    def list_tags(self) -> list[str]:
        return self._once(("tags", ""), self.inner.list_tags)

    def referrers(self, digest: Digest, artifact_type: str | None = None) -> list[Descriptor] | None:
        return self._once(("referrers", f"{digest} {artifact_type}"),
                          lambda: self.inner.referrers(digest, artifact_type))

    def delete_manifest(self, digest: Digest) -> None:
        raise UsageError("the gate never writes to registries")


# --- tag resolution ---------------------------------------------------------------------------


def head_manifest(store: Store, tag: str) -> Descriptor | None:
    """What a registry says ``tag`` points to, from a HEAD request; None when it does not say.

    distribution-spec "Checking if content exists": HEAD answers with the headers of the GET
    (``Docker-Content-Digest``, ``Content-Type``, ``Content-Length``) and no body. A warm
    gate run needs only the digest of each tag (the success cache is keyed by digest), so
    this saves downloading and hashing every manifest. The header is no less trustworthy
    than a GET's body would be here: whatever digest it names is what every signature and
    attestation is then checked against, and any manifest fetched later is fetched by that
    digest and checked. A missing, non-sha256 or malformed header gives None (the caller
    falls back to GET); a missing tag raises :class:`~imgseal.errors.NotFoundError` as GET does.
    """
    inner = store.inner if isinstance(store, CachingStore) else store
    if not isinstance(inner, RegistryStore):
        return None
    resp = inner.client.request("HEAD", f"/v2/{inner.repository}/manifests/{tag}", repository=inner.repository,
                                headers={"Accept": ACCEPT_MANIFESTS})
    resp.close()
    header = resp.headers.get("Docker-Content-Digest")
    media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    length = resp.headers.get("Content-Length") or ""
    if not header or media_type not in MANIFEST_TYPES or not length.isdigit():
        return None
    try:
        digest = Digest.parse(header)
    except Error:
        return None
    if digest.algorithm != "sha256":
        return None
    return Descriptor(media_type, digest, int(length))


def resolve_tag(store: Store, tag: str) -> Digest:
    """The digest ``tag`` names now: a HEAD request, else a GET of the manifest (hashed)."""
    desc = head_manifest(store, tag)
    return desc.digest if desc is not None else store.get_manifest(tag).digest


# --- evaluation -------------------------------------------------------------------------------


class Run:
    """State shared by the verifications of one run (one gate invocation, one admission request).

    A memo of tag resolutions, discovered attachments and verification outcomes, plus one
    :class:`CachingStore` per repository. Concurrent callers of :meth:`once` with the same key
    wait for the first one's result instead of repeating its registry requests. A new run per
    admission request means a tag moved between two requests is resolved afresh.
    """

    def __init__(self, factory: StoreFactory) -> None:
        self.factory = factory
        self._stores: dict[str, CachingStore] = {}
        self._lock = threading.Lock()
        self.once = Memo().once

    def store(self, ref: Reference) -> CachingStore:
        with self._lock:
            if ref.name not in self._stores:
                self._stores[ref.name] = CachingStore(self.factory.open(ref))
            return self._stores[ref.name]


class Evaluator:
    """Decides images against a policy. Thread-safe; one per CLI run or per webhook process.

    ``resolve_tags``: also resolve the digest of tag references that a rule admits without
    checks (``allow: true``, ``default: allow``), for pinning / mutation.
    """

    def __init__(self, policy: Policy, factory: StoreFactory, *, cache: SuccessCache | None = None,
                 workers: int = DEFAULT_WORKERS, resolve_tags: bool = False) -> None:
        self.policy = policy
        self.factory = factory
        self.cache = cache
        self.workers = max(1, workers)
        self.resolve_tags = resolve_tags
        self._lock = threading.Lock()
        self._trust: dict[str, Any] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- planning (no network) --------------------------------------------------------------

    def plan(self, image: str, *, resolve_tags: bool | None = None) -> Plan:
        resolve = self.resolve_tags if resolve_tags is None else resolve_tags
        try:
            ref, name = reference_name(image)
        except Error as e:
            return Plan(image, None, None, Verdict(image, "deny", e.reason, f"invalid image reference: {e.one_line()}"))
        selection = self.policy.select(name)
        if selection.chosen is None:
            default = self.policy.default
            message = f"no policy rule matches {name} (default: {default})"
            decision: DecisionKind = "allow" if default == "allow" else "warn" if default == "warn" else "deny"
            verdict = Verdict(image, decision, "no-matching-rule", message, None, str(ref))
            return Plan(image, ref, None, verdict if not (resolve and verdict.admitted) else None)
        rule = selection.chosen.rule
        if rule.deny:
            return Plan(image, ref, rule, Verdict(image, "deny", "denied-by-rule", f"rule {rule.name!r} denies "
                                                  f"{name}", rule.name, str(ref)))
        if rule.require.digest and ref.digest is None:
            verdict = Verdict(image, "deny", "tag-only", f"rule {rule.name!r} requires a digest; {image} names "
                              "only a tag", rule.name, str(ref))
            return Plan(image, ref, rule, _apply_mode(rule, verdict))
        if not rule.require.verifies:
            allowed = Verdict(image, "allow", "allowed-by-rule", f"rule {rule.name!r} admits {name}", rule.name,
                              str(ref), str(ref.digest) if ref.digest else None)
            if ref.digest is not None or not resolve:
                return Plan(image, ref, rule, allowed)
        return Plan(image, ref, rule, None)

    # -- verification ------------------------------------------------------------------------

    def evaluate(self, image: str, *, record: bool = True, run: Run | None = None) -> Verdict:
        plan = self.plan(image)
        return plan.verdict if plan.verdict is not None else self.verify(plan, run or Run(self.factory),
                                                                         record=record)

    def verify(self, plan: Plan, run: Run, *, record: bool = True) -> Verdict:
        assert plan.ref is not None
        ref, rule, image = plan.ref, plan.rule, plan.image
        unchecked = rule is None or not rule.require.verifies
        try:
            store = run.store(ref)
            digest = ref.digest or run.once(("tag", ref.name, ref.tag or "latest"),
                                              lambda: resolve_tag(store, ref.tag or "latest"))
        except Error as e:
            if unchecked:  # admitted without checks: the digest was only wanted for pinning
                return self.plan_without_resolution(plan)
            return self._undecidable(plan, e)
        if rule is None or unchecked:
            return replace(self.plan_without_resolution(plan), digest=str(digest))
        fingerprint = rule.fingerprint
        if self.cache is not None and self.cache.hit(str(digest), fingerprint):
            return Verdict(image, "allow", "verified", f"{_shown(image, digest)} verified by rule {rule.name!r} "
                           "(cached)", rule.name, str(ref), str(digest), cached=True)
        try:
            run.once(("verify", fingerprint, ref.name, str(digest)),
                     lambda: _Memo.capture(lambda: self._check_rule(rule, ref, store, digest, run))).unwrap()
        except VerificationError as e:
            failed = Verdict(image, "deny", e.reason, f"{_shown(image, digest)} denied by rule {rule.name!r}: "
                             f"{e.one_line()}", rule.name, str(ref), str(digest))
            return _apply_mode(rule, failed)
        except Error as e:
            return self._undecidable(plan, e, digest)
        if record and self.cache is not None:
            self.cache.record(str(digest), fingerprint)
        return Verdict(image, "allow", "verified", f"{_shown(image, digest)} verified by rule {rule.name!r}",
                       rule.name, str(ref), str(digest))

    def plan_without_resolution(self, plan: Plan) -> Verdict:
        """The verdict of an admitted-without-checks plan (what :meth:`plan` gives when not resolving tags)."""
        verdict = self.plan(plan.image, resolve_tags=False).verdict
        assert verdict is not None
        return verdict

    def _undecidable(self, plan: Plan, e: Error, digest: Digest | None = None) -> Verdict:
        rule = plan.rule
        where = _shown(plan.image, digest)
        if not isinstance(e, UndecidableError):
            # A malformed document we were given or found is a definite no, not "could not decide".
            verdict = Verdict(plan.image, "deny", e.reason, f"{where}: {e.one_line()}", rule.name if rule else None,
                              str(plan.ref) if plan.ref else None, str(digest) if digest else None)
            return _apply_mode(rule, verdict) if rule else verdict
        return undecided(plan, f"{where}: could not decide: {e.one_line()}", e.reason,
                         str(digest) if digest else None)

    def _check_rule(self, rule: Rule, ref: Reference, store: Store, digest: Digest, run: Run) -> None:
        """Every requirement of ``rule`` must hold (AND); each is one small function below."""
        attachments = run.once(("attachments", ref.name, str(digest)), lambda: attach.discover(store, digest))
        req = rule.require
        failures: list[CheckFailed] = []
        checks: list[tuple[str, Callable[[], None]]] = []
        if req.signatures is not None:
            sigs = req.signatures
            checks.append(("signatures", lambda: _check_signatures(store, digest, attachments, sigs)))
        if req.keyless:
            trust = self._trusted_root(rule)
            checks.append(("keyless", lambda: _check_keyless(store, digest, attachments, req.keyless, trust)))
        for att in req.attestations:
            keys = att.keys or (req.signatures.keys if req.signatures else ())
            trust = self._trusted_root(rule) if req.keyless else None

            def check_att(att: AttestationRequirement = att, keys: Sequence[PolicyKey] = keys,
                          trust: Any = trust) -> None:
                _check_attestation(store, digest, attachments, att, keys, req.keyless, trust)

            checks.append((f"attestation {att.predicate_type}", check_att))
        if req.notation is not None:
            notation = req.notation
            checks.append(("notation", lambda: _check_notation(store, ref, digest, attachments, notation)))
        for name, check in checks:
            try:
                check()
            except VerificationError as e:
                failures.append(CheckFailed(name, e))
        if failures:
            if len(failures) == 1:
                raise failures[0]
            raise VerificationError("; ".join(f.one_line() for f in failures), reason=failures[0].reason)

    def _trusted_root(self, rule: Rule) -> Any:
        path = rule.trusted_root or self.policy.trusted_root
        key = str(path) if path else ""
        with self._lock:
            if key in self._trust:
                return self._trust[key]
        from verifier.keyless import load_trust

        trust = load_trust(path, False)
        with self._lock:
            self._trust[key] = trust
        return trust

    # -- many images ---------------------------------------------------------------------------

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="imgseal-gate")
            return self._pool

    def evaluate_many(self, images: Iterable[str], *, deadline: float | None = None,
                      record: bool = True, run: Run | None = None) -> dict[str, Verdict]:
        """Each distinct image once, in parallel; past ``deadline`` (monotonic) unfinished ones are undecided.

        Work still running at the deadline is left to finish in the background, so its
        successes still reach the cache and a retry by the API server is fast.
        """
        plans = {image: self.plan(image) for image in dict.fromkeys(images)}
        verdicts: dict[str, Verdict] = {i: p.verdict for i, p in plans.items() if p.verdict is not None}
        todo = {i: p for i, p in plans.items() if p.verdict is None}
        if not todo:
            return verdicts
        pool = self.pool()
        run = run or Run(self.factory)
        futures = {pool.submit(self.verify, p, run, record=record): i for i, p in todo.items()}
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, _ = concurrent.futures.wait(futures, timeout=timeout)
        for future, image in futures.items():
            if future in done:
                verdicts[image] = future.result()
            else:
                verdicts[image] = undecided(todo[image], f"{image}: verification did not finish within the "
                                            "deadline", "deadline-exceeded")
        return verdicts

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class _Memo:
    """A memoised outcome: a value or the :class:`Error` it raised (so failures are shared too)."""

    error: Error | None = None

    @classmethod
    def capture(cls, fn: Callable[[], None]) -> _Memo:
        try:
            fn()
        except Error as e:
            return cls(e)
        return cls(None)

    def unwrap(self) -> None:
        if self.error is not None:
            raise self.error


def _shown(image: str, digest: Digest | None) -> str:
    """The image as written, with the digest it resolved to when that adds something."""
    return f"{image} ({digest})" if digest is not None and str(digest) not in image else image


def undecided(plan: Plan, message: str, reason: str, digest: str | None = None) -> Verdict:
    """The verdict when no answer could be had: the rule's ``on_error`` decides (deny by default)."""
    rule = plan.rule
    ref = str(plan.ref) if plan.ref else None
    if rule is not None and rule.on_error == "allow":
        return Verdict(plan.image, "warn", reason, f"{message} (admitted: rule {rule.name!r} has on_error: allow)",
                       rule.name, ref, digest)
    return Verdict(plan.image, "error", reason, message, rule.name if rule else None, ref, digest)


def _apply_mode(rule: Rule | None, verdict: Verdict) -> Verdict:
    """A warn-mode rule turns a denial into a warning (audit, as Kyverno's ``Audit``)."""
    if rule is not None and rule.mode == "warn" and verdict.decision == "deny":
        return replace(verdict, decision="warn", message=f"{verdict.message} (rule {rule.name!r} is in warn mode)")
    return verdict


# --- one function per requirement type -------------------------------------------------------


def _key_map(keys: Sequence[PolicyKey]) -> dict[str, Any]:
    return {k.name: k.key for k in keys}


def _check_signatures(store: Store, digest: Digest, attachments: list[attach.Attachment],
                      req: SignatureRequirement) -> None:
    """Signatures by ``threshold`` distinct policy keys (verifier.image, the same code as ``imgseal verify``)."""
    from verifier.image import judge, verify_key_signatures

    outcome = verify_key_signatures(store, digest, attachments, _key_map(req.keys))
    judge(outcome, req.threshold)


def _for_any_signer(signers: Sequence[KeylessSigner], trust: Any, make: Callable[[Any, Any], Callable[..., Any]]
                    ) -> Callable[..., Any]:
    """One verification hook accepting what the hook ``make(policy, trust)`` of ANY listed signer accepts."""
    from verifier.sigstore_bundle import KeylessPolicy

    verifiers = [make(KeylessPolicy(**vars(s)), trust) for s in signers]
    return lambda *args: _any_signer(verifiers, *args)


def _keyless_verifier(signers: Sequence[KeylessSigner], trust: Any, predicate_type: str | None = None) -> Any:
    """One ``bundle_verifier`` accepting a bundle from ANY listed signer (verifier.keyless per signer)."""
    from imgseal.payloads import COSIGN_SIGN_PREDICATE
    from verifier.keyless import keyless_bundle_verifier

    return _for_any_signer(signers, trust, lambda policy, root: keyless_bundle_verifier(
        policy, root, predicate_type or COSIGN_SIGN_PREDICATE))


def _any_signer(verifiers: Sequence[Callable[..., Any]], *args: Any) -> Any:
    """The first verifier's result that accepts ``args``; else one error that lists every refusal."""
    errors: list[Error] = []
    for fn in verifiers:
        try:
            return fn(*args)
        except VerificationError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    raise VerificationError("no listed keyless signer matches: " + "; ".join(e.one_line() for e in errors),
                            reason=errors[0].reason)


def _keyless_legacy_verifier(signers: Sequence[KeylessSigner], trust: Any) -> Any:
    """One ``legacy_verifier`` accepting a cosign legacy keyless ``.sig`` layer from ANY listed signer."""
    from verifier.keyless import keyless_legacy_verifier

    return _for_any_signer(signers, trust, keyless_legacy_verifier)


def _keyless_legacy_attestation_verifier(signers: Sequence[KeylessSigner], trust: Any) -> Any:
    """One ``legacy_verifier`` accepting a cosign keyless ``.att`` layer from ANY listed signer."""
    from verifier.keyless import keyless_legacy_attestation_verifier

    return _for_any_signer(signers, trust, keyless_legacy_attestation_verifier)


def _check_keyless(store: Store, digest: Digest, attachments: list[attach.Attachment],
                   signers: Sequence[KeylessSigner], trust: Any) -> None:
    """A Sigstore certificate bundle (or cosign legacy keyless layer) from any listed identity."""
    from verifier.image import judge, verify_key_signatures

    outcome = verify_key_signatures(store, digest, attachments, {}, bundle_verifier=_keyless_verifier(signers, trust),
                                    legacy_verifier=_keyless_legacy_verifier(signers, trust))
    judge(outcome, 1)


def _check_attestation(store: Store, digest: Digest, attachments: list[attach.Attachment],
                       req: AttestationRequirement, keys: Sequence[PolicyKey], signers: Sequence[KeylessSigner],
                       trust: Any) -> None:
    """An attestation of the type, signed by a rule signer, passing the SLSA and where checks (verifier.attestation)."""
    from verifier.attestation import SlsaExpectations, verify_attestations

    bundle_verifier = _keyless_verifier(signers, trust, req.predicate_type) if signers else None
    legacy_verifier = _keyless_legacy_attestation_verifier(signers, trust) if signers else None
    verify_attestations(store, digest, attachments, predicate_type=req.predicate_type, keys=_key_map(keys),
                        slsa_checks=SlsaExpectations(**req.slsa_checks), where=req.where,
                        bundle_verifier=bundle_verifier, legacy_verifier=legacy_verifier)


def _check_notation(store: Store, ref: Reference, digest: Digest, attachments: list[attach.Attachment],
                    req: NotationRequirement) -> None:
    """A notation signature under the rule's trust policy and store (verifier.notation_image, as ``verify --notation``).

    The trust policy statement is selected by ``ref.name`` (``registry/repository``), exactly
    the scope notation matches; the signed descriptor must equal this manifest's digest, size
    and media type, so the manifest is fetched (by digest, checked; memoised per run).
    """
    from verifier.notation_image import verify_notation_signatures

    manifest = store.get_manifest(digest)
    outcome = verify_notation_signatures(store, manifest, attachments, repository=ref.name,
                                         trust_policy=req.document, trust_store=req.trust_store)
    if outcome.level == "skip":
        # A rule that requires notation must not be satisfied by a statement that checks nothing.
        raise VerificationError(f"the notation trust policy statement {outcome.policy!r} that applies to {ref.name} "
                                "has level skip: nothing is verified", reason="notation-skip")


# --- the gate over manifest files ------------------------------------------------------------


@dataclass
class GateReport:
    files: list[ManifestFile]
    verdicts: dict[str, Verdict]

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


def run_gate(files: list[ManifestFile], evaluator: Evaluator) -> GateReport:
    images = [site.image for mf in files for sites in mf.sites for site in sites]
    return GateReport(files, evaluator.evaluate_many(images))


def pinned_image(image: str, verdict: Verdict) -> str | None:
    """``repo:tag@sha256:…`` for an admitted tag reference (the text as written, plus the digest)."""
    if not verdict.admitted or verdict.digest is None or "@" in image:
        return None
    return f"{image}@{verdict.digest}"


_SEQ_INDENT = re.compile(r"^( *)[A-Za-z_][\w.-]*:\s*\n( *)- ", re.MULTILINE)


def render_pinned(mf: ManifestFile, verdicts: Mapping[str, Verdict]) -> tuple[str, int]:
    """The file with admitted tag references pinned (ruamel round-trip: comments kept); and how many changed."""
    import io

    if not mf.round_trip:
        # Read again, keeping comments; both readers must find the same images at the same
        # places, or the file is ambiguous and is not rewritten.
        again = read_manifest(mf.path, mf.text, round_trip=True)
        if [[(s.pointer, s.image) for s in d] for d in again.sites] != \
                [[(s.pointer, s.image) for s in d] for d in mf.sites]:
            raise InvalidInputError(f"{mf.path}: YAML readers disagree about its images; not pinning it",
                                    reason="invalid-manifest")
        mf = again
    changed = 0
    for doc, sites in zip(mf.documents, mf.sites, strict=True):
        for site in sites:
            new = pinned_image(site.image, verdicts[site.image])
            if new is None:
                continue
            container, key = _resolve_pointer(doc, site.pointer)
            old = container[key]
            container[key] = type(old)(new) if isinstance(old, str) and type(old) is not str else new
            changed += 1
    y = _yaml_rt()
    m = _SEQ_INDENT.search(mf.text)
    if m:  # keep the file's own list style: "- " under or indented from its key
        offset = max(0, len(m.group(2)) - len(m.group(1)))
        y.indent(mapping=2, sequence=offset + 2, offset=offset)
    if mf.text.lstrip().startswith("---"):
        y.explicit_start = True
    buf = io.StringIO()
    y.dump_all(mf.documents, buf)
    return buf.getvalue(), changed


def _resolve_pointer(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    node = doc
    for token in tokens[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]
    last = tokens[-1]
    return node, (int(last) if isinstance(node, list) else last)


# --- report formats --------------------------------------------------------------------------

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"


def report_json(report: GateReport) -> dict[str, Any]:
    locations: dict[str, list[dict[str, Any]]] = {}
    for mf, doc_index, site in report.uses():
        locations.setdefault(site.image, []).append(
            {"file": mf.path, "line": site.line or None, "document": doc_index + 1, "path": site.pointer,
             "kind": site.kind, "name": site.name})
    results = []
    for image, v in report.verdicts.items():
        results.append({"image": image, "decision": v.decision, "admitted": v.admitted, "reason": v.reason,
                        "message": v.message, "rule": v.rule, "reference": v.reference, "digest": v.digest,
                        "cached": v.cached, "locations": locations.get(image, [])})
    return {"ok": report.exit_code == 0, "exitCode": report.exit_code, "images": len(results), "results": results}


_SARIF_LEVEL: Final = {"allow": "note", "warn": "warning", "deny": "error", "error": "error"}


def report_sarif(report: GateReport) -> dict[str, Any]:
    """SARIF 2.1.0: one result per image use, ruleId = the decision's reason code."""
    results: list[dict[str, Any]] = []
    rule_ids: dict[str, str] = {}
    for mf, _, site in report.uses():
        v = report.verdicts[site.image]
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
                                       "policyRule": v.rule}})
    rules = [{"id": rid, "shortDescription": {"text": f"image {decision}: {rid}"}} for rid, decision in
             sorted(rule_ids.items())]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "imgseal", "informationUri": "https://github.com/imgseal/imgseal",
                                          "rules": rules}},
                      "results": results}]}
