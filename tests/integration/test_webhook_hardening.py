"""Malformed AdmissionReviews through the real HTTPS server: a 400 or a denial, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgseal.store import StoreFactory
from keys import generate, public_pem
from tests.integration.kube_api_double import kube_api, serviceaccount_dir
from tests.integration.webhook_server import Served, pod, review, serve
from verifier.gate.admission import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, json_depth_exceeds
from verifier.gate.cache import MemoryCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy_file import load_policy
from verifier.gate.pull_secrets import KubeSecrets
from verifier.gate.webhook import Webhook

DIGEST = "sha256:" + "ab" * 32
ALLOWED = f"127.0.0.1:1/allowed/app@{DIGEST}"  # admitted by rule without any registry request


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hardening")
    (tmp / "team.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    policy = tmp / "policy.yaml"
    policy.write_text('version: 1\ndefault: deny\nrules:\n  - name: open\n    match: ["127.0.0.1:1/allowed/**"]\n'
                      '    allow: true\n  - name: signed\n    match: ["127.0.0.1:1/signed/**"]\n'
                      "    require:\n      signatures: {keys: [team.pub]}\n")
    evaluator = Evaluator(load_policy(policy), StoreFactory(), cache=MemoryCache(), resolve_tags=True)
    # Pull secrets on, so malformed imagePullSecrets / serviceAccountName shapes meet their reader too.
    with kube_api(tmp / "api") as api:
        api.grants[api.token] = {"default", "team-a"}
        api.add_service_account("default", "default", [])
        directory, env = serviceaccount_dir(tmp / "sa", api)
        secrets = KubeSecrets.in_cluster(directory, env)
        with serve(Webhook(evaluator, deadline=2.0, secrets=secrets, log=lambda *a, **k: None), tmp) as served:
            yield served


def check_answer(resp: Any, body: Any) -> dict[str, Any] | None:
    assert resp.status_code in (200, 400, 413), (resp.status_code, resp.text[:500])
    answer = resp.json()
    if resp.status_code != 200:
        assert isinstance(answer.get("error"), str)
        return None
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]
    assert isinstance(answer["response"]["allowed"], bool)
    assert len(json.dumps(answer)) < 4 * MAX_MESSAGE_BYTES
    return dict(answer["response"])


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=20)
json_values = st.recursive(scalars,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
images = st.sampled_from([ALLOWED, "nginx:1.27", "", "UPPER/case:x", "a" * 300, "reg.example/app@sha256:00"]) | \
    st.text(max_size=30) | json_values
containers = st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)}, optional={"image": images}), max_size=4)
pod_specs = st.fixed_dictionaries({}, optional={"containers": containers | json_values,
                                                "initContainers": containers, "imagePullSecrets": json_values,
                                                "serviceAccountName": json_values})
objects = st.one_of(
    st.none(), json_values,
    st.builds(lambda spec: {"kind": "Pod", "metadata": {"name": "p"}, "spec": spec}, pod_specs),
    st.builds(lambda spec, kind: {"kind": kind, "spec": {"template": {"spec": spec}}}, pod_specs,
              st.sampled_from(["Deployment", "StatefulSet", "Job", "DaemonSet"])),
    st.builds(lambda items: {"kind": "List", "items": items}, st.lists(json_values, max_size=3)),
)
requests_ = st.fixed_dictionaries({"uid": st.text(max_size=40) | json_values}, optional={
    "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH", ""]) | json_values,
    "object": objects, "namespace": st.sampled_from(["default", "team-a", ""]) | json_values,
    "dryRun": json_values, "kind": json_values, "name": json_values})
reviews = st.one_of(
    st.builds(lambda r: {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r}, requests_),
    st.fixed_dictionaries({}, optional={"kind": st.sampled_from(["AdmissionReview", "Pod"]), "request": json_values}),
    json_values,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=reviews, path=st.sampled_from(["/validate", "/mutate"]))
def test_any_review_shape_is_answered_or_refused_never_500(hook: Served, body: Any, path: str) -> None:
    response = check_answer(hook.post(path, body), body)
    if response is None:
        return
    request = body["request"]
    operation, obj = request.get("operation"), request.get("object")
    if operation in ("CREATE", "UPDATE") and obj is None:
        assert response["allowed"] is False and "without an object" in response["status"]["message"]
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        assert response["allowed"] is False


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_create_or_update_without_object_is_denied(hook: Served, operation: str) -> None:
    body = review(None, operation=operation)
    del body["request"]["object"]
    response = check_answer(hook.post("/validate", body), body)
    assert response is not None and response["allowed"] is False


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deep_nesting_is_a_400_before_parsing(hook: Served, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    raw = (opening * 50_000 + "1" + closing * 50_000).encode()
    resp = hook.post("/validate", None, raw=raw)
    assert resp.status_code == 400 and "deeper than" in resp.json()["error"]
    inside = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u", "operation": "CREATE", "object": json.loads("[" * 200 + "]" * 200)}}
    assert hook.post("/validate", inside).status_code == 400


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert not json_depth_exceeds(json.dumps({"s": "[" * 1000, "t": '\\"[[[' * 50}).encode())
    assert not json_depth_exceeds(("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH).encode())
    assert json_depth_exceeds(("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)).encode())
    assert not json_depth_exceeds(("[]," * 5000).encode())


def test_three_thousand_denied_images_give_a_bounded_message(hook: Served) -> None:
    body = review(pod(*(f"unapproved.example/team/app{i}:v1" for i in range(3000))))
    response = check_answer(hook.post("/validate", body), body)
    assert response is not None and response["allowed"] is False
    message = response["status"]["message"]
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert message.startswith("imgseal: image(s) denied: unapproved.example/team/app0:v1 (/spec/containers/0/image)")
    shown = message.count("no policy rule matches")
    assert message.endswith(f"; and {3000 - shown} more denied") and shown >= 10


def test_allowed_and_plain_shapes_still_work(hook: Served) -> None:
    body = review(pod(ALLOWED))
    response = check_answer(hook.post("/validate", body), body)
    assert response is not None and response["allowed"] is True
    delete = review(None, operation="DELETE")
    response = check_answer(hook.post("/validate", delete), delete)
    assert response is not None and response["allowed"] is True


METRICS = ("imgseal_admission_requests_total", "imgseal_admission_duration_seconds_bucket",
           "imgseal_image_decisions_total", "imgseal_cache_hits_total", "imgseal_cache_misses_total",
           "imgseal_registry_errors_total", "imgseal_policy_reloads_total", "imgseal_policy_last_reload_success")


def test_metrics_count_requests_decisions_and_registry_errors(hook: Served) -> None:
    before = hook.metric("imgseal_admission_requests_total", path="/validate", allowed="false")
    body = review(pod(ALLOWED, "nginx:1.27", f"127.0.0.1:1/signed/app@{DIGEST}"))  # nothing listens on port 1
    response = check_answer(hook.post("/validate", body), body)
    assert response is not None and response["allowed"] is False
    assert hook.metric("imgseal_admission_requests_total", path="/validate", allowed="false") == before + 1
    assert hook.metric("imgseal_image_decisions_total", rule="open", decision="allow") >= 1
    assert hook.metric("imgseal_image_decisions_total", rule="(default)", decision="deny") >= 1
    assert hook.metric("imgseal_registry_errors_total", registry="127.0.0.1:1", kind="network-error") >= 1
    assert hook.metric("imgseal_admission_duration_seconds_count") >= 1
    text = hook.get("/metrics").text
    for name in METRICS:
        assert f"\n{name}" in text, name
