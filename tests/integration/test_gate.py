"""``imgseal gate`` against the real docker-registry: allow / deny / warn / undecidable, dedup, pin, sarif, cache."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from imgseal.store import StoreFactory
from tests.integration.images import push_image
from tests.integration.test_sign_verify import ENV, make_key
from verifier.gate.cache import DiskCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.kube import collect_manifests
from verifier.gate.policy_file import load_policy
from verifier.gate.report import run_gate

pytestmark = pytest.mark.registry


def write_policy(tmp_path: Path, host: str, pub: Path, *, extra: str = "") -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
default: deny
rules:
  - name: ours
    match: ["{host}/gate/**"]
    require:
      signatures:
        keys: [{pub.name}]
  - name: audit
    match: ["{host}/audit/*"]
    mode: warn
    require:
      signatures:
        keys: [{pub.name}]
  - name: lenient
    match: ["127.0.0.1:1/**"]
    on_error: allow
    require:
      signatures:
        keys: [{pub.name}]
{extra}""")
    return policy


def deployment(*images: str, name: str = "app") -> str:
    containers = "\n".join(f"        - name: c{i}\n          image: {img}  # container {i}"
                           for i, img in enumerate(images))
    return f"""\
# the app
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  template:
    spec:
      containers:
{containers}
"""


@pytest.fixture
def signed(registry, cli, tmp_path: Path):
    priv, pub, _ = make_key(tmp_path, "team")
    good = push_image(registry.host, "gate/good", content=b"good")
    bad = push_image(registry.host, "gate/unsigned", content=b"unsigned")
    audit = push_image(registry.host, "audit/app", content=b"audit")
    r = cli("sign", f"{registry.host}/gate/good@{good.digest}", "--key", str(priv), env=ENV)
    assert r.code == 0, r.stderr
    return {"host": registry.host, "pub": pub, "good": good, "bad": bad, "audit": audit,
            "policy": write_policy(tmp_path, registry.host, pub)}


def run(cli, s, tmp_path: Path, manifest: str, *args: str):
    path = tmp_path / "deploy.yaml"
    path.write_text(manifest)
    return cli("gate", "--policy", str(s["policy"]), str(path), "--cache-dir", str(tmp_path / "cache"), *args)


def test_allowed_image_exit_0_and_json_names_digest(cli, signed, tmp_path: Path) -> None:
    r = run(cli, signed, tmp_path, deployment(f"{signed['host']}/gate/good:v1"), "-o", "json")
    assert r.code == 0, r.stderr + r.stdout
    result = json.loads(r.stdout)["results"][0]
    assert result["decision"] == "allow" and result["digest"] == str(signed["good"].digest)
    assert result["locations"][0]["line"] == 11 and result["locations"][0]["path"].endswith("/containers/0/image")


def test_unsigned_image_denied_exit_1_with_reason(cli, signed, tmp_path: Path) -> None:
    r = run(cli, signed, tmp_path, deployment(f"{signed['host']}/gate/good:v1", f"{signed['host']}/gate/unsigned:v1"),
            "-o", "json")
    assert r.code == 1
    by_image = {x["image"]: x for x in json.loads(r.stdout)["results"]}
    denied = by_image[f"{signed['host']}/gate/unsigned:v1"]
    assert denied["decision"] == "deny" and denied["reason"] == "no-signatures"
    assert "signatures:" in denied["message"] and "ours" in denied["message"]


