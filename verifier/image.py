"""Verifying the signatures attached to an image digest with public keys.

The rules (cosign's, made stricter where cosign is lax):
- a signature counts only if it verifies with a trusted key **and** its payload names
  this exact digest (``docker-manifest-digest`` for legacy signatures, the in-toto subject
  for bundles) — a signature copied from image A onto image B never counts;
- a bundle's DSSE payload must be an in-toto statement of the cosign signature type;
- every blob is fetched by digest and checked before it is parsed;
- ``threshold`` counts distinct keys, not signatures.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgseal import attach
from imgseal.digest import Digest
from imgseal.dsse import Envelope, verify_envelope
from imgseal.errors import Error, VerificationError
from imgseal.intoto import PAYLOAD_TYPE, Statement
from imgseal.manifest import Descriptor
from imgseal.payloads import (
    BUNDLE_MEDIA_TYPES,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    MAX_BUNDLE_BYTES,
    SIGNATURE_ANNOTATION,
    BundleSummary,
    parse_simple_signing,
    summarise_bundle,
)
from imgseal.store.base import Store
from keys import PublicKey, verify

if TYPE_CHECKING:
    from verifier.key_witness import KeyBundleCheck

MAX_PAYLOAD_BYTES = 1 << 20


@dataclass(frozen=True)
class VerifiedSignature:
    """One signature that verified for the image."""

    signer: str
    found_via: str
    format: str
    artifact: str
    payload: Any


@dataclass
class Outcome:
    """All signatures examined for one digest and what each came to."""

    digest: Digest
    verified: list[VerifiedSignature] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (artifact, reason, message)
    examined: int = 0

    @property
    def signers(self) -> set[str]:
        return {v.signer for v in self.verified}


KeyVerifiers = Mapping[str, Callable[[bytes, bytes], bool]]

LegacyVerifier = Callable[[bytes, bytes, Mapping[str, str]], str]
"""Keyless check of a legacy ``.sig`` layer: ``(payload, signature, layer annotations) -> signer``.

