"""slsa-verifier-like provenance checks and --where conditions."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from imgseal.digest import Digest
from imgseal.errors import UsageError, VerificationError
from imgseal.intoto import Statement, image_statement
from signer.provenance import GITHUB_BUILD_TYPE, GenericBuild, generate_provenance
from tests.datadir import DATA as DATA_DIR
from verifier.attestation_checks import (
    check_slsa,
    check_where,
    normalize_git_uri,
    parse_where,
    split_git_ref,
)

DATA = DATA_DIR / "provenance"
GITHUB_ENV: dict[str, str] = json.loads((DATA / "github-actions-env.json").read_text())
GITLAB_ENV: dict[str, str] = json.loads((DATA / "gitlab-ci-env.json").read_text())
DIGEST = Digest("sha256", "fe4fe40ac7250263c5dbe1cf3138912f3f416140aa248637a60d65fe22c47da4")
BUILDER = "https://github.com/acme/app/.github/workflows/release.yml"


def _now() -> datetime:
    return datetime(2025, 3, 14, tzinfo=UTC)


def _gha(**env: str) -> Statement:
    predicate = generate_provenance({**GITHUB_ENV, **env}, now=_now)
    return image_statement("ghcr.io/acme/app", DIGEST, "slsaprovenance1", predicate)


def _v02(config_uri: str = "git+https://github.com/acme/app@refs/tags/v1.2.3",
         material_uri: str = "git+https://github.com/acme/app@refs/tags/v1.2.3") -> Statement:
    # Shape of a slsa-github-generator v0.2 provenance (slsa-verifier testdata).
    predicate = {
        "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
                          "generator_container_slsa3.yml@refs/tags/v1.9.0"},
        "buildType": "https://github.com/slsa-framework/slsa-github-generator/container@v1",
        "invocation": {"configSource": {"uri": config_uri, "digest": {"sha1": "a" * 40},
                                        "entryPoint": ".github/workflows/release.yml"}},
        "materials": [{"uri": material_uri, "digest": {"sha1": "a" * 40}}],
    }
    return image_statement("ghcr.io/acme/app", DIGEST, "slsaprovenance02", predicate)


def test_generated_github_provenance_passes_all_checks() -> None:
    facts = check_slsa(
        _gha(),
        builder_id=BUILDER,
        source_uri="github.com/acme/app",
        source_branch="main",
        build_type=GITHUB_BUILD_TYPE,
        image_digest=DIGEST,
    )
    assert facts.builder_id == BUILDER + "@refs/heads/main"
    assert facts.source_uri == "git+https://github.com/acme/app@refs/heads/main"
    assert facts.trigger_uri == "git+https://github.com/acme/app@refs/heads/main"
    # Every spelling slsa-verifier's NormalizeGitURI accepts.
    for spelling in ("https://github.com/acme/app", "git+https://github.com/acme/app"):
        check_slsa(_gha(), source_uri=spelling)


def test_builder_id_loose_and_exact() -> None:
    st = _gha()
    check_slsa(st, builder_id=BUILDER + "@refs/heads/main")
    with pytest.raises(VerificationError) as info:
        check_slsa(st, builder_id=BUILDER + "@refs/tags/v1")
    assert info.value.reason == "slsa-builder-id"
    assert "expected" in info.value.message and "refs/heads/main" in info.value.message
    with pytest.raises(VerificationError, match="slsa-framework"):
        check_slsa(st, builder_id="https://github.com/slsa-framework/slsa-github-generator/x.yml")
    # A prefix of the builder path is not the builder.
    with pytest.raises(VerificationError):
        check_slsa(st, builder_id="https://github.com/acme/app/.github/workflows/release")


def test_source_uri_mismatch() -> None:
    with pytest.raises(VerificationError) as info:
        check_slsa(_gha(), source_uri="github.com/acme/app2")
    assert info.value.reason == "slsa-source-uri"
    assert "git+https://github.com/acme/app2" in info.value.message
    assert "git+https://github.com/acme/app@refs/heads/main" in info.value.message
    with pytest.raises(VerificationError):
        check_slsa(_gha(), source_uri="gitlab.com/acme/app")
    with pytest.raises(UsageError, match="contains a ref"):
        check_slsa(_gha(), source_uri="github.com/acme/app@refs/heads/main")


def test_branch_and_tag() -> None:
    tag_env = {"GITHUB_REF": "refs/tags/v1.2.3",
               "GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/release.yml@refs/tags/v1.2.3"}
    tagged = _gha(**tag_env)
    check_slsa(tagged, source_tag="v1.2.3")
    check_slsa(tagged, source_tag="refs/tags/v1.2.3")
    with pytest.raises(VerificationError) as info:
        check_slsa(tagged, source_tag="v1.2.4")
    assert info.value.reason == "slsa-source-tag"
    assert "refs/tags/v1.2.4" in info.value.message and "refs/tags/v1.2.3" in info.value.message
    with pytest.raises(VerificationError) as info:
        check_slsa(tagged, source_branch="main")
    assert info.value.reason == "slsa-source-branch"
    check_slsa(_gha(), source_branch="main")
    with pytest.raises(VerificationError, match="refs/heads/dev"):
        check_slsa(_gha(), source_branch="dev")
    with pytest.raises(UsageError):
        check_slsa(_gha(), source_branch="main", source_tag="v1")


def test_build_type_and_subject() -> None:
    with pytest.raises(VerificationError) as info:
        check_slsa(_gha(), build_type="https://example.com/other")
    assert info.value.reason == "slsa-build-type"
    with pytest.raises(VerificationError) as info:
        check_slsa(_gha(), image_digest=Digest("sha256", "0" * 64))
    assert info.value.reason == "slsa-subject"


def test_gitlab_provenance_checks() -> None:
    st = image_statement("r/app", DIGEST, "slsaprovenance1", generate_provenance(GITLAB_ENV, now=_now))
    check_slsa(st, source_uri="gitlab.com/acme/platform/app", source_tag="v1.4.0",
               builder_id="https://gitlab.com/acme/platform/app//.gitlab-ci.yml")
    with pytest.raises(VerificationError):
        check_slsa(st, source_branch="main")


def test_generic_provenance_source_without_trigger() -> None:
    predicate = generate_provenance({}, generic=GenericBuild(
        "https://ci.example.com/b", "git+https://git.example.com/a/b@refs/heads/release", "sha1:" + "a" * 40,
    ), now=_now)
    st = image_statement("x", DIGEST, "slsaprovenance1", predicate)
    facts = check_slsa(st, source_uri="git.example.com/a/b", source_branch="release")
    assert facts.trigger_uri is None


def test_source_without_ref_is_malformed() -> None:
    predicate = generate_provenance({}, generic=GenericBuild(
        "https://ci.example.com/b", "git+https://git.example.com/a/b", "sha1:" + "a" * 40), now=_now)
    st = image_statement("x", DIGEST, "slsaprovenance1", predicate)
    with pytest.raises(VerificationError, match="no git ref"):
        check_slsa(st, source_uri="git.example.com/a/b")
    check_slsa(st, builder_id="https://ci.example.com/b")  # no source expectation: not checked


def test_source_and_trigger_must_agree() -> None:
    st = _gha()
    predicate = copy.deepcopy(st.predicate)
    predicate["buildDefinition"]["resolvedDependencies"][0]["uri"] = "git+https://github.com/acme/app@refs/heads/x"
    forged = Statement(st.subjects, st.predicate_type, predicate)
    with pytest.raises(VerificationError, match="disagree"):
        check_slsa(forged, source_uri="github.com/acme/app")
    predicate["buildDefinition"]["resolvedDependencies"][0]["uri"] = "git+https://github.com/evil/app@refs/heads/main"
    with pytest.raises(VerificationError) as info:
        check_slsa(Statement(st.subjects, st.predicate_type, predicate), source_uri="github.com/acme/app")
    assert info.value.reason == "slsa-source-uri"


def test_provenance_v02() -> None:
    facts = check_slsa(_v02(), source_uri="github.com/acme/app", source_tag="v1.2.3",
                       builder_id="https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
                                  "generator_container_slsa3.yml")
    assert facts.build_type.endswith("container@v1")
    with pytest.raises(VerificationError, match="disagree"):
        check_slsa(_v02(material_uri="git+https://github.com/acme/app@refs/heads/main"),
                   source_uri="github.com/acme/app")
    with pytest.raises(VerificationError) as info:
        check_slsa(_v02(config_uri="git+https://github.com/other/app@refs/tags/v1.2.3"),
                   source_uri="github.com/acme/app")
    assert info.value.reason == "slsa-source-uri"


def test_not_provenance_and_malformed() -> None:
    st = image_statement("x", DIGEST, "https://sigstore.dev/cosign/sign/v1", {})
    with pytest.raises(VerificationError) as info:
        check_slsa(st)
    assert info.value.reason == "slsa-predicate-type"
    broken = image_statement("x", DIGEST, "slsaprovenance1", {"buildDefinition": {"buildType": "x"}})
    with pytest.raises(VerificationError) as info:
        check_slsa(broken)
    assert info.value.reason == "slsa-malformed"
    no_source = image_statement("x", DIGEST, "slsaprovenance1", {
        "buildDefinition": {"buildType": "t", "externalParameters": {}},
        "runDetails": {"builder": {"id": "b"}}})
    check_slsa(no_source, builder_id="b")
    with pytest.raises(VerificationError, match="no source"):
        check_slsa(no_source, source_uri="github.com/a/b")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("github.com/acme/app", "git+https://github.com/acme/app"),
        ("https://github.com/acme/app", "git+https://github.com/acme/app"),
        ("git+https://github.com/acme/app", "git+https://github.com/acme/app"),
        ("ssh://git@github.com/acme/app", "git+ssh://git@github.com/acme/app"),
    ],
)
def test_normalize_git_uri(uri: str, expected: str) -> None:
    assert normalize_git_uri(uri) == expected


def test_split_git_ref() -> None:
    assert split_git_ref("git+https://h/r@refs/heads/a@b") == ("git+https://h/r", "refs/heads/a@b")
    assert split_git_ref("git+ssh://git@h/r@refs/tags/v1") == ("git+ssh://git@h/r", "refs/tags/v1")
    assert split_git_ref("git+ssh://git@h/r") == ("git+ssh://git@h/r", "")
    assert split_git_ref("git+https://host") == ("git+https://host", "")


# --- --where ---------------------------------------------------------------------------


def _statement_dict() -> dict[str, Any]:
    return _gha().to_dict()


def test_where_parse() -> None:
    c = parse_where("predicate.buildDefinition.buildType==" + GITHUB_BUILD_TYPE)
    assert c.path == ("predicate", "buildDefinition", "buildType")
    assert c.op == "=="
    assert c.expected == GITHUB_BUILD_TYPE
    c = parse_where("$.subject[0].digest.sha256 != \"abc\"")
    assert c.path == ("subject", 0, "digest", "sha256") and c.op == "!=" and c.expected == "abc"
    c = parse_where('predicate["org.example.key"][2]==3')
    assert c.path == ("predicate", "org.example.key", 2) and c.expected == 3
    assert parse_where('["_type"]==x').path == ("_type",)
    assert parse_where("a==").expected == ""
    assert parse_where("a==true").expected is True
    assert parse_where('a=={"k":[1]}').expected == {"k": [1]}


@pytest.mark.parametrize(
    "expr",
    ["", "==x", "a", "a=x", "a = = b", "a..b==1", ".a==1", "[0]==1", "a[x]==1", "a[\"x==1", "a.==1", "a b==1",
     "$.==1", "a[-1]==1"],
)
def test_where_parse_errors(expr: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_where(expr)
    assert info.value.reason == "bad-where"


def test_where_check_passes_and_fails() -> None:
    data = _statement_dict()
    check_where(data, [
        parse_where("predicateType==https://slsa.dev/provenance/v1"),
        parse_where("$.predicate.buildDefinition.buildType==" + GITHUB_BUILD_TYPE),
        parse_where("predicate.buildDefinition.internalParameters.github.event_name==push"),
        parse_where("predicate.buildDefinition.resolvedDependencies[0].digest.gitCommit!=abc"),
        parse_where("subject[0].digest.sha256==" + DIGEST.hex),
    ])
    check_where(_gha(), [parse_where("predicateType!=https://spdx.dev/Document")])  # a Statement works too
    with pytest.raises(VerificationError) as info:
        check_where(data, [parse_where("predicate.buildDefinition.internalParameters.github.event_name==release")])
    assert info.value.reason == "where-condition"
    assert '"push"' in info.value.message


def test_where_missing_fields_fail_both_ways() -> None:
    data = _statement_dict()
    for expr in ("predicate.nope==x", "predicate.nope!=x", "subject[5].name!=x", "predicateType[0]!=x"):
        with pytest.raises(VerificationError, match="is not in the statement"):
            check_where(data, [parse_where(expr)])


def test_where_json_typed_comparison() -> None:
    data = {"n": 1, "f": 1.0, "b": True, "s": "1", "z": None, "o": {"a": [1, "x"]}}
    check_where(data, [parse_where("n==1"), parse_where("n==1.0"), parse_where("f==1")])
    check_where(data, [parse_where("b==true"), parse_where("b!=1"), parse_where("n!=true")])
    check_where(data, [parse_where('s=="1"'), parse_where("s!=1"), parse_where("z==null"), parse_where('z!=""')])
    check_where(data, [parse_where('o=={"a":[1,"x"]}'), parse_where('o!={"a":[true,"x"]}')])
    with pytest.raises(VerificationError):
        check_where(data, [parse_where("s==1")])
    with pytest.raises(VerificationError):
        check_where(data, [parse_where("b==1")])
