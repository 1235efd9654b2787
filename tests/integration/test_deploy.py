"""deploy/: the kustomize base builds, every object validates offline against its schema, and the
pieces agree with one another and with the CLI (names, ports, paths, RBAC, webhook settings).

The build is the real one, ``kubectl kustomize`` (kubectl ≥ 1.21: kustomize v4+), or, where no
such kubectl is installed (Debian ships 1.20), tests/integration/kustomize_lite.py, checked
against kubectl wherever both exist. The Kubernetes objects are checked against the JSON
schemas kubernetes-validate ships, in strict mode (unknown fields are errors), for the oldest
and the newest Kubernetes it knows; the cert-manager objects against cert-manager's own CRD
schemas (tests/data/cert-manager).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.integration import kustomize_lite
from tests.integration.test_sign_verify import make_key
from verifier.gate.policy_file import load_policy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CERT_MANAGER = ROOT / "tests" / "data" / "cert-manager"
K8S_VERSIONS = ("1.25", "1.37")  # the oldest and the newest schema set kubernetes-validate ships
NAMESPACE = "imgseal-system"
CRD_SCHEMAS = {"Certificate": "certificates.v1.schema.json", "Issuer": "issuers.v1.schema.json"}
EXPECTED_KINDS = sorted([
    "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service", "Deployment",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Issuer", "Issuer", "Certificate",
    "Certificate", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
])
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration"}

Doc = dict[str, Any]


@functools.cache
def modern_kubectl() -> str | None:
    """kubectl with kustomize ≥ v4 (v2, inside kubectl < 1.21, namespaces cluster-scoped objects)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    proc = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r"Kustomize Version: v(\d+)", proc.stdout)
    return kubectl if found and int(found.group(1)) >= 4 else None


def kubectl_kustomize(directory: Path) -> list[Doc]:
    kubectl = modern_kubectl()
    if kubectl is None:
        pytest.skip("needs kubectl with kustomize v4 or later")
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def built() -> list[Doc]:
    """The base as ``kubectl kustomize deploy/`` builds it (or kustomize_lite, which must agree)."""
    if modern_kubectl() is None:
        return kustomize_lite.build(DEPLOY)
    return kubectl_kustomize(DEPLOY)


def canonical(docs: list[Doc]) -> list[str]:
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


REFERENCES_EXAMPLE = {
    "kustomization.yaml": "namespace: moved\nresources: [objects.yaml]\n",
    "objects.yaml": """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: x}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}
subjects:
  - {kind: ServiceAccount, name: listed, namespace: old}
  - {kind: ServiceAccount, name: unlisted, namespace: old}
  - {kind: ServiceAccount, name: bare}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: listed, namespace: old}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: old}
spec: {ports: [{port: 443}]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: v}
webhooks:
  - {name: a.example.com, clientConfig: {service: {name: svc, namespace: old}}}
  - {name: b.example.com, clientConfig: {service: {name: elsewhere, namespace: old}}}
""",
}


