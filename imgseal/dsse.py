"""DSSE (Dead Simple Signing Envelope): PAE, the JSON envelope, signing and verification.

Spec: secure-systems-lab/dsse ``protocol.md`` (v1.0.0) and ``envelope.md``.

- A signature covers ``PAE(UTF8(PAYLOAD_TYPE), SERIALIZED_BODY)``, never the base64 text,
  so the payload type is authenticated and the encoding of the envelope does not matter.
- Verifiers MUST accept both standard and URL-safe base64 (protocol.md, "Protocol").
- ``keyid`` is an unauthenticated hint that "MUST NOT be used for security decisions", so
  :func:`verify_envelope` tries every trusted key on every signature.
- A ``(t, n)`` envelope is valid when signatures verify under at least ``t`` *unique*
  trusted keys (protocol.md, "Multi-signature Verification"): one key signing twice counts
  once.

Keys are not a core concern: a signer is any callable ``pae_bytes -> signature`` and a
verifier any callable ``(pae_bytes, signature) -> bool``, so this module needs neither
``keys`` nor a crypto library.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from imgseal.errors import InvalidInputError, UsageError, VerificationError
from imgseal.manifest import check_json_depth, strict_json_loads

#: Envelopes larger than this are refused before parsing. cosign bounds attestation
#: payloads well below this; 64 MiB leaves room for large SBOM predicates while keeping a
#: hostile registry from exhausting memory.
MAX_ENVELOPE_BYTES: Final = 64 * 1024 * 1024

#: More signatures than this are refused: verification tries every key on every signature,
#: so an envelope stuffed with junk signatures would otherwise cost keys × signatures
#: verifications. Sigstore bundles carry exactly one; real multi-signer envelopes a handful.
MAX_SIGNATURES: Final = 64

#: Media type of a DSSE envelope stored as an OCI layer (cosign ``.att`` layers).
ENVELOPE_MEDIA_TYPE: Final = "application/vnd.dsse.envelope.v1+json"

SignFn = Callable[[bytes], bytes]
"""Signs PAE bytes and returns the raw signature."""

VerifyFn = Callable[[bytes, bytes], bool]
"""``verify(pae_bytes, signature) -> bool``; returns False for a signature that does not verify."""

_B64_STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_REASON = "invalid-dsse-envelope"


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``.

    ``LEN`` is the ASCII decimal *byte* length (protocol.md), so a non-ASCII payload type is
    measured after UTF-8 encoding (the ``non-ascii-payload-type`` test vector).
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One DSSE signature: raw signature bytes and the (unauthenticated) key id hint."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE JSON envelope with its payload already base64-decoded."""

    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        """The bytes every signature in this envelope covers."""
        return pae(self.payload_type, self.payload)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Envelope:
        """Parse a JSON envelope (bytes, text, or an already-decoded JSON object).

        Strict: ``payloadType`` must be a string, ``signatures`` a non-empty list of objects
        whose ``sig`` is non-empty base64; ``payload`` and ``keyid`` may be omitted ("Empty
        fields may be omitted", envelope.md). Duplicate JSON keys are refused so two parsers
        cannot read two different envelopes from the same bytes. Unknown fields are ignored.
        Raises :class:`InvalidInputError` naming the first problem.
        """
        if isinstance(data, Mapping):
            obj: Any = data
        else:
            obj = _load_json(data)
        if not isinstance(obj, Mapping):
            raise InvalidInputError(
                f"DSSE envelope must be a JSON object, got {_json_type(obj)}", reason=_REASON
            )
        payload_type = obj.get("payloadType")
        if "payloadType" not in obj:
            raise InvalidInputError("DSSE envelope has no payloadType", reason=_REASON)
        if not isinstance(payload_type, str):
            raise InvalidInputError(
                f"DSSE envelope payloadType must be a string, got {_json_type(payload_type)}", reason=_REASON
            )
        payload_text = obj.get("payload", "")
        if not isinstance(payload_text, str):
            raise InvalidInputError(
                f"DSSE envelope payload must be a base64 string, got {_json_type(payload_text)}",
                reason=_REASON,
            )
        if len(payload_text) > MAX_ENVELOPE_BYTES * 4 // 3 + 4:
            raise _too_large(len(payload_text))
        payload = _b64decode(payload_text, "payload")
        raw_sigs = obj.get("signatures")
        if not isinstance(raw_sigs, list):
            raise InvalidInputError(
                f"DSSE envelope signatures must be a list, got {_json_type(raw_sigs)}", reason=_REASON
            )
        if not raw_sigs:
            raise InvalidInputError("DSSE envelope has no signatures", reason=_REASON)
        if len(raw_sigs) > MAX_SIGNATURES:
            raise InvalidInputError(
                f"DSSE envelope has {len(raw_sigs)} signatures; at most {MAX_SIGNATURES} are accepted",
                reason=_REASON,
            )
        signatures = []
        for index, raw in enumerate(raw_sigs):
            if not isinstance(raw, Mapping):
                raise InvalidInputError(
                    f"DSSE signature {index} must be a JSON object, got {_json_type(raw)}", reason=_REASON
                )
            keyid = raw.get("keyid", "")
            if not isinstance(keyid, str):
                raise InvalidInputError(
                    f"DSSE signature {index} keyid must be a string, got {_json_type(keyid)}", reason=_REASON
                )
            sig_text = raw.get("sig")
            if not isinstance(sig_text, str):
                raise InvalidInputError(
                    f"DSSE signature {index} sig must be a base64 string, got {_json_type(sig_text)}",
                    reason=_REASON,
                )
            sig = _b64decode(sig_text, f"signature {index} sig")
            if not sig:
                raise InvalidInputError(f"DSSE signature {index} sig is empty", reason=_REASON)
            signatures.append(Signature(keyid, sig))
        return cls(payload, payload_type, tuple(signatures))

    def to_dict(self) -> dict[str, Any]:
        """The JSON envelope as a dict, standard base64 with padding.

        Key order follows go-securesystemslib's ``Envelope`` struct (what cosign writes), and
        ``keyid`` is always present, even when empty, as cosign writes it.
        """
        return {
            "payloadType": self.payload_type,
            "payload": base64.standard_b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.standard_b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_envelope(
    payload_type: str,
    payload: bytes,
    signers: Sequence[tuple[str, SignFn] | SignFn],
) -> Envelope:
    """Sign ``PAE(payload_type, payload)`` with each signer, in order.

    Each item is ``(keyid, sign_fn)`` or a bare ``sign_fn`` (empty keyid). A signer that
    returns an empty signature is a bug in the caller's key plumbing and is refused.
    """
    if not signers:
        raise UsageError("cannot sign a DSSE envelope without a signer")
    message = pae(payload_type, payload)
    signatures: list[Signature] = []
    for item in signers:
        if isinstance(item, tuple):
            keyid, fn = item
        else:
            keyid, fn = "", item
        sig = fn(message)
        if not isinstance(sig, bytes) or not sig:
            raise UsageError(f"DSSE signer {keyid or len(signatures)!r} returned no signature bytes")
        signatures.append(Signature(keyid, sig))
    return Envelope(payload, payload_type, tuple(signatures))


def verify_envelope(
    env: Envelope,
    verifiers: Mapping[str, VerifyFn],
    threshold: int = 1,
    *,
    payload_types: Collection[str] | None = None,
) -> set[str]:
    """Verify ``env`` against named trusted keys; return the names of the keys that verified.

    Every verifier is tried on every signature: the ``keyid`` hint is ignored because it is
    unauthenticated (protocol.md) and cosign writes it empty. A key counts once however many
    signatures it made. Raises :class:`VerificationError` (reason ``dsse-signature``) when
    fewer than ``threshold`` unique keys verified, and (reason ``dsse-payload-type``) when
    ``payload_types`` is given and the envelope's type is not among them — checked after
    the signatures, in the order protocol.md lists the steps.
    """
    if threshold < 1:
        raise UsageError(f"DSSE threshold must be at least 1, got {threshold}")
    if not verifiers:
        raise UsageError("cannot verify a DSSE envelope without a trusted key")
    message = env.pae()
    accepted: set[str] = set()
    for signature in env.signatures:
        for name, verify in verifiers.items():
            if name in accepted:
                continue
            if _safe_verify(verify, message, signature.sig):
                accepted.add(name)
    if len(accepted) < threshold:
        raise VerificationError(
            f"DSSE envelope: {len(accepted)} of the {threshold} required trusted keys verified"
            f" ({len(env.signatures)} signature(s) tried against {len(verifiers)} key(s))",
            reason="dsse-signature",
        )
    if payload_types is not None and env.payload_type not in payload_types:
        raise VerificationError(
            f"DSSE payloadType {env.payload_type!r} is not accepted here"
            f" (expected {' or '.join(repr(t) for t in payload_types) or 'none'})",
            reason="dsse-payload-type",
        )
    return accepted


def _safe_verify(verify: VerifyFn, message: bytes, sig: bytes) -> bool:
    # The signature bytes are attacker-controlled; a verifier that chokes on a malformed
    # one (wrong length, bad DER) must count as "did not verify", never as a crash or a pass.
    try:
        return verify(message, sig) is True
    except Exception:  # noqa: BLE001 - fail closed on any verifier failure
        return False


def _load_json(data: bytes | str) -> Any:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise _too_large(len(data))
    try:
        # Decode explicitly: json.loads(bytes) would also guess UTF-16/32 from the first bytes.
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        # Bound nesting before parsing: json's recursion would otherwise surface as RecursionError.
        check_json_depth(text.encode("utf-8") if isinstance(data, str) else data, what="DSSE envelope")
        return strict_json_loads(text, what="DSSE envelope", reason=_REASON)
    except UnicodeDecodeError as exc:
        raise InvalidInputError("DSSE envelope is not UTF-8 text", reason=_REASON) from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"DSSE envelope is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            reason=_REASON,
        ) from exc


def _too_large(size: int) -> InvalidInputError:
    return InvalidInputError(
        f"DSSE envelope is too large ({size} bytes; the limit is {MAX_ENVELOPE_BYTES} bytes)",
        reason="dsse-envelope-too-large",
    )


def _b64decode(text: str, what: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not; refuse mixed alphabets and junk."""
    if _B64_STD.fullmatch(text):
        alphabet = b"+/"
    elif _B64_URL.fullmatch(text):
        alphabet = b"-_"
    else:
        raise InvalidInputError(
            f"DSSE {what} is not base64 (characters outside the standard and URL-safe alphabets,"
            " or a mix of both)",
            reason=_REASON,
        )
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if len(body) % 4 == 1 or (padding and (len(body) + padding) % 4):
        raise InvalidInputError(f"DSSE {what} has an invalid base64 length or padding", reason=_REASON)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=alphabet, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"DSSE {what} is not valid base64: {exc}", reason=_REASON) from exc


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
