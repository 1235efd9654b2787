"""SLSA Provenance v1 predicates built from a CI environment (GitHub Actions, GitLab CI) or options.

Spec: https://slsa.dev/spec/v1.0/provenance (predicate type ``https://slsa.dev/provenance/v1``).
Everything here takes the environment as a mapping and never reads ``os.environ`` or files,
so a recorded environment gives the same predicate on any machine (only ``finishedOn``
depends on the clock, and the clock is injectable). :func:`load_github_event` is the one
I/O helper, kept apart for the CLI.

GitHub Actions — buildType ``https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1``
(slsa-framework/github-actions-buildtypes ``workflow/v1/README.md``):

- ``externalParameters.workflow = {ref: GITHUB_REF, repository: GITHUB_SERVER_URL/GITHUB_REPOSITORY,
  path: GITHUB_WORKFLOW_REF minus "<repository>/" and "@<ref>"}``; ``inputs`` (non-empty
  ``workflow_dispatch`` inputs), ``release`` (non-default release parameters) and ``vars`` only
  when non-empty, as the build type asks.
- Only the ``create``, ``release``, ``push`` and ``workflow_dispatch`` events are allowed: the
  build type "MUST NOT be used for any other event type", so anything else is refused.
- ``internalParameters.github``: ``event_name``, ``repository_id``, ``repository_owner_id``,
  ``actor_id`` and ``runner_environment`` (``RUNNER_ENVIRONMENT``, github-hosted or
  self-hosted, the trust-relevant fact GitHub's own attestations record), when set.
- ``resolvedDependencies[0] = {uri: "git+<repository>@<ref>", digest: {gitCommit: GITHUB_SHA}}``.
- ``builder.id`` defaults to ``GITHUB_SERVER_URL/GITHUB_WORKFLOW_REF``, i.e.
  ``https://github.com/<owner>/<repo>/.github/workflows/<file>@<ref>``. The build type says
  ``server_url + job_workflow_ref``; for a top-level workflow the two are equal, and this is
  also the SAN URI of the Fulcio certificate such a job signs with, so a verifier can pin the
  builder to the signer. ``job_workflow_ref`` (a reusable workflow's own ref) is not exposed
  as an environment variable, so a reusable workflow passes ``builder_id=`` explicitly.
- ``invocationId = <server>/<repo>/actions/runs/<GITHUB_RUN_ID>/attempts/<GITHUB_RUN_ATTEMPT>``.
  No environment variable gives the job start time, so ``startedOn`` is set only when passed.

GitLab CI — buildType :data:`GITLAB_BUILD_TYPE`, defined here because no community build type
exists for GitLab pipelines; its shape mirrors the GitHub one:

- ``externalParameters.pipeline = {ref, repository: CI_SERVER_URL/CI_PROJECT_PATH, path: CI_CONFIG_PATH}``,
  ``ref`` = ``refs/tags/<CI_COMMIT_TAG>`` for tag pipelines, else ``refs/heads/<CI_COMMIT_REF_NAME>``.
- ``internalParameters.gitlab``: ``pipeline_id`` (CI_PIPELINE_ID) and, when set,
  ``pipeline_source``, ``project_id``, ``job_id``, ``runner_id``.
- ``resolvedDependencies[0] = {uri: "git+<repository>@<ref>", digest: {gitCommit: CI_COMMIT_SHA}}``.
- ``builder.id = <CI_SERVER_URL>/<CI_PROJECT_PATH>//<CI_CONFIG_PATH>@<ref>``: the SAN URI Fulcio
  puts in GitLab certificates (``ci_config_ref_uri``), for the same pinning reason.
- ``invocationId = CI_JOB_URL``, ``startedOn = CI_JOB_STARTED_AT``.

Generic — from :class:`GenericBuild` options (builder id, source URI and digest, build type,
parameters); ``externalParameters = {source: <uri>, **params}``.

Timestamps are RFC 3339 in UTC with a ``Z`` suffix (in-toto ``field_types.md`` Timestamp).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from imgseal.errors import InvalidInputError, UsageError
from imgseal.intoto import SLSA_PROVENANCE_V1, is_absolute_uri

GITHUB_BUILD_TYPE: Final = "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"
GITLAB_BUILD_TYPE: Final = "https://imgseal.dev/buildtypes/gitlab-ci/v1"
GENERIC_BUILD_TYPE: Final = "https://imgseal.dev/buildtypes/generic/v1"
PREDICATE_TYPE: Final = SLSA_PROVENANCE_V1

#: Events the GitHub workflow/v1 build type allows ("MUST NOT be used for any other event").
GITHUB_EVENTS: Final = frozenset({"create", "release", "push", "workflow_dispatch"})

CiKind = Literal["github", "gitlab", "generic"]

#: Digest algorithms whose values must be lowercase hex of a fixed length.
_HEX_LENGTHS: Final = {"sha1": (40,), "gitCommit": (40, 64), "sha256": (64,), "sha512": (128,)}
_ALGORITHM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class GenericBuild:
    """Explicit description of a build outside a recognised CI."""

    builder_id: str
    source_uri: str
    source_digest: str
    build_type: str = GENERIC_BUILD_TYPE
    params: Mapping[str, Any] = field(default_factory=dict)
    started_on: datetime | str | None = None
    invocation_id: str | None = None


def detect_ci(env: Mapping[str, str]) -> CiKind:
    """``GITHUB_ACTIONS=true`` → github, ``GITLAB_CI=true`` → gitlab, else generic."""
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return "generic"


def generate_provenance(
    env: Mapping[str, str],
    *,
    ci: CiKind | None = None,
    generic: GenericBuild | None = None,
    event: Mapping[str, Any] | None = None,
    builder_id: str | None = None,
    started_on: datetime | str | None = None,
    variables: Mapping[str, str] | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """The SLSA v1 predicate for this build; ``ci=None`` auto-detects from ``env``.

    ``generic`` is required (and only used) in generic mode. ``builder_id`` overrides the
    CI-derived builder id (a reusable workflow passes its ``job_workflow_ref`` here).
    """
    kind = ci or detect_ci(env)
    if kind == "github":
        return github_provenance(
            env, event=event, builder_id=builder_id, started_on=started_on, variables=variables, now=now
        )
    if kind == "gitlab":
        return gitlab_provenance(env, builder_id=builder_id, now=now)
    if generic is None:
        raise UsageError(
            "not running in GitHub Actions or GitLab CI: give --builder-id, --source-uri and"
            " --source-digest for generic provenance",
            reason="provenance-options",
        )
    return generic_provenance(generic, now=now)


def github_provenance(
    env: Mapping[str, str],
    *,
    event: Mapping[str, Any] | None = None,
    builder_id: str | None = None,
    started_on: datetime | str | None = None,
    variables: Mapping[str, str] | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Provenance for a GitHub Actions workflow run (see the module docstring for fields).

    ``event`` is the parsed ``GITHUB_EVENT_PATH`` payload; it is required for
    ``workflow_dispatch`` and ``release`` events, whose inputs are external parameters the
    build type makes REQUIRED. ``variables`` is the workflow's ``vars`` context (recorded as
    ``externalParameters.vars``), which the runner does not expose as environment variables.
    """
    server = _require(env, "GITHUB_SERVER_URL").rstrip("/")
    repository = _require(env, "GITHUB_REPOSITORY")
    ref = _require(env, "GITHUB_REF")
    sha = _require(env, "GITHUB_SHA")
    workflow_ref = _require(env, "GITHUB_WORKFLOW_REF")
    run_id = _require(env, "GITHUB_RUN_ID")
    run_attempt = _require(env, "GITHUB_RUN_ATTEMPT")
    event_name = _require(env, "GITHUB_EVENT_NAME")
    if event_name not in GITHUB_EVENTS:
        raise UsageError(
            f"GITHUB_EVENT_NAME {event_name!r} is not supported by the GitHub workflow/v1 build type"
            f" (supported: {', '.join(sorted(GITHUB_EVENTS))})",
            reason="unsupported-event",
        )
    path = _workflow_path(workflow_ref, repository, ref)
    repo_uri = f"{server}/{repository}"

    external: dict[str, Any] = {}
    if event_name in ("workflow_dispatch", "release"):
        if event is None:
            raise UsageError(
                f"a {event_name} event needs the event payload (GITHUB_EVENT_PATH) to record its parameters",
                reason="provenance-options",
            )
        if event_name == "workflow_dispatch":
            inputs = _non_empty_inputs(event)
            if inputs:
                external["inputs"] = inputs
        else:
            release = _non_default_release(event)
            if release:
                external["release"] = release
    if variables:
        external["vars"] = dict(variables)
    external["workflow"] = {"ref": ref, "repository": repo_uri, "path": path}

    github: dict[str, str] = {"event_name": event_name}
    for key, var in (
        ("repository_id", "GITHUB_REPOSITORY_ID"),
        ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"),
        ("actor_id", "GITHUB_ACTOR_ID"),
        ("runner_environment", "RUNNER_ENVIRONMENT"),
    ):
        if env.get(var):
            github[key] = env[var]

    metadata: dict[str, str] = {
        "invocationId": f"{repo_uri}/actions/runs/{run_id}/attempts/{run_attempt}",
    }
    if started_on is not None:
        metadata["startedOn"] = rfc3339(started_on, what="started_on")
    metadata["finishedOn"] = rfc3339(_now(now), what="finished_on")
    return _predicate(
        build_type=GITHUB_BUILD_TYPE,
        external=external,
        internal={"github": github},
        dependency={"uri": f"git+{repo_uri}@{ref}", "digest": {"gitCommit": _hex_digest("gitCommit", sha)}},
        builder_id=builder_id or f"{server}/{workflow_ref}",
        metadata=metadata,
    )


