"""Signatures assembled in the test from cosign's published formats (not by imgseal) verify with imgseal.

The bytes here follow sigstore/cosign specs/SIGNATURE_SPEC.md (legacy simple signing on the
``sha256-<hex>.sig`` tag) and cosign v3's bundle-as-referrer layout (an in-toto statement in
DSSE in a Sigstore bundle v0.3, pushed by digest and listed in the ``sha256-<hex>`` index),
built with json and cryptography only, so imgseal's own writers are not the judge of its reader.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.integration.images import push_image, registry_store

pytestmark = pytest.mark.registry

EMPTY = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY).hexdigest()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# cosign's key-file signature schemes: ECDSA P-256 (generate-key-pair), pure Ed25519 (imported
# Ed25519 keys before cosign 2.4) and Ed25519ph (since 2.4: LoadPrivateKey's default load options).
SCHEMES = ["ecdsa-p256", "ed25519", "ed25519ph"]

Signer = Callable[[bytes], bytes]


def key_pair(tmp_path: Path, scheme: str = "ecdsa-p256") -> tuple[Signer, Path, bytes]:
    """A signing function, the public key file, and the PKIX DER public key."""
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if scheme == "ecdsa-p256":
        ec_key = key = ec.generate_private_key(ec.SECP256R1())

        def sign(message: bytes) -> bytes:
            return ec_key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        ed_key = key = ed25519.Ed25519PrivateKey.generate()

        def sign(message: bytes) -> bytes:
            if scheme == "ed25519":
                return ed_key.sign(message)
            from nacl import bindings  # libsodium's Ed25519ph, as Go's ed25519 with crypto.SHA512

            _, secret = bindings.crypto_sign_seed_keypair(ed_key.private_bytes_raw())
            state = bindings.crypto_sign_ed25519ph_state()
            bindings.crypto_sign_ed25519ph_update(state, message)
            return bytes(bindings.crypto_sign_ed25519ph_final_create(state, secret))
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sign, pub, der


def fresh_image(host: str, repo: str) -> tuple[str, Any, Any]:
    """A new image in ``repo`` (content unique to it), and a store for that repository."""
    return repo, push_image(host, repo, content=repo.encode()), registry_store(host, repo)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_legacy_simple_signing_signature_from_the_spec(registry, cli, tmp_path: Path, scheme: str) -> None:
    repo, desc, store = fresh_image(registry.host, f"cosignfmt/legacy-{scheme}")
    sign, pub, _ = key_pair(tmp_path, scheme)
    # Key order exactly as cosign writes it; "optional" carries the -a annotations.
    template = ('{"critical":{"identity":{"docker-reference":"REPO"},"image":{"docker-manifest-digest":"DIGEST"},'
                '"type":"cosign container image signature"},"optional":{"env":"prod"}}')
    payload = template.replace("REPO", f"{registry.host}/{repo}").replace("DIGEST", str(desc.digest)).encode()
    signature = base64.b64encode(sign(payload)).decode()
    store.put_blob(payload)
    config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z", "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [sha(payload)]}}).encode()
    store.put_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": sha(config)},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": len(payload),
                    "digest": sha(payload), "annotations": {"dev.cosignproject.cosign/signature": signature}}],
    }).encode()
    store.put_manifest(manifest, "application/vnd.oci.image.manifest.v1+json",
                       tag=f"sha256-{desc.digest.hex}.sig")
    r = cli("verify", f"{registry.host}/{repo}:v1", "--key", str(pub), "-a", "env=prod", "-o", "json")
    assert r.code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verified"][0]["format"] == "legacy"
    assert out["verified"][0]["payload"]["critical"]["image"]["docker-manifest-digest"] == str(desc.digest)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_v3_bundle_referrer_from_the_spec(registry, cli, tmp_path: Path, scheme: str) -> None:
    repo, desc, store = fresh_image(registry.host, f"cosignfmt/bundle-{scheme}")
    sign, pub, der = key_pair(tmp_path, scheme)
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{registry.host}/{repo}", "digest": {"sha256": desc.digest.hex}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }).encode()
    payload_type = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(statement), statement)
    sig = sign(pae)
    bundle = json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}},
        "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": payload_type,
                         "signatures": [{"sig": base64.b64encode(sig).decode()}]},
    }).encode()
    store.put_blob(EMPTY)
    store.put_blob(bundle)
    bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json"
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": bundle_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": EMPTY_DIGEST},
        "layers": [{"mediaType": bundle_type, "size": len(bundle), "digest": sha(bundle)}],
        "subject": {"mediaType": desc.media_type, "size": desc.size, "digest": str(desc.digest)},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
                        "org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }).encode()
    store.put_manifest(referrer, "application/vnd.oci.image.manifest.v1+json")  # by digest, as cosign does
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(referrer), "digest": sha(referrer),
         "artifactType": bundle_type}]}).encode()
    store.put_manifest(index, "application/vnd.oci.image.index.v1+json", tag=f"sha256-{desc.digest.hex}")
    r = cli("verify", f"{registry.host}/{repo}@{desc.digest}", "--key", str(pub), "-o", "json")
    assert r.code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verified"][0]["format"] == "bundle" and out["verified"][0]["foundVia"] == "referrers-tag-index"
    tree = json.loads(cli("tree", f"{registry.host}/{repo}@{desc.digest}", "-o", "json").stdout)
    assert tree["attachments"][0]["digest"] == sha(referrer)
