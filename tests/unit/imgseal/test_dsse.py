"""DSSE: the upstream test vectors exactly, strict parsing, thresholds, securesystemslib interop."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256

from imgseal import dsse
from imgseal.dsse import Envelope, Signature, pae, sign_envelope, verify_envelope
from imgseal.errors import InvalidInputError, UsageError, VerificationError
from tests.datadir import DATA as DATA_DIR

VECTORS = json.loads((DATA_DIR / "dsse" / "vectors.json").read_text("utf-8"))
INTOTO = "application/vnd.in-toto+json"


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["keys"][name]["seed"]))


def _verifier(name: str) -> dsse.VerifyFn:
    public = _key(name).public_key()

    def verify(message: bytes, sig: bytes) -> bool:
        try:
            public.verify(sig, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _signer(name: str) -> dsse.SignFn:
    return _key(name).sign


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["id"])
def test_vector_pae_signatures_and_verdict(vector: dict[str, Any]) -> None:
    env = Envelope.from_json(json.dumps(vector["envelope"], ensure_ascii=False).encode("utf-8"))
    # The PAE in the vector is what the *signer* covered; it equals ours for the claimed
    # type except in the payload-type-swapped case, where it must differ.
    if vector["id"] == "payload-type-swapped":
        assert env.pae().hex() != vector["pae"]
        assert pae(INTOTO, env.payload).hex() == vector["pae"]
    else:
        assert env.pae().hex() == vector["pae"]
    # Ed25519 is deterministic: re-signing the vector's PAE with the RFC 8032 seeds gives
    # exactly the signature bytes in the file, for whichever key made each signature.
    signed_pae = bytes.fromhex(vector["pae"])
    for sig in env.signatures:
        assert sig.sig in {_key(k).sign(signed_pae) for k in VECTORS["keys"]}
    verifiers = {k: _verifier(k) for k in vector["trustedKeys"]}

    def run() -> set[str]:
        return verify_envelope(env, verifiers, vector["threshold"], payload_types=vector["supportedPayloadTypes"])

    if vector["expect"] == "accept":
        assert len(run()) >= vector["threshold"]
    else:
        with pytest.raises(VerificationError) as info:
            run()
        assert info.value.reason in {"dsse-signature", "dsse-payload-type"}


def test_vector_reject_reasons_are_specific() -> None:
    by_id = {v["id"]: v for v in VECTORS["vectors"]}
    swapped = Envelope.from_json(by_id["payload-type-swapped"]["envelope"])
    with pytest.raises(VerificationError) as info:
        verify_envelope(swapped, {"A": _verifier("A")})
    assert info.value.reason == "dsse-signature"
    no_type = Envelope.from_json(by_id["empty-payload-type"]["envelope"])
    assert verify_envelope(no_type, {"A": _verifier("A")}) == {"A"}  # the signature is valid...
    with pytest.raises(VerificationError) as info:
        verify_envelope(no_type, {"A": _verifier("A")}, payload_types=[INTOTO])  # ...the type is not
    assert info.value.reason == "dsse-payload-type"
    twice = Envelope.from_json(by_id["threshold-two-one-key-twice"]["envelope"])
    with pytest.raises(VerificationError, match="1 of the 2"):
        verify_envelope(twice, {"A": _verifier("A"), "B": _verifier("B")}, threshold=2)


def test_sign_reproduces_vector_envelope() -> None:
    vector = VECTORS["vectors"][6]
    assert vector["id"] == "threshold-two-distinct-keys"
    payload = base64.b64decode(vector["envelope"]["payload"])
    env = sign_envelope(INTOTO, payload, [("A", _signer("A")), ("B", _signer("B"))])
    assert env.to_dict()["signatures"] == [
        {"keyid": s["keyid"], "sig": s["sig"]} for s in vector["envelope"]["signatures"]
    ]
    assert env.to_dict()["payload"] == vector["envelope"]["payload"]


def test_pae_examples() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_keyid_is_only_a_hint() -> None:
    env = sign_envelope(INTOTO, b"{}", [("B", _signer("A"))])  # mislabelled keyid
    assert verify_envelope(env, {"A": _verifier("A"), "B": _verifier("B")}) == {"A"}


def test_threshold_counts_unique_keys_and_reports_all() -> None:
    env = sign_envelope(INTOTO, b"x", [_signer("A"), _signer("B"), _signer("A")])
    assert verify_envelope(env, {"a": _verifier("A"), "b": _verifier("B")}, threshold=2) == {"a", "b"}
    with pytest.raises(VerificationError, match="2 of the 3"):
        verify_envelope(env, {"a": _verifier("A"), "b": _verifier("B")}, threshold=3)


def test_tampered_payload_fails() -> None:
    env = sign_envelope(INTOTO, b'{"a":1}', [("A", _signer("A"))])
    forged = Envelope(b'{"a":2}', env.payload_type, env.signatures)
    with pytest.raises(VerificationError) as info:
        verify_envelope(forged, {"A": _verifier("A")})
    assert info.value.reason == "dsse-signature"


def test_verifier_that_raises_counts_as_failure() -> None:
    def broken(message: bytes, sig: bytes) -> bool:
        raise ValueError("bad DER")

    env = sign_envelope(INTOTO, b"x", [_signer("A")])
    with pytest.raises(VerificationError):
        verify_envelope(env, {"broken": broken})
    # ...and a truthy non-bool is not a pass either.
    with pytest.raises(VerificationError):
        verify_envelope(env, {"truthy": lambda m, s: 1})  # type: ignore[dict-item,return-value]


def test_bad_threshold_and_no_keys() -> None:
    env = sign_envelope(INTOTO, b"x", [_signer("A")])
    with pytest.raises(UsageError):
        verify_envelope(env, {"A": _verifier("A")}, threshold=0)
    with pytest.raises(UsageError):
        verify_envelope(env, {})
    with pytest.raises(UsageError):
        sign_envelope(INTOTO, b"x", [])
    with pytest.raises(UsageError):
        sign_envelope(INTOTO, b"x", [lambda m: b""])


def test_json_round_trip_and_shape() -> None:
    env = sign_envelope("application/vnd.exämple+json", b"\x00\xff", [("k1", _signer("A"))])
    data = env.to_json()
    assert data.startswith(b'{"payloadType":"application/vnd.ex\xc3\xa4mple+json","payload":"AP8=",')
    assert Envelope.from_json(data) == env
    assert Envelope.from_json(data.decode("utf-8")) == env
    assert Envelope.from_json(json.loads(data)) == env


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("-_-_Pj8", b"\xfb\xff\xbf>?"),  # URL-safe, unpadded
        ("-_-_Pj8=", b"\xfb\xff\xbf>?"),  # URL-safe, padded
        ("+/+/Pj8", b"\xfb\xff\xbf>?"),  # standard, unpadded
        ("+/+/Pj8=", b"\xfb\xff\xbf>?"),  # standard, padded
        ("", b""),
    ],
)
def test_base64_alphabets(payload: str, expected: bytes) -> None:
    env = Envelope.from_json({"payload": payload, "payloadType": "t", "signatures": [{"sig": "AA"}]})
    assert env.payload == expected


def _raw(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"payload": "e30=", "payloadType": INTOTO, "signatures": [{"keyid": "", "sig": "AAAA"}]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "must be a JSON object"),
        (b'{"payloadType":"a","payloadType":"b","signatures":[{"sig":"AA"}]}', "duplicate JSON key"),
        (b'{"payloadType":"a","payload":NaN,"signatures":[{"sig":"AA"}]}', "non-JSON constant"),
        (_raw(payloadType=_DROP), "no payloadType"),
        (_raw(payloadType=3), "payloadType must be a string"),
        (_raw(payload=None), "payload must be a base64 string"),
        (_raw(payload="e30*"), "not base64"),
        (_raw(payload="-_+/"), "mix of both"),
        (_raw(payload="e30=="), "invalid base64 length"),
        (_raw(payload="e"), "invalid base64 length"),
        (_raw(payload="e3 0="), "not base64"),
        (_raw(signatures=_DROP), "signatures must be a list"),
        (_raw(signatures={}), "signatures must be a list"),
        (_raw(signatures=[]), "no signatures"),
        (_raw(signatures=["AA"]), "signature 0 must be a JSON object"),
        (_raw(signatures=[{"keyid": None, "sig": "AA"}]), "keyid must be a string"),
        (_raw(signatures=[{"keyid": "k"}]), "sig must be a base64 string"),
        (_raw(signatures=[{"sig": ""}]), "sig is empty"),
        (_raw(signatures=[{"sig": "AA"}] * 65), "at most 64"),
    ],
)
def test_from_json_rejects(data: bytes | dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        Envelope.from_json(data)
    assert info.value.exit_code == 2


def test_size_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsse, "MAX_ENVELOPE_BYTES", 200)
    ok = json.dumps(_raw()).encode()
    assert len(ok) <= 200
    Envelope.from_json(ok)
    big = json.dumps(_raw(payload=base64.b64encode(b"x" * 300).decode())).encode()
    with pytest.raises(InvalidInputError, match="too large") as info:
        Envelope.from_json(big)
    assert info.value.reason == "dsse-envelope-too-large"
    with pytest.raises(InvalidInputError, match="too large"):
        Envelope.from_json(json.loads(big))  # an already-decoded object is bounded too


def test_real_limit_is_64_mib() -> None:
    assert dsse.MAX_ENVELOPE_BYTES == 64 * 1024 * 1024
    with pytest.raises(InvalidInputError, match="too large"):
        Envelope.from_json(b" " * (dsse.MAX_ENVELOPE_BYTES + 1))


def test_signature_value_type() -> None:
    s = Signature("k", b"\x01")
    with pytest.raises(AttributeError):
        s.keyid = "x"  # type: ignore[misc]


# --- interoperability with securesystemslib (a dev dependency) ---------------------------


def _sslib() -> Any:
    sslib_dsse = pytest.importorskip("securesystemslib.dsse")
    signer_mod = pytest.importorskip("securesystemslib.signer")
    return sslib_dsse, signer_mod


@pytest.mark.parametrize("curve", ["ed25519", "ecdsa-p256"])
def test_our_envelope_verifies_with_securesystemslib(curve: str) -> None:
    sslib_dsse, signer_mod = _sslib()
    sign_fn: dsse.SignFn
    if curve == "ed25519":
        ed_key = _key("A")
        crypto_signer = signer_mod.CryptoSigner(ed_key)
        sign_fn = ed_key.sign
    else:
        ec_key = generate_private_key(SECP256R1())
        crypto_signer = signer_mod.CryptoSigner(ec_key)

        def sign_fn(message: bytes) -> bytes:
            return ec_key.sign(message, ECDSA(SHA256()))

    keyid = crypto_signer.public_key.keyid
    ours = sign_envelope(INTOTO, b'{"_type":"https://in-toto.io/Statement/v1"}', [(keyid, sign_fn)])
    theirs = sslib_dsse.Envelope.from_dict(json.loads(ours.to_json()))
    assert theirs.pae() == ours.pae()
    accepted = theirs.verify([crypto_signer.public_key], 1)
    assert keyid in accepted
    tampered = json.loads(ours.to_json())
    tampered["payloadType"] = "application/json"
    with pytest.raises(Exception, match="threshold"):
        sslib_dsse.Envelope.from_dict(tampered).verify([crypto_signer.public_key], 1)


def test_securesystemslib_envelope_verifies_with_ours() -> None:
    sslib_dsse, signer_mod = _sslib()
    crypto_signer = signer_mod.CryptoSigner(_key("B"))
    theirs = sslib_dsse.Envelope(b'{"hello":"world"}', INTOTO, {})
    theirs.sign(crypto_signer)
    ours = Envelope.from_json(json.dumps(theirs.to_dict()).encode())
    assert ours.signatures[0].keyid == crypto_signer.public_key.keyid
    assert verify_envelope(ours, {"B": _verifier("B")}, payload_types=[INTOTO]) == {"B"}
    with pytest.raises(VerificationError):
        verify_envelope(ours, {"A": _verifier("A")})
