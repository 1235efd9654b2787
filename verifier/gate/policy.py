"""The deploy-gate policy model: rules, which rule applies to an image, and rule fingerprints.

Model (docs/policy.md has the user's view; :mod:`verifier.gate.policy_file` reads the YAML)::

    version: 1
    default: deny | allow | warn          # images no rule matches
    trusted_root: FILE                    # optional Sigstore trusted root for keyless checks
    rules:
      - name: NAME
        match: [GLOB, ...]
        namespaces: [GLOB, ...]           # optional: only reviews in these namespaces
        mode: enforce | warn
        on_error: deny | allow            # when the answer cannot be had (registry down, timeout)
        allow: true | deny: true | require: {digest, signatures, keyless, attestations, notation, github}
        attachments_repo: REGISTRY/PATH   # optional: read attachments there (Kyverno's repository:)
        # notation: {trust_policy: FILE, trust_store: DIR}  (paths relative to the policy file)
        # github: {owner | repo, signer_repo | signer_workflow, source_ref, source_digest,
        #          signer_digest, deny_self_hosted_runners, oidc_issuer, predicate_type}
    exclude_namespaces: [GLOB, ...]       # admitted without checks (:mod:`verifier.gate.scope`)
    exceptions: [{images, namespaces, until, reason}, ...]

Matching follows containers-policy.json and Connaisseur: the **most specific** matching rule
alone decides (REFERENCE.md §7), unlike Kyverno / policy-controller where every matching rule
must pass. Specificity is compared by :func:`Specificity` (exact name > longer literal prefix
> fewer wildcards > fewer ``**`` > more literal characters), then by namespace: a rule with
``namespaces`` beats the same image pattern without (and an exact namespace beats a glob, by
the same steps). Two rules with an identical pattern and overlapping namespace lists are an
error (refused when the file is read), so no tie is ever left to file order by accident.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from imgseal.errors import UsageError
from imgseal.reference import DEFAULT_DOMAIN, Reference, parse_reference
from keys import PublicKey
from verifier.attestation_checks import WhereCondition
from verifier.gate.scope import PolicyException, first_match, namespace_matches

if TYPE_CHECKING:
    from verifier.github import GithubPolicy
    from verifier.notation.trust_policy import TrustPolicyDocument

POLICY_VERSION: Final = 1

Decision = Literal["deny", "allow", "warn"]
Mode = Literal["enforce", "warn"]
OnError = Literal["deny", "allow"]

# One glob component: name characters plus '*' (a partial wildcard inside one component).
_GLOB_COMPONENT: Final = re.compile(r"[a-z0-9._\-*]+")
_DOMAIN_COMPONENT: Final = re.compile(r"[a-zA-Z0-9.\-*]+(?::[0-9*]+)?|\[[0-9a-fA-F:.]+\](?::[0-9*]+)?")

# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyKey:
    """A trusted public key: ``name`` is the path as written (or ``inline-key-N``)."""

    name: str
    pem: bytes
    key: PublicKey = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class SignatureRequirement:
    """Signatures by at least ``threshold`` distinct keys of ``keys``.

    ``tlog`` / ``timestamp`` require each counted signature's bundle to carry a verified Rekor
    entry / RFC 3161 timestamp; ``not_after`` retires the keys at that instant: a signature then
    counts only if a log or TSA time proves it was made before (:mod:`verifier.key_witness`).
    """

    keys: tuple[PolicyKey, ...]
    threshold: int
    tlog: bool = False
    timestamp: bool = False
    not_after: dt.datetime | None = None
    not_after_text: str | None = None  # as written, for messages

    def describe_witness(self) -> str:
        parts = (["a log entry"] if self.tlog else []) + (["a timestamp"] if self.timestamp else [])
        if self.not_after_text is not None:
            parts.append(f"proven made before the keys' retirement (not_after {self.not_after_text})")
        return ", ".join(parts)


@dataclass(frozen=True)
class KeylessSigner:
    """One acceptable Sigstore signer; the fields mean what :class:`verifier.sigstore.bundle.KeylessPolicy` says."""

    identity: str | None = None
    issuer: str | None = None
    identity_regexp: str | None = None
    issuer_regexp: str | None = None
    github_repository: str | None = None
    github_ref: str | None = None
    github_trigger: str | None = None
    github_sha: str | None = None

    def describe(self) -> str:
        who = self.identity or f"~{self.identity_regexp}"
        by = self.issuer or f"~{self.issuer_regexp}"
        return f"{who} (issuer {by})"


@dataclass(frozen=True)
class AttestationRequirement:
    """An attestation of ``predicate_type`` signed by a rule signer whose statement passes the checks."""

    predicate_type: str
    builder_id: str | None = None
    source_uri: str | None = None
    source_branch: str | None = None
    source_tag: str | None = None
    build_type: str | None = None
    where: tuple[WhereCondition, ...] = ()
    keys: tuple[PolicyKey, ...] = ()
    """Keys for this attestation; empty means the rule's ``signatures.keys``."""

    @property
    def slsa_checks(self) -> dict[str, str]:
        checks = {"builder_id": self.builder_id, "source_uri": self.source_uri, "source_branch": self.source_branch,
                  "source_tag": self.source_tag, "build_type": self.build_type}
        return {k: v for k, v in checks.items() if v is not None}


