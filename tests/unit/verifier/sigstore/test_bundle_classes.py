"""Focused checks of the rules issue 12 added, beside the public corpus that exercises them end to end.

sha384/sha512 subjects hashed in one pass; v0.1 bundles with a SET and no inclusion proof;
Rekor v2 entries that record a public key while the bundle carries a certificate.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from typer.testing import CliRunner

from imgseal.cli.main import app
from imgseal.errors import InvalidInputError, VerificationError
from tests.datadir import DATA as DATA_DIR
from verifier.sigstore import tlog
from verifier.sigstore.bundle import (
    KeylessPolicy,
    artifact_digests_needed,
    hash_artifact,
    parse_bundle,
    statement_subject_matches,
    verify_bundle,
)

DATA = DATA_DIR
PUBLIC = DATA / "public-bundles"
NO_PROOF = PUBLIC / "sigstore-js" / "compat-bundleV01-dsse-no-proof.sigstore.json"
NPM_SHA512 = ("7bea9f6e7ff37f5fab0b36bf061200fff03099fd2fd696b91d04bc5e4f225eb9fd6e0cadcad54ba980f43fb352a99e88"
              "10b4e0abeb5c0ef2cf9108cd1f258b36")
BRIAN = KeylessPolicy(identity="brian@dehamer.com", issuer="https://github.com/login/oauth")


# --- class 1: subjects named by sha384 / sha512 -------------------------------------------------


def test_one_pass_hashes_every_algorithm_asked_for() -> None:
    data = b"x" * 3_000_001
    digests, kept = hash_artifact(io.BytesIO(data), ("sha256", "sha512", "sha384"), chunk_size=1 << 16)
    assert digests == {a: hashlib.new(a, data).hexdigest() for a in ("sha256", "sha384", "sha512")}
    assert kept is None
    digests, kept = hash_artifact(io.BytesIO(data), (), keep=True)
    assert digests == {} and kept == data


def test_the_statement_decides_which_digests_are_computed() -> None:
    npm = (PUBLIC / "cli" / "sigstore-js-2.1.0-bundle.json").read_bytes()
    assert artifact_digests_needed(npm) == (("sha512",), False)
    message = (DATA / "sigstore-conformance" / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()
    assert artifact_digests_needed(message) == (("sha256",), False)  # checked from the digest (prehashed)
    # Ed25519 has no prehashed form: the bytes are kept for such a signer.
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    assert artifact_digests_needed(message, [ed]) == ((), True)
    assert artifact_digests_needed(b"{not json") == ((), True)


def _statement(**digests: str) -> bytes:
    return json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "predicate": {},
                       "subject": [{"name": "a", "digest": digests}]}).encode()


def test_a_subject_matches_on_a_shared_algorithm_and_no_disagreeing_one() -> None:
    a256, a512 = hashlib.sha256(b"a").hexdigest(), hashlib.sha512(b"a").hexdigest()
    assert statement_subject_matches(_statement(sha512=a512), {"sha512": a512})
    assert statement_subject_matches(_statement(sha512=a512.upper()), {"sha512": a512})
    assert statement_subject_matches(_statement(sha256=a256, sha512=a512), {"sha256": a256, "sha512": a512})
    assert not statement_subject_matches(_statement(sha512=a512), {"sha256": a256})  # nothing shared
    # One agreeing and one disagreeing algorithm is another artifact (or a forged subject).
    other512 = hashlib.sha512(b"b").hexdigest()
    assert not statement_subject_matches(_statement(sha256=a256, sha512=other512), {"sha256": a256, "sha512": a512})


# --- class 2: bundle v0.1 with an inclusion promise and no proof ---------------------------------


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(NO_PROOF.read_bytes())
    return doc


def test_v01_promise_without_proof_verifies() -> None:
    result = verify_bundle(NO_PROOF.read_bytes(), policy=BRIAN)
    assert result.tlog_entries == 1 and result.payload is not None
    assert statement_subject_matches(result.payload, {"sha512": NPM_SHA512})


def test_v01_promise_must_verify_when_it_is_the_only_evidence() -> None:
    doc = _doc()
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    sig = bytearray(base64.b64decode(entry["inclusionPromise"]["signedEntryTimestamp"]))
    sig[-1] ^= 1
    entry["inclusionPromise"]["signedEntryTimestamp"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(VerificationError) as info:
        verify_bundle(json.dumps(doc).encode(), policy=BRIAN)
    assert info.value.reason == "tlog-set"


@pytest.mark.parametrize("media_type", ["application/vnd.dev.sigstore.bundle+json;version=0.2",
                                        "application/vnd.dev.sigstore.bundle.v0.3+json"])
def test_later_versions_still_require_the_proof(media_type: str) -> None:
    doc = _doc()
    doc["mediaType"] = media_type
    with pytest.raises(InvalidInputError, match="inclusionProof: field required"):
        parse_bundle(doc)


def test_v01_entry_needs_a_proof_or_a_promise() -> None:
    doc = _doc()
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    with pytest.raises(InvalidInputError, match="inclusion proof or an inclusion promise"):
        parse_bundle(doc)


# --- class 5: Rekor v2 hashedrekord entries and the verification material they record ---------


def _v2_body(verifier: dict[str, Any], signature: bytes, digest: bytes, details: str) -> bytes:
    return json.dumps({"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": {"hashedRekordV002": {
        "data": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
        "signature": {"content": base64.b64encode(signature).decode(),
                      "verifier": {**verifier, "keyDetails": details}}}}}).encode()


def _rekor2_cert() -> x509.Certificate:
    doc = json.loads((DATA / "sigstore-conformance" / "rekor2-happy-path" / "bundle.sigstore.json").read_bytes())
    return x509.load_der_x509_certificate(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))


def test_certificate_bundle_entry_must_record_the_certificate() -> None:
    cert = _rekor2_cert()
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signer = tlog.Signer(key, cert)
    content = tlog.MessageContent(b"sig", "sha256", hashlib.sha256(b"a").digest())
    der_cert = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    spki = base64.b64encode(tlog.spki_der(key)).decode()
    details = signer.key_details()
    tlog.check_entry_body(_v2_body({"x509Certificate": {"rawBytes": der_cert}}, b"sig", content.digest, details),
                          "hashedrekord", "0.0.2", signer, content)
    # The certificate's own key instead of the certificate: refused (sigstore-go, sigstore-python).
    with pytest.raises(VerificationError, match=r"records a public key \(the certificate's key\)"):
        tlog.check_entry_body(_v2_body({"publicKey": {"rawBytes": spki}}, b"sig", content.digest, details),
                              "hashedrekord", "0.0.2", signer, content)
    other = base64.b64encode(tlog.spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())).decode()
    with pytest.raises(VerificationError, match=r"records a public key \(a different key\)"):
        tlog.check_entry_body(_v2_body({"publicKey": {"rawBytes": other}}, b"sig", content.digest, details),
                              "hashedrekord", "0.0.2", signer, content)


def test_public_key_bundle_entry_must_record_the_key() -> None:
    cert = _rekor2_cert()
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signer = tlog.Signer(key)
    content = tlog.MessageContent(b"sig", "sha256", hashlib.sha256(b"a").digest())
    spki = base64.b64encode(tlog.spki_der(key)).decode()
    tlog.check_entry_body(_v2_body({"publicKey": {"rawBytes": spki}}, b"sig", content.digest, signer.key_details()),
                          "hashedrekord", "0.0.2", signer, content)
    der_cert = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    body = _v2_body({"x509Certificate": {"rawBytes": der_cert}}, b"sig", content.digest, signer.key_details())
    with pytest.raises(VerificationError, match="signing key/certificate differs"):
        tlog.check_entry_body(body, "hashedrekord", "0.0.2", signer, content)


def test_an_omitted_log_index_is_zero_not_malformed() -> None:
    """proto3 JSON leaves out a scalar equal to its default: sigstore-js writes no logIndex 0."""
    entry = json.loads((PUBLIC / "cli" / "sigstore-js-2.1.0-bundle.json").read_bytes())
    proof_entry = entry["verificationMaterial"]["tlogEntries"][0]
    del proof_entry["inclusionProof"]["logIndex"]
    del proof_entry["logIndex"]
    parsed = parse_bundle(entry).tlog_entries[0]
    assert (parsed.log_index, parsed.proof_log_index) == (0, 0)
    # The index is real, so the proof now fails where it should: at the Merkle path, not the parser.
    with pytest.raises(VerificationError) as info:
        verify_bundle(json.dumps(entry).encode(), policy=KeylessPolicy(
            identity="https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main",
            issuer="https://token.actions.githubusercontent.com"),
            trusted_root=PUBLIC / "cli" / "trusted_root.json")
    assert info.value.reason in ("tlog-set", "inclusion-proof")


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_cli_message_bundle_from_a_file_with_either_key_kind(kind: str, tmp_path: Path) -> None:
    """ECDSA is checked from the streamed digest, Ed25519 from the bytes; both from one read of the file."""
    artifact = b"artifact bytes\n" * 1000
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
        sig = key.sign(artifact, ec.ECDSA(hashes.SHA256()))
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        sig = key.sign(artifact)
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
              "verificationMaterial": {"publicKey": {"hint": "local"}},
              "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(
                  hashlib.sha256(artifact).digest()).decode()}, "signature": base64.b64encode(sig).decode()}}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    (tmp_path / "key.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "a").write_bytes(artifact)
    (tmp_path / "other").write_bytes(artifact + b"!")
    base = ["verify-bundle", "--bundle", str(tmp_path / "b.json"), "--key", str(tmp_path / "key.pub")]
    runner = CliRunner()
    # No log entry: the root lists logs, so it must be lowered explicitly.
    assert runner.invoke(app, [*base, str(tmp_path / "a")]).exit_code == 1
    ok = runner.invoke(app, [*base, "--tlog-threshold", "0", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.stderr
    assert runner.invoke(app, [*base, "--tlog-threshold", "0", str(tmp_path / "other")]).exit_code == 1
