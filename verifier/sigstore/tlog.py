"""Transparency-log (Rekor) entry verification: the checks Sigstore requires of a log entry.

Pure functions over plain inputs (bytes, ints, cryptography keys) so the same code serves
certificate and public-key bundles:

* :func:`verify_set` — the Rekor v1 *inclusion promise*: an ECDSA/Ed25519 signature by the
  log key over the canonical JSON ``{"body","integratedTime","logID","logIndex"}``
  (rekor ``pkg/api/entries.go``; protobuf-specs ``sigstore_rekor.proto`` ``InclusionPromise``).
* :func:`verify_inclusion_proof` — RFC 6962 §2.1.1 Merkle audit path from the leaf hash of
  ``canonicalizedBody`` to the proof's root hash (RFC 9162 §2.1.3.2 algorithm).
* :func:`verify_checkpoint` — the signed checkpoint (C2SP ``signed-note`` /
  ``tlog-checkpoint``): origin, tree size and root hash lines, signed by the log key whose
  4-byte key hint is the first bytes of the log id; its size and root must equal the proof's.
* :func:`check_entry_body` — the entry body (``hashedrekord`` 0.0.1/0.0.2, ``dsse`` 0.0.1,
  ``intoto`` 0.0.2) agrees with the bundle's signature, signer and artifact digest, which
  prevents the CVE-2022-36056 family of substitutions (a valid entry for *another* artifact).

Every failure raises :class:`imgseal.errors.VerificationError` whose ``reason`` names the
failing check (``tlog-set``, ``inclusion-proof``, ``checkpoint``, ``tlog-body``, ``tlog-key``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from imgseal.errors import VerificationError

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
"""The key types Sigstore's algorithm registry allows for signers and logs."""

MAX_PROOF_HASHES: Final = 64
"""A Merkle path longer than 64 hashes would need a tree of more than 2**64 leaves."""


@dataclass(frozen=True)
class LogKey:
    """One transparency log's verification key, as listed in a trusted root.

    ``valid_from``/``valid_until`` is the key's usage window (trusted root
    ``tlogs[].publicKey.validFor``); an entry integrated outside it is rejected.
    """

    log_id: bytes
    key: PublicKey
    valid_from: datetime
    valid_until: datetime | None
    base_url: str = ""

    def valid_at(self, when: datetime) -> bool:
        # TimeRange is a closed interval (protobuf-specs sigstore_common.proto TimeRange).
        return self.valid_from <= when and (self.valid_until is None or when <= self.valid_until)


# --- signatures --------------------------------------------------------------------------


