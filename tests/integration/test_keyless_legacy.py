"""Keyless signing and verification in cosign's legacy ``.sig`` format, against the offline Sigstore rig.

``imgseal sign --keyless --format legacy`` appends a simple-signing layer with cosign's
certificate / chain / Rekor bundle / RFC 3161 annotations to ``sha256-<hex>.sig``;
``imgseal verify --certificate-identity …`` must accept it offline from the SET alone and
reject a wrong identity, a layer moved onto another image, and a tampered SET.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

import pytest
from cryptography import x509

from imgseal import attach
from imgseal.digest import Digest
from imgseal.manifest import Descriptor
from imgseal.payloads import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    parse_simple_signing,
)
from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import DEFAULT_ISSUER, SigstoreRig

ALICE = "alice@example.com"
NO_AMBIENT = {"SIGSTORE_ID_TOKEN": "", "GITHUB_ACTIONS": "", "GITLAB_CI": "", "BUILDKITE": "", "CIRCLECI": "",
              "ACTIONS_ID_TOKEN_REQUEST_URL": "", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ""}
RFC3161_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"


@dataclass(frozen=True)
class LegacySigned:
    host: str
    repo: str
    digest: Digest
    layer: Descriptor
    payload: bytes

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}@{self.digest}"


def verify_keyless(cli, rig: SigstoreRig, ref: str, identity: str = ALICE):  # type: ignore[no-untyped-def]
    return cli("verify", ref, "--certificate-identity", identity, "--certificate-oidc-issuer", DEFAULT_ISSUER,
               "--trusted-root", str(rig.trusted_root_path), "-o", "json")


def sig_layers(host: str, repo: str, digest: Digest) -> list[Descriptor]:
    store = registry_store(host, repo)
    manifest = store.get_manifest(attach.legacy_tag(digest, "sig"))
    return [layer for layer in manifest.layers if layer.media_type == attach.SIMPLESIGNING]


def append_layer(host: str, repo: str, digest: Digest, payload: bytes, annotations: dict[str, str]) -> None:
    store = registry_store(host, repo)
    attach.attach_legacy(store, digest, suffix="sig", layer=attach.Layer(payload, attach.SIMPLESIGNING, annotations))


@pytest.fixture(scope="module")
def signed(registry, sigstore_rig: SigstoreRig, tmp_path_factory: pytest.TempPathFactory) -> LegacySigned:
    import subprocess
    import sys

    repo = "keyless-legacy/app"
    desc = push_image(registry.host, repo, content=b"keyless legacy app")
    ref = f"{registry.host}/{repo}@{desc.digest}"
    proc = subprocess.run([sys.executable, "-m", "imgseal", "sign", ref, "--keyless", "--format", "legacy",
                           "--trust-config", str(sigstore_rig.trust_config_path), "--identity-token",
                           sigstore_rig.mint_token(ALICE), "-a", "team=core", "-o", "json"],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=tmp_path_factory.mktemp("sign"), env={**os.environ, **NO_AMBIENT})
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["signed"]
    assert result["format"] == "legacy" and result["reference"] == ref
    (layer,) = sig_layers(registry.host, repo, desc.digest)
    payload = registry_store(registry.host, repo).get_blob(layer, max_bytes=1 << 20)
    return LegacySigned(registry.host, repo, desc.digest, layer, payload)


def test_layer_carries_cosign_annotations(signed: LegacySigned, sigstore_rig: SigstoreRig) -> None:
    parsed = parse_simple_signing(signed.payload)
    assert parsed.digest == signed.digest and parsed.optional == {"team": "core"}
    assert parsed.docker_reference == f"{signed.host}/{signed.repo}"
    ann = signed.layer.annotations
    base64.b64decode(ann[SIGNATURE_ANNOTATION], validate=True)
    leaf = x509.load_pem_x509_certificate(ann[CERTIFICATE_ANNOTATION].encode())
    chain = x509.load_pem_x509_certificates(ann[CHAIN_ANNOTATION].encode())
    # The chain runs from the leaf's issuer to a self-signed root of the rig's trusted root.
    assert chain and chain[0].subject == leaf.issuer and chain[-1].subject == chain[-1].issuer
    rekor = json.loads(ann[REKOR_BUNDLE_ANNOTATION])
    assert list(rekor) == ["SignedEntryTimestamp", "Payload"]
    assert list(rekor["Payload"]) == ["body", "integratedTime", "logIndex", "logID"]
    body = json.loads(base64.b64decode(rekor["Payload"]["body"]))
    assert (body["kind"], body["apiVersion"]) == ("hashedrekord", "0.0.1")
    assert isinstance(rekor["Payload"]["integratedTime"], int) and bytes.fromhex(rekor["Payload"]["logID"])
    assert list(json.loads(ann[RFC3161_ANNOTATION])) == ["SignedRFC3161Timestamp"]


def test_legacy_round_trip(cli, sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    r = verify_keyless(cli, sigstore_rig, f"{signed.host}/{signed.repo}:v1")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    (verified,) = result["verified"]
    assert verified["format"] == "legacy" and verified["foundVia"] == attach.VIA_LEGACY_SIG
    assert verified["signer"] == f"{ALICE} (issuer {DEFAULT_ISSUER})"
    assert verified["payload"]["critical"]["image"]["docker-manifest-digest"] == str(signed.digest)
    assert "cosign legacy signatures by 1 matching identity verified" in r.stderr


def test_wrong_identity(cli, sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    r = verify_keyless(cli, sigstore_rig, signed.ref, identity="bob@example.com")
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] == "certificate-identity"


def test_layer_moved_to_another_image(cli, sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    other = push_image(signed.host, "keyless-legacy/moved", content=b"another image")
    append_layer(signed.host, "keyless-legacy/moved", other.digest, signed.payload, dict(signed.layer.annotations))
    r = verify_keyless(cli, sigstore_rig, f"{signed.host}/keyless-legacy/moved@{other.digest}")
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] == "payload-digest-mismatch"
    assert str(signed.digest) in r.stderr


def _tampered_copy(cli, sigstore_rig: SigstoreRig, signed: LegacySigned, repo: str,  # type: ignore[no-untyped-def]
                   annotations: dict[str, str]):
    """Same image (same digest) under another repository, carrying an altered copy of the layer."""
    desc = push_image(signed.host, repo, content=b"keyless legacy app")
    assert desc.digest == signed.digest
    append_layer(signed.host, repo, signed.digest, signed.payload, annotations)
    return verify_keyless(cli, sigstore_rig, f"{signed.host}/{repo}@{signed.digest}")


def test_tampered_set(cli, sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    ann = dict(signed.layer.annotations)
    rekor = json.loads(ann[REKOR_BUNDLE_ANNOTATION])
    set_bytes = bytearray(base64.b64decode(rekor["SignedEntryTimestamp"]))
    set_bytes[-1] ^= 1
    rekor["SignedEntryTimestamp"] = base64.b64encode(bytes(set_bytes)).decode()
    ann[REKOR_BUNDLE_ANNOTATION] = json.dumps(rekor, separators=(",", ":"))
    r = _tampered_copy(cli, sigstore_rig, signed, "keyless-legacy/tampered-set", ann)
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] == "tlog-set", r.stdout


def test_integrated_time_is_signed(cli, sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    # Moving the claimed log time (to fit a certificate's validity, say) breaks the SET.
    ann = dict(signed.layer.annotations)
    rekor = json.loads(ann[REKOR_BUNDLE_ANNOTATION])
    rekor["Payload"]["integratedTime"] += 1
    ann[REKOR_BUNDLE_ANNOTATION] = json.dumps(rekor, separators=(",", ":"))
    r = _tampered_copy(cli, sigstore_rig, signed, "keyless-legacy/moved-time", ann)
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "tlog-set", r.stdout


def test_without_rekor_bundle_fails_closed(cli, sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    ann = {k: v for k, v in signed.layer.annotations.items() if k != REKOR_BUNDLE_ANNOTATION}
    r = _tampered_copy(cli, sigstore_rig, signed, "keyless-legacy/no-bundle", ann)
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "tlog-missing", r.stdout


def test_key_run_does_not_accept_certificate_layer(cli, signed: LegacySigned, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from keys import generate, public_pem

    (tmp_path / "k.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    r = cli("verify", signed.ref, "--key", str(tmp_path / "k.pub"), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-matching-signature", r.stdout



def test_annotations_check_out_independently(sigstore_rig: SigstoreRig, signed: LegacySigned) -> None:
    """Recheck signature and SET with plain cryptography calls (sigstore-python cannot: it requires an
    inclusion proof, which cosign's Rekor bundle annotation does not carry)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ann = signed.layer.annotations
    leaf = x509.load_pem_x509_certificate(ann[CERTIFICATE_ANNOTATION].encode())
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    leaf_key.verify(base64.b64decode(ann[SIGNATURE_ANNOTATION]), signed.payload, ec.ECDSA(hashes.SHA256()))
    rekor = json.loads(ann[REKOR_BUNDLE_ANNOTATION])
    root = json.loads(sigstore_rig.trusted_root_path.read_text())
    (tlog,) = [t for t in root["tlogs"] if base64.b64decode(t["logId"]["keyId"]).hex() == rekor["Payload"]["logID"]]
    log_key = serialization.load_der_public_key(base64.b64decode(tlog["publicKey"]["rawBytes"]))
    assert isinstance(log_key, ec.EllipticCurvePublicKey)
    # Rekor signs the canonical JSON of the payload (sorted keys, no spaces).
    signed_payload = json.dumps(rekor["Payload"], sort_keys=True, separators=(",", ":")).encode()
    log_key.verify(base64.b64decode(rekor["SignedEntryTimestamp"]), signed_payload, ec.ECDSA(hashes.SHA256()))
