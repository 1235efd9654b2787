"""The webhook verifies private images with the Pod's pull secrets (TLS + htpasswd registry, API double)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from imgseal.image import build_image
from imgseal.reference import parse_reference
from imgseal.store import StoreFactory
from imgseal.store.auth import Credentials
from imgseal.store.registry import RegistryOptions
from keys import generate, public_pem
from signer.image import sign_with_key
from tests.integration.kube_api_double import (
    KubeAPI,
    docker_config_secret,
    kube_api,
    serviceaccount_dir,
    throwaway_cert,
)
from tests.integration.webhook_server import Served, free_port, pod, review, serve
from verifier.gate.cache import MemoryCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy_file import load_policy
from verifier.gate.pull_secrets import KubeSecrets
from verifier.gate.webhook import Webhook

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def rig(secure_registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("credentials")
    mp = pytest.MonkeyPatch()
    mp.setenv("DOCKER_CONFIG", str(tmp / "no-docker-config"))  # the webhook has no credentials of its own
    mp.delenv("REGISTRY_AUTH_FILE", raising=False)
    host = secure_registry.host
    user, password = secure_registry.credentials
    owner = StoreFactory(RegistryOptions(ca_file=secure_registry.ca_cert_path,
                                         credentials={host: Credentials(user, password)}))
    key = generate("ecdsa-p256")
    (tmp / "team.pub").write_bytes(public_pem(key))
    ref = parse_reference(f"{host}/private/app:v1")
    store = owner.open(ref)
    desc = build_image(store, [{"app": b"private app"}], tag="v1")
    sign_with_key(store, f"{host}/private/app", desc, key)
    policy = tmp / "policy.yaml"
    policy.write_text(f'version: 1\ndefault: deny\nrules:\n  - name: private\n    match: ["{host}/private/*"]\n'
                      "    require:\n      signatures: {keys: [team.pub]}\n"
                      f'  - name: lenient\n    match: ["{host}/lenient/*"]\n    on_error: allow\n'
                      "    require:\n      signatures: {keys: [team.pub]}\n")
    with kube_api(tmp / "api") as api:
        api.grants[api.token] = {"team-a", "team-b", "team-c"}
        api.add_secret(docker_config_secret("team-a", "regcred", {host: (user, password)}))
        api.add_secret(docker_config_secret("team-b", "regcred", {host: (user, "wrong password")}))
        api.add_secret(docker_config_secret("team-c", "robot", {host: (user, password)}, legacy=True))
        api.add_secret(docker_config_secret("team-a", "stale", {f"{host}/private": (user, "rotated away")}))
        for namespace in ("team-a", "team-b"):
            api.add_service_account(namespace, "default", [])
        api.add_service_account("team-c", "default", ["robot"])
        api.add_service_account("team-c", "bare", [])
        directory, env = serviceaccount_dir(tmp / "sa", api)
        secrets = KubeSecrets.in_cluster(directory, env)
        evaluator = Evaluator(load_policy(policy), StoreFactory(RegistryOptions(ca_file=secure_registry.ca_cert_path)),
                              cache=MemoryCache(), resolve_tags=True)
        hook = Webhook(evaluator, deadline=5.0, secrets=secrets, log=lambda *a, **k: None)
        with serve(hook, tmp / "hook") as served:
            yield {"served": served, "api": api, "image": f"{host}/private/app:v1", "public_key": public_pem(key),
                   "pinned": f"{host}/private/app@{desc.digest}", "host": host}
    mp.undo()


def decide(rig: dict[str, Any], obj: dict[str, Any], namespace: str, kind: str = "Pod") -> dict[str, Any]:
    served: Served = rig["served"]
    resp = served.post("/validate", review(obj, namespace=namespace, kind=kind))
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["response"])


def test_pod_pull_secret_lets_the_private_image_be_verified(rig: dict[str, Any]) -> None:
    answer = decide(rig, pod(rig["image"], pull_secrets=("regcred",)), "team-a")
    assert answer["allowed"] is True, answer


def test_mutate_pins_the_private_image_verified_with_the_pods_secret(rig: dict[str, Any]) -> None:
    served: Served = rig["served"]
    resp = served.post("/mutate", review(pod(rig["image"], pull_secrets=("regcred",)), namespace="team-a"))
    answer = resp.json()["response"]
    assert answer["allowed"] is True, answer
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch == [{"op": "replace", "path": "/spec/containers/0/image",
                      "value": f"{rig['image']}@{rig['pinned'].rsplit('@', 1)[1]}"}]


def test_service_account_pull_secret_dockercfg(rig: dict[str, Any]) -> None:
    assert decide(rig, pod(rig["image"]), "team-c")["allowed"] is True
    answer = decide(rig, pod(rig["image"], service_account="bare"), "team-c")
    assert answer["allowed"] is False and "requires credentials and none were found" in answer["status"]["message"]


def test_each_matching_secret_is_tried_in_turn_as_the_kubelet_does(rig: dict[str, Any]) -> None:
    # 'stale' is the more specific key (host/private) and is refused; 'regcred' (host) is accepted.
    answer = decide(rig, pod(rig["image"], pull_secrets=("stale", "regcred")), "team-a")
    assert answer["allowed"] is True, answer
    answer = decide(rig, pod(rig["image"], pull_secrets=("stale",)), "team-a")
    assert answer["allowed"] is False and "access denied by" in answer["status"]["message"]


def test_workload_templates_use_their_pod_template_fields(rig: dict[str, Any]) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"template": {"spec": pod(rig["image"], pull_secrets=("regcred",))["spec"]}}}
    assert decide(rig, deployment, "team-a", kind="Deployment")["allowed"] is True


def test_no_namespace_borrows_anothers_success_from_the_cache(rig: dict[str, Any]) -> None:
    # team-a verifies the pinned digest and caches the success ...
    assert decide(rig, pod(rig["pinned"], pull_secrets=("regcred",)), "team-a")["allowed"] is True
    # ... team-b, whose secret the registry refuses, and a Pod with no secret at all, are not admitted by it.
    answer = decide(rig, pod(rig["pinned"], pull_secrets=("regcred",)), "team-b")
    assert answer["allowed"] is False and "access denied by" in answer["status"]["message"]
    answer = decide(rig, pod(rig["pinned"]), "team-b")
    assert answer["allowed"] is False and "requires credentials" in answer["status"]["message"]
    # team-a's second request is a cache hit.
    served: Served = rig["served"]
    hits = served.metric("imgseal_cache_hits_total")
    assert decide(rig, pod(rig["pinned"], pull_secrets=("regcred",)), "team-a")["allowed"] is True
    assert served.metric("imgseal_cache_hits_total") == hits + 1


def test_secret_of_another_namespace_is_not_used(rig: dict[str, Any]) -> None:
    answer = decide(rig, pod(rig["image"], pull_secrets=("robot",)), "team-a")  # robot exists only in team-c
    assert answer["allowed"] is False
    assert "secret team-a/robot not found (404" in answer["status"]["message"]


def test_forbidden_api_answer_is_a_clear_denial(rig: dict[str, Any]) -> None:
    api: KubeAPI = rig["api"]
    before = api.total
    answer = decide(rig, pod(rig["image"], pull_secrets=("regcred",)), "team-d")  # no grant for team-d
    assert answer["allowed"] is False
    assert "may not get it (403: serviceaccounts \"default\" is forbidden" in answer["status"]["message"]
    assert api.total == before + 1  # asked once for the whole Pod, not once per image


def test_unreadable_pull_secrets_follow_on_error(rig: dict[str, Any]) -> None:
    answer = decide(rig, pod(f"{rig['host']}/lenient/app:v1", pull_secrets=("regcred",)), "team-d")
    assert answer["allowed"] is True
    assert any("403" in w and "on_error: allow" in w for w in answer["warnings"]), answer


def test_pull_secrets_are_not_read_for_images_that_need_no_registry(rig: dict[str, Any]) -> None:
    api: KubeAPI = rig["api"]
    before = api.total
    answer = decide(rig, pod("unmatched.example/app:v1", pull_secrets=("regcred",)), "team-b")
    assert answer["allowed"] is False and "no policy rule matches" in answer["status"]["message"]
    assert api.total == before


def test_webhook_serve_in_cluster_reads_pull_secrets(rig: dict[str, Any], secure_registry, tmp_path: Path) -> None:
    """The CLI as a Pod runs it: in-cluster configuration from the environment and the ServiceAccount directory."""
    api: KubeAPI = rig["api"]
    directory, env = serviceaccount_dir(tmp_path / "sa", api)
    served: Served = rig["served"]
    port = free_port()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'version: 1\ndefault: deny\nrules:\n  - name: private\n    match: ["{rig["host"]}/private/*"]\n'
                      "    require:\n      signatures: {keys: [team.pub]}\n")
    (tmp_path / "team.pub").write_bytes(rig["public_key"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgseal", "webhook", "serve", "--policy", str(policy), "--tls-cert", str(served.cert),
         "--tls-key", str(served.key), "--host", "127.0.0.1", "--port", str(port), "--ca-file",
         str(secure_registry.ca_cert_path)],
        env={**os.environ, **env, "IMGSEAL_SERVICEACCOUNT_DIR": str(directory),
             "DOCKER_CONFIG": str(tmp_path / "none")}, stderr=subprocess.PIPE, text=True)
    cli = Served(f"https://127.0.0.1:{port}", served.cert, served.key, served.hook, requests.Session())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                cli.get("/healthz")
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "webhook serve did not start"
                time.sleep(0.2)
        resp = cli.post("/validate", review(pod(rig["image"], pull_secrets=("regcred",)), namespace="team-a"))
        assert resp.json()["response"]["allowed"] is True, resp.text
        assert cli.metric("imgseal_admission_requests_total", path="/validate", allowed="true") == 1
    finally:
        cli.session.close()
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    start = json.loads(stderr.splitlines()[0])
    assert start["event"] == "start" and start["pull_secrets"] == "in-cluster"
    admission = next(json.loads(line) for line in stderr.splitlines() if '"admission"' in line)
    assert admission["pullSecrets"] == ["secret team-a/regcred"]


def test_webhook_serve_refuses_a_tls_pair_that_does_not_load(tmp_path: Path, cli) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault: deny\nrules: []\n")
    cert, _ = throwaway_cert(tmp_path / "one")
    _, other_key = throwaway_cert(tmp_path / "two")
    result = cli("webhook", "serve", "--policy", str(policy), "--tls-cert", str(cert), "--tls-key", str(other_key),
                 "--port", str(free_port()), "--no-pull-secrets")
    assert result.code == 2 and result.stderr.startswith("imgseal: error: --tls-cert"), result.stderr
    assert "Traceback" not in result.stderr


def test_webhook_serve_refuses_unusable_cluster_configuration(tmp_path: Path, cli) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault: deny\nrules: []\n")
    cert, key = throwaway_cert(tmp_path / "tls")
    common = ("webhook", "serve", "--policy", str(policy), "--tls-cert", str(cert), "--tls-key", str(key),
              "--port", str(free_port()))
    result = cli(*common, "--kubeconfig", str(tmp_path / "missing"))
    assert result.code == 2 and result.stderr.startswith("imgseal: error: --kubeconfig"), result.stderr
    result = cli(*common, env={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1",
                               "IMGSEAL_SERVICEACCOUNT_DIR": str(tmp_path / "no-such-dir")})
    assert result.code == 2 and "in-cluster" in result.stderr and "Traceback" not in result.stderr, result.stderr
