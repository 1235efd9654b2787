"""Namespaces and exceptions end to end: ``imgseal gate`` (``--namespace``, ``metadata.namespace``)
and the admission webhook over HTTPS, against the real registry with real signatures."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgseal.store import StoreFactory
from tests.integration.images import push_image
from tests.integration.test_sign_verify import ENV, make_key
from tests.integration.test_webhook import pod, post, review
from tests.integration.webhook_server import serve
from verifier.gate.cache import MemoryCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy_file import load_policy
from verifier.gate.webhook import Webhook

pytestmark = pytest.mark.registry

TOMORROW = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()


@pytest.fixture(scope="module")
def scoped(registry, tmp_path_factory) -> dict[str, Any]:
    """A signed and an unsigned image, and a policy that decides them differently by namespace."""
    tmp = tmp_path_factory.mktemp("scoped")
    priv, _pub, _ = make_key(tmp, "team")
    host = registry.host
    signed = push_image(host, "ns/signed", content=b"ns signed")
    unsigned = push_image(host, "ns/unsigned", content=b"ns unsigned")
    subprocess.run([sys.executable, "-m", "imgseal", "sign", f"{host}/ns/signed@{signed.digest}", "--key", str(priv)],
                   env={**os.environ, **ENV}, check=True, capture_output=True)
    policy = tmp / "policy.yaml"
    policy.write_text(f"""\
version: 1
default: deny
exclude_namespaces: ["kube-system"]
rules:
  - name: ours
    match: ["{host}/ns/**"]
    require:
      signatures: {{keys: [team.pub]}}
  - name: ours-dev
    match: ["{host}/ns/**"]
    namespaces: ["dev-*"]
    allow: true
  - name: ours-prod
    match: ["{host}/ns/**"]
    namespaces: ["prod"]
    require:
      digest: true
      signatures: {{keys: [team.pub]}}
exceptions:
  - images: ["{host}/ns/unsigned"]
    namespaces: ["legacy"]
    until: {TOMORROW}
    reason: "INC-7: rebuilt and signed next sprint"
""")
    return {"host": host, "policy": policy, "signed": signed, "unsigned": unsigned, "tmp": tmp}


def deployment(namespace: str | None, *images: str, name: str = "app") -> str:
    meta = f"{{name: {name}" + (f", namespace: {namespace}" if namespace else "") + "}"
    containers = "".join(f"\n        - {{name: c{i}, image: \"{img}\"}}" for i, img in enumerate(images))
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {meta}
spec:
  template:
    spec:
      containers:{containers}
"""


def gate(cli, s: dict[str, Any], tmp_path: Path, manifest: str, *args: str):
    path = tmp_path / "deploy.yaml"
    path.write_text(manifest)
    return cli("gate", "--policy", str(s["policy"]), str(path), "--no-cache", *args)


def results(r) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(x["namespace"], x["image"]): x for x in json.loads(r.stdout)["results"]}


def test_gate_decides_each_object_in_its_own_namespace(cli, scoped, tmp_path: Path) -> None:
    h = scoped["host"]
    good, bad = f"{h}/ns/signed:v1", f"{h}/ns/unsigned:v1"
    manifest = "---\n".join([deployment("prod", good, name="a"), deployment("dev-1", good, bad, name="b"),
                             deployment("default", good, name="c"), deployment("kube-system", bad, name="d")])
    r = gate(cli, scoped, tmp_path, manifest, "-o", "json")
    assert r.code == 1, r.stderr
    got = results(r)
    assert set(got) == {("prod", good), ("dev-1", good), ("dev-1", bad), ("default", good), ("kube-system", bad)}
    assert (got["prod", good]["decision"], got["prod", good]["reason"], got["prod", good]["rule"]) == \
        ("deny", "tag-only", "ours-prod")  # prod also wants a digest
    assert (got["dev-1", bad]["decision"], got["dev-1", bad]["rule"]) == ("allow", "ours-dev")
    assert (got["default", good]["decision"], got["default", good]["rule"]) == ("allow", "ours")
    assert got["default", good]["digest"] == str(scoped["signed"].digest)
    assert got["kube-system", bad]["reason"] == "namespace-excluded"
    assert got["dev-1", bad]["locations"][0]["name"] == "b"


def test_gate_namespace_flag_covers_objects_without_one_and_conflicts_are_refused(cli, scoped,
                                                                                 tmp_path: Path) -> None:
    h = scoped["host"]
    pinned = f"{h}/ns/signed@{scoped['signed'].digest}"
    r = gate(cli, scoped, tmp_path, deployment(None, pinned), "--namespace", "prod", "-o", "json")
    assert r.code == 0, r.stdout + r.stderr
    assert results(r)["prod", pinned]["rule"] == "ours-prod"
    r = gate(cli, scoped, tmp_path, deployment(None, f"{h}/ns/signed:v1"), "--namespace", "prod")
    assert r.code == 1 and r.stdout.startswith("DENY\tprod\t"), r.stdout  # the text report shows the namespace
    r = gate(cli, scoped, tmp_path, deployment("dev-1", pinned), "--namespace", "prod")
    assert r.code == 2
    assert "is in namespace 'dev-1', not --namespace 'prod' (kubectl refuses that too)" in r.stderr
    assert "Traceback" not in r.stderr


