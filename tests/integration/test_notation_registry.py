"""Notation signatures stored beside images on the real docker-registry, verified with a trust policy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from imgseal import attach
from imgseal.errors import VerificationError
from signer.notation import ARTIFACT_TYPE, ENVELOPE_MEDIA_TYPE, load_signing_material, sign_image_notation
from tests.integration.images import push_image, registry_store
from tests.unit.verifier.notation.pki import build_pki
from tests.unit.verifier.notation.test_envelope import IDENTITY, write_store
from verifier.notation.image import verify_notation_signatures
from verifier.notation.trust_policy import parse_trust_policy

pytestmark = pytest.mark.registry


def trust(tmp_path: Path, scope: str, level: str = "strict", identities: list[str] | None = None):
    doc = {
        "version": "1.0",
        "trustPolicies": [{
            "name": "ours", "registryScopes": [scope], "signatureVerification": {"level": level},
            "trustStores": ["ca:ours"], "trustedIdentities": identities or [IDENTITY],
        }],
    }
    store = write_store(tmp_path / "trust", "ours", build_pki("p256").root.cert)
    return parse_trust_policy(json.dumps(doc)), store


def test_sign_attach_verify_round_trip_and_attacks(registry, tmp_path: Path) -> None:
    pki = build_pki("p256")
    repo = "notation/app"
    good = push_image(registry.host, repo, tag="good", content=b"notation good")
    other = push_image(registry.host, repo, tag="other", content=b"notation other")
    store = registry_store(registry.host, repo)
    signer = load_signing_material(pki.leaf.key_pem(), pki.chain_pem())
    artifact = sign_image_notation(store, good, signer, annotations={"team": "core"})
    found = attach.discover(store, good.digest)
    assert [a.artifact_type for a in found] == [ARTIFACT_TYPE]
    manifest = found[0].manifest
    assert manifest.layers[0].media_type == ENVELOPE_MEDIA_TYPE
    leaf_der = pki.leaf.cert.public_bytes(Encoding.DER)
    assert json.loads(manifest.annotations["io.cncf.notary.x509chain.thumbprint#S256"])[0] == \
        hashlib.sha256(leaf_der).hexdigest()
    policy, trust_store = trust(tmp_path, f"{registry.host}/{repo}")
    image = store.get_manifest(good.digest)
    outcome = verify_notation_signatures(store, image, found, repository=f"{registry.host}/{repo}",
                                         trust_policy=policy, trust_store=trust_store)
    assert any(r.verified for r in outcome.results)
    assert artifact.digest == found[0].digest

    # The same envelope moved onto another image: the payload names the first image.
    envelope = store.get_blob(manifest.layers[0], max_bytes=1 << 20)
    attach.attach(store, other, artifact_type=ARTIFACT_TYPE, layers=[attach.Layer(envelope, ENVELOPE_MEDIA_TYPE)])
    other_manifest = store.get_manifest(other.digest)
    with pytest.raises(VerificationError) as info:
        verify_notation_signatures(store, other_manifest, attach.discover(store, other.digest),
                                   repository=f"{registry.host}/{repo}", trust_policy=policy,
                                   trust_store=trust_store)
    assert info.value.reason == "notation-descriptor"

    # A leaf from an untrusted CA, and a subject not among the trusted identities.
    untrusted = push_image(registry.host, repo, tag="untrusted", content=b"notation untrusted")
    impostor = load_signing_material(pki.other_leaf.key_pem(), pki.chain_pem(pki.other_leaf))
    sign_image_notation(store, untrusted, impostor)
    with pytest.raises(VerificationError) as info:
        verify_notation_signatures(store, store.get_manifest(untrusted.digest),
                                   attach.discover(store, untrusted.digest),
                                   repository=f"{registry.host}/{repo}", trust_policy=policy,
                                   trust_store=trust_store)
    assert info.value.reason == "notation-authenticity"
    strict_identity, _ = trust(tmp_path / "b", f"{registry.host}/{repo}",
                               identities=["x509.subject: C=US, ST=WA, O=imgseal-test, CN=Somebody Else"])
    with pytest.raises(VerificationError) as info:
        verify_notation_signatures(store, image, found, repository=f"{registry.host}/{repo}",
                                   trust_policy=strict_identity, trust_store=trust_store)
    assert info.value.reason == "notation-trusted-identity"


def test_no_notation_signature(registry, tmp_path: Path) -> None:
    desc = push_image(registry.host, "notation/none", content=b"unsigned")
    store = registry_store(registry.host, "notation/none")
    policy, trust_store = trust(tmp_path, f"{registry.host}/notation/none")
    with pytest.raises(VerificationError) as info:
        verify_notation_signatures(store, store.get_manifest(desc.digest), [],
                                   repository=f"{registry.host}/notation/none", trust_policy=policy,
                                   trust_store=trust_store)
    assert info.value.reason == "no-signatures"


def test_cli_sign_and_verify_notation(registry, cli, tmp_path: Path) -> None:
    pki = build_pki("p256")
    desc = push_image(registry.host, "notation/cli", content=b"notation cli")
    (tmp_path / "leaf.key").write_bytes(pki.leaf.key_pem())
    (tmp_path / "chain.pem").write_bytes(pki.chain_pem())
    ref = f"{registry.host}/notation/cli@{desc.digest}"
    r = cli("sign", "--notation", "--key", str(tmp_path / "leaf.key"), "--cert", str(tmp_path / "chain.pem"),
            "--expiry", "30d", "-a", "team=core", ref, "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["signed"][0]["format"] == "notation"
    _, trust_store = trust(tmp_path, f"{registry.host}/notation/cli")
    policy_file = tmp_path / "trustpolicy.json"
    policy_file.write_text(json.dumps({
        "version": "1.0",
        "trustPolicies": [{"name": "ours", "registryScopes": [f"{registry.host}/notation/cli"],
                           "signatureVerification": {"level": "strict"}, "trustStores": ["ca:ours"],
                           "trustedIdentities": [IDENTITY]}],
    }))
    r = cli("verify", f"{registry.host}/notation/cli:v1", "--notation", "--trust-policy", str(policy_file),
            "--trust-store", str(trust_store), "-o", "json")
    assert r.code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["digest"] == str(desc.digest) and out["level"] == "strict"
    assert {c["check"] for c in out["verified"][0]["checks"]} >= {"integrity", "authenticity", "expiry"}
    # A leaf without the codeSigning EKU is refused at signing time, with the reason.
    (tmp_path / "bad.key").write_bytes(pki.leaf_no_codesigning.key_pem())
    (tmp_path / "bad.pem").write_bytes(pki.chain_pem(pki.leaf_no_codesigning))
    r = cli("sign", "--notation", "--key", str(tmp_path / "bad.key"), "--cert", str(tmp_path / "bad.pem"), ref)
    assert r.code == 2 and "codeSigning" in r.stderr
    # Unsigned image under the same policy: exit 1.
    other = push_image(registry.host, "notation/cli", tag="other", content=b"unsigned")
    r = cli("verify", f"{registry.host}/notation/cli@{other.digest}", "--notation", "--trust-policy",
            str(policy_file), "--trust-store", str(trust_store), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-signatures"


@pytest.mark.parametrize("flags", [["--require-tlog"], ["--require-timestamp"], ["--trusted-root", "root.json"],
                                   ["--certificate-identity", "me", "--certificate-oidc-issuer", "https://x"]])
def test_verify_notation_refuses_flags_it_cannot_honour(cli, tmp_path: Path, flags: list[str]) -> None:
    # --notation --require-timestamp used to pass without checking any timestamp: a flag that
    # tightens verification must never be dropped silently. Port 1: reached only if it were.
    ref = f"127.0.0.1:1/notation/cli@sha256:{'c' * 64}"
    r = cli("verify", ref, "--notation", "--trust-policy", str(tmp_path / "p.json"), "--trust-store",
            str(tmp_path), *flags)
    lines = r.stderr.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and flags[0] in lines[0] and "--notation" in lines[0], r.stderr