@dataclass(frozen=True)
class NotationRequirement:
    """A Notary Project signature satisfying a notation trust policy, chained to a trust store.

    The trust policy (notation's JSON format) is parsed when the policy file is loaded, so a
    bad one fails ``imgseal policy check`` with its line rather than every admission later.
    ``store_digest`` is a sha256 over the trust store's files (names and bytes): part of the
    rule fingerprint, so removing a CA from the store invalidates cached successes.
    """

    trust_policy: Path
    trust_store: Path
    document: TrustPolicyDocument = field(compare=False, hash=False, repr=False)
    policy_digest: str = ""
    store_digest: str = ""


@dataclass(frozen=True)
class GithubRequirement:
    """A GitHub artifact attestation (actions/attest) meeting ``gh attestation verify``'s criteria.

    ``policy`` is validated when the policy file is read (:func:`verifier.github.GithubPolicy.create`);
    the trust roots come from the rule's or policy's ``trusted_root`` (one root or gh's JSON lines).
    """

    policy: GithubPolicy

    def describe(self) -> str:
        return "github attestation: " + "; ".join(self.policy.describe())


@dataclass(frozen=True)
class Requirements:
    digest: bool = False
    signatures: SignatureRequirement | None = None
    keyless: tuple[KeylessSigner, ...] = ()
    attestations: tuple[AttestationRequirement, ...] = ()
    notation: NotationRequirement | None = None
    github: GithubRequirement | None = None

    @property
    def verifies(self) -> bool:
        """Whether anything must be fetched from the registry to decide."""
        return (self.signatures is not None or bool(self.keyless) or bool(self.attestations)
                or self.notation is not None or self.github is not None)


