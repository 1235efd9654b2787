"""Reading a policy file: YAML into :mod:`verifier.gate.policy`'s model, with line-numbered errors.

Loading never stops at the first problem: :func:`load_policy` collects every error with its
line (PyYAML's composed nodes keep marks) and raises :class:`PolicyError` carrying them all.
Whatever is not understood is an error — unknown keys, a rule with nothing to require, a
threshold above the number of keys, two rules with the same pattern — so no typo can turn
into an allow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from imgseal.attachments_repo import parse_attachments_repo
from imgseal.errors import InvalidInputError, UsageError
from imgseal.intoto import resolve_predicate_type
from imgseal.manifest import check_json_depth
from imgseal.reference import Reference
from keys import load_public_key
from verifier.attestation_checks import WhereCondition, parse_where
from verifier.gate.policy import (
    POLICY_VERSION,
    AttestationRequirement,
    Decision,
    GithubRequirement,
    KeylessSigner,
    NotationRequirement,
    Policy,
    PolicyKey,
    Requirements,
    Rule,
    SignatureRequirement,
    normalise_glob,
)
from verifier.gate.scope import PolicyException, normalise_namespace_glob, parse_until

MAX_POLICY_BYTES: Final = 1 << 20

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


# Where the policy applies (verifier.gate.scope): kept apart so each concern's keys read as one set.
_SCOPE_POLICY_KEYS: Final = frozenset({"exclude_namespaces", "exceptions"})
_SCOPE_RULE_KEYS: Final = frozenset({"namespaces"})
_EXCEPTION_KEYS: Final = frozenset({"images", "namespaces", "until", "reason"})
# Where a rule reads attachments from (imgseal.attachments_repo), when not beside the image.
_ATTACHMENTS_RULE_KEYS: Final = frozenset({"attachments_repo"})
_POLICY_KEYS: Final = frozenset({"version", "default", "rules", "trusted_root"}) | _SCOPE_POLICY_KEYS
_RULE_KEYS: Final = (frozenset({"name", "match", "mode", "on_error", "allow", "deny", "require", "trusted_root"})
                     | _SCOPE_RULE_KEYS | _ATTACHMENTS_RULE_KEYS)
_REQUIRE_KEYS: Final = frozenset({"digest", "signatures", "keyless", "attestations", "notation", "github"})
_NOTATION_KEYS: Final = frozenset({"trust_policy", "trust_store"})
_GITHUB_KEYS: Final = ("owner", "repo", "signer_repo", "signer_workflow", "source_ref", "source_digest",
                       "signer_digest", "deny_self_hosted_runners", "oidc_issuer", "predicate_type",
                       "certificate_identity", "certificate_identity_regexp")
#: Bounds on hashing a trust store for the fingerprint (a trust store is a handful of PEM files).
MAX_TRUST_STORE_FILES: Final = 1000
MAX_TRUST_STORE_BYTES: Final = 16 << 20
_SIGNATURE_KEYS: Final = frozenset({"keys", "threshold", "tlog", "timestamp", "not_after"})
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
        # (normalised pattern, namespace glob or "") -> (rule label, line): two rules may share a
        # pattern only for different namespaces, or which one applies would be ambiguous.
        self._patterns: dict[tuple[str, str], tuple[str, int]] = {}

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
        shown = (repr(node.value) if isinstance(node, yaml.ScalarNode)
                 else "a list" if isinstance(node, yaml.SequenceNode) else "a mapping")
        self.issue(_line(node), f"{what} must be one of {' | '.join(choices)}, not {shown}")
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
        exclude = (self.namespace_globs(top["exclude_namespaces"], "exclude_namespaces")
                   if "exclude_namespaces" in top else ())
        exceptions = self.exceptions(top["exceptions"]) if "exceptions" in top else ()
        return Policy(source, default, tuple(rules), trusted_root, exclude_namespaces=exclude or (),
                      exceptions=exceptions)

    def namespace_globs(self, node: yaml.Node, what: str) -> tuple[str, ...] | None:
        globs: list[str] = []
        for gnode in self.sequence(node, what) or []:
            text = self.string(gnode, f"{what} entry")
            if text is None:
                continue
            try:
                glob = normalise_namespace_glob(text)
            except UsageError as e:
                self.issue(_line(gnode), f"{what}: {e.message}")
                continue
            if glob in globs:
                self.issue(_line(gnode), f"{what}: namespace {text!r} listed twice")
                continue
            globs.append(glob)
        return tuple(globs) if globs else None

    def image_globs(self, node: yaml.Node, what: str) -> tuple[str, ...] | None:
        globs: list[str] = []
        for pnode in self.sequence(node, what) or []:
            text = self.string(pnode, f"{what} entry")
            if text is None:
                continue
            try:
                globs.append(normalise_glob(text))
            except UsageError as e:
                self.issue(_line(pnode), f"{what}: bad pattern: {e.message}")
        return tuple(globs) if globs else None

    def exceptions(self, node: yaml.Node) -> tuple[PolicyException, ...]:
        """``exceptions: [{images, namespaces, until, reason}]``: every field checked, dates included."""
        if isinstance(node, yaml.SequenceNode) and not node.value:
            return ()
        out: list[PolicyException] = []
        for number, enode in enumerate(self.sequence(node, "exceptions") or [], start=1):
            label = f"exception #{number}"
            fields = self.mapping(enode, label, _EXCEPTION_KEYS)
            if fields is None:
                continue
            missing = [k for k in ("images", "until", "reason") if k not in fields]
            if missing:
                self.issue(_line(enode), f"{label}: missing {' and '.join(repr(k) for k in missing)} "
                                         "(an exception names its images, when it ends and why)")
            images = self.image_globs(fields["images"], f"{label} images") if "images" in fields else None
            namespaces = (self.namespace_globs(fields["namespaces"], f"{label} namespaces")
                          if "namespaces" in fields else ())
            reason = self.string(fields["reason"], f"{label} reason") if "reason" in fields else None
            until = self.until(fields["until"], label) if "until" in fields else None
            if images is None or namespaces is None or reason is None or until is None:
                continue
            out.append(PolicyException(number, _line(enode), images, namespaces, until[0], until[1], reason))
        return tuple(out)

    def until(self, node: yaml.Node, label: str, field: str = "until") -> tuple[dt.datetime, str] | None:
        value: object = None
        if isinstance(node, yaml.ScalarNode) and node.tag in ("tag:yaml.org,2002:timestamp",
                                                              "tag:yaml.org,2002:str"):
            try:
                value = yaml.SafeLoader("").construct_object(node)
            except (ValueError, yaml.YAMLError):
                value = node.value  # e.g. 2026-02-30: YAML's pattern, not a real date
        elif isinstance(node, yaml.ScalarNode):
            value = node.value
        else:
            # a list or mapping: name the YAML shape, not PyYAML's node class
            shape = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.issue(_line(node),
                       f"{label}: {field} {shape}: not a date (YYYY-MM-DD) or a timestamp with a time zone")
            return None
        try:
            return parse_until(value)
        except UsageError as e:
            message = e.message if field == "until" else e.message.replace("until", field, 1)
            self.issue(_line(node), f"{label}: {message}")
            return None

    def rule(self, node: yaml.Node, index: int) -> Rule | None:
        fields = self.mapping(node, f"rule #{index + 1}", _RULE_KEYS)
        if fields is None:
            return None
        line = _line(node)
        name = self.string(fields["name"], "rule name") if "name" in fields else None
        if "name" not in fields:
            self.issue(line, f"rule #{index + 1} has no name")
        label = f"rule {name!r}" if name else f"rule #{index + 1}"
        namespaces = (self.namespace_globs(fields["namespaces"], f"{label} namespaces")
                      if "namespaces" in fields else ())
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
                for glob in namespaces or ("",):
                    if (normal, glob) in self._patterns:
                        other, other_line = self._patterns[normal, glob]
                        where = f" for namespace {glob!r}" if glob else ""
                        self.issue(_line(pnode), f"{label}: pattern {text!r} is also in {other} (line {other_line})"
                                                 f"{where}; which rule applies would be ambiguous")
                        break
                    self._patterns[normal, glob] = (label, _line(pnode))
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
        attachments_repo = self.attachments_repo(fields, label)
        if (name is None or not patterns or mode is None or on_error is None or len(verdicts) != 1
                or namespaces is None):
            return None
        return Rule(name, tuple(patterns), line, mode, on_error, bool(allow), bool(deny),  # type: ignore[arg-type]
                    require or Requirements(), trusted_root, namespaces=namespaces, attachments_repo=attachments_repo)

    def attachments_repo(self, fields: Mapping[str, yaml.Node], label: str) -> Reference | None:
        """``attachments_repo: REGISTRY/PATH`` (Kyverno's ``repository:``, cosign's COSIGN_REPOSITORY)."""
        if "attachments_repo" not in fields:
            return None
        node = fields["attachments_repo"]
        text = self.string(node, f"{label} attachments_repo")
        if text is None:
            return None
        if "require" not in fields:
            self.issue(_line(node), f"{label}: attachments_repo is only read by rules with 'require'")
            return None
        try:
            return parse_attachments_repo(text, f"{label} attachments_repo")
        except UsageError as e:
            self.issue(_line(node), e.message)
            return None

    @staticmethod
    def _requires_nothing(node: yaml.Node) -> bool:
        """True when ``require`` names no check at all (not when its checks merely failed to parse)."""
        if not isinstance(node, yaml.MappingNode):
            return False
        named = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        return not named & {"signatures", "keyless", "attestations", "notation", "github"}

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
        github = self.github(fields["github"], label) if "github" in fields else None
        return Requirements(bool(digest), signatures, tuple(keyless), tuple(attestations), notation, github)

    def github(self, node: yaml.Node, label: str) -> GithubRequirement | None:
        """``github: {owner | repo, …}``: the options of ``verify-attestation --github-*``, checked now."""
        fields = self.mapping(node, f"{label} github", frozenset(_GITHUB_KEYS))
        if fields is None:
            return None
        values: dict[str, Any] = {}
        ok = True
        for key, vnode in fields.items():
            what = f"{label} github.{key}"
            value: Any = self.boolean(vnode, what) if key == "deny_self_hosted_runners" else self.string(vnode, what)
            if value is None:
                ok = False
            elif key == "predicate_type":
                try:
                    value = resolve_predicate_type(value)
                except UsageError as e:
                    self.issue(_line(vnode), f"{label}: {e.message}")
                    ok = False
            values[key] = value
        if not ok:
            return None
        # Only policies with github rules pay for importing the GitHub verifier (and cryptography.x509).
        from verifier.github import GithubPolicy

        try:
            policy = GithubPolicy.create(**values, names=lambda field: f"github.{field}")
        except UsageError as e:
            # Point at the value the message names, else at the mapping.
            named = next((vnode for key, vnode in fields.items() if f"github.{key}" in e.message), node)
            self.issue(_line(named), f"{label}: {e.message}")
            return None
        return GithubRequirement(policy)

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
                # Only policies with notation rules pay for importing notation (and cryptography.x509).
                from verifier.notation.trust_policy import load_trust_policy

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
        witness = self.signature_witness(fields, label)
        if keys is None or witness is None:
            return None
        tlog, timestamp, not_after = witness
        return SignatureRequirement(tuple(keys), threshold, tlog=tlog, timestamp=timestamp,
                                    not_after=not_after[0] if not_after else None,
                                    not_after_text=not_after[1] if not_after else None)

    def signature_witness(self, fields: dict[str, yaml.Node], label: str
                          ) -> tuple[bool, bool, tuple[dt.datetime, str] | None] | None:
        """``tlog``, ``timestamp`` (booleans) and ``not_after`` (a date: the keys retire at the end of
        that day, UTC; or a timestamp with a zone) of ``signatures``; None after reporting a problem."""
        tlog = self.boolean(fields["tlog"], f"{label} signatures.tlog") if "tlog" in fields else False
        timestamp = self.boolean(fields["timestamp"], f"{label} signatures.timestamp") if "timestamp" in fields \
            else False
        not_after = None
        if "not_after" in fields:
            not_after = self.until(fields["not_after"], f"{label} signatures.not_after", "not_after")
            if not_after is None:
                return None
        if tlog is None or timestamp is None:
            return None
        return tlog, timestamp, not_after

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

