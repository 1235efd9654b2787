"""SLSA Provenance v1 generation from recorded CI environments, checked field by field and by schema."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from imgseal.errors import InvalidInputError, UsageError
from signer.provenance import (
    GENERIC_BUILD_TYPE,
    GITHUB_BUILD_TYPE,
    GITLAB_BUILD_TYPE,
    GenericBuild,
    detect_ci,
    generate_provenance,
    generic_provenance,
    github_provenance,
    gitlab_provenance,
    load_github_event,
    parse_source_digest,
    rfc3339,
)
from tests.datadir import DATA as DATA_DIR

DATA = DATA_DIR / "provenance"
GITHUB_ENV: dict[str, str] = json.loads((DATA / "github-actions-env.json").read_text())
GITLAB_ENV: dict[str, str] = json.loads((DATA / "gitlab-ci-env.json").read_text())
DISPATCH_EVENT: dict[str, Any] = json.loads((DATA / "github-workflow-dispatch-event.json").read_text())
SCHEMA = json.loads((DATA / "slsa-provenance-v1.schema.json").read_text())
FINISHED = datetime(2025, 3, 14, 9, 31, 7, tzinfo=UTC)
SHA = "c27d339ee6075c1f744c5d4b200f7901aad2c369"


def _now() -> datetime:
    return FINISHED


def _validate(predicate: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(predicate)


def test_github_push_field_by_field() -> None:
    p = github_provenance(GITHUB_ENV, now=_now)
    _validate(p)
    bd = p["buildDefinition"]
    assert bd["buildType"] == GITHUB_BUILD_TYPE
    assert bd["externalParameters"] == {
        "workflow": {
            "ref": "refs/heads/main",
            "repository": "https://github.com/acme/app",
            "path": ".github/workflows/release.yml",
        }
    }
    assert bd["internalParameters"] == {
        "github": {
            "event_name": "push",
            "repository_id": "712345678",
            "repository_owner_id": "98765432",
            "actor_id": "583231",
            "runner_environment": "github-hosted",
        }
    }
    assert bd["resolvedDependencies"] == [
        {"uri": "git+https://github.com/acme/app@refs/heads/main", "digest": {"gitCommit": SHA}}
    ]
    rd = p["runDetails"]
    assert rd["builder"] == {"id": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"}
    assert rd["metadata"] == {
        "invocationId": "https://github.com/acme/app/actions/runs/9876543210/attempts/2",
        "finishedOn": "2025-03-14T09:31:07Z",
    }


def test_github_auto_detect_and_overrides() -> None:
    assert detect_ci(GITHUB_ENV) == "github"
    p = generate_provenance(
        GITHUB_ENV,
        builder_id="https://github.com/acme/reusable/.github/workflows/build.yml@refs/tags/v2",
        started_on="2025-03-14T10:26:53+01:00",
        variables={"MASCOT": "Mona"},
        now=_now,
    )
    _validate(p)
    assert p["runDetails"]["builder"]["id"].endswith("build.yml@refs/tags/v2")
    assert p["runDetails"]["metadata"]["startedOn"] == "2025-03-14T09:26:53Z"
    assert p["buildDefinition"]["externalParameters"]["vars"] == {"MASCOT": "Mona"}


def test_github_workflow_dispatch_records_non_empty_inputs() -> None:
    env = {**GITHUB_ENV, "GITHUB_EVENT_NAME": "workflow_dispatch"}
    p = github_provenance(env, event=DISPATCH_EVENT, now=_now)
    _validate(p)
    ext = p["buildDefinition"]["externalParameters"]
    assert ext["inputs"] == {"deploy_target": "staging", "dry_run": "false"}  # "notes" was empty
    assert p["buildDefinition"]["internalParameters"]["github"]["event_name"] == "workflow_dispatch"
    with pytest.raises(UsageError, match="event payload"):
        github_provenance(env, now=_now)
    no_inputs = github_provenance(env, event={"inputs": {"a": ""}}, now=_now)
    assert "inputs" not in no_inputs["buildDefinition"]["externalParameters"]


def test_github_release_records_non_default_parameters() -> None:
    env = {**GITHUB_ENV, "GITHUB_EVENT_NAME": "release", "GITHUB_REF": "refs/tags/v1.0.0",
           "GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/release.yml@refs/tags/v1.0.0"}
    event = {
        "release": {"body": "", "draft": False, "name": "v1.0.0", "prerelease": True, "target_commitish": "main"},
        "repository": {"default_branch": "main"},
    }
    p = github_provenance(env, event=event, now=_now)
    _validate(p)
    assert p["buildDefinition"]["externalParameters"]["release"] == {"name": "v1.0.0", "prerelease": True}
    assert p["buildDefinition"]["resolvedDependencies"][0]["uri"] == "git+https://github.com/acme/app@refs/tags/v1.0.0"
    with pytest.raises(InvalidInputError, match="no 'release' object"):
        github_provenance(env, event={}, now=_now)


def test_github_workflow_path_with_at_signs() -> None:
    env = {**GITHUB_ENV, "GITHUB_REF": "refs/heads/feat@x",
           "GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/a@b.yml@refs/heads/feat@x"}
    p = github_provenance(env, now=_now)
    assert p["buildDefinition"]["externalParameters"]["workflow"]["path"] == ".github/workflows/a@b.yml"


def test_github_inconsistent_workflow_ref() -> None:
    env = {**GITHUB_ENV, "GITHUB_WORKFLOW_REF": "other/repo/.github/workflows/x.yml@refs/heads/main"}
    with pytest.raises(UsageError, match="GITHUB_WORKFLOW_REF"):
        github_provenance(env, now=_now)


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target", "issues", "repository_dispatch"])
def test_github_unsupported_events_refused(event: str) -> None:
    with pytest.raises(UsageError, match="not supported") as info:
        github_provenance({**GITHUB_ENV, "GITHUB_EVENT_NAME": event}, now=_now)
    assert info.value.reason == "unsupported-event"


@pytest.mark.parametrize(
    "name",
    ["GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_REF", "GITHUB_SHA", "GITHUB_WORKFLOW_REF",
     "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_EVENT_NAME"],
)
def test_github_missing_variable_is_named(name: str) -> None:
    env = {k: v for k, v in GITHUB_ENV.items() if k != name}
    with pytest.raises(UsageError, match=name) as info:
        github_provenance(env, now=_now)
    assert info.value.reason == "missing-ci-variable"
    assert info.value.exit_code == 2


def test_github_optional_internal_parameters_are_omitted() -> None:
    env = {k: v for k, v in GITHUB_ENV.items() if k not in ("GITHUB_REPOSITORY_ID", "RUNNER_ENVIRONMENT")}
    github = github_provenance(env, now=_now)["buildDefinition"]["internalParameters"]["github"]
    assert "repository_id" not in github and "runner_environment" not in github


def test_github_bad_commit_sha() -> None:
    with pytest.raises(UsageError, match="gitCommit"):
        github_provenance({**GITHUB_ENV, "GITHUB_SHA": "not-a-sha"}, now=_now)


def test_gitlab_tag_pipeline_field_by_field() -> None:
    assert detect_ci(GITLAB_ENV) == "gitlab"
    p = generate_provenance(GITLAB_ENV, now=_now)
    _validate(p)
    bd = p["buildDefinition"]
    assert bd["buildType"] == GITLAB_BUILD_TYPE
    assert bd["externalParameters"] == {
        "pipeline": {
            "ref": "refs/tags/v1.4.0",
            "repository": "https://gitlab.com/acme/platform/app",
            "path": ".gitlab-ci.yml",
        }
    }
    assert bd["internalParameters"] == {
        "gitlab": {
            "pipeline_id": "1234567890",
            "pipeline_source": "push",
            "project_id": "45678901",
            "job_id": "7654321098",
            "runner_id": "12270807",
        }
    }
    assert bd["resolvedDependencies"] == [
        {
            "uri": "git+https://gitlab.com/acme/platform/app@refs/tags/v1.4.0",
            "digest": {"gitCommit": "1f0b4c8a9e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b"},
        }
    ]
    assert p["runDetails"] == {
        "builder": {"id": "https://gitlab.com/acme/platform/app//.gitlab-ci.yml@refs/tags/v1.4.0"},
        "metadata": {
            "invocationId": "https://gitlab.com/acme/platform/app/-/jobs/7654321098",
            "startedOn": "2025-03-14T09:26:53Z",
            "finishedOn": "2025-03-14T09:31:07Z",
        },
    }


def test_gitlab_branch_pipeline() -> None:
    env = {**GITLAB_ENV, "CI_COMMIT_REF_NAME": "main"}
    del env["CI_COMMIT_TAG"]
    p = gitlab_provenance(env, now=_now)
    assert p["buildDefinition"]["externalParameters"]["pipeline"]["ref"] == "refs/heads/main"
    assert p["runDetails"]["builder"]["id"].endswith("//.gitlab-ci.yml@refs/heads/main")


@pytest.mark.parametrize(
    "name",
    ["CI_SERVER_URL", "CI_PROJECT_PATH", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_PIPELINE_ID",
     "CI_JOB_URL", "CI_CONFIG_PATH", "CI_JOB_STARTED_AT"],
)
def test_gitlab_missing_variable_is_named(name: str) -> None:
    env = {k: v for k, v in GITLAB_ENV.items() if k != name}
    with pytest.raises(UsageError, match=name):
        gitlab_provenance(env, now=_now)


def test_gitlab_bad_start_time() -> None:
    with pytest.raises(UsageError, match="CI_JOB_STARTED_AT"):
        gitlab_provenance({**GITLAB_ENV, "CI_JOB_STARTED_AT": "yesterday"}, now=_now)
    with pytest.raises(UsageError, match="no time zone"):
        gitlab_provenance({**GITLAB_ENV, "CI_JOB_STARTED_AT": "2025-03-14T09:26:53"}, now=_now)


def test_generic_mode() -> None:
    assert detect_ci({"GITHUB_ACTIONS": "false", "GITLAB_CI": "1"}) == "generic"
    options = GenericBuild(
        builder_id="https://ci.example.com/builders/docker@v3",
        source_uri="git+https://git.example.com/acme/app@refs/heads/main",
        source_digest="gitCommit:" + SHA.upper(),
        params={"dockerfile": "Dockerfile", "target": "prod"},
        started_on=datetime(2025, 3, 14, 11, 0, tzinfo=timezone(timedelta(hours=2))),
        invocation_id="https://ci.example.com/runs/77",
    )
    p = generate_provenance({}, generic=options, now=_now)
    _validate(p)
    assert p == {
        "buildDefinition": {
            "buildType": GENERIC_BUILD_TYPE,
            "externalParameters": {
                "source": "git+https://git.example.com/acme/app@refs/heads/main",
                "dockerfile": "Dockerfile",
                "target": "prod",
            },
            "resolvedDependencies": [
                {"uri": "git+https://git.example.com/acme/app@refs/heads/main", "digest": {"gitCommit": SHA}}
            ],
        },
        "runDetails": {
            "builder": {"id": "https://ci.example.com/builders/docker@v3"},
            "metadata": {
                "invocationId": "https://ci.example.com/runs/77",
                "startedOn": "2025-03-14T09:00:00Z",
                "finishedOn": "2025-03-14T09:31:07Z",
            },
        },
    }


def test_generic_requires_options() -> None:
    with pytest.raises(UsageError, match="--builder-id"):
        generate_provenance({}, now=_now)
    base = GenericBuild("https://b.example/x", "git+https://g.example/r", "sha1:" + SHA)
    with pytest.raises(UsageError, match="builder_id"):
        generic_provenance(GenericBuild("", base.source_uri, base.source_digest), now=_now)
    with pytest.raises(UsageError, match="absolute URI"):
        generic_provenance(GenericBuild("mybuilder", base.source_uri, base.source_digest), now=_now)
    with pytest.raises(UsageError, match="'source'"):
        generic_provenance(GenericBuild(base.builder_id, base.source_uri, base.source_digest,
                                        params={"source": "x"}), now=_now)
    assert generic_provenance(base, now=_now)["buildDefinition"]["resolvedDependencies"][0]["digest"] == {
        "sha1": SHA
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gitCommit:" + SHA, ("gitCommit", SHA)),
        ("gitCommit:" + "ab" * 32, ("gitCommit", "ab" * 32)),
        ("sha256:" + "0" * 64, ("sha256", "0" * 64)),
        ("sha512:" + "f" * 128, ("sha512", "f" * 128)),
        ("dirHash:h1:abc=", ("dirHash", "h1:abc=")),
    ],
)
def test_parse_source_digest(text: str, expected: tuple[str, str]) -> None:
    assert parse_source_digest(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "gitCommit:", ":abc", "sha1:xyz", "sha256:" + "0" * 63, "gitCommit:" + "a" * 41]
)
def test_parse_source_digest_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_source_digest(text)


def test_rfc3339() -> None:
    assert rfc3339(datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC), what="t") == "2025-01-02T03:04:05.600000Z"
    assert rfc3339("2025-01-02T03:04:05Z", what="t") == "2025-01-02T03:04:05Z"
    with pytest.raises(UsageError, match="no time zone"):
        rfc3339(datetime(2025, 1, 2), what="t")


def test_default_clock_is_utc_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    p = github_provenance(GITHUB_ENV)
    finished = datetime.fromisoformat(p["runDetails"]["metadata"]["finishedOn"])
    assert finished >= before and finished.tzinfo is not None


def test_load_github_event(tmp_path: Path) -> None:
    assert load_github_event({}) is None
    path = tmp_path / "event.json"
    path.write_text(json.dumps(DISPATCH_EVENT))
    assert load_github_event({"GITHUB_EVENT_PATH": str(path)}) == DISPATCH_EVENT
    path.write_text("[1]")
    with pytest.raises(InvalidInputError, match="JSON object"):
        load_github_event({"GITHUB_EVENT_PATH": str(path)})
    path.write_text("{")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_github_event({"GITHUB_EVENT_PATH": str(path)})
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_github_event({"GITHUB_EVENT_PATH": str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda p: p.pop("runDetails"), "runDetails"),
        (lambda p: p["buildDefinition"].pop("externalParameters"), "externalParameters"),
        (lambda p: p["buildDefinition"].__setitem__("buildType", "not a uri"), "buildType"),
        (lambda p: p["runDetails"]["builder"].pop("id"), "id"),
        (lambda p: p["runDetails"]["metadata"].__setitem__("finishedOn", "2025-03-14 09:31:07"), "finishedOn"),
        (lambda p: p["runDetails"]["metadata"].__setitem__("finishedOn", "2025-03-14T10:31:07+01:00"), "finishedOn"),
        (lambda p: p["buildDefinition"]["resolvedDependencies"][0].__setitem__("digest", {"gitCommit": "XYZ"}),
         "gitCommit"),
        (lambda p: p["buildDefinition"]["resolvedDependencies"].append({"name": "x"}), "resolvedDependencies"),
    ],
)
def test_schema_rejects_broken_predicates(mutate: Any, where: str) -> None:
    # The schema must be able to fail, or validating against it proves nothing.
    p = copy.deepcopy(github_provenance(GITHUB_ENV, now=_now))
    mutate(p)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(p)
