"""``kustomize build`` for the few features deploy/ uses, for machines without a modern kubectl.

Debian ships only kubectl 1.20 (kubernetes-client), whose embedded kustomize v2 still writes a
namespace into cluster-scoped objects; kubectl ≥ 1.27 embeds kustomize v5. Where that is
missing, the deploy tests build the base with this instead, and where it is present they check
that both builds give the same objects, so this stays true to kustomize. Any kustomization
field beyond the ones below is an error here: a new feature in deploy/ fails loudly rather than
being ignored.

Semantics followed (kustomize v5, api/filters/namespace and api/internal/generators):
- ``resources``: files in order, each a YAML stream; documents kept as written.
- ``namespace``: set on every namespaced object (cluster-scoped kinds are left alone). A
  reference follows the object it names when that object is one of the resources (kustomize's
  name-reference transformer): a (Cluster)RoleBinding's ServiceAccount subject, a webhook
  configuration's ``clientConfig.service``; other references are left as written.
- ``configMapGenerator`` with ``files`` (key = file name) and top-level
  ``generatorOptions.disableNameSuffixHash: true`` (hashed names are not implemented).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "CustomResourceDefinition", "PriorityClass", "ClusterIssuer",
})
FIELDS = frozenset({"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "generatorOptions"})


class UnsupportedKustomization(ValueError):
    pass


def build(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - FIELDS
    if unknown:
        raise UnsupportedKustomization(f"kustomization fields not implemented here: {sorted(unknown)}")
    namespace = spec.get("namespace")
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        if not path.is_file():
            raise UnsupportedKustomization(f"{resource}: only files are implemented here, not bases")
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    options = spec.get("generatorOptions", {})
    for generator in spec.get("configMapGenerator", []):
        if set(generator) - {"name", "files"} or not options.get("disableNameSuffixHash"):
            raise UnsupportedKustomization("configMapGenerator: only files with disableNameSuffixHash")
        data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                     "data": data})
    if namespace:
        moved = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs}
        for doc in docs:
            set_namespace(doc, namespace, moved)
    return docs


def set_namespace(doc: dict[str, Any], namespace: str, moved: set[tuple[str, str, str | None]]) -> None:
    kind = doc["kind"]
    if kind not in CLUSTER_SCOPED:
        doc["metadata"]["namespace"] = namespace
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in doc.get("subjects", []):
            if ("ServiceAccount", subject.get("name"), subject.get("namespace")) in moved:
                subject["namespace"] = namespace
    if kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in doc.get("webhooks", []):
            service = hook.get("clientConfig", {}).get("service")
            if service is not None and ("Service", service.get("name"), service.get("namespace")) in moved:
                service["namespace"] = namespace
