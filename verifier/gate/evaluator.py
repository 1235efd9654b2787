"""The evaluator: every distinct image of one run checked once, against the rule that decides it.

Why it is shaped this way (REFERENCE.md §7): admission webhooks have 10 s, and peers blow it
by re-verifying the same image for every container (Kyverno #16657: one image 8× ≈ 21 s) and
by pulling every signature once per key (policy-controller #278). So:

- every distinct reference is evaluated once; references that resolve to the same digest
  share one verification (:class:`Run` memoises per (rule, repository, digest));
- one :class:`~imgseal.store.StoreFactory` serves every image, so connections and registry
  tokens are pooled, and a per-run :class:`CachingStore` fetches each manifest and blob by
  digest at most once;
- verification runs on a bounded pool of threads;
- successes are remembered in a success cache (:mod:`verifier.gate.cache`).

Each requirement kind is one function in :mod:`verifier.gate.requirements`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from imgseal import attach
from imgseal.digest import Digest
from imgseal.errors import AuthError, Error, UndecidableError, UsageError, VerificationError
from imgseal.manifest import MANIFEST_TYPES, Descriptor, Manifest
from imgseal.reference import Reference
from imgseal.store import StoreFactory
from imgseal.store.auth import Credentials
from imgseal.store.base import Store
from imgseal.store.registry import ACCEPT_MANIFESTS, RegistryStore
from verifier.gate.cache import SuccessCache, TagCache
from verifier.gate.policy import (
    AttestationRequirement,
    Policy,
    PolicyKey,
    Rule,
    Selection,
    reference_name,
)
from verifier.gate.requirements import (
    check_attestation,
    check_github,
    check_keyless,
    check_notation,
    check_signatures,
    key_check,
)
from verifier.gate.verdict import CheckFailed, DecisionKind, Plan, Verdict, apply_mode, shown, undecided

T = TypeVar("T")


DEFAULT_WORKERS: Final = 8
MAX_MEMO: Final = 4096


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


class PullIdentity(Protocol):
    """Whose registry credentials a run pulls with (a Pod's pull secrets, for the webhook)."""

    def candidates(self, ref: Reference) -> Sequence[Credentials]:
        """Credentials to try for ``ref``, in order; empty: the registry client's own lookup (docker config …)."""
        ...

    def scope(self, ref: Reference) -> str:
        """Who pulls ``ref``, as a short string: cached successes are kept apart by it."""
        ...


class Run:
    """State shared by the verifications of one run (one gate invocation, one admission request).

    A memo of tag resolutions, discovered attachments and verification outcomes, plus one
    :class:`CachingStore` per repository. Concurrent callers of :meth:`once` with the same key
    wait for the first one's result instead of repeating its registry requests. A new run per
    admission request means a tag moved between two requests is resolved afresh (unless the
    evaluator has a :class:`~verifier.gate.cache.TagCache`: then after its few seconds).

    ``pull``: how to get the run's :class:`PullIdentity`, asked once, when the first store is
    opened (so a run whose images need no registry never asks); its error, if any, is the
    error of every image that needs the registry.
    """

    def __init__(self, factory: StoreFactory, pull: Callable[[], PullIdentity] | None = None) -> None:
        self.factory = factory
        self._pull = pull
        self.pulled: PullIdentity | None = None  # the identity, once asked for and found
        self._stores: dict[str, CachingStore] = {}
        self._lock = threading.Lock()
        self.once = Memo().once

    def identity(self) -> PullIdentity | None:
        pull = self._pull
        if pull is None:
            return None

        def get() -> tuple[PullIdentity | None, Error | None]:
            try:
                return pull(), None
            except Error as e:
                return None, e

        identity, error = self.once(("pull-identity",), get)
        if error is not None:
            raise error
        self.pulled = identity
        return identity

    def store(self, ref: Reference) -> CachingStore:
        identity = self.identity()
        candidates = list(identity.candidates(ref)) if identity is not None else []
        creds = candidates[0] if candidates else None
        if len(candidates) > 1:  # as the kubelet does: each in turn, until the registry accepts one
            creds = self.once(("pull-credentials", ref.name), lambda: self._accepted(ref, candidates))
        with self._lock:
            if ref.name not in self._stores:
                self._stores[ref.name] = CachingStore(self.factory.open(ref, credentials=creds))
            return self._stores[ref.name]

    def _accepted(self, ref: Reference, candidates: list[Credentials]) -> Credentials:
        """The first candidate the registry does not refuse (one HEAD each); else the first, to report."""
        target = str(ref.digest) if ref.digest else ref.tag or "latest"
        for creds in candidates:
            try:
                head_manifest(self.factory.open(ref, credentials=creds), target)
            except AuthError:
                continue
            except Error:
                return creds  # not an auth answer: this one is let in, the real request reports the rest
            return creds
        return candidates[0]

    def cache_scope(self, ref: Reference) -> str:
        """The part of the success-cache key that says who pulled (empty without a pull identity)."""
        identity = self.identity()
        return "" if identity is None else identity.scope(ref)


class Evaluator:
    """Decides images against a policy. Thread-safe; one per CLI run or per webhook process.

    ``resolve_tags``: also resolve the digest of tag references that a rule admits without
    checks (``allow: true``, ``default: allow``, an exception), for pinning / mutation.

    ``namespace`` (on :meth:`plan`, :meth:`evaluate`, :meth:`evaluate_many`) is where the
    images would run: the AdmissionReview's ``request.namespace``, a manifest's
    ``metadata.namespace`` or ``gate --namespace``; None when unknown. It selects rules with
    ``namespaces``, ``exclude_namespaces`` and namespaced exceptions (:mod:`verifier.gate.scope`).
    ``clock`` gives the current time for exception expiry (read at every decision).
    """

    def __init__(self, policy: Policy, factory: StoreFactory, *, cache: SuccessCache | None = None,
                 workers: int = DEFAULT_WORKERS, resolve_tags: bool = False,
                 clock: Callable[[], dt.datetime] | None = None, tags: TagCache | None = None) -> None:
        self.policy = policy
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.factory = factory
        self.cache = cache
        self.tags = tags
        self.workers = max(1, workers)
        self.resolve_tags = resolve_tags
        self._lock = threading.Lock()
        self._trust: dict[str, Any] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._parse_memo: dict[str, tuple[Reference, str] | Error] = {}
        self._select_memo: dict[tuple[str, str | None], Selection] = {}
        self._cached_verdicts: dict[tuple[str, str, str], Verdict] = {}

    def with_policy(self, policy: Policy) -> Evaluator:
        """The same evaluator (registry clients, success cache, worker pool) deciding by ``policy``.

        For a policy reloaded under a running webhook: requests already running finish with
        the evaluator they started with. Cached successes carry the rule's fingerprint, so a
        changed rule does not inherit them.
        """
        other = Evaluator(policy, self.factory, cache=self.cache, workers=self.workers, resolve_tags=self.resolve_tags,
                          clock=self.clock, tags=self.tags)
        other._pool = self.pool()
        return other

    # -- planning (no network) --------------------------------------------------------------

    def plan(self, image: str, *, resolve_tags: bool | None = None, namespace: str | None = None) -> Plan:
        resolve = self.resolve_tags if resolve_tags is None else resolve_tags
        try:
            ref, name = self._parsed(image)
        except Error as e:
            return Plan(image, None, None, Verdict(image, "deny", e.reason, f"invalid image reference: {e.one_line()}"),
                        namespace)
        scoped = self._scope(image, ref, name, namespace)
        if scoped is not None:
            # An exception admits like 'allow: true' (a tag is resolved for pinning when asked); an
            # excluded namespace is left alone entirely.
            pin = resolve and scoped.reason == "policy-exception" and ref.digest is None
            return Plan(image, ref, None, None if pin else scoped, namespace)
        selection = self._selected(name, namespace)
        if selection.unresolved:
            shown_rules = "; ".join(f"rule {m.rule.name!r} (namespaces {', '.join(m.rule.namespaces)})"
                                    for m in selection.unresolved)
            return Plan(image, ref, None, Verdict(
                image, "error", "namespace-unknown", f"which rule decides {name} depends on the namespace, which is "
                f"not known: {shown_rules}", None, str(ref)), namespace)
        if selection.chosen is None:
            default = self.policy.default
            message = f"no policy rule matches {name} (default: {default})"
            decision: DecisionKind = "allow" if default == "allow" else "warn" if default == "warn" else "deny"
            verdict = Verdict(image, decision, "no-matching-rule", message, None, str(ref))
            return Plan(image, ref, None, verdict if not (resolve and verdict.admitted) else None, namespace)
        rule = selection.chosen.rule
        if rule.deny:
            return Plan(image, ref, rule, Verdict(image, "deny", "denied-by-rule", f"rule {rule.name!r} denies "
                                                  f"{name}", rule.name, str(ref)), namespace)
        if rule.require.digest and ref.digest is None:
            verdict = Verdict(image, "deny", "tag-only", f"rule {rule.name!r} requires a digest; {image} names "
                              "only a tag", rule.name, str(ref))
            return Plan(image, ref, rule, apply_mode(rule, verdict), namespace)
        if not rule.require.verifies:
            allowed = Verdict(image, "allow", "allowed-by-rule", f"rule {rule.name!r} admits {name}", rule.name,
                              str(ref), str(ref.digest) if ref.digest else None)
            if ref.digest is not None or not resolve:
                return Plan(image, ref, rule, allowed, namespace)
        return Plan(image, ref, rule, None, namespace)

    def _parsed(self, image: str) -> tuple[Reference, str]:
        """``reference_name(image)``, memoised: a webhook sees the same few images over and over,
        and parsing and rule selection were half of a warm request's CPU. (Only these pure
        steps are memoised; exceptions depend on the clock and are looked at every time.)"""
        found = self._parse_memo.get(image)
        if found is None:
            try:
                found = reference_name(image)
            except Error as e:
                found = e
            if len(self._parse_memo) >= MAX_MEMO:
                self._parse_memo.clear()  # a bound, not an LRU: refilling costs one parse per image
            self._parse_memo[image] = found
        if isinstance(found, Error):
            raise found
        return found

    def _selected(self, name: str, namespace: str | None) -> Selection:
        key = (name, namespace)
        found = self._select_memo.get(key)
        if found is None:
            found = self.policy.select(name, namespace)
            if len(self._select_memo) >= MAX_MEMO:
                self._select_memo.clear()
            self._select_memo[key] = found
        return found

    def _scope(self, image: str, ref: Reference, name: str, namespace: str | None) -> Verdict | None:
        """The verdict when the namespace is excluded or an exception covers the image; else None.

        Excluded namespaces come first (the policy does not act there at all), then exceptions,
        which outrank every rule, ``deny: true`` included: an exception is a deliberate, dated waiver.
        """
        glob = self.policy.excluded(namespace)
        if glob is not None:
            return Verdict(image, "allow", "namespace-excluded", f"namespace {namespace!r} is excluded by the policy "
                           f"(exclude_namespaces {glob!r})", None, str(ref), str(ref.digest) if ref.digest else None)
        exception = self.policy.exception_for(name, namespace, self.clock())
        if exception is not None:
            return Verdict(image, "warn", "policy-exception", f"{name} admitted without checks by "
                           f"{exception.label()}", None, str(ref), str(ref.digest) if ref.digest else None,
                           exception=exception.label())
        return None

    # -- verification ------------------------------------------------------------------------

    def evaluate(self, image: str, *, record: bool = True, run: Run | None = None,
                 namespace: str | None = None) -> Verdict:
        plan = self.plan(image, namespace=namespace)
        return plan.verdict if plan.verdict is not None else self.verify(plan, run or Run(self.factory),
                                                                         record=record)

    def verify(self, plan: Plan, run: Run, *, record: bool = True, known_miss: bool = False) -> Verdict:
        assert plan.ref is not None
        ref, rule, image = plan.ref, plan.rule, plan.image
        unchecked = rule is None or not rule.require.verifies
        try:
            store = run.store(ref)
            digest = ref.digest or run.once(("tag", ref.name, ref.tag or "latest"),
                                              lambda: self._resolve(run, store, ref))
        except Error as e:
            if unchecked:  # admitted without checks: the digest was only wanted for pinning
                return self.plan_without_resolution(plan)
            return self._undecidable(plan, e)
        if rule is None or unchecked:
            return replace(self.plan_without_resolution(plan), digest=str(digest))
        fingerprint = rule.fingerprint
        cache_rule = _cache_rule(rule, run.cache_scope(ref))
        if self.cache is not None and not known_miss and self.cache.hit(str(digest), cache_rule):
            return _cached(image, rule, ref, digest)
        try:
            run.once(("verify", fingerprint, ref.name, str(digest)),
                     lambda: _Memo.capture(lambda: self._check_rule(rule, ref, store, digest, run))).unwrap()
        except VerificationError as e:
            failed = Verdict(image, "deny", e.reason, f"{shown(image, digest)} denied by rule {rule.name!r}: "
                             f"{e.one_line()}", rule.name, str(ref), str(digest))
            return apply_mode(rule, failed)
        except Error as e:
            return self._undecidable(plan, e, digest)
        if record and self.cache is not None:
            self.cache.record(str(digest), cache_rule)
        return Verdict(image, "allow", "verified", f"{shown(image, digest)} verified by rule {rule.name!r}",
                       rule.name, str(ref), str(digest))

    def cached_verdict(self, plan: Plan, run: Run, *, peek: bool = False) -> tuple[Verdict | None, bool]:
        """The verdict of a plan decided by the caches alone (no registry request), if it is.

        Returns (verdict or None, whether the success cache was asked and missed), so that
        :meth:`verify` does not ask it again. Lets a warm request be answered in its own
        thread, without handing each image to the pool. ``peek``: ask the cache's ``peek``
        if it has one (a lookup that counts for nothing: the webhook's metrics).
        """
        ref, rule = plan.ref, plan.rule
        if ref is None or rule is None or not rule.require.verifies or self.cache is None:
            return None, False
        try:
            scope = run.cache_scope(ref)
        except Error:
            return None, False  # the pool path reports it
        digest = str(ref.digest) if ref.digest else self.tags.get(scope, ref.name, ref.tag or "latest") \
            if self.tags else None
        if digest is None:
            return None, False
        lookup = getattr(self.cache, "peek", self.cache.hit) if peek else self.cache.hit
        if not lookup(digest, _cache_rule(rule, scope)):
            return None, True
        key = (plan.image, rule.name, digest)
        verdict = self._cached_verdicts.get(key)  # the same immutable answer, built once
        if verdict is None:
            verdict = _cached(plan.image, rule, ref, Digest.parse(digest))
            if len(self._cached_verdicts) >= MAX_MEMO:
                self._cached_verdicts.clear()
            self._cached_verdicts[key] = verdict
        return verdict, False

    def _resolve(self, run: Run, store: Store, ref: Reference) -> Digest:
        tag = ref.tag or "latest"
        if self.tags is None:
            return resolve_tag(store, tag)
        scope = run.cache_scope(ref)
        known = self.tags.get(scope, ref.name, tag)
        if known is not None:
            return Digest.parse(known)
        digest = resolve_tag(store, tag)
        self.tags.put(scope, ref.name, tag, str(digest))
        return digest

    def plan_without_resolution(self, plan: Plan) -> Verdict:
        """The verdict of an admitted-without-checks plan (what :meth:`plan` gives when not resolving tags)."""
        verdict = self.plan(plan.image, resolve_tags=False, namespace=plan.namespace).verdict
        assert verdict is not None
        return verdict

    def _undecidable(self, plan: Plan, e: Error, digest: Digest | None = None) -> Verdict:
        rule = plan.rule
        where = shown(plan.image, digest)
        if not isinstance(e, UndecidableError):
            # A malformed document we were given or found is a definite no, not "could not decide".
            verdict = Verdict(plan.image, "deny", e.reason, f"{where}: {e.one_line()}", rule.name if rule else None,
                              str(plan.ref) if plan.ref else None, str(digest) if digest else None)
            return apply_mode(rule, verdict) if rule else verdict
        return undecided(plan, f"{where}: could not decide: {e.one_line()}", e.reason,
                         str(digest) if digest else None)

    def _check_rule(self, rule: Rule, ref: Reference, store: Store, digest: Digest, run: Run) -> None:
        """Every requirement of ``rule`` must hold (AND); each is one small function below."""
        image_store = store
        if rule.attachments_repo is not None:
            # The rule reads attachments from another repository (cosign's COSIGN_REPOSITORY); the
            # image was resolved in its own. Nothing else changes: each artifact must still name `digest`.
            store = run.store(rule.attachments_repo)
        attachments = run.once(("attachments", store.location, str(digest)), lambda: attach.discover(store, digest))
        req = rule.require
        failures: list[CheckFailed] = []
        checks: list[tuple[str, Callable[[], None]]] = []
        def rule_root() -> Any:
            return self._trusted_root(rule)

        if req.signatures is not None:
            sigs = req.signatures
            checks.append(("signatures", lambda: check_signatures(store, digest, attachments, sigs, rule_root)))
        if req.keyless:
            trust = self._trusted_root(rule)
            checks.append(("keyless", lambda: check_keyless(store, digest, attachments, req.keyless, trust)))
        for att in req.attestations:
            keys = att.keys or (req.signatures.keys if req.signatures else ())
            trust = self._trusted_root(rule) if req.keyless else None
            # Borrowed signature keys bring the signature rule's witness demands (a retired key stays retired).
            witness = key_check(keys, None if att.keys else req.signatures, rule_root) if keys else None

            def check_att(att: AttestationRequirement = att, keys: Sequence[PolicyKey] = keys,
                          trust: Any = trust, witness: Any = witness) -> None:
                check_attestation(store, digest, attachments, att, keys, req.keyless, trust, witness)

            checks.append((f"attestation {att.predicate_type}", check_att))
        if req.notation is not None:
            notation = req.notation
            checks.append(("notation", lambda: check_notation(store, ref, digest, attachments, notation,
                                                              image_store=image_store)))
        if req.github is not None:
            github, github_trust = req.github, self._github_trust(rule)
            checks.append(("github", lambda: check_github(store, digest, attachments, github, github_trust)))
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

    def _github_trust(self, rule: Rule) -> Any:
        """The roots GitHub attestations may chain to (verifier.github.load_github_trust), parsed once per file."""
        path = rule.trusted_root or self.policy.trusted_root
        key = f"github:{path or ''}"
        with self._lock:
            if key in self._trust:
                return self._trust[key]
        from verifier.github import load_github_trust

        trust = load_github_trust(path)
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
                      record: bool = True, run: Run | None = None, namespace: str | None = None) -> dict[str, Verdict]:
        """Each distinct image once, in parallel; past ``deadline`` (monotonic) unfinished ones are undecided.

        All of ``images`` run in ``namespace`` (one admission request, or one namespace's
        manifests in a gate run; None: unknown).

        Work still running at the deadline is left to finish in the background, so its
        successes still reach the cache and a retry by the API server is fast.
        """
        plans = {image: self.plan(image, namespace=namespace) for image in dict.fromkeys(images)}
        verdicts: dict[str, Verdict] = {i: p.verdict for i, p in plans.items() if p.verdict is not None}
        todo = {i: p for i, p in plans.items() if p.verdict is None}
        if not todo:
            return verdicts
        run = run or Run(self.factory)
        missed: set[str] = set()
        for image, plan in list(todo.items()):
            verdict, miss = self.cached_verdict(plan, run)
            if verdict is not None:
                verdicts[image] = verdict
                del todo[image]
            elif miss:
                missed.add(image)
        if not todo:
            return verdicts
        pool = self.pool()
        futures = {pool.submit(self.verify, p, run, record=record, known_miss=i in missed): i for i, p in todo.items()}
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


def _cache_rule(rule: Rule, scope: str) -> str:
    """The success cache's second key: the rule's fingerprint and who pulled.

    A success verified with one namespace's credentials must not admit, from the cache, an
    image another namespace cannot pull (docs/webhook.md, "Success cache and namespaces").
    """
    return f"{rule.fingerprint}\npull:{scope}" if scope else rule.fingerprint


def _cached(image: str, rule: Rule, ref: Reference, digest: Digest) -> Verdict:
    return Verdict(image, "allow", "verified", f"{shown(image, digest)} verified by rule {rule.name!r} (cached)",
                   rule.name, str(ref), str(digest), cached=True)


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