def _hash_for(key: PublicKey) -> hashes.HashAlgorithm:
    """The hash Sigstore's algorithm registry pairs with ``key`` (ECDSA by curve, RSA SHA-256)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = key.curve.key_size
        if size <= 256:
            return hashes.SHA256()
        if size <= 384:
            return hashes.SHA384()
        return hashes.SHA512()
    return hashes.SHA256()


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` over ``data`` verifies with ``key`` (ECDSA, RSA PKCS#1 v1.5, Ed25519)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_hash_for(key)))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), _hash_for(key))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:  # pragma: no cover - excluded by the type
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def verify_signature_with(key: PublicKey, signature: bytes, data: bytes, algorithm: str) -> bool:
    """Like :func:`verify_signature`, with the hash named by the key's listing (``sha256``…; ``""`` for Ed25519).

    A trusted root pairs each log key with its hash (``PublicKeyDetails``), which need not be
    the curve's default: the listing decides.
    """
    algo: hashes.HashAlgorithm | None = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                         "sha512": hashes.SHA512()}.get(algorithm)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(signature, data, ec.ECDSA(algo))
        elif isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(signature, data, padding.PKCS1v15(), algo)
        elif isinstance(key, ed25519.Ed25519PublicKey) and not algorithm:
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def verify_prehashed_signature(key: PublicKey, signature: bytes, digest: bytes, algorithm: str) -> bool:
    """True when ``signature`` is ``key``'s signature over the message whose ``algorithm`` digest is ``digest``.

    Sigstore message signatures (hashedrekord) sign the artifact with the key's hash; the
    verifier only needs the digest (ECDSA/RSA "prehashed"). Ed25519 has no prehash mode, so
    an Ed25519 message signature cannot be checked from a digest alone (returns False).
    """
    algo: hashes.HashAlgorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                  "sha512": hashes.SHA512()}.get(algorithm, hashes.SHA256())
    if algorithm not in ("sha256", "sha384", "sha512") or len(digest) != algo.digest_size:
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(Prehashed(algo)))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), Prehashed(algo))
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKey) -> bytes:
    """RFC 6962 §3.2 key id: SHA-256 of the DER SubjectPublicKeyInfo (Rekor v1 ``logID``)."""
    return hashlib.sha256(spki_der(key)).digest()


# --- SET (Rekor v1 inclusion promise) ----------------------------------------------------


def set_payload(body: bytes, integrated_time: int, log_index: int, log_id: bytes) -> bytes:
    """The bytes Rekor v1 signs as the Signed Entry Timestamp.

    RFC 8785 canonical JSON of four members in lexicographic order; all values are ASCII
    (base64, hex, integers), so sorted compact ``json.dumps`` is byte-identical to RFC 8785.
    """
    payload = {
        "body": base64.b64encode(body).decode(),
        "integratedTime": integrated_time,
        "logID": log_id.hex(),
        "logIndex": log_index,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def verify_set(log_key: LogKey, signature: bytes, *, body: bytes, integrated_time: int, log_index: int) -> None:
    data = set_payload(body, integrated_time, log_index, log_key.log_id)
    if not verify_signature(log_key.key, signature, data):
        raise VerificationError(
            f"transparency log entry {log_index}: signed entry timestamp (SET) does not verify with the log key",
            reason="tlog-set",
        )


# --- Merkle inclusion (RFC 6962 / RFC 9162) ----------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: recompute the root from a leaf hash and its audit path."""
    if tree_size < 1 or not 0 <= index < tree_size:
        raise VerificationError(
            f"inclusion proof: leaf index {index} is outside a tree of size {tree_size}", reason="inclusion-proof"
        )
    if len(proof) > MAX_PROOF_HASHES or any(len(h) != 32 for h in proof):
        raise VerificationError("inclusion proof: malformed audit path hashes", reason="inclusion-proof")
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof: audit path is too long for the tree", reason="inclusion-proof")
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof: audit path is too short for the tree", reason="inclusion-proof")
    return r


def verify_inclusion_proof(*, body: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    computed = root_from_inclusion_proof(index, tree_size, leaf_hash(body), proof)
    if computed != root:
        raise VerificationError(
            f"inclusion proof: computed root {computed.hex()[:16]}… does not match the proof's root hash",
            reason="inclusion-proof",
        )


# --- signed checkpoint (C2SP signed-note) --------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    signed_text: bytes
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key hint, signature)