It verifies the certificate, the signature over the payload and the transparency-log
material in the annotations, or raises :class:`VerificationError`; binding the payload to the
image digest stays here, in :func:`_check_legacy_layer`, for keys and certificates alike."""


def key_verifiers(keys: Mapping[str, PublicKey]) -> dict[str, Callable[[bytes, bytes], bool]]:
    def make(k: PublicKey) -> Callable[[bytes, bytes], bool]:
        return lambda data, sig: verify(k, data, sig)

    return {name: make(k) for name, k in keys.items()}


def _annotations_match(found: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    return all(found.get(k) == v for k, v in wanted.items())


def check_bundle_statement(envelope: Envelope, digest: Digest, predicate_type: str | None) -> Statement:
    """The DSSE payload must be an in-toto statement naming ``digest`` (and of ``predicate_type``)."""
    if envelope.payload_type != PAYLOAD_TYPE:
        raise VerificationError(f"DSSE payload type is {envelope.payload_type!r}, not in-toto ({PAYLOAD_TYPE})",
                                reason="payload-type")
    statement = Statement.from_bytes(envelope.payload)
    if predicate_type is not None and statement.predicate_type != predicate_type:
        raise VerificationError(f"statement predicate type is {statement.predicate_type!r}, expected "
                                f"{predicate_type!r}", reason="predicate-type")
    if not statement.subject_matches(digest):
        named = ", ".join(statement.subject_digests()) or "nothing"
        raise VerificationError(f"signed statement is for {named}, not for {digest}", reason="payload-digest-mismatch")
    return statement


def verify_key_signatures(
    store: Store,
    digest: Digest,
    attachments: list[attach.Attachment],
    keys: Mapping[str, PublicKey],
    *,
    annotations: Mapping[str, str] | None = None,
    bundle_verifier: Callable[[BundleSummary, Digest], tuple[str, Statement]] | None = None,
    legacy_verifier: LegacyVerifier | None = None,
    key_check: KeyBundleCheck | None = None,
) -> Outcome:
    """Examine every signature attached to ``digest``; return which verified and why others did not.

    ``bundle_verifier`` handles bundles that carry certificates or transparency-log entries
    (keyless); without it they are rejected as "not verifiable with keys". ``legacy_verifier``
    does the same for legacy ``.sig`` layers that carry a certificate annotation; when it is
    given (a keyless run) legacy layers without a certificate are key signatures and do not count.
    ``key_check`` (:mod:`verifier.key_witness`) judges key bundles that carry a log entry or a
    timestamp, and every key signature when the caller requires a proven time.
    """
    verifiers = key_verifiers(keys)
    outcome = Outcome(digest)
    wanted = dict(annotations or {})
    for att in attachments:
        if att.found_via in (attach.VIA_LEGACY_SIG,):
            for layer in att.manifest.layers:
                if layer.media_type != attach.SIMPLESIGNING:
                    continue
                outcome.examined += 1
                _check_legacy_layer(store, digest, att, layer, verifiers, wanted, outcome, legacy_verifier,
                                    None if legacy_verifier is not None else key_check)
            continue
        if att.artifact_type not in BUNDLE_MEDIA_TYPES and att.artifact_type != attach.BUNDLE_V03:
            continue
        predicate = att.manifest.annotations.get("dev.sigstore.bundle.predicateType")
        if predicate is not None and predicate != COSIGN_SIGN_PREDICATE:
            continue  # an attestation, not a signature: verify-attestation handles it
        for layer in att.manifest.layers:
            if layer.media_type not in BUNDLE_MEDIA_TYPES:
                continue
            outcome.examined += 1
            try:
                raw = store.get_blob(layer, max_bytes=MAX_BUNDLE_BYTES)
                summary = summarise_bundle(raw)
                if summary.content != "dsse" or summary.envelope is None:
                    raise VerificationError("bundle holds a message signature, not a DSSE statement",
                                            reason="payload-type")
                if summary.material == "publicKey" and key_check is not None and key_check.needed(summary):
                    signer, verified_envelope = key_check(summary)
                    statement = check_bundle_statement(verified_envelope, digest, COSIGN_SIGN_PREDICATE)
                elif summary.material == "publicKey" and not summary.witnessed:
                    signer = _verify_envelope_with_keys(summary.envelope, verifiers)
                    statement = check_bundle_statement(summary.envelope, digest, COSIGN_SIGN_PREDICATE)
                elif bundle_verifier is not None:
                    signer, statement = bundle_verifier(summary, digest)
                else:
                    raise VerificationError("bundle needs certificate/transparency-log verification; give "
                                            "--certificate-identity and --certificate-oidc-issuer", reason="keyless")
                found = statement.predicate.get("annotations") or {}
                if wanted and not (isinstance(found, dict) and _annotations_match(found, wanted)):
                    raise VerificationError("signature annotations do not match -a", reason="annotation-mismatch")
                outcome.verified.append(VerifiedSignature(signer, att.found_via, "bundle", str(att.digest),
                                                          statement.to_dict()))
            except Error as e:
                outcome.rejected.append((str(att.digest), e.reason, e.one_line()))
    return outcome


def _verify_envelope_with_keys(envelope: Envelope, verifiers: KeyVerifiers) -> str:
    if not verifiers:
        raise VerificationError("no key given to verify a key-signed bundle", reason="no-matching-signature")
    try:
        accepted = verify_envelope(envelope, verifiers)
    except VerificationError as e:
        raise VerificationError("signature does not verify with any given key", reason="no-matching-signature") from e
    return sorted(accepted)[0]


def _check_legacy_layer(store: Store, digest: Digest, att: attach.Attachment, layer: Descriptor,
                        verifiers: KeyVerifiers, wanted: Mapping[str, str], outcome: Outcome,
                        legacy_verifier: LegacyVerifier | None = None, key_check: KeyBundleCheck | None = None) -> None:
    where = f"{att.digest}#{layer.digest.short}"
    try:
        sig_text = layer.annotations.get(SIGNATURE_ANNOTATION)
        if not sig_text:
            raise VerificationError("legacy signature layer has no signature annotation", reason="unsigned")
        try:
            signature = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerificationError("legacy signature annotation is not base64", reason="signature-malformed") from e
        payload = store.get_blob(layer, max_bytes=MAX_PAYLOAD_BYTES)
        signer: str | None
        if legacy_verifier is not None:
            # cosign reads a certificate annotation as "keyless"; without one the layer is a key signature.
            if not layer.annotations.get(CERTIFICATE_ANNOTATION):
                raise VerificationError("legacy signature carries no certificate (a key signature: verify it with "
                                        "--key)", reason="no-matching-signature")
            signer = legacy_verifier(payload, signature, layer.annotations)
        else:
            signer = next((name for name, fn in verifiers.items() if _safe(fn, payload, signature)), None)
        if signer is None:
            raise VerificationError("signature does not verify with any given key", reason="no-matching-signature")
        if key_check is not None and key_check.legacy_needed(layer.annotations):
            key_check.check_legacy(signer, message_content(key_check.keys[signer], payload, signature),
                                   layer.annotations)
        parsed = parse_simple_signing(payload)
        if parsed.digest != digest:
            raise VerificationError(f"signed payload is for {parsed.digest}, not for {digest}",
                                    reason="payload-digest-mismatch")
        if wanted and not _annotations_match(parsed.optional, wanted):
            raise VerificationError("signature annotations do not match -a", reason="annotation-mismatch")
        import json

        outcome.verified.append(VerifiedSignature(signer, att.found_via, "legacy", where, json.loads(payload)))
    except Error as e:
        outcome.rejected.append((where, e.reason, e.one_line()))


def message_content(key: PublicKey, payload: bytes, signature: bytes) -> Any:
    """The log-entry view of a legacy ``.sig`` signature: hashedrekord over the payload with the
    hash the key signs with (SHA-256 for P-256 and RSA, as cosign logs them)."""
    import hashlib

    from keys import hash_algorithm
    from verifier.sigstore.tlog import MessageContent

    algorithm = hash_algorithm(key)
    name = algorithm.name if algorithm is not None else "sha512"
    return MessageContent(signature, name, hashlib.new(name, payload).digest())


def _safe(fn: Callable[[bytes, bytes], bool], data: bytes, sig: bytes) -> bool:
    try:
        return bool(fn(data, sig))
    except Exception:  # noqa: BLE001 - a malformed signature is "did not verify", never a crash
        return False


REASON_PRIORITY = ("payload-digest-mismatch", "annotation-mismatch", "payload-type", "predicate-type",
                   "digest-mismatch", "key-retired", "tlog-missing", "timestamp", "keyless", "no-matching-signature")


def judge(outcome: Outcome, threshold: int) -> None:
    """Raise :class:`VerificationError` with the most telling reason unless ``threshold`` keys verified."""
    if len(outcome.signers) >= threshold:
        return
    if outcome.examined == 0:
        raise VerificationError(f"no signatures found for {outcome.digest}", reason="no-signatures")
    reasons = [r for _, r, _ in outcome.rejected]
    for reason in REASON_PRIORITY:
        if reason in reasons:
            message = next(m for _, r, m in outcome.rejected if r == reason)
            if len(outcome.signers) and threshold > 1:
                message = f"{len(outcome.signers)} of {threshold} required keys verified; {message}"
            raise VerificationError(message, reason=reason)
    if outcome.rejected:
        _, reason, message = outcome.rejected[0]
        raise VerificationError(message, reason=reason)
    raise VerificationError(f"{len(outcome.signers)} of {threshold} required keys verified for {outcome.digest}",
                            reason="threshold")