@dataclass(frozen=True)
class Rule:
    name: str
    match: tuple[str, ...]
    line: int
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    allow: bool = False
    deny: bool = False
    require: Requirements = field(default_factory=Requirements)
    trusted_root: Path | None = None
    namespaces: tuple[str, ...] = ()
    """Namespace globs (:mod:`verifier.gate.scope`); empty: every namespace."""
    attachments_repo: Reference | None = None
    """Where this rule reads signatures and attestations, when not beside the image (Kyverno's ``repository:``)."""

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 over everything that decides this rule's verdict (key bytes included): the cache key part.

        Computed once per loaded rule (a gate run asks for it once per image).
        """
        return hashlib.sha256(json.dumps(_fingerprint_doc(self), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Policy:
    source: str
    default: Decision
    rules: tuple[Rule, ...]
    trusted_root: Path | None = None

    exclude_namespaces: tuple[str, ...] = ()
    exceptions: tuple[PolicyException, ...] = ()

    def select(self, name: str, namespace: str | None = None) -> Selection:
        """The rule for the normalised name ``registry/repository`` in ``namespace``, and every other match.

        ``namespace`` None means unknown (a manifest without one): rules with ``namespaces`` then
        never apply, and those that would outrank the chosen rule in some namespace are listed
        in :attr:`Selection.unresolved`, since the decision then depends on where it runs.
        """
        matches: list[RuleMatch] = []
        namespaced: list[RuleMatch] = []
        for rule in self.rules:
            best: RuleMatch | None = None
            for pattern in rule.match:
                if glob_matches(pattern, name):
                    candidate = RuleMatch(rule, pattern, Specificity.of(pattern))
                    if best is None or candidate.specificity > best.specificity:
                        best = candidate
            if best is None:
                continue
            if not rule.namespaces:
                matches.append(best)
            elif namespace is None:
                namespaced.append(best)
            else:
                globs = [g for g in rule.namespaces if namespace_matches(g, namespace)]
                if globs:
                    glob = max(globs, key=lambda g: Specificity.of(g)._key())
                    matches.append(replace(best, namespace_glob=glob, namespace_specificity=Specificity.of(glob)))
        # Stable sort: equal rank keeps file order; load_policy refuses identical patterns with
        # overlapping namespaces, so only genuinely different patterns of equal rank (documented)
        # fall back to order.
        matches.sort(key=lambda m: m.rank, reverse=True)
        chosen = matches[0] if matches else None
        unresolved = tuple(m for m in namespaced
                           if chosen is None or m.specificity._key() >= chosen.specificity._key())
        return Selection(name, chosen, tuple(matches[1:]), namespace, unresolved)

    def excluded(self, namespace: str | None) -> str | None:
        """The ``exclude_namespaces`` glob that ``namespace`` matches, if any."""
        return first_match(self.exclude_namespaces, namespace)

    def exception_for(self, name: str, namespace: str | None, now: dt.datetime) -> PolicyException | None:
        """The first unexpired exception covering this image name in this namespace."""
        for exception in self.exceptions:
            if (exception.active(now) and exception.covers_namespace(namespace)
                    and any(glob_matches(p, name) for p in exception.images)):
                return exception
        return None


@dataclass(frozen=True)
class Specificity:
    """How specific a pattern is; a greater value wins. Compared field by field, in order."""

    exact: bool
    literal_prefix: int
    fewer_wildcards: int  # negated wildcard count
    fewer_globstars: int  # negated '**' count
    literal_chars: int

    @classmethod
    def of(cls, pattern: str) -> Specificity:
        star = pattern.find("*")
        prefix = len(pattern) if star < 0 else star
        components = pattern.split("/")
        wildcards = sum(1 for c in components if "*" in c)
        globstars = components.count("**")
        return cls(star < 0, prefix, -wildcards, -globstars, len(pattern.replace("*", "")))

    def __lt__(self, other: Specificity) -> bool:
        return self._key() < other._key()

    def __gt__(self, other: Specificity) -> bool:
        return self._key() > other._key()

    def _key(self) -> tuple[bool, int, int, int, int]:
        return (self.exact, self.literal_prefix, self.fewer_wildcards, self.fewer_globstars, self.literal_chars)

    def describe(self) -> str:
        if self.exact:
            return "exact name"
        return (f"literal prefix {self.literal_prefix} chars, {-self.fewer_wildcards} wildcard(s)"
                f" ({-self.fewer_globstars} '**')")


_NO_NAMESPACE: Final = (False, False, 0, 0, 0, 0)


@dataclass(frozen=True)
class RuleMatch:
    rule: Rule
    pattern: str
    specificity: Specificity
    namespace_glob: str | None = None  # the rule's namespace glob that matched, for rules with namespaces
    namespace_specificity: Specificity | None = None

    @property
    def rank(self) -> tuple[tuple[bool, int, int, int, int], tuple[bool, bool, int, int, int, int]]:
        """Image pattern first; then a namespaced rule over none, then the more specific namespace glob."""
        ns = _NO_NAMESPACE if self.namespace_specificity is None else (True, *self.namespace_specificity._key())
        return self.specificity._key(), ns

    def describe(self) -> str:
        text = f"pattern {self.pattern!r} ({self.specificity.describe()})"
        if self.namespace_glob is not None and self.namespace_specificity is not None:
            ns = "exact" if self.namespace_specificity.exact else "glob"
            text += f", namespace {self.namespace_glob!r} ({ns})"
        return text


@dataclass(frozen=True)
class Selection:
    name: str
    chosen: RuleMatch | None
    also_matched: tuple[RuleMatch, ...]
    namespace: str | None = None
    unresolved: tuple[RuleMatch, ...] = ()
    """With an unknown namespace: namespaced rules that would outrank ``chosen`` somewhere."""


# --- globs ----------------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a name glob: ``*`` within one component, ``**`` any number of whole components.

    ``**`` follows gitignore: trailing (``team/**``) it matches one or more components below
    (``team/app``, ``team/a/b``, not ``team`` itself); leading or in the middle it matches zero
    or more (``a/**/b`` matches ``a/b`` and ``a/x/y/b``); alone it matches every name.
    """
    parts = pattern.split("/")
    rx = ""
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if part == "**":
            if i == 0 and i == last:
                rx += r"[^/]+(?:/[^/]+)*"
            elif i == 0:
                rx += r"(?:[^/]+/)*"
            elif i == last:
                rx += r"(?:/[^/]+)+"
            else:
                rx += r"(?:/[^/]+)*"
            continue
        sep = "" if i == 0 or (i == 1 and parts[0] == "**") else "/"
        rx += sep + "[^/]*".join(re.escape(piece) for piece in part.split("*"))
    return re.compile(rx)


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def glob_matches(pattern: str, name: str) -> bool:
    rx = _GLOB_CACHE.get(pattern)
    if rx is None:
        rx = _GLOB_CACHE[pattern] = glob_regex(pattern)
    return rx.fullmatch(name) is not None


