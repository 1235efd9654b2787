"""Checks over the predicate of an already verified in-toto statement.

Two kinds:

:func:`check_slsa` — slsa-verifier-like checks of SLSA provenance (v1 and v0.2), mirroring
slsa-verifier ``verifiers/internal/gha/provenance.go`` and ``verifiers/utils``:

- ``builder_id``: if the expected id carries a version (``…@refs/tags/v1``) the ids must be
  equal; otherwise only the part before ``@`` must be (``MatchesLoose``).
- ``source_uri``: the expected URI is normalised like ``NormalizeGitURI`` (``github.com/a/b``
  → ``git+https://github.com/a/b``) and must equal, exactly, the repository of the
  provenance's source (``resolvedDependencies`` git entry / v0.2 ``materials[0]``) and of its
  trigger (``externalParameters.workflow`` / v0.2 ``invocation.configSource``); a source
  without a ref is malformed; when both are present they must agree in full, ref included.
- ``source_branch`` X ⇔ the source ref is ``refs/heads/X``; ``source_tag`` X ⇔ ``refs/tags/X``.
  (slsa-verifier reads these from the GitHub context of its own builders; we read the ref
  the provenance names for its source, which is what every builder records.)
- ``build_type``: exact match.
- ``image_digest``: some subject names the image digest (slsa-verifier ``verifyDigest``).

Each failure is a :class:`VerificationError` whose ``reason`` says which check failed
(``slsa-builder-id``, ``slsa-source-uri`` …) and whose message names expected and found.

:func:`parse_where` / :func:`check_where` — ``--where`` conditions over the statement JSON::

    condition := ["$."] path ws* ("==" | "!=") ws* value
    path      := step ("." key | "[" index "]" | "[" json-string "]")*
    step      := key | "[" json-string "]"
    key       := [A-Za-z0-9_@-]+ ;  index := [0-9]+

``value`` is compared as JSON when it parses as JSON (``true``, ``3``, ``"3"``, ``{"a":1}``)
and as a string otherwise (``https://…``). JSON comparison is by type: ``1`` never equals
``true`` or ``"1"``. A path that does not exist fails the condition for both operators, so
a condition can never pass by naming a field the statement lacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from imgseal.digest import Digest
from imgseal.errors import UsageError, VerificationError
from imgseal.intoto import SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1, Statement

SLSA_TYPES: Final = (SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02)


@dataclass(frozen=True)
class ProvenanceFacts:
    """What :func:`check_slsa` read from the provenance (for reports)."""

    predicate_type: str
    builder_id: str
    build_type: str
    source_uri: str | None
    """Full source URI with its ref, e.g. ``git+https://github.com/acme/app@refs/heads/main``."""
    trigger_uri: str | None


def check_slsa(
    statement: Statement,
    builder_id: str | None = None,
    source_uri: str | None = None,
    source_branch: str | None = None,
    source_tag: str | None = None,
    build_type: str | None = None,
    *,
    image_digest: Digest | None = None,
) -> ProvenanceFacts:
    """Check a SLSA provenance statement against the expectations given; return what it says.

    Raises :class:`VerificationError` (exit 1) on the first failed check, and
    :class:`UsageError` for an expectation that cannot be checked (a ``source_uri`` with a
    ref in it, a branch and a tag at once).
    """
    if source_branch is not None and source_tag is not None:
        raise UsageError("give a source branch or a source tag, not both")
    expected_repo = normalize_git_uri(source_uri) if source_uri is not None else None
    facts = provenance_facts(statement)

    if image_digest is not None and not statement.subject_matches(image_digest):
        found = ", ".join(statement.subject_digests()) or "none"
        raise VerificationError(
            f"provenance subject does not name the image: expected {image_digest}, found {found}",
            reason="slsa-subject",
        )
    if builder_id is not None and not _builder_matches(builder_id, facts.builder_id):
        raise VerificationError(
            f"provenance builder id mismatch: expected {builder_id!r}, found {facts.builder_id!r}",
            reason="slsa-builder-id",
        )
    if build_type is not None and build_type != facts.build_type:
        raise VerificationError(
            f"provenance buildType mismatch: expected {build_type!r}, found {facts.build_type!r}",
            reason="slsa-build-type",
        )
    if expected_repo is None and source_branch is None and source_tag is None:
        return facts

    source = facts.source_uri or facts.trigger_uri
    if source is None:
        raise VerificationError(
            "provenance names no source (no git resolvedDependencies/materials entry, no workflow)",
            reason="slsa-source-uri",
        )
    for uri in (facts.source_uri, facts.trigger_uri):
        if uri is None:
            continue
        repo, ref = split_git_ref(normalize_git_uri(uri, allow_ref=True))
        if expected_repo is not None and repo != expected_repo:
            raise VerificationError(
                f"provenance source mismatch: expected {expected_repo!r}, found {uri!r}",
                reason="slsa-source-uri",
            )
        if not ref:
            raise VerificationError(f"provenance source {uri!r} has no git ref", reason="slsa-source-uri")
    if facts.source_uri is not None and facts.trigger_uri is not None:
        full_source = normalize_git_uri(facts.source_uri, allow_ref=True)
        full_trigger = normalize_git_uri(facts.trigger_uri, allow_ref=True)
        if full_source != full_trigger:
            raise VerificationError(
                f"provenance source and trigger disagree: {facts.source_uri!r} != {facts.trigger_uri!r}",
                reason="slsa-source-uri",
            )

    _, ref = split_git_ref(normalize_git_uri(source, allow_ref=True))
    if source_branch is not None:
        want = source_branch if source_branch.startswith("refs/") else f"refs/heads/{source_branch}"
        if ref != want:
            raise VerificationError(
                f"provenance source branch mismatch: expected {want!r}, found {ref!r}",
                reason="slsa-source-branch",
            )
    if source_tag is not None:
        want = source_tag if source_tag.startswith("refs/") else f"refs/tags/{source_tag}"
        if ref != want:
            raise VerificationError(
                f"provenance source tag mismatch: expected {want!r}, found {ref!r}",
                reason="slsa-source-tag",
            )
    return facts