def parse_checkpoint(envelope: str) -> Checkpoint:
    """Parse a signed note: ``text "\\n" ("— " name " " base64(hint4 || sig) "\\n")+``."""

    def bad(why: str) -> VerificationError:
        return VerificationError(f"checkpoint: malformed signed note ({why})", reason="checkpoint")

    if envelope.count("\n\n") < 1:
        raise bad("no blank line before the signatures")
    split = envelope.index("\n\n")
    text, sig_block = envelope[: split + 1], envelope[split + 2 :]
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise bad("needs origin, tree size and root hash lines")
    if not lines[1].isdigit() or (len(lines[1]) > 1 and lines[1][0] == "0"):
        raise bad("invalid tree size")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        raise bad("invalid root hash") from None
    if len(root) != 32:
        raise bad("root hash is not 32 bytes")
    if not sig_block or not sig_block.endswith("\n"):
        raise bad("missing signature lines")
    signatures: list[tuple[str, bytes, bytes]] = []
    for line in sig_block[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or not parts[1]:
            raise bad("invalid signature line")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise bad("signature is not base64") from None
        if len(raw) < 5:
            raise bad("signature too short")
        signatures.append((parts[1], raw[:4], raw[4:]))
    if len(signatures) > 100:
        raise bad("too many signatures")
    return Checkpoint(lines[0], int(lines[1]), root, text.encode(), tuple(signatures))


def verify_checkpoint(log_key: LogKey, envelope: str, *, tree_size: int, root_hash: bytes) -> Checkpoint:
    """The note must carry a valid signature by ``log_key`` and commit to the proof's tree.

    The key hint is the first four bytes of the log id (Rekor v1 and v2 both publish the
    log id in the trusted root). Other signatures (witness cosignatures) are ignored.
    """
    cp = parse_checkpoint(envelope)
    hint = log_key.log_id[:4]
    candidates = [sig for _, h, sig in cp.signatures if h == hint]
    if not candidates:
        raise VerificationError("checkpoint: no signature from the log's key (key hint mismatch)",
                                reason="checkpoint")
    if not any(verify_signature(log_key.key, sig, cp.signed_text) for sig in candidates):
        raise VerificationError("checkpoint: the log's signature on the checkpoint does not verify",
                                reason="checkpoint")
    if cp.root_hash != root_hash or cp.tree_size != tree_size:
        raise VerificationError("checkpoint: its tree size/root hash differ from the inclusion proof's",
                                reason="checkpoint")
    return cp


# --- entry body consistency --------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """Who signed, as the log body must record it: a leaf certificate or a bare public key."""

    key: PublicKey
    certificate: x509.Certificate | None = None

    def der(self) -> bytes:
        if self.certificate is not None:
            return self.certificate.public_bytes(serialization.Encoding.DER)
        return spki_der(self.key)

    def matches_pem(self, pem_b64: Any) -> bool:
        """Does a base64(PEM) ``verifier``/``publicKey.content`` field name this signer?"""
        pem = _b64(pem_b64)
        if pem is None:
            return False
        try:
            if self.certificate is not None:
                return x509.load_pem_x509_certificate(pem) == self.certificate
            other = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return False
        return spki_der(other) == spki_der(self.key)  # type: ignore[arg-type]

    def key_details(self) -> str:
        """protobuf-specs ``PublicKeyDetails`` name for Rekor v2 ``verifier.keyDetails``."""
        k = self.key
        if isinstance(k, ec.EllipticCurvePublicKey):
            return {256: "PKIX_ECDSA_P256_SHA_256", 384: "PKIX_ECDSA_P384_SHA_384",
                    521: "PKIX_ECDSA_P521_SHA_512"}.get(k.curve.key_size, "?")
        if isinstance(k, rsa.RSAPublicKey):
            return f"PKIX_RSA_PKCS1V15_{k.key_size}_SHA256"
        return "PKIX_ED25519"


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(name)
    return obj


@dataclass(frozen=True)
class MessageContent:
    """A messageSignature bundle: the signature and the artifact digest it covers."""

    signature: bytes
    digest_algorithm: str  # "sha256" | "sha384" | "sha512"
    digest: bytes


@dataclass(frozen=True)
class DsseContent:
    """A DSSE bundle: the envelope's parts (exactly one signature)."""

    payload_type: str
    payload: bytes
    signature: bytes

    def pae(self) -> bytes:
        t = self.payload_type.encode()
        return b"DSSEv1 %d %s %d %s" % (len(t), t, len(self.payload), self.payload)


def _body_error(what: str) -> VerificationError:
    return VerificationError(f"transparency log entry is inconsistent with the bundle: {what}", reason="tlog-body")


def check_entry_body(
    body: bytes, kind: str, version: str, signer: Signer, content: MessageContent | DsseContent
) -> None:
    """Raise unless the canonicalized entry body records exactly this signature, signer and content."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _body_error("body is not JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("apiVersion") != version:
        raise _body_error(f"body kind/version differ from the entry's {kind}/{version}")
    spec = doc.get("spec")
    if isinstance(content, MessageContent):
        if kind != "hashedrekord":
            raise _body_error(f"a message signature must be logged as hashedrekord, not {kind}")
        if version == "0.0.1":
            _check_hashedrekord_v001(spec, signer, content)
            return
        if version == "0.0.2":
            _check_hashedrekord_v002(spec, signer, content.signature, content.digest_algorithm, content.digest)
            return
    else:
        if kind == "dsse" and version == "0.0.1":
            _check_dsse_v001(spec, signer, content)
            return
        if kind == "intoto" and version == "0.0.2":
            _check_intoto_v002(spec, signer, content)
            return
        if kind == "hashedrekord" and version == "0.0.2":
            # Rekor v2 logs a DSSE envelope as hashedrekord over PAE (rekor-v2 spec §6.1.4).
            algo = _hash_for(signer.key)
            digest = hashlib.new(algo.name, content.pae()).digest()
            _check_hashedrekord_v002(spec, signer, content.signature, algo.name, digest)
            return
    raise _body_error(f"unsupported entry type {kind}/{version} for this content")


def _check_hashedrekord_v001(spec: Any, signer: Signer, content: MessageContent) -> None:
    if _get(spec, "data", "hash", "algorithm") != content.digest_algorithm:
        raise _body_error("artifact hash algorithm differs")
    if _get(spec, "data", "hash", "value") != content.digest.hex():
        raise _body_error("artifact digest differs")
    if _b64(_get(spec, "signature", "content")) != content.signature:
        raise _body_error("signature differs")
    if not signer.matches_pem(_get(spec, "signature", "publicKey", "content")):
        raise _body_error("signing key/certificate differs")


_V2_ALGORITHMS: Final = {"sha256": "SHA2_256", "sha384": "SHA2_384", "sha512": "SHA2_512"}


def _check_hashedrekord_v002(spec: Any, signer: Signer, signature: bytes, algorithm: str, digest: bytes) -> None:
    entry = _get(spec, "hashedRekordV002")
    if _get(entry, "data", "algorithm") != _V2_ALGORITHMS.get(algorithm):
        raise _body_error("digest algorithm differs")
    if _b64(_get(entry, "data", "digest")) != digest:
        raise _body_error("digest differs")
    if _b64(_get(entry, "signature", "content")) != signature:
        raise _body_error("signature differs")
    verifier = _get(entry, "signature", "verifier")
    if _get(verifier, "keyDetails") != signer.key_details():
        raise _body_error("verifier key details differ")
    # The entry must record the bundle's own verification material: the leaf certificate for
    # a certificate bundle, the key for a public-key bundle. sigstore-go rebuilds the expected
    # entry from the bundle (pkg/verify/tlog.go reconstructV2EntryHash: the leaf certificate's
    # raw bytes when the bundle has one) and sigstore-python compares with an entry built from
    # the signing certificate (verify/verifier.py _validate_hashedrekord_v002_entry_body), so an
    # entry that records a public key never matches a certificate bundle, even the
    # certificate's own key: the log then vouches for a key, not for the identity Fulcio bound
    # to it. sigstore-js compares only signature and digest and accepts such entries.
    recorded_cert = _b64(_get(verifier, "x509Certificate", "rawBytes"))
    recorded_key = _b64(_get(verifier, "publicKey", "rawBytes"))
    if signer.certificate is not None:
        if recorded_cert is None and recorded_key is not None:
            whose = "the certificate's key" if recorded_key == spki_der(signer.key) else "a different key"
            raise _body_error(f"the Rekor v2 entry records a public key ({whose}), but the bundle carries a"
                              " certificate; the entry must record the certificate")
        recorded = recorded_cert
    else:
        recorded = recorded_key
    if recorded != signer.der():
        raise _body_error("signing key/certificate differs")


def _check_dsse_v001(spec: Any, signer: Signer, content: DsseContent) -> None:
    # The envelopeHash covers a re-serialised envelope we cannot reproduce byte-for-byte;
    # payloadHash and the signature list are what bind the entry (as sigstore-python does).
    if _get(spec, "payloadHash", "algorithm") != "sha256":
        raise _body_error("payload hash algorithm is not sha256")
    if _get(spec, "payloadHash", "value") != hashlib.sha256(content.payload).hexdigest():
        raise _body_error("payload hash differs")
    sigs = _get(spec, "signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise _body_error("expected exactly one logged signature")
    if _b64(_get(sigs[0], "signature")) != content.signature or not signer.matches_pem(_get(sigs[0], "verifier")):
        raise _body_error("logged signature or verifier differs")


def _check_intoto_v002(spec: Any, signer: Signer, content: DsseContent) -> None:
    # intoto 0.0.2 stores the envelope's signatures (and, in older Rekor, its payload)
    # base64-encoded twice (rekor pkg/types/intoto/v0.0.2: the envelope's base64 text is itself a
    # []byte field). Current Rekor's Canonicalize keeps only payloadType and signatures of the
    # envelope; the payloadHash binds the payload either way.
    env = _get(spec, "content", "envelope")
    if _get(env, "payloadType") != content.payload_type:
        raise _body_error("payload type differs")
    if _get(env, "payload") is not None:
        payload_text = _b64(_get(env, "payload"))
        if payload_text is None or _b64(payload_text.decode("ascii", "replace")) != content.payload:
            raise _body_error("payload differs")
    if _get(spec, "content", "payloadHash", "algorithm") != "sha256" or _get(
        spec, "content", "payloadHash", "value"
    ) != hashlib.sha256(content.payload).hexdigest():
        raise _body_error("payload hash differs")
    sigs = _get(env, "signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise _body_error("expected exactly one logged signature")
    sig_text = _b64(_get(sigs[0], "sig"))
    if sig_text is None or _b64(sig_text.decode("ascii", "replace")) != content.signature:
        raise _body_error("logged signature differs")
    if not signer.matches_pem(_get(sigs[0], "publicKey")):
        raise _body_error("logged verifier differs")