def normalise_glob(pattern: str) -> str:
    """Check a glob and put it in the normal form of reference names; raise :class:`UsageError`.

    The first component is a registry when it contains ``.`` or ``:``, is ``localhost`` or is a
    wildcard; otherwise, like a reference, the name is on ``docker.io`` (and a single component
    gets ``library/``), so ``alpine`` means ``docker.io/library/alpine``.
    """
    if not pattern or pattern != pattern.strip():
        raise UsageError("empty pattern or surrounding spaces")
    if "@" in pattern:
        raise UsageError(f"pattern {pattern!r} has a digest: patterns match names, not digests")
    parts = pattern.split("/")
    if any(not p for p in parts):
        raise UsageError(f"pattern {pattern!r} has an empty path component")
    first = parts[0]
    is_domain = "." in first or ":" in first or first == "localhost" or "*" in first
    if not is_domain:
        parts = [DEFAULT_DOMAIN, *(["library"] if len(parts) == 1 else []), *parts]
    elif first == "index.docker.io":
        parts[0] = DEFAULT_DOMAIN
    domain, path = parts[0], parts[1:]
    if domain != "**" and not _DOMAIN_COMPONENT.fullmatch(domain):
        raise UsageError(f"pattern {pattern!r}: {domain!r} is not a registry host[:port]")
    if domain != "**" and domain.lower() != domain:
        raise UsageError(f"pattern {pattern!r}: registry names are lowercase")
    if domain != "**" and "**" in domain:
        raise UsageError(f"pattern {pattern!r}: '**' must be a whole path component")
    for comp in path:
        if ":" in comp:
            raise UsageError(f"pattern {pattern!r} has a tag: patterns match names, not tags")
        if comp != "**" and "**" in comp:
            raise UsageError(f"pattern {pattern!r}: '**' must be a whole path component")
        if not _GLOB_COMPONENT.fullmatch(comp):
            raise UsageError(f"pattern {pattern!r}: component {comp!r} may hold only a-z 0-9 . _ - and *")
    normal = "/".join([domain, *path])
    if "**/**" in normal:
        raise UsageError(f"pattern {pattern!r}: '**/**' is redundant; write '**'")
    if not path and domain != "**":
        raise UsageError(f"pattern {pattern!r} names only a registry; write {normal + '/**'!r} for all of it")
    return normal


