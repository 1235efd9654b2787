"""Attachments in the layouts other tools write, assembled from their published formats with json only.

imgseal's writers are not used, so imgseal's reader is judged against the peers' bytes:

- cosign v2 legacy signature: sigstore/cosign specs/SIGNATURE_SPEC.md (simple signing payload
  in a layer of the image tagged ``sha256-<hex>.sig``, signature in the layer annotation
  ``dev.cosignproject.cosign/signature``);
- cosign v3 bundle referrer: cosign pkg/oci/remote/write.go ``WriteAttestationNewBundleFormat``
  (an in-toto statement in DSSE in a Sigstore bundle v0.3, manifest with ``artifactType`` and
  the ``dev.sigstore.bundle.*`` annotations, pushed by digest and listed in the
  ``sha256-<hex>`` index). cosign 3.0.x wrote that index entry *without* ``artifactType`` and
  annotations (cosign #4641): ``bare_index=True``;
- actions/attest (sigstore-js packages/oci/src/image.ts, REFERENCE.md §8): the same manifest
  shape with the attestation's predicate type (SLSA provenance) and an index entry carrying
  ``artifactType`` and the annotations.

With a store on the referrers-API double, ``index=False`` pushes by digest only (the registry
indexes the ``subject``), as those tools do when the API answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from imgseal.errors import NotFoundError
from imgseal.manifest import Descriptor
from imgseal.store.base import Store

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = b"{}"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"

Signer = Callable[[bytes], bytes]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cosign_legacy_signature(store: Store, name: str, subject: Descriptor, sign: Signer,
                            optional: Mapping[str, str] | None = None) -> str:
    """Append one simple-signing layer to ``sha256-<hex>.sig`` (cosign v2); returns the tag's manifest digest."""
    payload = json.dumps({
        "critical": {"identity": {"docker-reference": name},
                     "image": {"docker-manifest-digest": str(subject.digest)},
                     "type": "cosign container image signature"},
        "optional": dict(optional) if optional else None,
    }, separators=(",", ":")).encode()
    store.put_blob(payload)
    layer = {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": len(payload),
             "digest": sha(payload), "annotations": {"dev.cosignproject.cosign/signature":
                                                     base64.b64encode(sign(payload)).decode()}}
    tag = f"sha256-{subject.digest.hex}.sig"
    layers: list[dict[str, Any]] = []
    try:
        layers = json.loads(store.get_manifest(tag).raw)["layers"]
    except NotFoundError:  # no such tag yet
        layers = []
    layers.append(layer)
    config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z", "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [entry["digest"] for entry in layers]}}).encode()
    store.put_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": sha(config)},
        "layers": layers,
    }).encode()
    store.put_manifest(manifest, OCI_MANIFEST, tag=tag)
    return sha(manifest)


def key_dsse_bundle(sign: Signer, der: bytes, statement: bytes) -> bytes:
    payload_type = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(statement), statement)
    return json.dumps({
        "mediaType": BUNDLE_TYPE,
        "verificationMaterial": {"publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}},
        "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": payload_type,
                         "signatures": [{"sig": base64.b64encode(sign(pae)).decode()}]},
    }).encode()


def bundle_referrer(store: Store, name: str, subject: Descriptor, sign: Signer, der: bytes, *,
                    predicate_type: str = COSIGN_SIGN, predicate: Mapping[str, Any] | None = None,
                    created: str = "2026-01-01T00:00:00Z", index: bool = True, bare_index: bool = False) -> str:
    """A Sigstore bundle referrer as cosign v3 (``predicate_type=COSIGN_SIGN``) or actions/attest writes it."""
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": subject.digest.hex}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate or {}),
    }).encode()
    bundle = key_dsse_bundle(sign, der, statement)
    store.put_blob(EMPTY)
    store.put_blob(bundle)
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate_type,
                   "org.opencontainers.image.created": created}
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": sha(EMPTY)},
        "layers": [{"mediaType": BUNDLE_TYPE, "size": len(bundle), "digest": sha(bundle)}],
        "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": str(subject.digest)},
        "annotations": annotations,
    }).encode()
    store.put_manifest(referrer, OCI_MANIFEST)  # by digest, as cosign and sigstore-js do
    if index:
        entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "size": len(referrer), "digest": sha(referrer)}
        if not bare_index:
            entry["artifactType"] = BUNDLE_TYPE
            entry["annotations"] = annotations
        add_index_entry(store, subject, entry)
    return sha(referrer)


def add_index_entry(store: Store, subject: Descriptor, entry: Mapping[str, Any]) -> None:
    """Read-modify-write the ``sha256-<hex>`` index as cosign and sigstore-js do."""
    tag = f"sha256-{subject.digest.hex}"
    try:
        manifests = json.loads(store.get_manifest(tag).raw)["manifests"]
    except NotFoundError:  # no index yet
        manifests = []
    manifests.append(dict(entry))
    store.put_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode(),
                       OCI_INDEX, tag=tag)