def provenance_facts(statement: Statement) -> ProvenanceFacts:
    """Read builder id, build type, source and trigger from a v1 or v0.2 provenance."""
    ptype = statement.predicate_type
    pred = statement.predicate
    if ptype == SLSA_PROVENANCE_V1:
        definition = _obj(pred, "buildDefinition")
        run = _obj(pred, "runDetails")
        builder = _str(_obj(run, "builder", "runDetails."), "id", "runDetails.builder.")
        build_type = _str(definition, "buildType", "buildDefinition.")
        external = definition.get("externalParameters")
        external = external if isinstance(external, Mapping) else {}
        deps = definition.get("resolvedDependencies")
        source = _first_git_uri(deps if isinstance(deps, list) else [])
        if source is None:
            # BYOB / container-based builders record the source as externalParameters.source.
            raw = external.get("source")
            if isinstance(raw, Mapping):
                raw = raw.get("uri")
            source = raw if isinstance(raw, str) and raw else None
        trigger = _workflow_trigger(external)
        return ProvenanceFacts(ptype, builder, build_type, source, trigger)
    if ptype == SLSA_PROVENANCE_V02:
        builder = _str(_obj(pred, "builder"), "id", "builder.")
        build_type = _str(pred, "buildType")
        materials = pred.get("materials")
        source = None
        if isinstance(materials, list) and materials and isinstance(materials[0], Mapping):
            uri = materials[0].get("uri")
            source = uri if isinstance(uri, str) and uri else None
        trigger = None
        invocation = pred.get("invocation")
        if isinstance(invocation, Mapping) and isinstance(invocation.get("configSource"), Mapping):
            uri = invocation["configSource"].get("uri")
            trigger = uri if isinstance(uri, str) and uri else None
        return ProvenanceFacts(ptype, builder, build_type, source, trigger)
    raise VerificationError(
        f"not SLSA provenance: predicateType {ptype!r} (expected {SLSA_PROVENANCE_V1!r} or"
        f" {SLSA_PROVENANCE_V02!r})",
        reason="slsa-predicate-type",
    )


def normalize_git_uri(uri: str, *, allow_ref: bool = False) -> str:
    """slsa-verifier ``NormalizeGitURI``: add ``git+https://`` (no scheme) or ``git+``."""
    if not uri:
        raise UsageError("source URI is empty")
    if not allow_ref and split_git_ref(uri)[1]:
        raise UsageError(
            f"source URI {uri!r} contains a ref; give the repository only and use a branch or tag option"
        )
    if uri.startswith("git+"):
        return uri
    if "://" not in uri:
        return "git+https://" + uri
    return "git+" + uri


def split_git_ref(uri: str) -> tuple[str, str]:
    """Split ``git+https://host/repo@refs/heads/main`` into repository and ref ("" if none).

    The ``@`` is searched only in the path, so ``ssh://git@host/repo`` keeps its user.
    """
    scheme_end = uri.find("://")
    path_start = uri.find("/", scheme_end + 3) if scheme_end >= 0 else 0
    if path_start < 0:
        return uri, ""
    at = uri.find("@", path_start)
    if at < 0:
        return uri, ""
    return uri[:at], uri[at + 1 :]


def _builder_matches(expected: str, found: str) -> bool:
    # slsa-verifier TrustedBuilderID.MatchesLoose: a versioned expectation must match
    # exactly; an unversioned one matches any version of the same builder.
    if "@" in expected:
        return expected == found
    return found == expected or found.split("@", 1)[0] == expected


