"""Notary Project (notation) signing and verification: round trips, attacks, spec conformance.

Envelopes are also checked by jwcrypto, an independent JOSE implementation, and a real
envelope produced by Notation 1.0.0 (tests/data/notation) is verified with our verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk, jws
from jwcrypto.common import JWSEHeaderParameter

from imgseal.errors import InvalidInputError, KeyMaterialError, UsageError, VerificationError
from signer.notation import (
    ARTIFACT_TYPE,
    THUMBPRINT_ANNOTATION,
    load_signing_material,
    parse_duration,
    sign_descriptor,
    signature_manifest_annotations,
    thumbprint_annotation,
)
from tests.datadir import DATA as DATA_DIR
from tests.unit.verifier.notation.pki import (
    ALG_FOR_KIND,
    KEY_KINDS,
    LEAF_SUBJECT,
    NOW,
    build_pki,
    craft_envelope,
    issue,
    make_key,
)
from verifier.notation.envelope import NotationResult, NotationVerificationError, verify_notation_envelope
from verifier.notation.trust_policy import (
    TrustPolicyStatement,
    TrustStoreRef,
    load_trust_store,
    parse_distinguished_name,
    parse_trust_policy,
    select_policy,
)

DATA = DATA_DIR / "notation"
DESCRIPTOR = {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:" + "ab" * 32,
    "size": 1234,
}
SIGN_TIME = NOW - timedelta(days=1)
IDENTITY = "x509.subject: C=US, ST=WA, O=imgseal-test, CN=Signer"


def policy_doc(
    level: str = "strict",
    *,
    override: dict[str, str] | None = None,
    identities: list[str] | None = None,
    stores: list[str] | None = None,
) -> dict[str, Any]:
    verification: dict[str, Any] = {"level": level}
    if override:
        verification["override"] = override
    return {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "test",
                "registryScopes": ["registry.example.com/team/app"],
                "signatureVerification": verification,
                "trustStores": stores or ["ca:test-root"],
                "trustedIdentities": identities or [IDENTITY],
            }
        ],
    }


def make_policy(level: str = "strict", **kwargs: Any) -> TrustPolicyStatement:
    doc = parse_trust_policy(json.dumps(policy_doc(level, **kwargs)))
    return select_policy(doc, "registry.example.com/team/app")


def write_store(base: Path, name: str, *certs: x509.Certificate, store_type: str = "ca") -> Path:
    directory = base / "x509" / store_type / name
    directory.mkdir(parents=True, exist_ok=True)
    for index, cert in enumerate(certs):
        (directory / f"cert{index}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return base


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "trust", "test-root", build_pki("p256").root.cert)


def sign(kind: str = "p256", leaf: Any = None, descriptor: dict[str, Any] | None = None, **kwargs: Any) -> bytes:
    pki = build_pki(kind)
    leaf = leaf or pki.leaf
    signer = load_signing_material(leaf.key_pem(), pki.chain_pem(leaf))
    kwargs.setdefault("signing_time", SIGN_TIME)
    return sign_descriptor(signer, descriptor or DESCRIPTOR, **kwargs)


def verify(
    envelope: bytes,
    store: Path,
    policy: TrustPolicyStatement | None = None,
    descriptor: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> NotationResult:
    return verify_notation_envelope(
        envelope,
        expected_descriptor=descriptor or DESCRIPTOR,
        policy=policy or make_policy(),
        trust_store_dir=store,
        now=now,
    )


def b64url_json(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def statuses(result: NotationResult) -> dict[str, str]:
    return {c.check: c.status for c in result.checks}


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_round_trip_every_key_type(kind: str, tmp_path: Path) -> None:
    pki = build_pki(kind)
    store = write_store(tmp_path, "test-root", pki.root.cert)
    envelope = sign(kind, expiry=timedelta(days=30))
    protected = b64url_json(json.loads(envelope)["protected"])
    assert protected["alg"] == ALG_FOR_KIND[kind]
    result = verify(envelope, store)
    assert result.verified and not result.skipped
    assert statuses(result) == {
        "integrity": "passed",
        "authenticity": "passed",
        "trustedIdentity": "passed",
        "expiry": "passed",
        "authenticTimestamp": "passed",
        "revocation": "not-checked",
        "descriptor": "passed",
    }
    assert result.signer_subject is not None and "CN=Signer" in result.signer_subject
    assert result.target_artifact == DESCRIPTOR
    assert result.signing_time == SIGN_TIME.replace(microsecond=0)


@pytest.mark.parametrize("level", ["strict", "permissive", "audit"])
def test_round_trip_each_level(level: str, store: Path) -> None:
    result = verify(sign(), store, make_policy(level))
    assert result.verified and result.level == level
    assert not result.logged_failures


def test_skip_level_verifies_nothing(store: Path) -> None:
    doc = parse_trust_policy(
        json.dumps(
            {
                "version": "1.0",
                "trustPolicies": [
                    {
                        "name": "s",
                        "registryScopes": ["registry.example.com/team/app"],
                        "signatureVerification": {"level": "skip"},
                    }
                ],
            }
        )
    )
    policy = select_policy(doc, "registry.example.com/team/app")
    result = verify(b"not even json", store, policy)
    assert result.skipped and not result.verified
    assert {c.status for c in result.checks} == {"skipped"}
    assert "not verified" in result.notes[0]


def test_signing_agent_and_annotations_subset(store: Path) -> None:
    described = {**DESCRIPTOR, "annotations": {"build": "42", "team": "core"}}
    envelope = sign(descriptor=described, signing_agent="imgseal/test")
    # The caller may require a subset of the signed annotations (notation --user-metadata).
    result = verify(envelope, store, descriptor={**DESCRIPTOR, "annotations": {"build": "42"}})
    assert result.signing_agent == "imgseal/test"
    with pytest.raises(VerificationError) as info:
        verify(envelope, store, descriptor={**DESCRIPTOR, "annotations": {"build": "43"}})
    assert info.value.reason == "notation-descriptor"


# --- attacks ---------------------------------------------------------------------------


def expect_failure(reason: str, envelope: bytes, store: Path, **kwargs: Any) -> NotationVerificationError:
    with pytest.raises(NotationVerificationError) as info:
        verify(envelope, store, **kwargs)
    assert info.value.reason == reason, info.value.message
    assert isinstance(info.value, VerificationError) and info.value.exit_code == 1
    return info.value


def test_envelope_for_another_descriptor(store: Path) -> None:
    other = {**DESCRIPTOR, "digest": "sha256:" + "cd" * 32}
    err = expect_failure("notation-descriptor", sign(descriptor=other), store)
    assert "different artifact" in err.message
    expect_failure("notation-descriptor", sign(descriptor={**DESCRIPTOR, "size": 1}), store)
    expect_failure("notation-descriptor", sign(descriptor={**DESCRIPTOR, "mediaType": "x/y"}), store)


def test_leaf_from_untrusted_ca(store: Path) -> None:
    pki = build_pki("p256")
    err = expect_failure("notation-authenticity", sign(leaf=pki.other_leaf), store)
    assert "does not lead to a certificate in trust store" in err.message
    # audit only logs authenticity failures.
    result = verify(sign(leaf=pki.other_leaf), store, make_policy("audit"))
    assert statuses(result)["authenticity"] == "failed-logged" and result.verified


def test_subject_not_in_trusted_identities(store: Path) -> None:
    policy = make_policy(identities=["x509.subject: C=US, ST=WA, O=imgseal-test, CN=Someone Else"])
    err = expect_failure("notation-trusted-identity", sign(), store, policy=policy)
    assert "matches none of the trusted identities" in err.message
    assert [c.status for c in err.checks][:3] == ["passed", "passed", "failed"]
    # a partial identity (C, ST, O) matches; '*' matches anything.
    assert verify(sign(), store, make_policy(identities=["x509.subject: C=US,ST=WA,O=imgseal-test"])).verified
    assert verify(sign(), store, make_policy(identities=["*"])).verified


def test_expired_signature(store: Path) -> None:
    envelope = sign(signing_time=NOW - timedelta(days=10), expiry=timedelta(days=1))
    err = expect_failure("notation-expiry", envelope, store)
    assert "expired" in err.message
    result = verify(envelope, store, make_policy("permissive"))
    assert statuses(result)["expiry"] == "failed-logged"
    result = verify(envelope, store, make_policy("strict", override={"expiry": "log"}))
    assert statuses(result)["expiry"] == "failed-logged"
    # The spec: expired when now >= expiry.
    exact = sign(signing_time=NOW - timedelta(hours=1), expiry=timedelta(hours=1))
    expect_failure("notation-expiry", exact, store)


def test_expired_certificate_is_authentic_timestamp_failure(store: Path) -> None:
    pki = build_pki("p256")
    envelope = sign(leaf=pki.leaf_expired, signing_time=datetime(2024, 3, 1, tzinfo=UTC))
    ids = ["x509.subject: C=US, ST=WA, O=imgseal-test, CN=Expired"]
    expect_failure("notation-authentic-timestamp", envelope, store, policy=make_policy(identities=ids))
    result = verify(envelope, store, make_policy("permissive", identities=ids))
    assert statuses(result)["authenticTimestamp"] == "failed-logged"


def _protected(alg: str, **extra: Any) -> dict[str, Any]:
    header = {
        "alg": alg,
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": "2025-02-28T12:00:00Z",
        "crit": ["io.cncf.notary.signingScheme"],
    }
    header.update(extra)
    return header


PAYLOAD = {"targetArtifact": DESCRIPTOR}


def test_alg_not_matching_key(tmp_path: Path) -> None:
    pki = build_pki("rsa3072")
    store = write_store(tmp_path, "test-root", pki.root.cert)
    # A valid PS256 signature by an RSA-3072 key: the spec demands PS384, so this is refused.
    envelope = craft_envelope(pki.leaf.key, pki.chain(), _protected("PS256"), PAYLOAD)
    err = expect_failure("notation-alg", envelope, store)
    assert "requires PS384" in err.message
    # The right alg with the same crafting passes, so the failure above is the alg rule.
    assert verify(craft_envelope(pki.leaf.key, pki.chain(), _protected("PS384"), PAYLOAD), store).verified
    for alg in ("none", "HS256", "RS256", "ES256"):
        raw = craft_envelope(pki.leaf.key, pki.chain(), _protected("PS384"), PAYLOAD)
        doc = json.loads(raw)
        doc["protected"] = base64.urlsafe_b64encode(json.dumps(_protected(alg)).encode()).rstrip(b"=").decode()
        expect_failure("notation-alg", json.dumps(doc).encode(), store)


def test_tampered_protected_header(store: Path) -> None:
    doc = json.loads(sign(expiry=timedelta(days=1)))
    header = b64url_json(doc["protected"])
    header["io.cncf.notary.expiry"] = "2099-01-01T00:00:00Z"
    doc["protected"] = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    err = expect_failure("notation-integrity", json.dumps(doc).encode(), store)
    assert "does not verify" in err.message


def test_tampered_payload(store: Path) -> None:
    doc = json.loads(sign())
    payload = b64url_json(doc["payload"])
    payload["targetArtifact"]["digest"] = "sha256:" + "ef" * 32
    doc["payload"] = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    expect_failure(
        "notation-integrity",
        json.dumps(doc).encode(),
        store,
        descriptor={**DESCRIPTOR, "digest": "sha256:" + "ef" * 32},
    )


def test_tampered_signature_and_chain_swap(store: Path) -> None:
    doc = json.loads(sign())
    sig = bytearray(base64.urlsafe_b64decode(doc["signature"] + "=="))
    sig[5] ^= 1
    doc["signature"] = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    expect_failure("notation-integrity", json.dumps(doc).encode(), store)
    # Swapping in another certificate (same CA, same curve, different key) breaks the signature check.
    pki = build_pki("p256")
    swapped = issue(LEAF_SUBJECT, make_key("p256", 5), issuer=pki.intermediate, ca=False)
    doc = json.loads(sign())
    doc["header"]["x5c"][0] = base64.b64encode(swapped.cert.public_bytes(serialization.Encoding.DER)).decode()
    expect_failure("notation-integrity", json.dumps(doc).encode(), store)


@pytest.mark.parametrize(
    ("protected", "message"),
    [
        (_protected("ES256", crit=[]), "non-empty 'crit'"),
        (_protected("ES256", **{"io.cncf.notary.expiry": "2099-01-01T00:00:00Z"}), "not marked critical"),
        (
            _protected("ES256", crit=["io.cncf.notary.signingScheme", "com.example.x"], **{"com.example.x": 1}),
            "not understood",
        ),
        (_protected("ES256", crit=["io.cncf.notary.signingScheme", "missing"]), "marked critical but not present"),
        (_protected("ES256", crit=["io.cncf.notary.signingScheme", "cty"]), "registered header"),
        (
            _protected(
                "ES256",
                crit=["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"],
                **{"io.cncf.notary.verificationPlugin": "com.example.plugin"},
            ),
            "verification plugin",
        ),
        (_protected("ES256", cty="application/json"), "content type"),
        (_protected("ES256", **{"io.cncf.notary.signingScheme": "notary.other"}), "signing scheme"),
        (_protected("ES256", **{"io.cncf.notary.signingTime": "2025-02-28 12:00:00"}), "RFC 3339"),
        (_protected("ES256", **{"io.cncf.notary.authenticSigningTime": "2025-02-28T12:00:00Z"}), "must not be present"),
        (
            _protected(
                "ES256",
                crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
                **{"io.cncf.notary.expiry": "2025-02-28T12:00:00Z"},
            ),
            "not after the signing time",
        ),
    ],
)
def test_protected_header_rules(protected: dict[str, Any], message: str, store: Path) -> None:
    pki = build_pki("p256")
    err = expect_failure("notation-integrity", craft_envelope(pki.leaf.key, pki.chain(), protected, PAYLOAD), store)
    assert message in err.message


def test_structure_rules(store: Path) -> None:
    pki = build_pki("p256")
    good = json.loads(sign())
    cases = {
        b"[]": "not a JSON object",
        b"{": "not valid JSON",
        json.dumps({**good, "extra": 1}).encode(): "unexpected extra",
        json.dumps({k: v for k, v in good.items() if k != "header"}).encode(): "missing header",
        json.dumps({**good, "header": {"x5c": []}}).encode(): "x5c",
        json.dumps({**good, "header": {**good["header"], "cty": "x"}}).encode(): "both protected and unprotected",
        json.dumps({**good, "signature": good["signature"] + "="}).encode(): "base64url",
    }
    for raw, message in cases.items():
        err = expect_failure("notation-integrity", raw, store)
        assert message in err.message, (raw[:40], err.message)
    # Duplicate members in the protected header are refused (parsers could disagree).
    dup = b'{"alg":"ES256","alg":"ES256","cty":"x"}'
    err = expect_failure("notation-integrity", craft_envelope(pki.leaf.key, pki.chain(), dup, PAYLOAD), store)
    assert "duplicate member" in err.message


def test_certificate_chain_rules(store: Path) -> None:
    pki = build_pki("p256")
    protected = _protected("ES256")
    # out of order
    reordered = [pki.leaf.cert, pki.root.cert, pki.intermediate.cert]
    err = expect_failure(
        "notation-certificate-chain", craft_envelope(pki.leaf.key, reordered, protected, PAYLOAD), store
    )
    assert "ordered leaf first" in err.message
    # missing root
    err = expect_failure(
        "notation-certificate-chain", craft_envelope(pki.leaf.key, pki.chain()[:2], protected, PAYLOAD), store
    )
    assert "self-signed root" in err.message
    # leaf without digitalSignature (the signer refuses it, so craft the envelope)
    leaf = pki.leaf_no_digital_signature
    err = expect_failure(
        "notation-certificate-chain", craft_envelope(leaf.key, pki.chain(leaf), protected, PAYLOAD), store
    )
    assert "digitalSignature" in err.message
    # leaf with a TLS server EKU
    tls = issue(
        LEAF_SUBJECT,
        pki.leaf.key,
        issuer=pki.intermediate,
        ca=False,
        extra_ekus=(x509.ExtendedKeyUsageOID.SERVER_AUTH,),
    )
    err = expect_failure(
        "notation-certificate-chain",
        craft_envelope(tls.key, [tls.cert, pki.intermediate.cert, pki.root.cert], protected, PAYLOAD),
        store,
    )
    assert "serverAuth" in err.message
    # intermediate with pathLen 0 cannot have a CA below it
    sub = issue({"C": "US", "O": "imgseal-test", "CN": "Sub CA"}, make_key("p256", 7), issuer=pki.intermediate, ca=True)
    leaf2 = issue(LEAF_SUBJECT, pki.leaf.key, issuer=sub, ca=False)
    chain = [leaf2.cert, sub.cert, pki.intermediate.cert, pki.root.cert]
    err = expect_failure("notation-certificate-chain", craft_envelope(leaf2.key, chain, protected, PAYLOAD), store)
    assert "path length" in err.message


def test_leaf_without_codesigning_eku_verifies_but_cannot_sign(store: Path) -> None:
    pki = build_pki("p256")
    leaf = pki.leaf_no_codesigning
    with pytest.raises(UsageError) as info:
        load_signing_material(leaf.key_pem(), pki.chain_pem(leaf))
    assert "codeSigning" in info.value.message
    # The spec makes the EKU optional for verification (if present it MAY contain codeSigning).
    envelope = craft_envelope(leaf.key, pki.chain(leaf), _protected("ES256"), PAYLOAD)
    policy = make_policy(identities=["x509.subject: C=US, ST=WA, O=imgseal-test, CN=No CodeSigning"])
    assert verify(envelope, store, policy).verified


def test_revocation_locations_fail_closed_unless_relaxed(store: Path) -> None:
    pki = build_pki("p256")
    leaf = pki.leaf_with_crl
    envelope = sign(leaf=leaf)
    policy_ids = ["x509.subject: C=US, ST=WA, O=imgseal-test, CN=With CRL"]
    err = expect_failure("notation-revocation", envelope, store, policy=make_policy(identities=policy_ids))
    assert "cannot be determined" in err.message and err.hint
    logged = verify(envelope, store, make_policy("permissive", identities=policy_ids))
    assert statuses(logged)["revocation"] == "failed-logged"
    skipped = verify(envelope, store, make_policy(override={"revocation": "skip"}, identities=policy_ids))
    assert statuses(skipped)["revocation"] == "skipped"


def test_verification_time_and_descriptor_inputs(store: Path) -> None:
    with pytest.raises(UsageError):
        verify(sign(), store, now=datetime(2025, 1, 1))  # naive
    with pytest.raises(InvalidInputError):
        verify(sign(), store, descriptor={"mediaType": "x", "digest": "sha256:00", "size": 1})


# --- the envelope, field by field against the spec ---------------------------------------


def test_envelope_fields_match_the_spec() -> None:
    pki = build_pki("p384")
    envelope = sign("p384", expiry=timedelta(days=7), signing_agent="imgseal/9.9")
    doc = json.loads(envelope)
    # signature-envelope-jws.md "Signature Envelope": flattened JWS, four members only.
    assert set(doc) == {"payload", "protected", "header", "signature"}
    for member in ("payload", "protected", "signature"):
        assert "=" not in doc[member] and "+" not in doc[member] and "/" not in doc[member]
    protected = b64url_json(doc["protected"])
    assert protected == {
        "alg": "ES384",
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": SIGN_TIME.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "io.cncf.notary.expiry": (SIGN_TIME + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
    }
    # Protected bytes are compact with sorted keys, as notation-go writes them.
    raw_protected = base64.urlsafe_b64decode(doc["protected"] + "==")
    assert raw_protected == json.dumps(protected, sort_keys=True, separators=(",", ":")).encode()
    assert set(doc["header"]) == {"x5c", "io.cncf.notary.signingAgent"}
    assert doc["header"]["io.cncf.notary.signingAgent"] == "imgseal/9.9"
    x5c = [base64.b64decode(c, validate=True) for c in doc["header"]["x5c"]]
    assert x5c == [c.public_bytes(serialization.Encoding.DER) for c in pki.chain()]
    payload = base64.urlsafe_b64decode(doc["payload"] + "==")
    assert json.loads(payload) == {"targetArtifact": DESCRIPTOR}
    # ES384 signature: raw R||S of 48 bytes each (RFC 7518 section 3.4).
    assert len(base64.urlsafe_b64decode(doc["signature"] + "==")) == 96
    # Without expiry: no expiry header and crit has signingScheme only.
    plain = b64url_json(json.loads(sign("p384"))["protected"])
    assert "io.cncf.notary.expiry" not in plain and plain["crit"] == ["io.cncf.notary.signingScheme"]


def test_manifest_helpers() -> None:
    pki = build_pki("p256")
    value = thumbprint_annotation(pki.chain())
    expected = [hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in pki.chain()]
    assert json.loads(value) == expected and value.startswith('["') and " " not in value
    annotations = signature_manifest_annotations(sign())
    assert annotations[THUMBPRINT_ANNOTATION] == value
    assert annotations["org.opencontainers.image.created"] == SIGN_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ARTIFACT_TYPE == "application/vnd.cncf.notary.signature"


# --- independent judges ------------------------------------------------------------------

_NOTARY_HEADERS = {
    name: JWSEHeaderParameter(name, False, True, None)
    for name in (
        "io.cncf.notary.signingScheme",
        "io.cncf.notary.signingTime",
        "io.cncf.notary.expiry",
        "io.cncf.notary.signingAgent",
    )
}


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_jwcrypto_verifies_our_envelopes(kind: str) -> None:
    pki = build_pki(kind)
    envelope = sign(kind, expiry=timedelta(days=1))
    token = jws.JWS(header_registry=_NOTARY_HEADERS)
    token.deserialize(envelope.decode())
    key = jwk.JWK.from_pyca(pki.leaf.cert.public_key())
    token.allowed_algs = [ALG_FOR_KIND[kind]]
    token.verify(key)
    assert json.loads(token.payload) == {"targetArtifact": DESCRIPTOR}
    # and jwcrypto rejects it under another key
    other = jws.JWS(header_registry=_NOTARY_HEADERS)
    other.deserialize(envelope.decode())
    other.allowed_algs = [ALG_FOR_KIND[kind]]
    with pytest.raises(jws.InvalidJWSSignature):
        other.verify(jwk.JWK.from_pyca(make_key(kind, 99).public_key()))


@pytest.mark.parametrize("kind", ["rsa2048", "p521"])
def test_envelope_signed_by_jwcrypto_verifies(kind: str, tmp_path: Path) -> None:
    pki = build_pki(kind)
    store = write_store(tmp_path, "test-root", pki.root.cert)
    token = jws.JWS(json.dumps({"targetArtifact": DESCRIPTOR}).encode(), header_registry=_NOTARY_HEADERS)
    token.allowed_algs = [ALG_FOR_KIND[kind]]
    header = _protected(ALG_FOR_KIND[kind])
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in pki.chain()]
    token.add_signature(
        jwk.JWK.from_pyca(pki.leaf.key),
        alg=ALG_FOR_KIND[kind],
        protected=json.dumps(header),
        header=json.dumps({"x5c": x5c, "io.cncf.notary.signingAgent": "jwcrypto"}),
    )
    envelope = token.serialize(compact=False).encode()
    assert "signatures" not in json.loads(envelope)  # one signature: flattened form
    result = verify(envelope, store)
    assert result.verified and result.signing_agent == "jwcrypto"


def test_notation_reference_envelope_verifies(tmp_path: Path) -> None:
    raw = (DATA / "notation-go-jws-without-timestamp.sig").read_bytes()
    cert = x509.load_der_x509_certificate(base64.b64decode(json.loads(raw)["header"]["x5c"][0]))
    store = write_store(tmp_path, "notary", cert)
    policy = make_policy(stores=["ca:notary"], identities=["x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"])
    descriptor = {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda",
        "size": 528,
    }
    result = verify(raw, store, policy, descriptor=descriptor)
    assert result.verified and result.signing_agent == "Notation/1.0.0"
    assert result.signing_time == datetime(2024, 6, 18, 9, 8, 35, tzinfo=UTC)
    # One flipped byte of the reference signature fails integrity.
    doc = json.loads(raw)
    doc["signature"] = ("A" if doc["signature"][0] != "A" else "B") + doc["signature"][1:]
    with pytest.raises(NotationVerificationError) as info:
        verify(json.dumps(doc).encode(), store, policy, descriptor=descriptor)
    assert info.value.reason == "notation-integrity"


# --- signer input checks -----------------------------------------------------------------


def test_signer_refuses_bad_material() -> None:
    pki = build_pki("p256")
    with pytest.raises(KeyMaterialError) as info:
        load_signing_material(build_pki("p384").leaf.key_pem(), pki.chain_pem())
    assert info.value.reason == "notation-key-mismatch"
    with pytest.raises(UsageError) as usage:
        load_signing_material(pki.leaf_no_digital_signature.key_pem(), pki.chain_pem(pki.leaf_no_digital_signature))
    assert "digitalSignature" in usage.value.message
    with pytest.raises(InvalidInputError) as order:
        load_signing_material(
            pki.leaf.key_pem(),
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [pki.leaf.cert, pki.root.cert]),
        )
    assert "ordered leaf first" in order.value.message
    with pytest.raises(InvalidInputError):
        load_signing_material(pki.leaf.key_pem(), b"no pem here")
    with pytest.raises(KeyMaterialError):
        load_signing_material(b"garbage", pki.chain_pem())
    small = make_key("rsa2048")
    from cryptography.hazmat.primitives.asymmetric import rsa as _rsa

    tiny = _rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert small is not tiny
    pem = tiny.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyMaterialError) as size:
        load_signing_material(pem, pki.chain_pem())
    assert "1024" in size.value.message


def test_signer_refuses_bad_descriptor_and_times() -> None:
    pki = build_pki("p256")
    signer = load_signing_material(pki.leaf.key_pem(), pki.chain_pem())
    for bad in (
        {**DESCRIPTOR, "digest": "sha256:ABC"},
        {**DESCRIPTOR, "size": -1},
        {**DESCRIPTOR, "size": True},
        {**DESCRIPTOR, "urls": []},
        {k: v for k, v in DESCRIPTOR.items() if k != "mediaType"},
        {**DESCRIPTOR, "annotations": {"a": 1}},
    ):
        with pytest.raises(InvalidInputError):
            sign_descriptor(signer, bad, signing_time=SIGN_TIME)
    with pytest.raises(UsageError):
        sign_descriptor(signer, DESCRIPTOR, signing_time=datetime(2025, 1, 1))
    with pytest.raises(UsageError):
        sign_descriptor(signer, DESCRIPTOR, signing_time=SIGN_TIME, expiry=timedelta(0))
    with pytest.raises(KeyMaterialError) as info:
        sign_descriptor(signer, DESCRIPTOR, signing_time=datetime(2031, 1, 1, tzinfo=UTC))
    assert "not valid at the signing time" in info.value.message


def test_parse_duration() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("45s") == timedelta(seconds=45)
    for bad in ("", "0d", "-1d", "1w", "1.5h", "d", "10"):
        with pytest.raises(UsageError):
            parse_duration(bad)


# --- trust policy ------------------------------------------------------------------------


def _doc_with(**statement: Any) -> str:
    base = policy_doc()["trustPolicies"][0]
    base.update(statement)
    return json.dumps({"version": "1.0", "trustPolicies": [{k: v for k, v in base.items() if v is not None}]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "must be a JSON object"),
        ('{"trustPolicies": []}', "no version"),
        ('{"version": "2.0", "trustPolicies": []}', "unsupported version"),
        ('{"version": "1.0", "trustPolicies": []}', "non-empty trustPolicies"),
        ('{"version": "1.0", "version": "1.0"}', "duplicate key"),
        ('{"version": "1.0", "trustPolicies": [], "x": 1}', "unknown key"),
        (_doc_with(name=""), "missing a name"),
        (_doc_with(registryScopes=[]), "zero registry scopes"),
        (_doc_with(registryScopes=["*", "registry.example.com/a"]), "'*' must be alone"),
        (_doc_with(registryScopes=["registry.example.com/a*"]), "wildcard"),
        (_doc_with(registryScopes=["https://registry.example.com/a"]), "not valid"),
        (_doc_with(registryScopes=["registry.example.com/a:latest"]), "not valid"),
        (_doc_with(registryScopes=["alpine"]), "not valid"),
        (_doc_with(signatureVerification={}), "missing signature verification level"),
        (_doc_with(signatureVerification={"level": "paranoid"}), "invalid signature verification level"),
        (
            _doc_with(signatureVerification={"level": "strict", "override": {"integrity": "log"}}),
            "cannot be overridden",
        ),
        (_doc_with(signatureVerification={"level": "strict", "override": {"expiry": "skip"}}), "cannot be skipped"),
        (
            _doc_with(signatureVerification={"level": "strict", "override": {"expiry": "maybe"}}),
            "unknown verification action",
        ),
        (
            _doc_with(signatureVerification={"level": "strict", "override": {"speed": "log"}}),
            "unknown verification type",
        ),
        (_doc_with(signatureVerification={"level": "strict", "overide": {}}), "unknown key(s): overide"),
        (_doc_with(signatureVerification={"level": "skip"}), "skip signature verification but has trust stores"),
        (
            _doc_with(
                signatureVerification={"level": "skip", "override": {"expiry": "log"}},
                trustStores=None,
                trustedIdentities=None,
            ),
            "cannot be customised",
        ),
        (
            _doc_with(
                signatureVerification={"level": "skip"}, registryScopes=["*"], trustStores=None, trustedIdentities=None
            ),
            "global scope",
        ),
        (_doc_with(trustStores=None), "missing trustStores or trustedIdentities"),
        (_doc_with(trustStores=["acme"]), "format is <type>:<name>"),
        (_doc_with(trustStores=["x509:acme"]), "unsupported trust store type"),
        (_doc_with(trustStores=["ca:../etc"]), "invalid trust store name"),
        (_doc_with(trustStores=["tsa:acme"]), "no ca or signingAuthority"),
        (_doc_with(trustedIdentities=["*", IDENTITY]), "'*' must be alone"),
        (_doc_with(trustedIdentities=[""]), "empty trusted identity"),
        (_doc_with(trustedIdentities=["C=US, ST=WA, O=x"]), "without the 'x509.subject:' prefix"),
        (_doc_with(trustedIdentities=["x509.san: example.com"]), "only 'x509.subject'"),
        (_doc_with(trustedIdentities=["x509.subject: C=US, O=x"]), "missing ST"),
        (_doc_with(trustedIdentities=["x509.subject: C=US, ST=WA, O=x, O=y"]), "duplicate attribute"),
        (_doc_with(trustedIdentities=["x509.subject: C=US+ST=WA, O=x"]), "multi-valued"),
        (
            _doc_with(trustedIdentities=["x509.subject: C=US, ST=WA, O=x", "x509.subject: C=US, ST=WA, O=x, OU=y"]),
            "overlapping",
        ),
    ],
)
def test_policy_validation_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_trust_policy(text)
    assert message in info.value.message, info.value.message


def test_policy_duplicate_names_and_scopes() -> None:
    stmt = policy_doc()["trustPolicies"][0]
    with pytest.raises(InvalidInputError, match="use the name"):
        parse_trust_policy(
            json.dumps({"version": "1.0", "trustPolicies": [stmt, {**stmt, "registryScopes": ["a.io/b"]}]})
        )
    with pytest.raises(InvalidInputError, match="one statement only"):
        parse_trust_policy(json.dumps({"version": "1.0", "trustPolicies": [stmt, {**stmt, "name": "two"}]}))
    glob = {**stmt, "registryScopes": ["*"]}
    with pytest.raises(InvalidInputError, match="global scope"):
        parse_trust_policy(json.dumps({"version": "1.0", "trustPolicies": [glob, {**glob, "name": "two"}]}))


def test_select_policy_exact_then_global() -> None:
    stmt = policy_doc()["trustPolicies"][0]
    doc = parse_trust_policy(
        json.dumps(
            {
                "version": "1.0",
                "trustPolicies": [
                    {**stmt, "name": "global", "registryScopes": ["*"], "signatureVerification": {"level": "audit"}},
                    {**stmt, "name": "exact"},
                    {
                        "name": "unsigned",
                        "registryScopes": ["localhost:5000/unsigned"],
                        "signatureVerification": {"level": "skip"},
                    },
                ],
            }
        )
    )
    assert select_policy(doc, "registry.example.com/team/app").name == "exact"
    assert select_policy(doc, "registry.example.com/team/other").name == "global"
    assert select_policy(doc, "localhost:5000/unsigned").level == "skip"
    # No reference expansion, no prefix matching: a sub-repository is a different scope.
    assert select_policy(doc, "registry.example.com/team/app/sub").name == "global"
    with pytest.raises(InvalidInputError):
        select_policy(doc, "registry.example.com/team/app@sha256:" + "ab" * 32)
    only_exact = parse_trust_policy(json.dumps({"version": "1.0", "trustPolicies": [stmt]}))
    with pytest.raises(VerificationError) as info:
        select_policy(only_exact, "registry.example.com/team/other")
    assert info.value.reason == "notation-no-policy"


def test_policy_actions_table() -> None:
    expected = {
        "strict": ("enforce", "enforce", "enforce", "enforce", "enforce"),
        "permissive": ("enforce", "enforce", "log", "log", "log"),
        "audit": ("enforce", "log", "log", "log", "log"),
    }
    for level, actions in expected.items():
        policy = make_policy(level)
        got = tuple(
            policy.action(c) for c in ("integrity", "authenticity", "authenticTimestamp", "expiry", "revocation")
        )
        assert got == actions, level
    custom = make_policy("audit", override={"authenticity": "enforce", "revocation": "skip"})
    assert custom.action("authenticity") == "enforce" and custom.action("revocation") == "skip"


def test_distinguished_name_parsing() -> None:
    assert parse_distinguished_name(r"C=US, ST=WA, O=Acme\, Inc., CN=\ padded\ ") == {
        "C": "US",
        "ST": "WA",
        "O": "Acme, Inc.",
        "CN": " padded ",
    }
    assert parse_distinguished_name("c=US;st=WA;o=a\\3bb") == {"C": "US", "ST": "WA", "O": "a;b"}
    for bad in ("C=US, ST=WA, O=", "C=US, ST=WA, O=x,", "C=US, ST=WA, O=#0403", "C=US, ST=WA, O=x\\", "nonsense"):
        with pytest.raises(InvalidInputError):
            parse_distinguished_name(bad)


def test_identity_with_escaped_comma_matches(tmp_path: Path) -> None:
    pki = build_pki("p256")
    leaf = issue({**LEAF_SUBJECT, "O": "Acme, Inc."}, pki.leaf.key, issuer=pki.intermediate, ca=False)
    store = write_store(tmp_path, "test-root", pki.root.cert)
    envelope = craft_envelope(leaf.key, pki.chain(leaf), _protected("ES256"), PAYLOAD)
    policy = make_policy(identities=[r"x509.subject: C=US, ST=WA, O=Acme\, Inc."])
    assert verify(envelope, store, policy).verified
    with pytest.raises(NotationVerificationError):
        verify(envelope, store, make_policy(identities=["x509.subject: C=US, ST=WA, O=Acme"]))


# --- trust store -------------------------------------------------------------------------


def test_trust_store_layout_rules(tmp_path: Path) -> None:
    pki = build_pki("p256")
    ref = TrustStoreRef("ca", "acme")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_trust_store(tmp_path, ref)
    base = write_store(tmp_path, "acme", pki.root.cert)
    directory = base / "x509" / "ca" / "acme"
    (directory / "sub").mkdir()
    (directory / "notes.txt").write_text("ignored")
    (directory / "root.cer").write_bytes(pki.other_root.cert.public_bytes(serialization.Encoding.DER))
    contents = load_trust_store(base, ref)
    assert len(contents.certificates) == 2
    assert any("sub-directory" in w for w in contents.warnings)
    assert any("notes.txt" in w for w in contents.warnings)
    os.symlink(directory / "cert0.pem", directory / "link.pem")
    with pytest.raises(InvalidInputError, match="symlink"):
        load_trust_store(base, ref)
    (directory / "link.pem").unlink()
    (directory / "leaf.pem").write_bytes(pki.leaf.cert_pem())
    with pytest.raises(InvalidInputError, match="neither a CA nor a self-signed"):
        load_trust_store(base, ref)
    (directory / "leaf.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(InvalidInputError, match="PEM or DER"):
        load_trust_store(base, ref)
    empty = tmp_path / "empty"
    (empty / "x509" / "ca" / "none").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="no certificates"):
        load_trust_store(empty, TrustStoreRef("ca", "none"))
    linked = tmp_path / "linked"
    (linked / "x509" / "ca").mkdir(parents=True)
    os.symlink(directory, linked / "x509" / "ca" / "acme")
    with pytest.raises(InvalidInputError, match="symlinks are not supported"):
        load_trust_store(linked, ref)


def test_missing_named_store_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        verify(sign(), tmp_path, make_policy(stores=["ca:absent"]))


def test_signing_authority_scheme(tmp_path: Path) -> None:
    pki = build_pki("p256")
    header = _protected("ES256")
    del header["io.cncf.notary.signingTime"]
    header["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority"
    header["io.cncf.notary.authenticSigningTime"] = "2025-02-28T12:00:00Z"
    header["crit"] = ["io.cncf.notary.signingScheme", "io.cncf.notary.authenticSigningTime"]
    envelope = craft_envelope(pki.leaf.key, pki.chain(), header, PAYLOAD)
    base = write_store(tmp_path, "sa", pki.root.cert, store_type="signingAuthority")
    write_store(base, "test-root", pki.root.cert)
    result = verify(envelope, base, make_policy(stores=["signingAuthority:sa"]))
    assert result.verified and result.signing_scheme == "notary.x509.signingAuthority"
    # A ca store does not vouch for signingAuthority signatures.
    expect_failure("notation-authenticity", envelope, base)
    # authenticSigningTime must be marked critical.
    header["crit"] = ["io.cncf.notary.signingScheme"]
    err = expect_failure("notation-integrity", craft_envelope(pki.leaf.key, pki.chain(), header, PAYLOAD), base)
    assert "not marked critical" in err.message