@pytest.mark.parametrize("example", ["deploy", "references"])
def test_the_fallback_builder_agrees_with_kubectl(example: str, tmp_path: Path) -> None:
    directory = DEPLOY
    if example == "references":
        directory = tmp_path
        for name, text in REFERENCES_EXAMPLE.items():
            (tmp_path / name).write_text(text)
    assert canonical(kustomize_lite.build(directory)) == canonical(kubectl_kustomize(directory))


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} objects"
    return found[0]


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """A JSON-schema validator from a CRD's openAPIV3Schema, strict like kubernetes-validate's
    strict mode: an object schema with properties rejects other fields (the API server would
    prune them silently, which hides a misspelt field)."""

    def strict(node: Any) -> Any:
        if isinstance(node, list):
            return [strict(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: strict(v) for k, v in node.items()}
        if out.pop("x-kubernetes-int-or-string", False):
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out

    schema = strict(yaml.safe_load((CERT_MANAGER / CRD_SCHEMAS[kind]).read_text()))
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return jsonschema.Draft202012Validator(schema)


def validate(doc: Doc, version: str) -> None:
    if doc["kind"] in CRD_SCHEMAS:
        assert doc["apiVersion"] == "cert-manager.io/v1"
        crd_validator(doc["kind"]).validate(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_base_builds_the_expected_objects(built: list[Doc]) -> None:
    assert sorted(d["kind"] for d in built) == EXPECTED_KINDS


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_offline(built: list[Doc], version: str) -> None:
    for doc in built:
        try:
            validate(doc, version)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                        f"{'.'.join(map(str, e.path))}: {e.message}")


@pytest.mark.parametrize(("kind", "path", "value"), [  # the leaf Certificate and the self-signed Issuer
    ("Deployment", ["spec", "template", "spec", "containers", 0, "securityContext", "readOnlyRootFS"], True),
    ("Deployment", ["spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"], "https"),
    ("ValidatingWebhookConfiguration", ["webhooks", 0, "sideEfects"], "None"),
    ("NetworkPolicy", ["spec", "egress", 0, "ports", 0, "protocol"], 53),
    ("Certificate", ["spec", "dnsName"], ["x.svc"]),
    ("Certificate", ["spec", "usages", 0], "server-auth"),
    ("Certificate", ["spec", "privateKey", "algorithm"], "DSA"),
    ("Issuer", ["spec", "selfsigned"], {}),
])
def test_the_validators_catch_a_misspelt_or_mistyped_field(built: list[Doc], kind: str, path: list[Any],
                                                           value: Any) -> None:
    name = {"Certificate": "imgseal-webhook", "Issuer": "imgseal-selfsigned"}.get(kind)
    doc = copy.deepcopy(one(built, kind, name))
    node: Any = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, K8S_VERSIONS[-1])


def test_every_namespaced_object_is_in_the_webhook_namespace(built: list[Doc]) -> None:
    for doc in built:
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    assert one(built, "Namespace")["metadata"]["name"] == NAMESPACE