def gitlab_provenance(
    env: Mapping[str, str],
    *,
    builder_id: str | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Provenance for a GitLab CI job (see the module docstring for fields)."""
    server = _require(env, "CI_SERVER_URL").rstrip("/")
    project = _require(env, "CI_PROJECT_PATH")
    sha = _require(env, "CI_COMMIT_SHA")
    ref_name = _require(env, "CI_COMMIT_REF_NAME")
    pipeline_id = _require(env, "CI_PIPELINE_ID")
    job_url = _require(env, "CI_JOB_URL")
    config_path = _require(env, "CI_CONFIG_PATH")
    started = _require(env, "CI_JOB_STARTED_AT")
    tag = env.get("CI_COMMIT_TAG")
    ref = f"refs/tags/{tag}" if tag else f"refs/heads/{ref_name}"
    repo_uri = f"{server}/{project}"

    gitlab: dict[str, str] = {"pipeline_id": pipeline_id}
    for key, var in (
        ("pipeline_source", "CI_PIPELINE_SOURCE"),
        ("project_id", "CI_PROJECT_ID"),
        ("job_id", "CI_JOB_ID"),
        ("runner_id", "CI_RUNNER_ID"),
    ):
        if env.get(var):
            gitlab[key] = env[var]
    return _predicate(
        build_type=GITLAB_BUILD_TYPE,
        external={"pipeline": {"ref": ref, "repository": repo_uri, "path": config_path}},
        internal={"gitlab": gitlab},
        dependency={"uri": f"git+{repo_uri}@{ref}", "digest": {"gitCommit": _hex_digest("gitCommit", sha)}},
        builder_id=builder_id or f"{repo_uri}//{config_path}@{ref}",
        metadata={
            "invocationId": job_url,
            "startedOn": rfc3339(started, what="CI_JOB_STARTED_AT"),
            "finishedOn": rfc3339(_now(now), what="finished_on"),
        },
    )


def generic_provenance(options: GenericBuild, *, now: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """Provenance from explicit options, for builds outside a recognised CI."""
    for name, value in (
        ("builder_id", options.builder_id),
        ("source_uri", options.source_uri),
        ("build_type", options.build_type),
    ):
        if not value:
            raise UsageError(f"generic provenance needs {name}", reason="provenance-options")
        if not is_absolute_uri(value):
            raise UsageError(f"{name} must be an absolute URI, got {value[:80]!r}", reason="provenance-options")
    algorithm, hex_ = parse_source_digest(options.source_digest)
    if "source" in options.params:
        raise UsageError("params must not contain 'source': it is set from source_uri", reason="provenance-options")
    external: dict[str, Any] = {"source": options.source_uri, **options.params}
    metadata: dict[str, str] = {}
    if options.invocation_id:
        metadata["invocationId"] = options.invocation_id
    if options.started_on is not None:
        metadata["startedOn"] = rfc3339(options.started_on, what="started_on")
    metadata["finishedOn"] = rfc3339(_now(now), what="finished_on")
    return _predicate(
        build_type=options.build_type,
        external=external,
        internal=None,
        dependency={"uri": options.source_uri, "digest": {algorithm: hex_}},
        builder_id=options.builder_id,
        metadata=metadata,
    )


def parse_source_digest(text: str) -> tuple[str, str]:
    """Parse ``gitCommit:<hex>``, ``sha1:<hex>``, ``sha256:<hex>`` … into ``(algorithm, value)``.

    Known algorithms must be hex of the right length (``gitCommit`` is 40 for SHA-1 git and
    64 for SHA-256 git); hex is lowercased, as the in-toto DigestSet requires lowercase.
    """
    algorithm, sep, value = (text or "").partition(":")
    if not sep or not value or not _ALGORITHM.fullmatch(algorithm):
        raise UsageError(
            f"source digest {text[:80]!r} must look like gitCommit:<hex> or sha256:<hex>",
            reason="provenance-options",
        )
    if algorithm in _HEX_LENGTHS:
        return algorithm, _hex_digest(algorithm, value)
    return algorithm, value


def rfc3339(value: datetime | str, *, what: str) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (fractional seconds kept when present) in UTC.

    A string is parsed as ISO 8601 / RFC 3339; a value without a UTC offset is refused,
    because guessing the zone would put a wrong, signed time in the provenance.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise UsageError(f"{what} {value[:60]!r} is not an RFC 3339 timestamp", reason="bad-timestamp") from exc
    else:
        parsed = value
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise UsageError(f"{what} has no time zone; give it in UTC (…Z)", reason="bad-timestamp")
    utc = parsed.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def load_github_event(env: Mapping[str, str]) -> dict[str, Any] | None:
    """Read the event payload named by ``GITHUB_EVENT_PATH`` (None when unset)."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise InvalidInputError(f"cannot read GITHUB_EVENT_PATH {path!r}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"GITHUB_EVENT_PATH {path!r} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"GITHUB_EVENT_PATH {path!r} does not hold a JSON object")
    return data


# --- helpers ---------------------------------------------------------------------------


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise UsageError(
            f"environment variable {name} is not set; it is needed for provenance",
            reason="missing-ci-variable",
        )
    return value


def _workflow_path(workflow_ref: str, repository: str, ref: str) -> str:
    # The build type: path = workflow_ref without "<repository>/" and "@<ref>"; either may
    # contain "@", so strip by exact prefix and suffix instead of splitting.
    prefix, suffix = f"{repository}/", f"@{ref}"
    if not workflow_ref.startswith(prefix) or not workflow_ref.endswith(suffix) or (
        len(workflow_ref) <= len(prefix) + len(suffix)
    ):
        raise UsageError(
            f"GITHUB_WORKFLOW_REF {workflow_ref!r} does not have the form"
            f" '{repository}/<path>@{ref}' (GITHUB_REPOSITORY and GITHUB_REF disagree with it)",
            reason="missing-ci-variable",
        )
    return workflow_ref[len(prefix) : -len(suffix)]


def _non_empty_inputs(event: Mapping[str, Any]) -> dict[str, Any]:
    inputs = event.get("inputs") or {}
    if not isinstance(inputs, Mapping):
        raise InvalidInputError("GitHub event payload 'inputs' is not an object")
    return {k: v for k, v in inputs.items() if v not in (None, "")}


def _non_default_release(event: Mapping[str, Any]) -> dict[str, Any]:
    release = event.get("release")
    if not isinstance(release, Mapping):
        raise InvalidInputError("GitHub release event payload has no 'release' object")
    repository = event.get("repository")
    default_branch = repository.get("default_branch") if isinstance(repository, Mapping) else None
    out: dict[str, Any] = {}
    # The REST API defaults (2022-11-28): empty body/name, draft and prerelease false,
    # target_commitish the default branch. Only non-default values are recorded.
    for key in ("body", "name"):
        if release.get(key):
            out[key] = release[key]
    for key in ("draft", "prerelease"):
        if release.get(key) is True:
            out[key] = True
    target = release.get("target_commitish")
    if target and target != default_branch:
        out["target_commitish"] = target
    return out


def _hex_digest(algorithm: str, value: str) -> str:
    lowered = value.lower()
    lengths = _HEX_LENGTHS.get(algorithm, ())
    if not _HEX.fullmatch(lowered) or (lengths and len(lowered) not in lengths):
        expected = " or ".join(str(n) for n in lengths)
        raise UsageError(
            f"{algorithm} digest {value[:80]!r} must be {expected} hex characters",
            reason="provenance-options",
        )
    return lowered


def _now(now: Callable[[], datetime] | None) -> datetime:
    return now() if now is not None else datetime.now(UTC)


def _predicate(
    *,
    build_type: str,
    external: dict[str, Any],
    internal: dict[str, Any] | None,
    dependency: dict[str, Any],
    builder_id: str,
    metadata: dict[str, str],
) -> dict[str, Any]:
    build_definition: dict[str, Any] = {"buildType": build_type, "externalParameters": external}
    if internal:
        build_definition["internalParameters"] = internal
    build_definition["resolvedDependencies"] = [dependency]
    return {
        "buildDefinition": build_definition,
        "runDetails": {"builder": {"id": builder_id}, "metadata": metadata},
    }
