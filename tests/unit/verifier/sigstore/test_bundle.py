"""Focused tests of the public-key bundle path and the transparency-log checks we own."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from imgseal.digest import Digest
from imgseal.errors import InvalidInputError, UsageError, VerificationError
from tests.datadir import DATA as DATA_DIR
from verifier.sigstore import tlog
from verifier.sigstore.bundle import (
    MAX_BUNDLE_BYTES,
    KeylessPolicy,
    KeyPolicy,
    statement_subject_matches,
    verify_bundle,
)
from verifier.sigstore.trust import load_trusted_root

DATA = DATA_DIR / "sigstore-conformance"
ARTIFACT = (DATA / "a.txt").read_bytes()
HAPPY = DATA / "managed-key-happy-path"
STAGING = DATA / "managed-key-and-trusted-root"
KEY_PEM = (HAPPY / "key.pub").read_bytes()
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"


def _bundle(case: Path = HAPPY) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((case / "bundle.sigstore.json").read_bytes())
    return doc


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _flip_b64(value: str, index: int = 10) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _reason(doc: dict[str, Any], *, root: Path | None = None, **kw: Any) -> str:
    with pytest.raises(VerificationError) as info:
        verify_bundle(_dumps(doc), policy=KeyPolicy.from_keys([KEY_PEM]), artifact=ARTIFACT, trusted_root=root, **kw)
    return info.value.reason


# --- public-key bundles from the public-good instance ------------------------------------------


def test_managed_key_bundle_verifies_with_details() -> None:
    result = verify_bundle((HAPPY / "bundle.sigstore.json").read_bytes(), policy=KeyPolicy.from_keys([KEY_PEM]),
                           artifact=ARTIFACT)
    assert result.kind == "message" and result.payload is None
    assert result.tlog_entries == 1
    assert result.key_id == hashlib.sha256(
        serialization.load_pem_public_key(KEY_PEM).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    # Two verified times: the TSA timestamp and the Rekor SET (integratedTime 1766077479).
    assert len(result.signing_times) == 2
    assert int(max(result.signing_times).timestamp()) == 1766077479 or int(
        min(result.signing_times).timestamp()) == 1766077479
    assert result.artifact_digest == str(Digest.of(ARTIFACT))


def test_managed_key_bundle_verifies_by_digest_and_with_staging_root() -> None:
    verify_bundle((HAPPY / "bundle.sigstore.json").read_bytes(), policy=KeyPolicy.from_keys([KEY_PEM]),
                  artifact_digest=Digest.of(ARTIFACT))
    verify_bundle((STAGING / "bundle.sigstore.json").read_bytes(), policy=KeyPolicy.from_keys([KEY_PEM]),
                  artifact=ARTIFACT, trusted_root=STAGING / "trusted_root.json")
    # The same staging bundle against the embedded staging root (a pinned copy, no network).
    verify_bundle((STAGING / "bundle.sigstore.json").read_bytes(), policy=KeyPolicy.from_keys([KEY_PEM]),
                  artifact=ARTIFACT, staging=True)


def test_wrong_key_is_rejected() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(VerificationError) as info:
        verify_bundle(_dumps(_bundle()), policy=KeyPolicy((other,)), artifact=ARTIFACT)
    assert info.value.reason == "signature"


def test_any_of_several_keys_suffices() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    result = verify_bundle(_dumps(_bundle()), policy=KeyPolicy.from_keys([other, KEY_PEM]), artifact=ARTIFACT)
    assert result.signer.startswith("public key sha256:")


def test_wrong_artifact_is_rejected() -> None:
    with pytest.raises(VerificationError) as info:
        verify_bundle(_dumps(_bundle()), policy=KeyPolicy.from_keys([KEY_PEM]), artifact=ARTIFACT + b"x")
    assert info.value.reason == "artifact-digest"


def test_tampered_set_is_rejected() -> None:
    doc = _bundle()
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["inclusionPromise"]["signedEntryTimestamp"] = _flip_b64(entry["inclusionPromise"]["signedEntryTimestamp"])
    assert _reason(doc) == "tlog-set"


def test_tampered_integrated_time_breaks_the_set() -> None:
    doc = _bundle()
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)
    assert _reason(doc) == "tlog-set"


def test_bad_inclusion_proof_is_rejected() -> None:
    doc = _bundle()
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["hashes"][3] = _flip_b64(proof["hashes"][3], 0)
    assert _reason(doc) == "inclusion-proof"
    doc = _bundle()
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["hashes"] = proof["hashes"][:-1]
    assert _reason(doc) == "inclusion-proof"


def test_tampered_checkpoint_is_rejected() -> None:
    doc = _bundle()
    cp = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
    text, sig = cp["envelope"].rsplit(" ", 1)
    cp["envelope"] = text + " " + _flip_b64(sig.strip(), 20) + "\n"
    assert _reason(doc) == "checkpoint"
    doc = _bundle()
    cp = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
    cp["envelope"] = cp["envelope"].replace("\n649584076\n", "\n649584077\n")
    assert _reason(doc) == "checkpoint"


def test_unknown_log_and_expired_log_key_are_rejected(tmp_path: Path) -> None:
    root = json.loads((STAGING / "trusted_root.json").read_bytes())
    # The staging bundle against the production root: its log is not trusted there.
    assert _reason(_bundle(STAGING)) == "tlog-key"
    # Close the staging Rekor key's validity window before the entry's integrated time.
    for t in root["tlogs"]:
        if t["logId"]["keyId"] == "0y8wo8MtY5wrdiIFohx7sHeI5oKDpK5vQhGHI6G+pJY=":
            t["publicKey"]["validFor"]["end"] = "2025-01-01T00:00:00Z"
    path = tmp_path / "root.json"
    path.write_text(json.dumps(root))
    assert _reason(_bundle(STAGING), root=path) == "tlog-key"


def test_keyless_policy_refuses_key_bundle() -> None:
    with pytest.raises(VerificationError) as info:
        verify_bundle(_dumps(_bundle()), policy=KeylessPolicy(identity=IDENTITY, issuer=ISSUER), artifact=ARTIFACT)
    assert info.value.reason == "verification-material"


def test_missing_tlog_entry_is_required_by_default() -> None:
    doc = _bundle()
    doc["verificationMaterial"]["tlogEntries"] = []
    assert _reason(doc) == "tlog-missing"


# --- self-made public-key bundles (offline signing, --tlog-upload=false) --------------------------


def _ed25519ph(key: ed25519.Ed25519PrivateKey, message: bytes) -> bytes:
    """Ed25519ph straight from libsodium (what cosign >= 2.4 makes with an Ed25519 key file)."""
    from nacl import bindings

    _, secret = bindings.crypto_sign_seed_keypair(key.private_bytes_raw())
    state = bindings.crypto_sign_ed25519ph_state()
    bindings.crypto_sign_ed25519ph_update(state, message)
    return bytes(bindings.crypto_sign_ed25519ph_final_create(state, secret))


def _sign_with(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, message: bytes, ph: bool) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return _ed25519ph(key, message) if ph else key.sign(message)


def _local_bundle(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, *, dsse: bytes | None = None,
                  artifact: bytes = ARTIFACT, ph: bool = False) -> bytes:
    vm: dict[str, Any] = {"publicKey": {"hint": "local"}}
    doc: dict[str, Any] = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": vm}
    if dsse is not None:
        ptype = "application/vnd.in-toto+json"
        pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(dsse), dsse)
        sig = _sign_with(key, pae, ph)
        doc["dsseEnvelope"] = {"payload": base64.b64encode(dsse).decode(), "payloadType": ptype,
                               "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]}
    else:
        sig = _sign_with(key, artifact, ph)
        doc["messageSignature"] = {
            "messageDigest": {"algorithm": "SHA2_256",
                              "digest": base64.b64encode(hashlib.sha256(artifact).digest()).decode()},
            "signature": base64.b64encode(sig).decode()}
    return json.dumps(doc).encode()


def test_local_bundle_without_tlog_needs_require_tlog_false() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = _local_bundle(key)
    policy = KeyPolicy((key.public_key(),))
    with pytest.raises(VerificationError) as info:
        verify_bundle(data, policy=policy, artifact=ARTIFACT)
    assert info.value.reason == "tlog-missing"
    result = verify_bundle(data, policy=policy, artifact=ARTIFACT, require_tlog=False)
    assert result.tlog_entries == 0 and result.signing_time is None


def test_local_dsse_bundle_returns_payload_and_checks_signature() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = Digest.of(b"image manifest")
    stmt = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "predicate": {},
                       "subject": [{"name": "img", "digest": {"sha256": digest.hex}}]}).encode()
    data = _local_bundle(key, dsse=stmt)
    policy = KeyPolicy((key.public_key(),))
    result = verify_bundle(data, policy=policy, require_tlog=False, expect_dsse=True)
    assert (result.kind, result.payload, result.payload_type) == ("dsse", stmt, "application/vnd.in-toto+json")
    assert statement_subject_matches(result.payload, digest)
    assert not statement_subject_matches(result.payload, Digest.of(b"other"))
    with pytest.raises(VerificationError) as info:
        verify_bundle(data, policy=policy, require_tlog=False, expect_dsse=False)
    assert info.value.reason == "content-kind"
    doc = json.loads(data)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(stmt.replace(b"img", b"evil")).decode()
    with pytest.raises(VerificationError) as info:
        verify_bundle(_dumps(doc), policy=policy, require_tlog=False)
    assert info.value.reason == "signature"


@pytest.mark.parametrize("ph", [False, True], ids=["pure", "ed25519ph"])
def test_ed25519_message_bundle_needs_the_artifact_bytes(ph: bool) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    data = _local_bundle(key, ph=ph)
    policy = KeyPolicy((key.public_key(),))
    verify_bundle(data, policy=policy, artifact=ARTIFACT, require_tlog=False)
    with pytest.raises(VerificationError):
        verify_bundle(data, policy=policy, artifact_digest=Digest.of(ARTIFACT), require_tlog=False)
    with pytest.raises(VerificationError):
        verify_bundle(data, policy=policy, artifact=ARTIFACT + b"!", require_tlog=False)
    other = KeyPolicy((ed25519.Ed25519PrivateKey.generate().public_key(),))
    with pytest.raises(VerificationError):
        verify_bundle(data, policy=other, artifact=ARTIFACT, require_tlog=False)


@pytest.mark.parametrize("ph", [False, True], ids=["pure", "ed25519ph"])
def test_ed25519_dsse_bundle_of_either_scheme_verifies(ph: bool) -> None:
    """cosign signs DSSE with Ed25519ph since 2.4 and pure Ed25519 before: both must verify."""
    key = ed25519.Ed25519PrivateKey.generate()
    digest = Digest.of(b"image manifest")
    stmt = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "predicate": {},
                       "subject": [{"name": "img", "digest": {"sha256": digest.hex}}]}).encode()
    data = _local_bundle(key, dsse=stmt, ph=ph)
    result = verify_bundle(data, policy=KeyPolicy((key.public_key(),)), require_tlog=False, expect_dsse=True)
    assert result.payload == stmt
    doc = json.loads(data)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(stmt.replace(b"img", b"evil")).decode()
    with pytest.raises(VerificationError) as info:
        verify_bundle(_dumps(doc), policy=KeyPolicy((key.public_key(),)), require_tlog=False)
    assert info.value.reason == "signature"


# --- input bounds ---------------------------------------------------------------------------------


def test_bounds_are_checked_before_parsing() -> None:
    policy = KeyPolicy.from_keys([KEY_PEM])
    with pytest.raises(InvalidInputError) as info:
        verify_bundle(b" " * (MAX_BUNDLE_BYTES + 1), policy=policy, artifact=ARTIFACT)
    assert info.value.reason == "bundle-too-large"
    with pytest.raises(InvalidInputError) as info:
        verify_bundle(b"[" * 65 + b"]" * 65, policy=policy, artifact=ARTIFACT)
    assert info.value.reason == "bundle-too-deep"
    # Brackets inside strings do not count.
    with pytest.raises(InvalidInputError) as info:
        verify_bundle(json.dumps({"x": "[" * 100}).encode(), policy=policy, artifact=ARTIFACT)
    assert info.value.reason == "bundle-malformed"


def test_message_bundle_needs_an_artifact_and_policies_validate() -> None:
    with pytest.raises(UsageError):
        verify_bundle(_dumps(_bundle()), policy=KeyPolicy.from_keys([KEY_PEM]))
    with pytest.raises(UsageError):
        KeylessPolicy(identity=IDENTITY)
    with pytest.raises(UsageError):
        KeylessPolicy(identity_regexp="(", issuer=ISSUER)
    with pytest.raises(UsageError):
        KeyPolicy(())


# --- keyless policy on a real certificate bundle ---------------------------------------------------


V03 = (DATA / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()


@pytest.mark.parametrize(("policy", "reason"), [
    (KeylessPolicy(identity_regexp=r"https://github\.com/sigstore-conformance/.*", issuer=ISSUER), None),
    (KeylessPolicy(identity=IDENTITY, issuer_regexp=r"https://token\.actions\..*",
                   github_repository="sigstore-conformance/extremely-dangerous-public-oidc-beacon",
                   github_ref="refs/heads/main"), None),
    (KeylessPolicy(identity_regexp=r"github\.com", issuer=ISSUER), "certificate-identity"),  # full match only
    (KeylessPolicy(identity=IDENTITY, issuer="https://accounts.google.com"), "certificate-issuer"),
    (KeylessPolicy(identity=IDENTITY, issuer=ISSUER, github_repository="someone/else"), "certificate-claims"),
    (KeylessPolicy(identity=IDENTITY, issuer=ISSUER, github_ref="refs/heads/dev"), "certificate-claims"),
])
def test_keyless_policy(policy: KeylessPolicy, reason: str | None) -> None:
    if reason is None:
        result = verify_bundle(V03, policy=policy, artifact=ARTIFACT)
        assert (result.certificate_identity, result.certificate_issuer) == (IDENTITY, ISSUER)
        return
    with pytest.raises(VerificationError) as info:
        verify_bundle(V03, policy=policy, artifact=ARTIFACT)
    assert info.value.reason == reason


def test_key_policy_refuses_certificate_bundle() -> None:
    with pytest.raises(VerificationError) as info:
        verify_bundle(V03, policy=KeyPolicy.from_keys([KEY_PEM]), artifact=ARTIFACT)
    assert info.value.reason == "verification-material"


# --- RFC 6962 Merkle proofs against a reference tree ----------------------------------------------


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return tlog.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


@pytest.mark.parametrize("size", range(1, 12))
def test_inclusion_proofs_match_reference_tree(size: int) -> None:
    leaves = [b"leaf %d" % i for i in range(size)]
    root = _mth(leaves)
    for i in range(size):
        proof = _path(i, leaves)
        tlog.verify_inclusion_proof(body=leaves[i], index=i, tree_size=size, proof=proof, root=root)
        with pytest.raises(VerificationError):
            tlog.verify_inclusion_proof(body=leaves[i] + b"!", index=i, tree_size=size, proof=proof, root=root)
        if size > 1:
            with pytest.raises(VerificationError):
                tlog.verify_inclusion_proof(body=leaves[i], index=(i + 1) % size, tree_size=size, proof=proof,
                                            root=root)


def test_checkpoint_parser_rejects_malformed_notes() -> None:
    good = _bundle()["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
    assert tlog.parse_checkpoint(good).tree_size == 649584076
    for bad in (good.replace("\n\n", "\n"), good.rstrip("\n"), good.replace("649584076", "x"),
                good.replace("\u2014 ", "- ")):
        with pytest.raises(VerificationError):
            tlog.parse_checkpoint(bad)


def test_embedded_roots_load_offline() -> None:
    prod = load_trusted_root()
    assert prod.log_key(base64.b64decode("wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0=")) is not None
    assert load_trusted_root(staging=True).tlog_keys
    assert prod.fulcio_certs and prod.tsas
