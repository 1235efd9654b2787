"""The deploy-gate policy: a YAML document, its model, and which rule applies to an image.

Model (docs/policy.md has the user's view)::

    version: 1
    default: deny | allow | warn          # images no rule matches
    trusted_root: FILE                    # optional Sigstore trusted root for keyless checks
    rules:
      - name: NAME
        match: [GLOB, ...]
        mode: enforce | warn
        on_error: deny | allow            # when the answer cannot be had (registry down, timeout)
        allow: true | deny: true | require: {digest, signatures, keyless, attestations, notation}
        # notation: {trust_policy: FILE, trust_store: DIR}  (paths relative to the policy file)

Matching follows containers-policy.json and Connaisseur: the **most specific** matching rule
alone decides (REFERENCE.md §7), unlike Kyverno / policy-controller where every matching rule
must pass. Specificity is compared by :func:`Specificity` (exact name > longer literal prefix
> fewer wildcards > fewer ``**`` > more literal characters); two rules with an identical
pattern are an error, so no tie is ever left to file order by accident.

Loading never stops at the first problem: :func:`load_policy` collects every error with its
line (PyYAML's composed nodes keep marks) and raises :class:`PolicyError` carrying them all.
Whatever is not understood is an error — unknown keys, a rule with nothing to require, a
threshold above the number of keys — so no typo can turn into an allow.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml

from imgseal.errors import InvalidInputError, UsageError
from imgseal.intoto import resolve_predicate_type
from imgseal.manifest import check_json_depth
from imgseal.reference import DEFAULT_DOMAIN, Reference, parse_reference
from keys import PublicKey, load_public_key
from verifier.attestation_checks import WhereCondition, parse_where

if TYPE_CHECKING:
    from verifier.notation_policy import TrustPolicyDocument

POLICY_VERSION: Final = 1
MAX_POLICY_BYTES: Final = 1 << 20

Decision = Literal["deny", "allow", "warn"]
Mode = Literal["enforce", "warn"]
OnError = Literal["deny", "allow"]

# One glob component: name characters plus '*' (a partial wildcard inside one component).
_GLOB_COMPONENT: Final = re.compile(r"[a-z0-9._\-*]+")
_DOMAIN_COMPONENT: Final = re.compile(r"[a-zA-Z0-9.\-*]+(?::[0-9*]+)?|\[[0-9a-fA-F:.]+\](?::[0-9*]+)?")


class PolicyError(InvalidInputError):
    """A policy file with one or more problems; ``issues`` lists them all with line numbers."""

    default_reason = "invalid-policy"

    def __init__(self, source: str, issues: Sequence[PolicyIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        first = self.issues[0].render(source) if self.issues else source
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(first + more, hint=f"run 'imgseal policy check {source}' to list every problem")


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file; ``line`` is 1-based (0 when the file as a whole is wrong)."""

    line: int
    message: str

    def render(self, source: str) -> str:
        return f"{source}:{self.line}: {self.message}" if self.line else f"{source}: {self.message}"


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyKey:
    """A trusted public key: ``name`` is the path as written (or ``inline-key-N``)."""

    name: str
    pem: bytes
    key: PublicKey = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class SignatureRequirement:
    """Signatures by at least ``threshold`` distinct keys of ``keys``."""

    keys: tuple[PolicyKey, ...]
    threshold: int


@dataclass(frozen=True)
class KeylessSigner:
    """One acceptable Sigstore signer; the fields mean what :class:`verifier.sigstore_bundle.KeylessPolicy` says."""

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
class Requirements:
    digest: bool = False
    signatures: SignatureRequirement | None = None
    keyless: tuple[KeylessSigner, ...] = ()
    attestations: tuple[AttestationRequirement, ...] = ()
    notation: NotationRequirement | None = None

    @property
    def verifies(self) -> bool:
        """Whether anything must be fetched from the registry to decide."""
        return (self.signatures is not None or bool(self.keyless) or bool(self.attestations)
                or self.notation is not None)


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

    def select(self, name: str) -> Selection:
        """The rule for the normalised name ``registry/repository`` and every other rule that matched."""
        matches: list[RuleMatch] = []
        for rule in self.rules:
            best: RuleMatch | None = None
            for pattern in rule.match:
                if glob_matches(pattern, name):
                    candidate = RuleMatch(rule, pattern, Specificity.of(pattern))
                    if best is None or candidate.specificity > best.specificity:
                        best = candidate
            if best is not None:
                matches.append(best)
        # Stable sort: equal specificity keeps file order; load_policy refuses identical patterns,
        # so only genuinely different patterns of equal rank (documented) fall back to order.
        matches.sort(key=lambda m: m.specificity, reverse=True)
        return Selection(name, matches[0] if matches else None, tuple(matches[1:]))


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


