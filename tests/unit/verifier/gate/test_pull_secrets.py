"""Pull-secret keyrings: parsing the two secret types and matching keys to images as the kubelet does."""

from __future__ import annotations

import base64
import json

import pytest

from imgseal.errors import InvalidInputError
from imgseal.reference import parse_reference
from imgseal.store.auth import Credentials
from verifier.gate.pull_secrets import (
    DOCKERCFG,
    DOCKERCONFIGJSON,
    KeyringEntry,
    PullCredentials,
    keyring_entries,
    pull_request,
)


def b64(data: object) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def creds_for(entries: list[KeyringEntry], image: str) -> Credentials | None:
    ref = parse_reference(image)
    return PullCredentials("ns", tuple(entries)).credentials(ref)  # type: ignore[arg-type]


def test_dockerconfigjson_and_dockercfg_are_read_other_types_skipped() -> None:
    modern = keyring_entries(DOCKERCONFIGJSON, {".dockerconfigjson": b64({"auths": {"reg.example": auth("a", "1")}})},
                             "secret ns/modern")
    legacy = keyring_entries(DOCKERCFG, {".dockercfg": b64({"https://old.example/v1/": {"username": "b",
                                                                                        "password": "2"}})},
                             "secret ns/legacy")
    assert [(e.host, e.path, e.credentials) for e in modern] == [("reg.example", "", Credentials("a", "1"))]
    assert [(e.host, e.path, e.credentials) for e in legacy] == [("old.example", "", Credentials("b", "2"))]
    assert keyring_entries("Opaque", {".dockerconfigjson": "bm90IGpzb24="}, "secret ns/opaque") == []


@pytest.mark.parametrize("data", [{}, {".dockerconfigjson": "%%%"}, {".dockerconfigjson": "bm90IGpzb24="},
                                  {".dockerconfigjson": b64({"auths": []})},
                                  {".dockerconfigjson": b64({"auths": {"r": {"auth": "not base64!"}}})},
                                  {".dockerconfigjson": base64.b64encode(b"[" * 100_000).decode()}])
def test_malformed_docker_config_secrets_are_errors(data: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError, match="secret ns/bad"):
        keyring_entries(DOCKERCONFIGJSON, data, "secret ns/bad")


def test_keys_match_like_the_kubelet_keyring() -> None:
    entries = keyring_entries(DOCKERCONFIGJSON, {".dockerconfigjson": b64({"auths": {
        "https://reg.example:5000/v2/": auth("port", "p"),
        "*.corp.example": auth("glob", "g"),
        "reg.example/team": auth("team", "t"),
        "reg.example": auth("host", "h"),
        "https://index.docker.io/v1/": auth("hub", "d"),
    }})}, "secret ns/s")
    assert creds_for(entries, "reg.example:5000/app:v1") == Credentials("port", "p")
    assert creds_for(entries, "eu.corp.example/app:v1") == Credentials("glob", "g")
    assert creds_for(entries, "a.eu.corp.example/app:v1") is None  # a glob matches one label only
    assert creds_for(entries, "reg.example/team/app:v1") == Credentials("team", "t")  # most specific wins
    assert creds_for(entries, "reg.example/other/app:v1") == Credentials("host", "h")
    assert creds_for(entries, "reg.example:5001/app:v1") is None  # ports must be equal
    assert creds_for(entries, "nginx:1.27") == Credentials("hub", "d")
    assert creds_for(entries, "elsewhere.example/app:v1") is None


def test_pod_secrets_come_before_service_account_secrets_among_equals() -> None:
    pod = keyring_entries(DOCKERCONFIGJSON, {".dockerconfigjson": b64({"auths": {"r.example": auth("pod", "1")}})},
                          "secret ns/pod")
    account = keyring_entries(DOCKERCONFIGJSON, {".dockerconfigjson": b64({"auths": {"r.example": auth("sa", "2")}})},
                              "secret ns/sa")
    assert creds_for([*pod, *account], "r.example/app:v1") == Credentials("pod", "1")
    ref = parse_reference("r.example/app:v1")
    assert PullCredentials("ns", (*pod, *account, *pod)).candidates(ref) == [  # type: ignore[arg-type]
        Credentials("pod", "1"), Credentials("sa", "2")]


def test_cache_scope_follows_the_credentials_not_the_namespace() -> None:
    ref = parse_reference("r.example/app:v1")
    one = keyring_entries(DOCKERCONFIGJSON, {".dockerconfigjson": b64({"auths": {"r.example": auth("u", "pass-one")}})},
                          "a")
    two = keyring_entries(DOCKERCONFIGJSON, {".dockerconfigjson": b64({"auths": {"r.example": auth("u", "pass-two")}})},
                          "b")
    scope = PullCredentials("a", tuple(one)).scope
    assert scope(ref) == PullCredentials("b", tuple(one)).scope(ref)  # type: ignore[arg-type]
    assert scope(ref) != PullCredentials("a", tuple(two)).scope(ref)  # type: ignore[arg-type]
    assert PullCredentials("a").scope(ref) == "own"  # type: ignore[arg-type]
    assert scope(ref).startswith("pull:") and "pass-one" not in scope(ref)  # type: ignore[arg-type]


def test_pull_request_reads_pods_and_workload_templates() -> None:
    pod = {"kind": "Pod", "spec": {"imagePullSecrets": [{"name": "regcred"}], "serviceAccountName": "builder",
                                   "containers": []}}
    deployment = {"kind": "Deployment", "spec": {"template": {"spec": {"imagePullSecrets": [{"name": "d"}],
                                                                       "containers": []}}}}
    cronjob = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "serviceAccount": "legacy", "containers": []}}}}}}
    assert pull_request(pod).secrets == ("regcred",) and pull_request(pod).service_accounts == ("builder",)
    assert pull_request(deployment).secrets == ("d",) and pull_request(deployment).service_accounts == ("default",)
    assert pull_request(cronjob).service_accounts == ("legacy",)
    assert pull_request({"kind": "ConfigMap", "data": {}}).service_accounts == ()


@pytest.mark.parametrize("spec", [{"imagePullSecrets": "regcred"}, {"imagePullSecrets": [{"name": "../x"}]},
                                  {"imagePullSecrets": [{}]}, {"serviceAccountName": "a/b"}])
def test_malformed_pull_fields_are_errors(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        pull_request({"kind": "Pod", "spec": {"containers": [], **spec}})
