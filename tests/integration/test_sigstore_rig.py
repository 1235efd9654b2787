"""The offline keyless Sigstore rig works end to end with sigstore-python 4.x.

sigstore-python signs against the rig (Fulcio certificate with embedded SCT, Rekor v1
entry, RFC 3161 timestamp); the bundles verify with sigstore-python's Verifier and with
sigstore-js (verify.mjs), and each of them rejects a wrong identity, a wrong issuer, a
different artifact and an entry logged after the certificate expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sigstore import dsse
from sigstore.errors import VerificationError
from sigstore.models import Bundle, TrustedRoot
from sigstore.oidc import IdentityError, IdentityToken
from sigstore.sign import SigningContext
from sigstore.verify import Verifier, policy

from tests.integration.sigstore_rig import (
    CERT_LIFETIME_S,
    DEFAULT_ISSUER,
    NodeVerifyResult,
    SigstoreRig,
    make_rig_fixture,
    node_verify,
)

pytestmark = pytest.mark.sigstore

ALICE = "alice@example.com"
ARTIFACT = b"imgseal rig artifact\n"

rig = make_rig_fixture("rig", scope="module")
# Every log entry is integrated two certificate lifetimes after its certificate was issued.
late_log_rig = make_rig_fixture("late_log_rig", scope="module", rekor_clock_offset=2 * CERT_LIFETIME_S)
# Certificates are issued already expired.
expired_cert_rig = make_rig_fixture("expired_cert_rig", scope="module", fulcio_clock_offset=-2 * CERT_LIFETIME_S)


@dataclass(frozen=True)
class Signed:
    """Bundles sigstore-python made against one rig, written to disk for verify.mjs."""

    artifact_path: Path
    artifact_bundle: Bundle
    artifact_bundle_path: Path
    subject_digest: str
    statement: bytes
    dsse_bundle: Bundle
    dsse_bundle_path: Path


def _sign(rig: SigstoreRig, workdir: Path, identity: str = ALICE) -> Signed:
    ctx = SigningContext.from_trust_config(rig.client_trust_config())
    subject_digest = hashlib.sha256(ARTIFACT).hexdigest()
    statement = (
        dsse.StatementBuilder()
        .subjects([dsse.Subject(name="registry.example/app", digest=dsse.DigestSet(root={"sha256": subject_digest}))])
        .predicate_type("https://slsa.dev/provenance/v1")
        .predicate({"buildDefinition": {"buildType": "https://imgseal.test/rig"}})
        .build()
    )
    with ctx.signer(IdentityToken(rig.mint_token(identity))) as signer:
        artifact_bundle = signer.sign_artifact(ARTIFACT)
        dsse_bundle = signer.sign_dsse(statement)
    workdir.mkdir(parents=True, exist_ok=True)
    artifact_path = workdir / "artifact.txt"
    artifact_path.write_bytes(ARTIFACT)
    artifact_bundle_path = workdir / "artifact.sigstore.json"
    artifact_bundle_path.write_text(artifact_bundle.to_json())
    dsse_bundle_path = workdir / "statement.sigstore.json"
    dsse_bundle_path.write_text(dsse_bundle.to_json())
    return Signed(
        artifact_path=artifact_path,
        artifact_bundle=artifact_bundle,
        artifact_bundle_path=artifact_bundle_path,
        subject_digest=subject_digest,
        statement=statement._contents,
        dsse_bundle=dsse_bundle,
        dsse_bundle_path=dsse_bundle_path,
    )


@pytest.fixture(scope="module")
def signed(rig: SigstoreRig, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return _sign(rig, tmp_path_factory.mktemp("signed"))


def _verifier(rig: SigstoreRig) -> Verifier:
    return Verifier(trusted_root=TrustedRoot.from_file(str(rig.trusted_root_path)))


def _identity(identity: str = ALICE, issuer: str = DEFAULT_ISSUER) -> policy.Identity:
    return policy.Identity(identity=identity, issuer=issuer)


# --- the happy path, judged by both implementations ---------------------------------


def test_artifact_bundle_verifies_with_sigstore_python(rig: SigstoreRig, signed: Signed) -> None:
    _verifier(rig).verify_artifact(ARTIFACT, signed.artifact_bundle, _identity())


def test_dsse_bundle_verifies_with_sigstore_python(rig: SigstoreRig, signed: Signed) -> None:
    payload_type, payload = _verifier(rig).verify_dsse(signed.dsse_bundle, _identity())
    assert payload_type == "application/vnd.in-toto+json"
    assert payload == signed.statement
    # verify_dsse does not bind the statement to an artifact (REFERENCE §5): callers must.
    assert json.loads(payload)["subject"][0]["digest"]["sha256"] == signed.subject_digest


def test_artifact_bundle_verifies_with_sigstore_js(rig: SigstoreRig, signed: Signed) -> None:
    by_file = node_verify(
        signed.artifact_bundle_path,
        rig.trusted_root_path,
        identity=ALICE,
        issuer=DEFAULT_ISSUER,
        artifact=signed.artifact_path,
    )
    assert by_file.ok, by_file.message
    by_digest = node_verify(
        signed.artifact_bundle_path,
        rig.trusted_root_path,
        identity=ALICE,
        issuer=DEFAULT_ISSUER,
        digest=f"sha256:{signed.subject_digest}",
    )
    assert by_digest.ok, by_digest.message


def test_dsse_bundle_verifies_with_sigstore_js(rig: SigstoreRig, signed: Signed) -> None:
    result = node_verify(
        signed.dsse_bundle_path,
        rig.trusted_root_path,
        identity=ALICE,
        issuer=DEFAULT_ISSUER,
        artifact=signed.artifact_path,
    )
    assert result.ok, result.message


def test_bundles_carry_a_verifiable_rfc3161_timestamp(rig: SigstoreRig, signed: Signed) -> None:
    # sigstore-python accepts a bundle on the Rekor time alone, so check the TSA token
    # independently: it must chain to the TSA in the trusted root and cover the signature.
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    root = json.loads(rig.trusted_root_path.read_text())
    (tsa,) = root["timestampAuthorities"]
    leaf, tsa_root = (
        x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"])) for c in tsa["certChain"]["certificates"]
    )
    for bundle in (signed.artifact_bundle, signed.dsse_bundle):
        stamps = json.loads(bundle.to_json())["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
        assert len(stamps) == 1
        response = decode_timestamp_response(base64.b64decode(stamps[0]["signedTimestamp"]))
        verifier = VerifierBuilder().tsa_certificate(leaf).add_root_certificate(tsa_root).build()
        assert verifier.verify_message(response, bundle.signature)
        # Whole seconds: sigstore-js rejects DER fractions shorter than three digits.
        assert response.tst_info.gen_time.microsecond == 0
        with pytest.raises(Exception, match="Mismatch between messages"):
            verifier.verify_message(response, bundle.signature + b"x")


def test_dsse_log_entry_is_canonicalised_like_rekor(signed: Signed) -> None:
    # rekor pkg/types/dsse/v0.0.1/entry.go: only hashes and signatures are persisted.
    entry = json.loads(signed.dsse_bundle.to_json())["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    envelope = json.loads(signed.dsse_bundle.to_json())["dsseEnvelope"]
    assert body["kind"] == "dsse" and body["apiVersion"] == "0.0.1"
    assert set(body["spec"]) == {"envelopeHash", "payloadHash", "signatures"}
    assert body["spec"]["payloadHash"] == {"algorithm": "sha256", "value": hashlib.sha256(signed.statement).hexdigest()}
    cert_pem = signed.dsse_bundle.signing_certificate.public_bytes(serialization.Encoding.PEM)
    assert body["spec"]["signatures"] == [
        {"signature": envelope["signatures"][0]["sig"], "verifier": base64.b64encode(cert_pem).decode()}
    ]


def test_trust_files_are_consistent(rig: SigstoreRig) -> None:
    config = json.loads(rig.trust_config_path.read_text())
    assert config["mediaType"] == "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
    assert config["trustedRoot"] == json.loads(rig.trusted_root_path.read_text())
    assert config["signingConfig"] == json.loads(rig.signing_config_path.read_text())
    urls = [s["url"] for key in ("caUrls", "rekorTlogUrls", "tsaUrls") for s in config["signingConfig"][key]]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls)


# --- rejections, by both implementations ------------------------------------------


@pytest.mark.parametrize(
    ("identity", "issuer"),
    [
        ("bob@example.com", DEFAULT_ISSUER),
        ("alice@example.co", DEFAULT_ISSUER),  # a prefix of the real identity
        (ALICE, "https://other-issuer.example"),
    ],
    ids=["wrong-identity", "identity-prefix", "wrong-issuer"],
)
def test_wrong_identity_or_issuer_fails_in_both(rig: SigstoreRig, signed: Signed, identity: str, issuer: str) -> None:
    verifier = _verifier(rig)
    reason = "SANs do not match" if issuer == DEFAULT_ISSUER else "OIDCIssuer does not match"
    with pytest.raises(VerificationError, match=reason):
        verifier.verify_artifact(ARTIFACT, signed.artifact_bundle, _identity(identity, issuer))
    with pytest.raises(VerificationError, match=reason):
        verifier.verify_dsse(signed.dsse_bundle, _identity(identity, issuer))
    for bundle_path in (signed.artifact_bundle_path, signed.dsse_bundle_path):
        result = node_verify(
            bundle_path, rig.trusted_root_path, identity=identity, issuer=issuer, artifact=signed.artifact_path
        )
        assert result.returncode == 1, result.message
        assert result.message.startswith("FAIL: UNTRUSTED_SIGNER_ERROR"), result.message


def test_other_artifact_fails_in_both(rig: SigstoreRig, signed: Signed, tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="digest mismatch"):
        _verifier(rig).verify_artifact(ARTIFACT + b"!", signed.artifact_bundle, _identity())
    other = tmp_path / "other.txt"
    other.write_bytes(ARTIFACT + b"!")
    for bundle_path, reason in (
        (signed.artifact_bundle_path, "message digest does not match"),
        (signed.dsse_bundle_path, "no in-toto subject has digest"),
    ):
        result = node_verify(bundle_path, rig.trusted_root_path, identity=ALICE, issuer=DEFAULT_ISSUER, artifact=other)
        assert result.returncode == 1, result.message
        assert reason in result.message


def test_bundle_from_another_rig_fails_in_both(late_log_rig: SigstoreRig, signed: Signed) -> None:
    # Different keys and CA: nothing in the bundle chains to this trusted root.
    with pytest.raises(VerificationError):
        _verifier(late_log_rig).verify_artifact(ARTIFACT, signed.artifact_bundle, _identity())
    result = node_verify(
        signed.artifact_bundle_path,
        late_log_rig.trusted_root_path,
        identity=ALICE,
        issuer=DEFAULT_ISSUER,
        artifact=signed.artifact_path,
    )
    assert result.returncode == 1, result.message


def test_entry_logged_after_certificate_expiry_fails_in_both(late_log_rig: SigstoreRig, tmp_path: Path) -> None:
    signed = _sign(late_log_rig, tmp_path)
    # The TSA time is inside the certificate's validity, the Rekor time is not: every
    # verified time source must fall inside it, so both verifiers refuse the chain.
    verifier = _verifier(late_log_rig)
    with pytest.raises(VerificationError, match="not valid at validation time"):
        verifier.verify_artifact(ARTIFACT, signed.artifact_bundle, _identity())
    with pytest.raises(VerificationError, match="not valid at validation time"):
        verifier.verify_dsse(signed.dsse_bundle, _identity())
    for bundle_path in (signed.artifact_bundle_path, signed.dsse_bundle_path):
        result = node_verify(
            bundle_path,
            late_log_rig.trusted_root_path,
            identity=ALICE,
            issuer=DEFAULT_ISSUER,
            artifact=signed.artifact_path,
        )
        assert result.returncode == 1, result.message
        assert "CERTIFICATE_ERROR" in result.message


def test_sigstore_python_refuses_to_sign_with_an_expired_certificate(expired_cert_rig: SigstoreRig) -> None:
    from sigstore._internal.fulcio import ExpiredCertificate

    ctx = SigningContext.from_trust_config(expired_cert_rig.client_trust_config())
    with ctx.signer(IdentityToken(expired_cert_rig.mint_token(ALICE))) as signer, pytest.raises(ExpiredCertificate):
        signer.sign_artifact(ARTIFACT)


# --- the rig's own contract ---------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_sub_identity_becomes_the_san(rig: SigstoreRig) -> None:
    workload = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main"
    ctx = SigningContext.from_trust_config(rig.client_trust_config())
    with ctx.signer(IdentityToken(rig.mint_token(workload, issuer="https://token.actions.githubusercontent.com"))) as s:
        bundle = s.sign_artifact(ARTIFACT)
    _verifier(rig).verify_artifact(ARTIFACT, bundle, _identity(workload, "https://token.actions.githubusercontent.com"))


def test_fulcio_rejects_expired_and_foreign_tokens(rig: SigstoreRig) -> None:
    with pytest.raises(IdentityError):
        IdentityToken(rig.mint_token(ALICE, expired=True))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    body = json.dumps({"certificateSigningRequest": base64.b64encode(csr).decode()}).encode()
    url = f"{rig.url}/api/v2/signingCert"
    for token in (rig.mint_token(ALICE, expired=True), rig.mint_token(ALICE, audience="someone-else")):
        status, reply = _post(url, body, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        assert status == 401, reply
    status, reply = _post(url, body, {"Content-Type": "application/json"})
    assert status == 401, reply
    status, reply = _post(
        url, body, {"Content-Type": "application/json", "Authorization": f"Bearer {rig.mint_token(ALICE)}"}
    )
    assert status == 201, reply


def test_rekor_rejects_a_dsse_entry_whose_signature_does_not_verify(rig: SigstoreRig, signed: Signed) -> None:
    envelope = json.loads(signed.dsse_bundle.to_json())["dsseEnvelope"]
    envelope["payload"] = base64.b64encode(b'{"tampered":true}').decode()
    cert_pem = signed.dsse_bundle.signing_certificate.public_bytes(serialization.Encoding.PEM)
    entry = {
        "kind": "dsse",
        "apiVersion": "0.0.1",
        "spec": {
            "proposedContent": {"envelope": json.dumps(envelope), "verifiers": [base64.b64encode(cert_pem).decode()]}
        },
    }
    status, reply = _post(
        f"{rig.url}/api/v1/log/entries", json.dumps(entry).encode(), {"Content-Type": "application/json"}
    )
    assert status == 400
    assert "verifies" in str(reply["message"])


def test_sigstore_js_verifies_public_key_bundles(rig: SigstoreRig, tmp_path: Path) -> None:
    # Self-managed keys make bundles with a publicKey hint and no certificate; sigstore-python
    # cannot verify those (its #916, #1244), so this path rests on verify.mjs alone.
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(ARTIFACT).digest()
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "rig-test-key"}, "tlogEntries": []},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
            "signature": base64.b64encode(signature).decode(),
        },
    }
    bundle_path = tmp_path / "key.sigstore.json"
    bundle_path.write_text(json.dumps(bundle))
    artifact = tmp_path / "artifact.txt"
    artifact.write_bytes(ARTIFACT)
    good_key, other_key = tmp_path / "key.pub", tmp_path / "other.pub"
    for path, k in ((good_key, key), (other_key, ec.generate_private_key(ec.SECP256R1()))):
        path.write_bytes(
            k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    sha = f"sha256:{digest.hex()}"

    def verify_no_log(key: Path, artifact: Path | None = None, digest: str | None = None) -> NodeVerifyResult:
        return node_verify(
            bundle_path,
            rig.trusted_root_path,
            key=key,
            artifact=artifact,
            digest=digest,
            tlog_threshold=0,
            timestamp_threshold=0,
        )

    assert verify_no_log(good_key, artifact=artifact).ok
    assert verify_no_log(good_key, digest=sha).ok
    for result in (
        verify_no_log(other_key, artifact=artifact),
        verify_no_log(other_key, digest=sha),
        verify_no_log(good_key, digest="sha256:" + "0" * 64),
    ):
        assert result.returncode == 1, result.message
    # Without a log entry or timestamp the default thresholds refuse the bundle.
    assert node_verify(bundle_path, rig.trusted_root_path, key=good_key, artifact=artifact).returncode == 1
    # A public-key bundle never satisfies an identity policy.
    keyless = node_verify(bundle_path, rig.trusted_root_path, identity=ALICE, issuer=DEFAULT_ISSUER, artifact=artifact)
    assert keyless.returncode == 1


def test_verify_js_usage_errors_exit_2(rig: SigstoreRig, signed: Signed) -> None:
    result = node_verify(
        signed.artifact_bundle_path, rig.trusted_root_path, identity=ALICE, artifact=signed.artifact_path
    )
    assert result.returncode == 2, result.message
    result = node_verify(
        signed.artifact_bundle_path, rig.trusted_root_path, identity=ALICE, issuer=DEFAULT_ISSUER, digest="sha256:XYZ"
    )
    assert result.returncode == 2, result.message


def test_rig_skips_only_without_its_node_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.integration import sigstore_rig

    assert sigstore_rig.rig_missing_reason() is None
    monkeypatch.setattr(sigstore_rig, "NODE_MODULES", tmp_path / "node_modules")
    with pytest.raises(pytest.skip.Exception, match="make node-deps"):
        sigstore_rig.require_rig()