def test_gate_without_any_namespace_is_undecided_where_the_namespace_matters(cli, scoped, tmp_path: Path) -> None:
    r = gate(cli, scoped, tmp_path, deployment(None, f"{scoped['host']}/ns/signed:v1"), "-o", "json")
    assert r.code == 3, r.stdout + r.stderr
    (result,) = results(r).values()
    assert (result["namespace"], result["decision"], result["reason"], result["rule"]) == \
        (None, "error", "namespace-unknown", None)  # no rule decided it
    assert "'ours-dev' (namespaces dev-*)" in result["message"] and "'ours-prod'" in result["message"]
    r = gate(cli, scoped, tmp_path, deployment(None, "quay.io/elsewhere/x:v1"), "-o", "json")
    assert r.code == 1 and results(r)[None, "quay.io/elsewhere/x:v1"]["reason"] == "no-matching-rule"


def test_gate_exception_admits_with_a_warning_only_in_its_namespace(cli, scoped, tmp_path: Path) -> None:
    bad = f"{scoped['host']}/ns/unsigned:v1"
    r = gate(cli, scoped, tmp_path, deployment("legacy", bad) + "---\n" + deployment("web", bad, name="w"),
             "-o", "json")
    assert r.code == 1, r.stderr
    got = results(r)
    assert (got["legacy", bad]["decision"], got["legacy", bad]["reason"]) == ("warn", "policy-exception")
    assert "INC-7" in got["legacy", bad]["exception"] and got["legacy", bad]["admitted"] is True
    assert (got["web", bad]["decision"], got["web", bad]["reason"], got["web", bad]["exception"]) == \
        ("deny", "no-signatures", None)


def test_bad_metadata_namespace_is_bad_input(cli, scoped, tmp_path: Path) -> None:
    r = gate(cli, scoped, tmp_path, deployment("Not_A_Namespace", f"{scoped['host']}/ns/signed:v1"))
    assert r.code == 2 and "metadata.namespace 'Not_A_Namespace' is not a namespace name" in r.stderr


# -- the webhook ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hook(scoped) -> Iterator[dict[str, Any]]:
    evaluator = Evaluator(load_policy(scoped["policy"]), StoreFactory(), cache=MemoryCache(), resolve_tags=True)
    with serve(Webhook(evaluator, deadline=5), scoped["tmp"] / "server") as served:
        yield {"url": served.url, "cert": str(served.cert), **scoped}
    evaluator.close()


def in_namespace(body: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    if namespace is None:
        del body["request"]["namespace"]
    else:
        body["request"]["namespace"] = namespace
    return body


def test_webhook_decides_in_the_reviews_namespace(hook) -> None:
    h = hook["host"]
    tag, bad = f"{h}/ns/signed:v1", f"{h}/ns/unsigned:v1"
    prod = post(hook, "/validate", in_namespace(review(pod(tag), kind="Pod"), "prod"))
    assert prod["allowed"] is False and "rule 'ours-prod' requires a digest" in prod["status"]["message"]
    default = post(hook, "/mutate", in_namespace(review(pod(tag), kind="Pod"), "default"))
    assert default["allowed"] is True and default["patchType"] == "JSONPatch"  # verified by 'ours', pinned
    dev = post(hook, "/validate", in_namespace(review(pod(bad), kind="Pod"), "dev-team"))
    assert dev["allowed"] is True and not dev.get("warnings")
    web = post(hook, "/validate", in_namespace(review(pod(bad), kind="Pod"), "web"))
    assert web["allowed"] is False and "denied by rule 'ours'" in web["status"]["message"]
    system = post(hook, "/validate", in_namespace(review(pod(bad), kind="Pod"), "kube-system"))
    assert system["allowed"] is True


@pytest.mark.parametrize("namespace", [None, "", "Prod", "prod/x", 7, ["prod"]])
def test_webhook_without_a_usable_namespace_denies_namespace_dependent_images(hook, namespace: Any) -> None:
    body = in_namespace(review(pod(f"{hook['host']}/ns/signed@{hook['signed'].digest}"), kind="Pod"), namespace)
    resp = post(hook, "/validate", body)
    assert resp["allowed"] is False
    assert "depends on the namespace, which is not known" in resp["status"]["message"]


def test_webhook_exception_admits_with_a_warning_and_a_log_record(hook, capfd) -> None:
    bad = f"{hook['host']}/ns/unsigned:v1"
    resp = post(hook, "/validate", in_namespace(review(pod(bad), kind="Pod", uid="exc-1"), "legacy"))
    assert resp["allowed"] is True
    (warning,) = resp["warnings"]
    assert "exception #1" in warning and "INC-7: rebuilt and signed next sprint" in warning
    records = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    (record,) = [r for r in records if r["event"] == "exception"]
    assert (record["uid"], record["namespace"], record["image"]) == ("exc-1", "legacy", bad)
    assert record["exception"].startswith("exception #1 (line ")
    # /mutate pins the excepted tag like any admitted one, so the kubelet runs what was admitted.
    resp = post(hook, "/mutate", in_namespace(review(pod(bad), kind="Pod", uid="exc-2"), "legacy"))
    assert resp["allowed"] is True and resp["warnings"]
    assert json.loads(base64.b64decode(resp["patch"])) == [
        {"op": "replace", "path": "/spec/containers/0/image", "value": f"{bad}@{hook['unsigned'].digest}"}]


def test_gate_pin_uses_each_objects_own_decision(cli, scoped, tmp_path: Path) -> None:
    # The same tag: admitted in dev-1 (pinned), denied in web (left as written, exit 1).
    bad = f"{scoped['host']}/ns/unsigned:v1"
    r = gate(cli, scoped, tmp_path, deployment("dev-1", bad, name="a") + "---\n" + deployment("web", bad, name="b"),
             "--pin")
    assert r.code == 1, r.stderr
    first, second = r.stdout.split("---\n")
    assert f'image: "{bad}@{scoped["unsigned"].digest}"' in first
    assert f'image: "{bad}"' in second and "@sha256" not in second