@dataclass(frozen=True)
class RuleMatch:
    rule: Rule
    pattern: str
    specificity: Specificity


@dataclass(frozen=True)
class Selection:
    name: str
    chosen: RuleMatch | None
    also_matched: tuple[RuleMatch, ...]


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


# --- loading --------------------------------------------------------------------------------


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; :class:`PolicyError` lists every problem with its line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"cannot read policy {path}: {e.strerror or e}", reason="invalid-policy") from e
    return parse_policy(data, source=str(path), base=path.resolve().parent)


def parse_policy(data: bytes, *, source: str = "<policy>", base: Path | None = None) -> Policy:
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(source, [PolicyIssue(0, f"policy is {len(data)} bytes, over the {MAX_POLICY_BYTES} limit")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(source, [PolicyIssue(0, f"not UTF-8 ({e.reason} at byte {e.start})")]) from e
    try:
        # Flow collections ([…], {…}) nest without indentation: bound them before the recursive composer.
        check_json_depth(data, what="policy")
    except InvalidInputError as e:
        raise PolicyError(source, [PolicyIssue(0, e.message)]) from e
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except RecursionError as e:
        raise PolicyError(source, [PolicyIssue(0, "policy nests too deeply")]) from e
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else 0
        raise PolicyError(source, [PolicyIssue(line, f"YAML syntax: {e.problem}")]) from e
    except yaml.YAMLError as e:
        raise PolicyError(source, [PolicyIssue(0, f"YAML: {e}")]) from e
    reader = _Reader(base or Path.cwd())
    if len(nodes) != 1 or nodes[0] is None:
        reader.issue(0, "a policy is exactly one YAML document")
        raise PolicyError(source, reader.issues)
    policy = reader.policy(nodes[0], source)
    if reader.issues or policy is None:
        raise PolicyError(source, sorted(reader.issues, key=lambda i: i.line))
    return policy


_POLICY_KEYS: Final = frozenset({"version", "default", "rules", "trusted_root"})
_RULE_KEYS: Final = frozenset({"name", "match", "mode", "on_error", "allow", "deny", "require", "trusted_root"})
_REQUIRE_KEYS: Final = frozenset({"digest", "signatures", "keyless", "attestations", "notation"})
_NOTATION_KEYS: Final = frozenset({"trust_policy", "trust_store"})
#: Bounds on hashing a trust store for the fingerprint (a trust store is a handful of PEM files).
MAX_TRUST_STORE_FILES: Final = 1000
MAX_TRUST_STORE_BYTES: Final = 16 << 20
_SIGNATURE_KEYS: Final = frozenset({"keys", "threshold"})
_KEYLESS_KEYS: Final = frozenset({"identity", "issuer", "identity_regexp", "issuer_regexp", "github_repository",
                                  "github_ref", "github_trigger", "github_sha"})
_ATTESTATION_KEYS: Final = frozenset({"type", "builder_id", "source_uri", "source_branch", "source_tag", "build_type",
                                      "where", "keys"})


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    """Walks composed YAML nodes, building the model and collecting every issue."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.issues: list[PolicyIssue] = []
        self._inline = 0
        self._patterns: dict[str, tuple[str, int]] = {}  # normalised pattern -> (rule label, line)

    def issue(self, line: int, message: str) -> None:
        self.issues.append(PolicyIssue(line, message))

    # -- typed access ------------------------------------------------------------------

    def mapping(self, node: yaml.Node, what: str, allowed: frozenset[str]) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.issue(_line(node), f"{what} must be a mapping")
            return None
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                self.issue(_line(key_node), f"{what}: keys must be strings")
                continue
            key = str(key_node.value)
            if key in out:
                self.issue(_line(key_node), f"{what}: duplicate key {key!r}")
            elif key not in allowed:
                self.issue(_line(key_node), f"{what}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
            else:
                out[key] = value_node
        return out

    def string(self, node: yaml.Node, what: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and node.value != "":
            return str(node.value)
        self.issue(_line(node), f"{what} must be a non-empty string")
        return None

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            return bool(yaml.SafeLoader("").construct_object(node))
        self.issue(_line(node), f"{what} must be true or false")
        return None

    def integer(self, node: yaml.Node, what: str) -> int | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            return int(yaml.SafeLoader("").construct_object(node))
        self.issue(_line(node), f"{what} must be an integer")
        return None

    def choice(self, node: yaml.Node, what: str, choices: Sequence[str]) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and node.value in choices:
            return str(node.value)
        shown = node.value if isinstance(node, yaml.ScalarNode) else type(node).__name__
        self.issue(_line(node), f"{what} must be one of {' | '.join(choices)}, not {shown!r}")
        return None

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                self.issue(_line(node), f"{what} must not be empty")
                return None
            return list(node.value)
        self.issue(_line(node), f"{what} must be a list")
        return None

    # -- the document ------------------------------------------------------------------

    def policy(self, node: yaml.Node, source: str) -> Policy | None:
        top = self.mapping(node, "policy", _POLICY_KEYS)
        if top is None:
            return None
        if "version" not in top:
            self.issue(_line(node), "missing 'version: 1'")
        else:
            version = self.integer(top["version"], "version")
            if version is not None and version != POLICY_VERSION:
                self.issue(_line(top["version"]), f"unsupported policy version {version} (this imgseal reads 1)")
        default: Decision = "deny"
        if "default" in top:
            chosen = self.choice(top["default"], "default", ("deny", "allow", "warn"))
            default = chosen if chosen in ("deny", "allow", "warn") else "deny"  # type: ignore[assignment]
        trusted_root = self.file(top["trusted_root"], "trusted_root") if "trusted_root" in top else None
        rules: list[Rule] = []
        if "rules" not in top:
            self.issue(_line(node), "missing 'rules' (a list; may be empty only with an explicit default)")
        elif isinstance(top["rules"], yaml.SequenceNode) and not top["rules"].value:
            pass  # an empty rule list is allowed: 'default' then decides every image
        else:
            seen_names: dict[str, int] = {}
            for index, rule_node in enumerate(self.sequence(top["rules"], "rules") or []):
                rule = self.rule(rule_node, index)
                if rule is None:
                    continue
                if rule.name in seen_names:
                    self.issue(rule.line, f"rule name {rule.name!r} already used on line {seen_names[rule.name]}")
                seen_names.setdefault(rule.name, rule.line)
                rules.append(rule)
        return Policy(source, default, tuple(rules), trusted_root)

    def rule(self, node: yaml.Node, index: int) -> Rule | None:
        fields = self.mapping(node, f"rule #{index + 1}", _RULE_KEYS)
        if fields is None:
            return None
        line = _line(node)
        name = self.string(fields["name"], "rule name") if "name" in fields else None
        if "name" not in fields:
            self.issue(line, f"rule #{index + 1} has no name")
        label = f"rule {name!r}" if name else f"rule #{index + 1}"
        patterns: list[str] = []
        if "match" not in fields:
            self.issue(line, f"{label} has no 'match' list")
        else:
            for pnode in self.sequence(fields["match"], f"{label} match") or []:
                text = self.string(pnode, f"{label} match entry")
                if text is None:
                    continue
                try:
                    normal = normalise_glob(text)
                except UsageError as e:
                    self.issue(_line(pnode), f"{label}: bad pattern: {e.message}")
                    continue
                if normal in patterns:
                    self.issue(_line(pnode), f"{label}: pattern {text!r} listed twice")
                    continue
                if normal in self._patterns:
                    other, other_line = self._patterns[normal]
                    self.issue(_line(pnode), f"{label}: pattern {text!r} is also in {other} (line {other_line}); "
                                             "which rule applies would be ambiguous")
                else:
                    self._patterns[normal] = (label, _line(pnode))
                patterns.append(normal)
        mode = self.choice(fields["mode"], f"{label} mode", ("enforce", "warn")) if "mode" in fields else "enforce"
        on_error = (self.choice(fields["on_error"], f"{label} on_error", ("deny", "allow"))
                    if "on_error" in fields else "deny")
        allow = self._flag(fields, "allow", label)
        deny = self._flag(fields, "deny", label)
        require = self.requirements(fields["require"], label) if "require" in fields else None
        trusted_root = self.file(fields["trusted_root"], f"{label} trusted_root") if "trusted_root" in fields else None
        verdicts = [k for k, present in (("allow", allow), ("deny", deny), ("require", "require" in fields)) if present]
        if len(verdicts) != 1:
            self.issue(line, f"{label} needs exactly one of 'allow: true', 'deny: true' or 'require'"
                             + (f" (has {', '.join(verdicts)})" if verdicts else ""))
        if require is not None and not require.verifies and not require.digest and self._requires_nothing(
                fields["require"]):
            self.issue(_line(fields["require"]), f"{label}: 'require' lists nothing to check; "
                                                 "write 'allow: true' to admit without checks")
        if name is None or not patterns or mode is None or on_error is None or len(verdicts) != 1:
            return None
        return Rule(name, tuple(patterns), line, mode, on_error, bool(allow), bool(deny),  # type: ignore[arg-type]
                    require or Requirements(), trusted_root)

    @staticmethod
    def _requires_nothing(node: yaml.Node) -> bool:
        """True when ``require`` names no check at all (not when its checks merely failed to parse)."""
        if not isinstance(node, yaml.MappingNode):
            return False
        named = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        return not named & {"signatures", "keyless", "attestations", "notation"}

    def _flag(self, fields: Mapping[str, yaml.Node], key: str, label: str) -> bool:
        if key not in fields:
            return False
        value = self.boolean(fields[key], f"{label} {key}")
        if value is False:
            self.issue(_line(fields[key]), f"{label}: '{key}: false' means nothing; remove it or write '{key}: true'")
        return bool(value)

    def requirements(self, node: yaml.Node, label: str) -> Requirements | None:
        fields = self.mapping(node, f"{label} require", _REQUIRE_KEYS)
        if fields is None:
            return None
        digest = self.boolean(fields["digest"], f"{label} require.digest") if "digest" in fields else False
        signatures = self.signatures(fields["signatures"], label) if "signatures" in fields else None
        keyless: list[KeylessSigner] = []
        if "keyless" in fields:
            for snode in self.sequence(fields["keyless"], f"{label} keyless") or []:
                signer = self.keyless(snode, label)
                if signer is not None:
                    keyless.append(signer)
        attestations: list[AttestationRequirement] = []
        if "attestations" in fields:
            for anode in self.sequence(fields["attestations"], f"{label} attestations") or []:
                att = self.attestation(anode, label)
                if att is not None:
                    attestations.append(att)
            needs_keys = [a for a in attestations if not a.keys]
            if needs_keys and signatures is None and not keyless and "signatures" not in fields \
                    and "keyless" not in fields:
                self.issue(_line(fields["attestations"]), f"{label}: attestations need signers: give "
                                                          "signatures.keys, keyless, or keys on the attestation")
        notation = self.notation(fields["notation"], label) if "notation" in fields else None
        return Requirements(bool(digest), signatures, tuple(keyless), tuple(attestations), notation)

    def notation(self, node: yaml.Node, label: str) -> NotationRequirement | None:
        """``notation: {trust_policy: FILE, trust_store: DIR}``, both checked now (parsed, hashed)."""
        fields = self.mapping(node, f"{label} notation", _NOTATION_KEYS)
        if fields is None:
            return None
        missing = [k for k in sorted(_NOTATION_KEYS) if k not in fields]
        if missing:
            self.issue(_line(node), f"{label} notation: missing {' and '.join(repr(k) for k in missing)}")
        document = policy_path = None
        if "trust_policy" in fields:
            policy_path = self.file(fields["trust_policy"], f"{label} notation trust_policy")
            if policy_path is not None:
                from verifier.notation_policy import load_trust_policy  # only policies with notation rules pay for it

                try:
                    document = load_trust_policy(policy_path)
                except InvalidInputError as e:
                    self.issue(_line(fields["trust_policy"]), f"{label} notation trust_policy: {e.message}")
        store = None
        if "trust_store" in fields:
            store = self.directory(fields["trust_store"], f"{label} notation trust_store")
        if document is None or policy_path is None or store is None:
            return None
        ok = True
        for statement in document.statements:
            for ref in statement.trust_stores:
                if not (store / "x509" / ref.type / ref.name).is_dir():
                    self.issue(_line(fields["trust_store"]), f"{label} notation: trust policy statement "
                               f"{statement.name!r} names trust store {str(ref)!r}, but {store} has no "
                               f"x509/{ref.type}/{ref.name} directory")
                    ok = False
        store_digest = self.tree_digest(store, _line(fields["trust_store"]), f"{label} notation trust_store")
        if not ok or store_digest is None:
            return None
        return NotationRequirement(policy_path, store, document, hashlib.sha256(policy_path.read_bytes()).hexdigest(),
                                   store_digest)

    def directory(self, node: yaml.Node, what: str) -> Path | None:
        text = self.string(node, what)
        if text is None:
            return None
        path = Path(text) if Path(text).is_absolute() else self.base / text
        if not path.is_dir():
            self.issue(_line(node), f"{what}: no such directory {text!r}")
            return None
        return path

    def tree_digest(self, root: Path, line: int, what: str) -> str | None:
        """sha256 over every file below ``root`` (relative path and contents), bounded."""
        h = hashlib.sha256()
        total = 0
        try:
            files = sorted(p for p in root.rglob("*") if p.is_file())
            if len(files) > MAX_TRUST_STORE_FILES:
                self.issue(line, f"{what}: more than {MAX_TRUST_STORE_FILES} files")
                return None
            for f in files:
                data = f.read_bytes()
                total += len(data)
                if total > MAX_TRUST_STORE_BYTES:
                    self.issue(line, f"{what}: over {MAX_TRUST_STORE_BYTES >> 20} MiB of files")
                    return None
                rel = f.relative_to(root).as_posix().encode()
                h.update(len(rel).to_bytes(4, "big") + rel + len(data).to_bytes(8, "big") + data)
        except OSError as e:
            self.issue(line, f"{what}: cannot read {e.filename}: {e.strerror or e}")
            return None
        return h.hexdigest()

    def signatures(self, node: yaml.Node, label: str) -> SignatureRequirement | None:
        fields = self.mapping(node, f"{label} signatures", _SIGNATURE_KEYS)
        if fields is None:
            return None
        if "keys" not in fields:
            self.issue(_line(node), f"{label} signatures: missing 'keys'")
            return None
        keys = self.key_list(fields["keys"], f"{label} signatures.keys")
        threshold = self.integer(fields["threshold"], f"{label} threshold") if "threshold" in fields else 1
        if threshold is None:
            return None
        if threshold < 1:
            self.issue(_line(fields["threshold"]), f"{label}: threshold must be at least 1")
            return None
        if keys is not None and threshold > len(keys):
            self.issue(_line(fields.get("threshold", node)),
                       f"{label}: threshold {threshold} is more than the {len(keys)} key(s) listed")
            return None
        return SignatureRequirement(tuple(keys), threshold) if keys is not None else None

    def key_list(self, node: yaml.Node, what: str) -> list[PolicyKey] | None:
        items = self.sequence(node, what)
        if items is None:
            return None
        keys: list[PolicyKey] = []
        ok = True
        for item in items:
            key = self.key(item, what)
            if key is None:
                ok = False
            elif any(k.pem == key.pem for k in keys):
                self.issue(_line(item), f"{what}: the same key is listed twice")
                ok = False
            else:
                keys.append(key)
        return keys if ok else None

    def key(self, node: yaml.Node, what: str) -> PolicyKey | None:
        text = self.string(node, f"{what} entry")
        if text is None:
            return None
        if text.lstrip().startswith("-----BEGIN"):
            self._inline += 1
            name, pem = f"inline-key-{self._inline}", text.encode()
        else:
            path = Path(text) if Path(text).is_absolute() else self.base / text
            try:
                pem = path.read_bytes()
            except OSError as e:
                self.issue(_line(node), f"{what}: cannot read key file {text!r} ({e.strerror or e})")
                return None
            name = text
        try:
            return PolicyKey(name, pem, load_public_key(pem))
        except InvalidInputError as e:
            self.issue(_line(node), f"{what}: {name}: {e.message}")
            return None

    def file(self, node: yaml.Node, what: str) -> Path | None:
        text = self.string(node, what)
        if text is None:
            return None
        path = Path(text) if Path(text).is_absolute() else self.base / text
        if not path.is_file():
            self.issue(_line(node), f"{what}: no such file {text!r}")
            return None
        return path

    def regexp(self, node: yaml.Node, what: str) -> str | None:
        text = self.string(node, what)
        if text is None:
            return None
        try:
            re.compile(text)
        except re.error as e:
            self.issue(_line(node), f"{what}: bad regular expression {text!r}: {e}")
            return None
        return text

    def keyless(self, node: yaml.Node, label: str) -> KeylessSigner | None:
        fields = self.mapping(node, f"{label} keyless entry", _KEYLESS_KEYS)
        if fields is None:
            return None
        values: dict[str, str | None] = {}
        for key, vnode in fields.items():
            values[key] = (self.regexp(vnode, f"{label} keyless {key}") if key.endswith("_regexp")
                           else self.string(vnode, f"{label} keyless {key}"))
        line = _line(node)
        ok = all(v is not None for v in values.values())
        for what in ("identity", "issuer"):
            given = [k for k in (what, f"{what}_regexp") if k in fields]
            if len(given) != 1:
                self.issue(line, f"{label} keyless entry needs exactly one of '{what}' or '{what}_regexp'")
                ok = False
        return KeylessSigner(**values) if ok else None

    def attestation(self, node: yaml.Node, label: str) -> AttestationRequirement | None:
        fields = self.mapping(node, f"{label} attestation", _ATTESTATION_KEYS)
        if fields is None:
            return None
        if "type" not in fields:
            self.issue(_line(node), f"{label} attestation needs a 'type' (e.g. slsaprovenance1 or a URI)")
            return None
        ok = True
        text = self.string(fields["type"], f"{label} attestation type")
        predicate_type = None
        if text is not None:
            try:
                predicate_type = resolve_predicate_type(text)
            except UsageError as e:
                self.issue(_line(fields["type"]), f"{label}: {e.message}")
        values: dict[str, str | None] = {}
        for key in ("builder_id", "source_uri", "source_branch", "source_tag", "build_type"):
            if key in fields:
                values[key] = self.string(fields[key], f"{label} attestation {key}")
                ok = ok and values[key] is not None
        if "source_branch" in fields and "source_tag" in fields:
            self.issue(_line(node), f"{label} attestation: give source_branch or source_tag, not both")
            ok = False
        where: list[WhereCondition] = []
        if "where" in fields:
            for wnode in self.sequence(fields["where"], f"{label} attestation where") or []:
                expr = self.string(wnode, f"{label} attestation where entry")
                if expr is None:
                    ok = False
                    continue
                try:
                    where.append(parse_where(expr))
                except UsageError as e:
                    self.issue(_line(wnode), f"{label}: {e.message}")
                    ok = False
        keys: list[PolicyKey] = []
        if "keys" in fields:
            got = self.key_list(fields["keys"], f"{label} attestation keys")
            ok = ok and got is not None
            keys = got or []
        if not ok or predicate_type is None:
            return None
        return AttestationRequirement(predicate_type, where=tuple(where), keys=tuple(keys), **values)


# --- fingerprints and explanation -------------------------------------------------------------


def _fingerprint_doc(rule: Rule) -> dict[str, Any]:
    def keys_doc(keys: Sequence[PolicyKey]) -> list[str]:
        return sorted(hashlib.sha256(k.pem).hexdigest() for k in keys)

    req = rule.require
    return {
        "name": rule.name, "mode": rule.mode, "allow": rule.allow, "deny": rule.deny,
        "trusted_root": hashlib.sha256(rule.trusted_root.read_bytes()).hexdigest() if rule.trusted_root else None,
        "digest": req.digest,
        "signatures": None if req.signatures is None else {"keys": keys_doc(req.signatures.keys),
                                                            "threshold": req.signatures.threshold},
        "keyless": [vars(s) for s in req.keyless],
        "attestations": [{"type": a.predicate_type, **a.slsa_checks, "where": [w.text for w in a.where],
                          "keys": keys_doc(a.keys)} for a in req.attestations],
        "notation": None if req.notation is None else {"trust_policy": req.notation.policy_digest,
                                                        "trust_store": req.notation.store_digest},
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
        yield f"signatures: {req.signatures.threshold} of [{names}]"
    if req.keyless:
        yield "keyless: any of " + "; ".join(s.describe() for s in req.keyless)
    for att in req.attestations:
        checks = ", ".join(f"{k}={v}" for k, v in att.slsa_checks.items())
        checks += "".join(f", where {w.text}" for w in att.where)
        yield f"attestation: {att.predicate_type}" + (f" ({checks})" if checks else "")
    if req.notation is not None:
        yield (f"notation: a Notary Project signature under trust policy {req.notation.trust_policy} "
               f"and trust store {req.notation.trust_store}")
    yield f"mode: {rule.mode}; on_error: {rule.on_error}"
