"""cosign 2.x keyless attestations (legacy ``.att`` layers, Rekor ``intoto`` 0.0.2 entries) verify offline.

``cosign attest --keyless`` without the bundle format signs an in-toto statement in DSSE with a
Fulcio certificate, uploads an ``intoto`` 0.0.2 entry to Rekor, and appends the envelope to the
``sha256-<hex>.att`` image with the certificate, chain and Rekor bundle (SET) as layer
annotations. imgseal never writes this format (its keyless attestations are bundles), so
the layer is assembled here, as cosign does, from a certificate and log entry the offline
Sigstore rig issued: ``verify-attestation`` and the gate must accept it for the right identity
and refuse it for anything else.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imgseal import attach
from imgseal.digest import Digest
from imgseal.dsse import ENVELOPE_MEDIA_TYPE
from imgseal.payloads import CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, REKOR_BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION
from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import DEFAULT_ISSUER, SigstoreRig

ALICE = "alice@example.com"
SPDX = "https://spdx.dev/Document"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Attested:
    host: str
    repo: str
    digest: Digest
    envelope: bytes
    annotations: dict[str, str]

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}@{self.digest}"


def cosign_keyless_attestation(rig: SigstoreRig, host: str, repo: str, digest: Digest,
                               identity: str = ALICE) -> Attested:
    """What ``cosign attest --keyless --type spdxjson`` (cosign 2.x, no bundle format) writes."""
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext

    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": SPDX,
                            "subject": [{"name": f"{host}/{repo}", "digest": {"sha256": digest.hex}}],
                            "predicate": {"spdxVersion": "SPDX-2.3", "name": repo}}).encode()
    context = SigningContext.from_trust_config(rig.client_trust_config())
    with context.signer(IdentityToken(rig.mint_token(identity))) as signer:
        cert = signer._signing_cert()  # a Fulcio certificate for the signer's ephemeral key
        key: ec.EllipticCurvePrivateKey = signer._private_key
    pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(statement), statement)
    signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    # Rekor's intoto 0.0.2 proposal (cosign's intotoEntry → rekor's CreateFromArtifactProperties).
    proposed = {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {"envelope": {
        "payloadType": PAYLOAD_TYPE, "payload": _b64(_b64(statement).encode()),
        "signatures": [{"sig": _b64(_b64(signature).encode()), "publicKey": _b64(cert_pem)}]}}}}
    resp = requests.post(f"{rig.url}/api/v1/log/entries", json=proposed, timeout=30)
    assert resp.status_code == 201, (resp.status_code, resp.text, rig.log()[-2000:])
    (entry,) = resp.json().values()
    rekor_bundle = {"SignedEntryTimestamp": entry["verification"]["signedEntryTimestamp"],
                    "Payload": {"body": entry["body"], "integratedTime": entry["integratedTime"],
                                "logIndex": entry["logIndex"], "logID": entry["logID"]}}
    envelope = json.dumps({"payloadType": PAYLOAD_TYPE, "payload": _b64(statement),
                           "signatures": [{"keyid": "", "sig": _b64(signature)}]}).encode()
    annotations = {SIGNATURE_ANNOTATION: "", "predicateType": SPDX, CERTIFICATE_ANNOTATION: cert_pem.decode(),
                   CHAIN_ANNOTATION: "", REKOR_BUNDLE_ANNOTATION: json.dumps(rekor_bundle)}
    return Attested(host, repo, digest, envelope, annotations)


def append(att: Attested, host: str, repo: str, digest: Digest, **changes: str) -> None:
    store = registry_store(host, repo)
    annotations = {**att.annotations, **changes}
    attach.attach_legacy(store, digest, suffix="att", layer=attach.Layer(att.envelope, ENVELOPE_MEDIA_TYPE,
                                                                         annotations))


def verify(cli: Any, rig: SigstoreRig, ref: str, identity: str = ALICE, *extra: str) -> Any:
    return cli("verify-attestation", ref, "--type", "spdxjson", "--certificate-identity", identity,
               "--certificate-oidc-issuer", DEFAULT_ISSUER, "--trusted-root", str(rig.trusted_root_path), *extra,
               "-o", "json")


@pytest.fixture(scope="module")
def attested(registry, sigstore_rig: SigstoreRig) -> Attested:
    repo = "keyless-att/app"
    desc = push_image(registry.host, repo, content=b"cosign keyless attestation")
    att = cosign_keyless_attestation(sigstore_rig, registry.host, repo, desc.digest)
    append(att, registry.host, repo, desc.digest)
    return att


def test_the_log_entry_is_intoto_without_the_payload(attested: Attested) -> None:
    rekor = json.loads(attested.annotations[REKOR_BUNDLE_ANNOTATION])
    body = json.loads(base64.b64decode(rekor["Payload"]["body"]))
    assert (body["kind"], body["apiVersion"]) == ("intoto", "0.0.2")
    assert set(body["spec"]["content"]) == {"envelope", "hash", "payloadHash"}
    assert "payload" not in body["spec"]["content"]["envelope"]  # current Rekor keeps only its hash


def test_verifies_for_the_signer_identity(cli, sigstore_rig: SigstoreRig, attested: Attested) -> None:
    r = verify(cli, sigstore_rig, f"{attested.host}/{attested.repo}:v1")
    assert r.code == 0, r.stderr
    (verified,) = json.loads(r.stdout)["verified"]
    assert verified["format"] == "legacy" and verified["foundVia"] == attach.VIA_LEGACY_ATT
    assert verified["signer"] == f"{ALICE} (issuer {DEFAULT_ISSUER})"


def test_wrong_identity_or_a_key_is_refused(cli, sigstore_rig: SigstoreRig, attested: Attested,
                                            tmp_path: Path) -> None:
    r = verify(cli, sigstore_rig, attested.ref, "bob@example.com")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "certificate-identity", r.stderr
    pub = tmp_path / "k.pub"
    pub.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = cli("verify-attestation", attested.ref, "--type", "spdxjson", "--key", str(pub), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "keyless", r.stderr


def test_layer_moved_to_another_image_is_refused(cli, sigstore_rig: SigstoreRig, attested: Attested) -> None:
    other = push_image(attested.host, "keyless-att/moved", content=b"another image")
    append(attested, attested.host, "keyless-att/moved", other.digest)
    r = verify(cli, sigstore_rig, f"{attested.host}/keyless-att/moved@{other.digest}")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "payload-digest-mismatch", r.stderr


def _other_attestations_entry(rekor: dict[str, Any], attested: Attested) -> dict[str, Any]:
    return dict(json.loads(attested.annotations[REKOR_BUNDLE_ANNOTATION]))


def _later_integrated_time(rekor: dict[str, Any], attested: Attested) -> dict[str, Any]:
    rekor["Payload"]["integratedTime"] += 1
    return rekor


@pytest.mark.parametrize(("tamper", "reason"), [
    (_other_attestations_entry, "tlog-body"),  # CVE-2022-36056's shape: a valid SET and entry, for another envelope
    (_later_integrated_time, "tlog-set"),
])
def test_tampered_rekor_bundle_is_refused(cli, sigstore_rig: SigstoreRig, attested: Attested, tamper: Any,
                                          reason: str) -> None:
    repo = f"keyless-att/{reason}"
    desc = push_image(attested.host, repo, content=repo.encode())
    mine = cosign_keyless_attestation(sigstore_rig, attested.host, repo, desc.digest)
    rekor = tamper(json.loads(mine.annotations[REKOR_BUNDLE_ANNOTATION]), attested)
    append(mine, attested.host, repo, desc.digest, **{REKOR_BUNDLE_ANNOTATION: json.dumps(rekor)})
    r = verify(cli, sigstore_rig, f"{attested.host}/{repo}@{desc.digest}")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == reason, r.stderr


def test_gate_requires_the_legacy_attestation(registry, cli, sigstore_rig: SigstoreRig, attested: Attested,
                                             tmp_path: Path) -> None:
    """A gate rule with keyless signers and an spdxjson attestation: admitted with the cosign ``.att``, denied
    without it (the same image signature either way)."""
    import os

    without = push_image(registry.host, "keyless-att/unattested", content=b"signed, not attested")
    images = {"with": attested.ref, "without": f"{registry.host}/keyless-att/unattested@{without.digest}"}
    no_ambient = {"SIGSTORE_ID_TOKEN": "", "GITHUB_ACTIONS": "", "ACTIONS_ID_TOKEN_REQUEST_URL": ""}
    for ref in images.values():
        r = cli("sign", ref, "--keyless", "--trust-config", str(sigstore_rig.trust_config_path),
                "--identity-token", sigstore_rig.mint_token(ALICE), env={**os.environ, **no_ambient})
        assert r.code == 0, r.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\ntrusted_root: {sigstore_rig.trusted_root_path}\nrules:\n  - name: sbom\n"
        f'    match: ["{registry.host}/keyless-att/*"]\n    require:\n'
        f'      keyless: [{{identity: "{ALICE}", issuer: "{DEFAULT_ISSUER}"}}]\n'
        "      attestations: [{type: spdxjson}]\n")
    verdicts = {}
    for name, ref in images.items():
        pod = tmp_path / f"{name}.yaml"
        pod.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n"
                       f"    - name: c\n      image: {ref}\n")
        r = cli("gate", "--policy", str(policy), str(pod), "-o", "json", "--no-cache")
        (verdicts[name],) = json.loads(r.stdout)["results"]
        verdicts[name]["exit"] = r.code
    assert verdicts["with"]["decision"] == "allow" and verdicts["with"]["exit"] == 0, verdicts["with"]
    assert verdicts["without"]["decision"] == "deny" and verdicts["without"]["exit"] == 1, verdicts["without"]
    assert "attestation" in verdicts["without"]["message"] and SPDX in verdicts["without"]["message"]
