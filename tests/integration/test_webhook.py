"""The admission webhook over real HTTPS (uvicorn, throwaway certificate) against the real registry."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from imgseal.store import StoreFactory
from tests.integration.images import push_image
from tests.integration.test_sign_verify import ENV, make_key
from tests.integration.webhook_server import serve
from verifier.gate.cache import MemoryCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy_file import load_policy
from verifier.gate.webhook import Webhook

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def hanging_registry() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a registry that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture(scope="module")
def webhook(registry, hanging_registry, tmp_path_factory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("webhook")

    priv, _pub, _ = make_key(tmp, "team")
    host = registry.host
    good = push_image(host, "hook/good", content=b"hook good")
    other = push_image(host, "hook/sidecar", content=b"hook sidecar")
    unsigned = push_image(host, "hook/unsigned", content=b"hook unsigned")
    dry = push_image(host, "hook/dry", content=b"hook dry run")
    for repo, desc in (("hook/good", good), ("hook/sidecar", other), ("hook/dry", dry)):
        subprocess.run([sys.executable, "-m", "imgseal", "sign", f"{host}/{repo}@{desc.digest}", "--key", str(priv)],
                       env={**os.environ, **ENV}, check=True, capture_output=True)
    policy = tmp / "policy.yaml"
    policy.write_text(f"""\
version: 1
default: deny
rules:
  - name: ours
    match: ["{host}/hook/*"]
    require:
      signatures: {{keys: [team.pub]}}
  - name: audit
    match: ["{host}/audit/*"]
    mode: warn
    require:
      signatures: {{keys: [team.pub]}}
  - name: slow
    match: ["{hanging_registry}/**"]
    require:
      signatures: {{keys: [team.pub]}}
""")
    evaluator = Evaluator(load_policy(policy), StoreFactory(), cache=MemoryCache(), resolve_tags=True)
    with serve(Webhook(evaluator, deadline=1.5), tmp / "server") as served:
        yield {"url": served.url, "cert": str(served.cert), "host": host, "good": good, "sidecar": other,
               "unsigned": unsigned, "dry": dry, "evaluator": evaluator}
    evaluator.close()


def review(obj: dict[str, Any], *, kind: str, dry_run: bool = False, uid: str = "705ab4f5-6393-11e8-b7cc") -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
                        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
                        "namespace": "default", "operation": "CREATE", "object": obj, "oldObject": None,
                        "dryRun": dry_run, "userInfo": {"username": "admin"}}}


def post(hook: dict[str, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(hook["url"] + path, json=body, verify=hook["cert"], timeout=15)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]
    return dict(answer["response"])


def pod(*images: str, init: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": "init", "image": init}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_health_endpoints(webhook) -> None:
    for path in ("/healthz", "/readyz"):
        assert requests.get(webhook["url"] + path, verify=webhook["cert"], timeout=5).json()["ok"] is True


def test_pod_with_signed_images_is_allowed(webhook) -> None:
    h = webhook["host"]
    resp = post(webhook, "/validate", review(pod(f"{h}/hook/good:v1", f"{h}/hook/sidecar:v1"), kind="Pod"))
    assert resp["allowed"] is True and "patch" not in resp


def test_deployment_with_unsigned_image_is_denied_naming_image_and_check(webhook) -> None:
    h = webhook["host"]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"template": pod(f"{h}/hook/good:v1", f"{h}/hook/unsigned:v1")}}
    resp = post(webhook, "/validate", review(deployment, kind="Deployment"))
    assert resp["allowed"] is False and resp["status"]["code"] == 403
    message = resp["status"]["message"]
    assert f"{h}/hook/unsigned:v1" in message and "/spec/template/spec/containers/1/image" in message
    assert "signatures: no signatures found" in message and "hook/good" not in message


def test_cronjob_mutate_pins_every_tag_with_a_correct_json_patch(webhook) -> None:
    h = webhook["host"]
    digest_ref = f"{h}/hook/sidecar@{webhook['sidecar'].digest}"
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": pod(
                f"{h}/hook/good:v1", digest_ref, f"{h}/hook/sidecar:v1", init=f"{h}/hook/good:v1")}}}}
    resp = post(webhook, "/mutate", review(cron, kind="CronJob"))
    assert resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(resp["patch"]))
    base = "/spec/jobTemplate/spec/template/spec"
    assert patch == [
        {"op": "replace", "path": f"{base}/containers/0/image", "value": f"{h}/hook/good:v1@{webhook['good'].digest}"},
        {"op": "replace", "path": f"{base}/containers/2/image",
         "value": f"{h}/hook/sidecar:v1@{webhook['sidecar'].digest}"},
        {"op": "replace", "path": f"{base}/initContainers/0/image",
         "value": f"{h}/hook/good:v1@{webhook['good'].digest}"},
    ]


def test_mutate_denies_what_validate_denies(webhook) -> None:
    h = webhook["host"]
    resp = post(webhook, "/mutate", review(pod(f"{h}/hook/unsigned:v1"), kind="Pod"))
    assert resp["allowed"] is False and "patch" not in resp


def test_warn_mode_admits_with_warnings(webhook, registry) -> None:
    push_image(registry.host, "audit/x", content=b"audit x")
    resp = post(webhook, "/validate", review(pod(f"{registry.host}/audit/x:v1"), kind="Pod"))
    assert resp["allowed"] is True
    assert any("warn mode" in w and "audit/x" in w for w in resp["warnings"])


def test_dry_run_writes_nothing_to_the_cache(webhook) -> None:
    h, digest = webhook["host"], webhook["dry"].digest
    evaluator = webhook["evaluator"]
    fingerprint = evaluator.policy.rules[0].fingerprint
    resp = post(webhook, "/validate", review(pod(f"{h}/hook/dry@{digest}"), kind="Pod", dry_run=True, uid="dry-1"))
    assert resp["allowed"] is True
    assert not evaluator.cache.hit(str(digest), fingerprint)
    resp = post(webhook, "/validate", review(pod(f"{h}/hook/dry@{digest}"), kind="Pod", uid="dry-2"))
    assert resp["allowed"] is True
    assert evaluator.cache.hit(str(digest), fingerprint)


def test_hanging_registry_denied_within_the_deadline(webhook, hanging_registry) -> None:
    started = time.monotonic()
    resp = post(webhook, "/validate", review(pod(f"{hanging_registry}/team/app:v1"), kind="Pod", uid="slow-1"))
    elapsed = time.monotonic() - started
    assert resp["allowed"] is False and "did not finish within the deadline" in resp["status"]["message"]
    assert elapsed < 4, elapsed


def test_malformed_review_is_400_not_a_crash(webhook) -> None:
    r = requests.post(webhook["url"] + "/validate", data=b"{not json", verify=webhook["cert"], timeout=5)
    assert r.status_code == 400
    r = requests.post(webhook["url"] + "/validate", json={"kind": "Other"}, verify=webhook["cert"], timeout=5)
    assert r.status_code == 400