def test_unmatched_image_denied_by_default_and_warn_mode_admits(cli, signed, tmp_path: Path) -> None:
    r = run(cli, signed, tmp_path, deployment(f"{signed['host']}/other/x:v1"), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["results"][0]["reason"] == "no-matching-rule"
    r = run(cli, signed, tmp_path, deployment(f"{signed['host']}/audit/app:v1"))
    assert r.code == 0, r.stdout
    assert r.stdout.startswith("WARN") and "warn mode" in r.stdout


def test_unreachable_registry_is_undecidable_exit_3_unless_on_error_allow(cli, signed, tmp_path: Path) -> None:
    policy = signed["policy"]
    policy.write_text(policy.read_text() + f"""\
  - name: strict-down
    match: ["127.0.0.1:9/**"]
    require:
      signatures:
        keys: [{signed['pub'].name}]
""")
    r = run(cli, signed, tmp_path, deployment("127.0.0.1:9/down/app:v1"), "-o", "json")
    assert r.code == 3, r.stdout + r.stderr
    assert json.loads(r.stdout)["results"][0]["decision"] == "error"
    r = run(cli, signed, tmp_path, deployment("127.0.0.1:1/down/app:v1"), "-o", "json")
    assert r.code == 0 and json.loads(r.stdout)["results"][0]["decision"] == "warn"


def test_image_repeated_50_times_is_verified_once(signed, tmp_path: Path) -> None:
    image = f"{signed['host']}/gate/good:v1"
    manifest = tmp_path / "many.yaml"
    manifest.write_text("---\n".join(deployment(image, image, name=f"app{i}") for i in range(25)))
    files = collect_manifests([str(manifest)])
    assert sum(len(s) for s in files[0].sites) == 50
    factory = StoreFactory()
    report = run_gate(files, Evaluator(load_policy(signed["policy"]), factory))
    assert report.exit_code == 0 and len(report.verdicts) == 1
    once = factory.request_count
    factory2 = StoreFactory()
    single = tmp_path / "one.yaml"
    single.write_text(deployment(image))
    run_gate(collect_manifests([str(single)]), Evaluator(load_policy(signed["policy"]), factory2))
    assert once == factory2.request_count  # fifty uses cost exactly what one does


def test_pin_rewrites_tags_keeps_comments_and_write_is_atomic(cli, signed, tmp_path: Path) -> None:
    host = signed["host"]
    text = deployment(f"{host}/gate/good:v1", f"{host}/gate/good@{signed['good'].digest}")
    r = run(cli, signed, tmp_path, text, "--pin")
    assert r.code == 0, r.stderr
    # ruamel keeps the comment; a value that grew past its column leaves one space before it
    assert re.search(rf"image: {re.escape(host)}/gate/good:v1@{signed['good'].digest} +# container 0", r.stdout)
    assert "# the app" in r.stdout and r.stdout.count("@sha256:") == 2  # the digest reference is untouched
    path = tmp_path / "deploy.yaml"
    os.chmod(path, 0o640)
    r = cli("gate", "--policy", str(signed["policy"]), str(path), "--pin", "--write", "--no-cache")
    assert r.code == 0 and f"gate/good:v1@{signed['good'].digest}" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_sarif_shape(cli, signed, tmp_path: Path) -> None:
    r = run(cli, signed, tmp_path, deployment(f"{signed['host']}/gate/unsigned:v1"), "-o", "sarif")
    assert r.code == 1
    sarif = json.loads(r.stdout)
    assert sarif["version"] == "2.1.0"
    run0 = sarif["runs"][0]
    assert run0["tool"]["driver"]["name"] == "imgseal"
    result = run0["results"][0]
    assert result["ruleId"] == "no-signatures" and result["level"] == "error"
    assert "gate/unsigned:v1" in result["message"]["text"]
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("deploy.yaml") and loc["region"]["startLine"] == 11
    assert {r["id"] for r in run0["tool"]["driver"]["rules"]} == {"no-signatures"}


def test_cache_hit_on_second_run_only_for_successes(cli, signed, tmp_path: Path) -> None:
    manifest = deployment(f"{signed['host']}/gate/good:v1", f"{signed['host']}/gate/unsigned:v1")
    first = json.loads(run(cli, signed, tmp_path, manifest, "-o", "json").stdout)["results"]
    assert not any(x["cached"] for x in first)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    second = {x["image"]: x for x in json.loads(run(cli, signed, tmp_path, manifest, "-o", "json").stdout)["results"]}
    assert second[f"{signed['host']}/gate/good:v1"]["cached"] is True
    assert second[f"{signed['host']}/gate/unsigned:v1"]["cached"] is False
    assert second[f"{signed['host']}/gate/unsigned:v1"]["decision"] == "deny"


def test_cache_is_keyed_by_rule_and_expires(signed, tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", ttl=3600)
    cache.record("sha256:" + "a" * 64, "rule1")
    assert cache.hit("sha256:" + "a" * 64, "rule1")
    assert not cache.hit("sha256:" + "a" * 64, "rule2")
    assert not DiskCache(tmp_path / "c", ttl=0).hit("sha256:" + "a" * 64, "rule1")


def test_cronjob_list_and_stdin(cli, signed, tmp_path: Path) -> None:
    host = signed["host"]
    manifest = f"""\
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: CronJob
  metadata: {{name: nightly}}
  spec:
    schedule: "@daily"
    jobTemplate:
      spec:
        template:
          spec:
            initContainers: [{{name: init, image: "{host}/gate/good:v1"}}]
            containers: [{{name: main, image: "{host}/gate/unsigned:v1"}}]
"""
    r = cli("gate", "--policy", str(signed["policy"]), "-", "-o", "json", "--no-cache", input=manifest)
    assert r.code == 1, r.stderr
    results = {x["image"]: x for x in json.loads(r.stdout)["results"]}
    assert results[f"{host}/gate/good:v1"]["decision"] == "allow"
    assert results[f"{host}/gate/unsigned:v1"]["locations"][0]["path"] == \
        "/items/0/spec/jobTemplate/spec/template/spec/containers/0/image"


@pytest.mark.parametrize("given", ["", "\n", "---\n", "# only a comment\n---\n"])
def test_empty_input_is_bad_input_not_a_pass(cli, signed, given: str) -> None:
    """An empty render piped in (a failed `kustomize build`) is exit 2, never "all admitted"."""
    r = cli("gate", "--policy", str(signed["policy"]), "-", "--no-cache", input=given)
    assert r.code == 2, (r.code, r.stdout, r.stderr)
    assert r.stderr.splitlines() == ["imgseal: error: no Kubernetes objects in -: nothing to check"]


def test_objects_without_images_pass(cli, signed) -> None:
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
    r = cli("gate", "--policy", str(signed["policy"]), "-", "--no-cache", input=config_map)
    assert r.code == 0, r.stderr