def _first_git_uri(deps: Sequence[Any]) -> str | None:
    for dep in deps:
        if isinstance(dep, Mapping):
            uri = dep.get("uri")
            if isinstance(uri, str) and uri.startswith("git+"):
                return uri
    return None


def _workflow_trigger(external: Mapping[str, Any]) -> str | None:
    # GitHub workflow/v1 build type: externalParameters.workflow{repository, ref};
    # imgseal's GitLab build type uses the same shape under "pipeline".
    for key in ("workflow", "pipeline"):
        section = external.get(key)
        if isinstance(section, Mapping):
            repo, ref = section.get("repository"), section.get("ref")
            if isinstance(repo, str) and repo and isinstance(ref, str) and ref:
                return f"git+{repo}@{ref}" if not repo.startswith("git+") else f"{repo}@{ref}"
    return None


def _obj(parent: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise VerificationError(f"provenance has no {where}{key} object", reason="slsa-malformed")
    return value


def _str(parent: Mapping[str, Any], key: str, where: str = "") -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise VerificationError(f"provenance has no {where}{key} string", reason="slsa-malformed")
    return value


# --- --where conditions ----------------------------------------------------------------

PathStep = str | int
_KEY = re.compile(r"[A-Za-z0-9_@-]+")
_INDEX = re.compile(r"\[([0-9]+)\]")
_MISSING: Final = object()


@dataclass(frozen=True)
class WhereCondition:
    """One parsed ``--where`` condition."""

    path: tuple[PathStep, ...]
    op: Literal["==", "!="]
    expected: Any
    text: str


def parse_where(expression: str) -> WhereCondition:
    """Parse ``path==value`` / ``path!=value`` (syntax in the module docstring)."""
    text = expression.strip()
    pos = 2 if text.startswith("$.") else 0
    path: list[PathStep] = []
    while True:
        if text.startswith("[", pos):
            m = _INDEX.match(text, pos)
            if m:
                if not path:
                    raise _bad(expression, "a path starts with a key, not an index")
                path.append(int(m.group(1)))
                pos = m.end()
            else:
                key, pos = _quoted_key(expression, text, pos)
                path.append(key)
        elif not path or text.startswith(".", pos):
            if path:
                pos += 1
            m = _KEY.match(text, pos)
            if not m:
                raise _bad(expression, f"expected a key at position {pos}")
            path.append(m.group(0))
            pos = m.end()
        else:
            break
    rest = text[pos:].lstrip()
    if rest.startswith("=="):
        op: Literal["==", "!="] = "=="
    elif rest.startswith("!="):
        op = "!="
    else:
        raise _bad(expression, "expected '==' or '!=' after the path")
    raw = rest[2:].strip()
    try:
        expected: Any = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        expected = raw
    return WhereCondition(tuple(path), op, expected, expression)


def check_where(statement: Mapping[str, Any] | Statement, conditions: Iterable[WhereCondition]) -> None:
    """Raise :class:`VerificationError` (reason ``where-condition``) on the first failed condition."""
    data = statement.to_dict() if isinstance(statement, Statement) else statement
    for cond in conditions:
        found = _lookup(data, cond.path)
        if found is _MISSING:
            raise VerificationError(
                f"condition {cond.text!r} failed: {_render(cond.path)} is not in the statement",
                reason="where-condition",
            )
        equal = _json_equal(found, cond.expected)
        if equal != (cond.op == "=="):
            raise VerificationError(
                f"condition {cond.text!r} failed: {_render(cond.path)} is"
                f" {json.dumps(found, ensure_ascii=False)[:200]}",
                reason="where-condition",
            )


def _quoted_key(expression: str, text: str, pos: int) -> tuple[str, int]:
    # ["key.with.dots"]: a JSON string inside brackets (annotation keys contain dots).
    end = text.find('"]', pos + 2)
    if not text.startswith('["', pos) or end < 0:
        raise _bad(expression, f"expected [N] or [\"key\"] at position {pos}")
    try:
        key = json.loads(text[pos + 1 : end + 1])
    except ValueError as exc:
        raise _bad(expression, f"bad quoted key at position {pos}") from exc
    if not isinstance(key, str):
        raise _bad(expression, f"bad quoted key at position {pos}")
    return key, end + 2


def _lookup(data: Any, path: Sequence[PathStep]) -> Any:
    current = data
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return _MISSING
            current = current[step]
        else:
            if not isinstance(current, Mapping) or step not in current:
                return _MISSING
            current = current[step]
    return current


def _json_equal(a: Any, b: Any) -> bool:
    # Python says True == 1 and 1 == 1.0; JSON values of different types are never equal,
    # except that 1 and 1.0 are the same JSON number.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _render(path: Sequence[PathStep]) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{json.dumps(step)}]"
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _bad(expression: str, why: str) -> UsageError:
    return UsageError(f"bad --where condition {expression[:120]!r}: {why}", reason="bad-where")