def reference_name(image: str) -> tuple[Reference, str]:
    """Parse an image reference and return it with its normalised name for matching."""
    ref = parse_reference(image)
    if not isinstance(ref, Reference):
        raise UsageError(f"{image!r}: the gate checks registry references, not OCI layouts",
                         reason="invalid-reference")
    return ref, ref.name


# --- fingerprints and explanation -------------------------------------------------------------


def _fingerprint_doc(rule: Rule) -> dict[str, Any]:
    def keys_doc(keys: Sequence[PolicyKey]) -> list[str]:
        return sorted(hashlib.sha256(k.pem).hexdigest() for k in keys)

    req = rule.require
    return {
        "name": rule.name, "mode": rule.mode, "allow": rule.allow, "deny": rule.deny,
        "trusted_root": hashlib.sha256(rule.trusted_root.read_bytes()).hexdigest() if rule.trusted_root else None,
        "digest": req.digest,
        "signatures": None if req.signatures is None else {
            "keys": keys_doc(req.signatures.keys), "threshold": req.signatures.threshold,
            "tlog": req.signatures.tlog, "timestamp": req.signatures.timestamp,
            "not_after": req.signatures.not_after.isoformat() if req.signatures.not_after else None},
        "keyless": [vars(s) for s in req.keyless],
        "attestations": [{"type": a.predicate_type, **a.slsa_checks, "where": [w.text for w in a.where],
                          "keys": keys_doc(a.keys)} for a in req.attestations],
        "notation": None if req.notation is None else {"trust_policy": req.notation.policy_digest,
                                                        "trust_store": req.notation.store_digest},
        # Only when set, so fingerprints (and cached successes) of rules without it stay as they were.
        **({"attachments_repo": rule.attachments_repo.name} if rule.attachments_repo is not None else {}),
        "github": None if req.github is None else vars(req.github.policy),
    }


def describe_rule(rule: Rule) -> Iterator[str]:
    """Human lines saying what a rule demands."""
    if rule.deny:
        yield "deny: every matching image is refused"
        return
    if rule.allow:
        yield "allow: every matching image is admitted without checks"
        return
    req = rule.require
    if req.digest:
        yield "digest: the reference must name a digest (tag-only references are denied)"
    if req.signatures is not None:
        names = ", ".join(k.name for k in req.signatures.keys)
        witness = req.signatures.describe_witness()
        yield f"signatures: {req.signatures.threshold} of [{names}]" + (f", each with {witness}" if witness else "")
    if req.keyless:
        yield "keyless: any of " + "; ".join(s.describe() for s in req.keyless)
    for att in req.attestations:
        checks = ", ".join(f"{k}={v}" for k, v in att.slsa_checks.items())
        checks += "".join(f", where {w.text}" for w in att.where)
        yield f"attestation: {att.predicate_type}" + (f" ({checks})" if checks else "")
    if req.notation is not None:
        yield (f"notation: a Notary Project signature under trust policy {req.notation.trust_policy} "
               f"and trust store {req.notation.trust_store}")
    if rule.attachments_repo is not None:
        yield f"attachments_repo: signatures and attestations are read from {rule.attachments_repo.name}"
    if req.github is not None:
        yield req.github.describe()
    yield f"mode: {rule.mode}; on_error: {rule.on_error}"


def describe_scope(rule: Rule) -> str:
    return f"namespaces: {', '.join(rule.namespaces)}" if rule.namespaces else "namespaces: every namespace"