def pod_spec(built: list[Doc]) -> Doc:
    spec: Doc = one(built, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(built: list[Doc]) -> Doc:
    containers = pod_spec(built)["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_pod_runs_unprivileged_with_bounded_resources(built: list[Doc]) -> None:
    pod = pod_spec(built)
    c = container(built)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    for section in ("requests", "limits"):
        assert set(c["resources"][section]) == {"cpu", "memory"}, section
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    ns_labels = one(built, "Namespace")["metadata"]["labels"]
    assert ns_labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_mounts_and_arguments_agree_with_each_other_and_the_cli(built: list[Doc], cli) -> None:
    c = container(built)
    pod = pod_spec(built)
    args = c["args"]
    assert args[:2] == ["webhook", "serve"]
    port = int(flag(args, "--port"))
    (https,) = c["ports"]
    assert https["containerPort"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": https["name"], "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": https["name"], "scheme": "HTTPS"}
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"

    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not any("subPath" in m for m in mounts.values()), "subPath mounts are never updated: no hot reload"

    def volume_of(path: str) -> Doc:
        (name,) = [n for n, m in mounts.items() if str(Path(path).parent) == m["mountPath"]]
        assert mounts[name]["readOnly"] is True
        v: Doc = volumes[name]
        return v

    policy_volume = volume_of(flag(args, "--policy"))
    configmap = one(built, "ConfigMap", policy_volume["configMap"]["name"])
    assert Path(flag(args, "--policy")).name in configmap["data"]
    tls_secret = volume_of(flag(args, "--tls-cert"))["secret"]["secretName"]
    assert volume_of(flag(args, "--tls-key"))["secret"]["secretName"] == tls_secret
    assert tls_secret in {cert["spec"]["secretName"] for cert in built if cert["kind"] == "Certificate"}

    # Every option the manifest passes exists in this version of the CLI.
    r = cli("webhook", "serve", "--help", env={"COLUMNS": "200"})
    assert r.code == 0, r.stderr
    for option in (a for a in args if a.startswith("--")):
        assert option in r.stdout, option
    timeout = float(flag(args, "--timeout"))
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in one(built, kind)["webhooks"]:
            assert hook["timeoutSeconds"] == timeout, "the server's own deadline is derived from --timeout"


def test_rbac_grants_get_on_secrets_and_serviceaccounts_only(built: list[Doc]) -> None:
    role = one(built, "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}]
    assert not [d for d in built if d["kind"] in ("Role", "RoleBinding")]
    binding = one(built, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    account = one(built, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    pod = pod_spec(built)
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True  # the token reads imagePullSecrets


def test_webhook_configurations_fail_closed_and_skip_system_namespaces(built: list[Doc]) -> None:
    service = one(built, "Service")
    certs = {f"{c['metadata']['namespace']}/{c['metadata']['name']}": c for c in built if c["kind"] == "Certificate"}
    paths = set()
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = one(built, kind)
        cert = certs[config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]]
        assert cert["spec"]["secretName"] == "imgseal-webhook-tls"
        for hook in config["webhooks"]:
            assert hook["failurePolicy"] == "Fail"
            assert hook["sideEffects"] == "None"
            assert 1 <= hook["timeoutSeconds"] <= 30
            assert hook["admissionReviewVersions"] == ["v1"]
            target = hook["clientConfig"]["service"]
            assert (target["name"], target["namespace"]) == (service["metadata"]["name"], NAMESPACE)
            assert target["port"] in [p["port"] for p in service["spec"]["ports"]]
            assert f"{target['name']}.{target['namespace']}.svc" in cert["spec"]["dnsNames"]
            paths.add(target["path"])
            excluded = [e for e in hook["namespaceSelector"]["matchExpressions"]
                        if e["key"] == "kubernetes.io/metadata.name"]
            assert excluded and excluded[0]["operator"] == "NotIn"
            assert {"kube-system", NAMESPACE} <= set(excluded[0]["values"])
            resources = {r for rule in hook["rules"] for r in rule["resources"]}
            assert {"pods", "deployments", "cronjobs"} <= resources
    assert paths == {"/mutate", "/validate"}


def test_service_hpa_pdb_and_network_policy_select_the_webhook_pods(built: list[Doc]) -> None:
    deployment = one(built, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    service = one(built, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] == container(built)["ports"][0]["name"]
    hpa = one(built, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(built, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be able to evict one"
    netpol = one(built, "NetworkPolicy")
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = netpol["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": container(built)["ports"][0]["containerPort"]}]
    egress = {(p["protocol"], p["port"]) for rule in netpol["spec"]["egress"] for p in rule["ports"]}
    assert egress == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)}


def test_the_shipped_policy_loads_once_its_key_is_supplied(built: list[Doc], tmp_path: Path) -> None:
    data = one(built, "ConfigMap", "imgseal-policy")["data"]
    assert "REPLACE-WITH-YOUR-PUBLIC-KEY" in data["team.pub"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    make_key(tmp_path, "team")  # overwrites team.pub with a real public key
    policy = load_policy(tmp_path / "policy.yaml")
    assert [r.name for r in policy.rules] == ["ours", "system"]
    # The namespaces the webhook configurations skip by name are skipped by the policy too.
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in one(built, kind)["webhooks"]:
            for expression in hook["namespaceSelector"]["matchExpressions"]:
                if expression["key"] == "kubernetes.io/metadata.name":
                    assert all(policy.excluded(ns) for ns in expression["values"])


def test_an_overlay_can_build_on_the_base(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: ["{os.path.relpath(DEPLOY, overlay)}"]  # kustomize refuses absolute bases
images:
  - name: registry.example.com/imgseal/imgseal
    newName: registry.internal/imgseal
    digest: sha256:{"a" * 64}
""")
    docs = kubectl_kustomize(overlay)
    assert container(docs)["image"] == f"registry.internal/imgseal@sha256:{'a' * 64}"
