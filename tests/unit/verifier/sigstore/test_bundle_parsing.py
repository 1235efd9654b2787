"""Our own bundle / trusted-root parsing and SCT check (they replaced sigstore-python's models)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from imgseal.errors import InvalidInputError, VerificationError
from tests.datadir import DATA as DATA_DIR
from verifier.sigstore.bundle import load_bundle_json, parse_bundle
from verifier.sigstore.certificate import verify_sct
from verifier.sigstore.trust import CtLogKey, load_trusted_root, parse_trusted_root

DATA = DATA_DIR / "sigstore-conformance"
V03 = DATA / "happy-path-v0.3" / "bundle.sigstore.json"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(V03.read_bytes())
    return doc


def _malformed(doc: dict[str, Any]) -> str:
    with pytest.raises(InvalidInputError) as info:
        parse_bundle(doc)
    assert info.value.reason == "bundle-malformed"
    return info.value.message


def test_parses_happy_bundle() -> None:
    b = parse_bundle(load_bundle_json(V03.read_bytes()))
    assert b.material == "certificate" and len(b.certificates) == 1 and len(b.tlog_entries) == 1
    assert b.message_signature is not None and b.message_signature.digest_algorithm == "SHA2_256"
    assert b.tlog_entries[0].proof_tree_size > b.tlog_entries[0].proof_log_index


def test_schema_rules() -> None:
    doc = _doc()
    doc["verificationMaterial"]["extra"] = 1
    assert "unknown field" in _malformed(doc)
    doc = _doc()
    doc["verificationMaterial"]["tlogEntries"][0]["logIndex"] = "-1"
    assert "unsigned 64-bit" in _malformed(doc)
    doc = _doc()
    doc["verificationMaterial"]["tlogEntries"][0]["logIndex"] = 5  # a JSON number is a 64-bit int too
    parse_bundle(doc)
    doc = _doc()
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["logIndex"] = proof["treeSize"]
    assert "less than treeSize" in _malformed(doc)
    doc = _doc()
    doc["messageSignature"]["signature"] = "a*b="
    assert "invalid base64" in _malformed(doc)
    doc = _doc()
    doc["dsseEnvelope"] = {"payload": "", "payloadType": "x", "signatures": []}
    assert "exactly one of messageSignature or dsseEnvelope" in _malformed(doc)
    doc = _doc()
    doc["verificationMaterial"]["publicKey"] = {"hint": "k"}
    assert "exactly one of publicKey" in _malformed(doc)
    doc = _doc()
    del doc["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]
    assert "canonicalizedBody: field required" in _malformed(doc)


def test_base64_forms_and_snake_case_names_are_protobuf_json() -> None:
    doc = _doc()
    sig = doc["messageSignature"]["signature"]
    raw = base64.b64decode(sig)
    doc["message_signature"] = {"signature": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    del doc["messageSignature"]
    b = parse_bundle(doc)
    assert b.message_signature is not None and b.message_signature.signature == raw
    doc["messageSignature"] = {"signature": sig}
    assert "given twice" in _malformed(doc)


def test_trusted_root_rules() -> None:
    """proto3 JSON: unknown members ignored, optional ones optional; what verification needs, refused by name."""
    good = json.loads((DATA / "intoto-with-custom-trust-root" / "trusted_root.json").read_bytes())
    trust = parse_trusted_root(json.dumps(good).encode())
    assert trust.tlog_keys and trust.fulcio_certs and trust.ct_keys
    for lenient in (
        lambda d: d.update(extra=1),
        lambda d: d["tlogs"][0].update(futureField={"x": 1}),
        lambda d: d["certificateAuthorities"][0].pop("validFor"),
        lambda d: d["certificateAuthorities"][0]["subject"].pop("commonName"),
        lambda d: d["certificateAuthorities"][0].pop("subject"),
        lambda d: d["certificateAuthorities"][0]["validFor"].pop("start"),
        lambda d: d["tlogs"][0].pop("hashAlgorithm"),
        lambda d: d["tlogs"][0].pop("baseUrl"),
        lambda d: d["tlogs"][0]["publicKey"].update(keyDetails="SOME_FUTURE_KEY_TYPE"),
        lambda d: d.pop("ctlogs"),
        lambda d: d["tlogs"][0]["publicKey"].pop("validFor"),
    ):
        doc = json.loads(json.dumps(good))
        lenient(doc)
        parsed = parse_trusted_root(json.dumps(doc).encode())
        assert parsed.fulcio_certs == trust.fulcio_certs and len(parsed.tlog_keys) == len(trust.tlog_keys)
    for mutate, text in (
        (lambda d: d["ctlogs"][0]["publicKey"]["validFor"].update(start="yesterday"), "RFC 3339"),
        (lambda d: d["tlogs"][0]["publicKey"]["validFor"].pop("start"), "validity window without a start"),
        (lambda d: d["tlogs"][0]["publicKey"].pop("rawBytes"), "no public key or no log id"),
        (lambda d: d["tlogs"][0].pop("logId"), "no public key or no log id"),
        (lambda d: d["certificateAuthorities"][0]["certChain"].update(certificates=[]), "no certificates"),
        (lambda d: d["certificateAuthorities"][0].update(subject="CN=x"), "expected an object"),
        (lambda d: d.update(mediaType="application/json"), "unsupported media type"),
        (lambda d: (d.update(tlogs=[]), d.update(certificateAuthorities=[]), d.update(timestampAuthorities=[])),
         "no certificate authority, transparency log or timestamp authority"),
    ):
        doc = json.loads(json.dumps(good))
        mutate(doc)
        with pytest.raises(InvalidInputError, match=text):
            parse_trusted_root(json.dumps(doc).encode())


def _leaf_and_chain() -> tuple[x509.Certificate, list[x509.Certificate]]:
    doc = _doc()
    leaf = x509.load_der_x509_certificate(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))
    trust = load_trusted_root()
    issuer = next(c for c in trust.fulcio_certs if c.subject == leaf.issuer)
    chain = [issuer, *(c for c in trust.fulcio_certs if c.subject == issuer.issuer and c != issuer)]
    return leaf, chain


def test_sct_verifies_with_the_ct_log_key_only() -> None:
    leaf, chain = _leaf_and_chain()
    trust = load_trusted_root()
    verify_sct(leaf, chain, trust.ct_keys)
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for keys in ((), (CtLogKey(other, "PKIX_ECDSA_P256_SHA_256", None, None),),
                 # the right key, listed under a hash it does not sign with
                 tuple(CtLogKey(k.raw_bytes, "PKIX_ECDSA_P384_SHA_384", k.valid_from, k.valid_until)
                       for k in trust.ct_keys)):
        with pytest.raises(VerificationError) as info:
            verify_sct(leaf, chain, keys)
        assert info.value.reason == "sct"
    # A key whose validity has not started is not offered.
    future = tuple(CtLogKey(k.raw_bytes, k.key_details, k.valid_from, None) for k in trust.ct_keys)
    from datetime import timedelta

    earliest = min(k.valid_from for k in future if k.valid_from is not None)
    with pytest.raises(VerificationError):
        verify_sct(leaf, chain, future, now=earliest - timedelta(days=1))
    with pytest.raises(VerificationError):
        verify_sct(leaf, [], trust.ct_keys)  # no issuer to bind the precertificate to


def _paths(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def test_lenient_trusted_root_parser_still_fails_closed_on_every_mutation() -> None:
    """Any member deleted or replaced by a value of the wrong type: a parsed root or a one-line error."""
    good = json.loads((DATA / "rekor2-happy-path" / "trusted_root.json").read_bytes())
    tried = 0
    for path in _paths(good):
        for replacement in ("<delete>", None, 7, "x", [], {}):
            doc = json.loads(json.dumps(good))
            parent = doc
            for step in path[:-1]:
                parent = parent[step]  # type: ignore[index]
            if replacement == "<delete>":
                del parent[path[-1]]  # type: ignore[attr-defined]
            else:
                parent[path[-1]] = replacement  # type: ignore[index]
            try:
                trust = parse_trusted_root(json.dumps(doc).encode())
            except InvalidInputError as e:
                assert "\n" not in str(e) and str(e)
            else:
                # Whatever parsed still holds only usable material.
                assert all(k.key is not None and k.log_id for k in trust.tlog_keys)
                assert all(t.chain for t in trust.tsas)
            tried += 1
    assert tried > 300
