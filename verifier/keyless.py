"""Keyless verification of image signatures: Sigstore bundles checked against an identity policy.

:func:`keyless_bundle_verifier` builds the ``bundle_verifier`` hook of
:func:`verifier.image.verify_key_signatures`. For each certificate bundle attached to the
image it runs :func:`verifier.sigstore.bundle.verify_bundle` (our own offline verifier: time
from TSA/SET, chain to Fulcio, SCT, EKU, identity and issuer, inclusion proof, checkpoint,
SET, signature, log body) with a DSSE envelope required, and then does what
``verify_dsse`` leaves to its caller (REFERENCE.md §5): the in-toto statement must name this
exact image digest and be a ``cosign sign`` v1 statement. A bundle copied from image A onto
image B therefore never counts for B.

:func:`keyless_legacy_verifier` builds the ``legacy_verifier`` hook for cosign's legacy
``.sig`` layers signed keylessly (certificate, chain, Rekor bundle and RFC 3161 annotations,
REFERENCE.md §4). Those carry a Rekor v1 *SET* but no inclusion proof, so they are checked as
cosign checks them offline (``pkg/cosign/verify.go`` VerifyBundle): signature over the payload
with the certificate's key, SET by a trusted log key, log body consistent with signature,
certificate and payload digest, RFC 3161 timestamps, then the certificate chain, SCT, EKU and
identity policy at every verified time — the same checks, from the same code, as
:func:`verifier.sigstore.bundle.verify_bundle` minus the inclusion proof it requires.

Nothing here touches the network: the trusted root is the embedded production root, the
embedded staging root, or a file (``--trusted-root``), parsed once per command.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imgseal.digest import Digest
from imgseal.dsse import Envelope
from imgseal.errors import UsageError, VerificationError
from imgseal.intoto import Statement
from imgseal.payloads import CERTIFICATE_ANNOTATION, COSIGN_SIGN_PREDICATE, REKOR_BUNDLE_ANNOTATION, BundleSummary
from verifier.image import LegacyVerifier, check_bundle_statement
from verifier.sigstore import tlog
from verifier.sigstore.bundle import ParsedBundle, Thresholds, _verify_timestamps, verify_bundle
from verifier.sigstore.certificate import KeylessPolicy, verify_certificate
from verifier.sigstore.trust import TrustMaterial, load_trusted_root

if TYPE_CHECKING:
    from verifier.attestation import LegacyAttestationVerifier

#: cosign ``static.RFC3161TimestampAnnotationKey``.
RFC3161_ANNOTATION: Final = "dev.sigstore.cosign/rfc3161timestamp"
MAX_ANNOTATION_CHARS: Final = 256 << 10

BundleVerifier = Callable[[BundleSummary, Digest], tuple[str, Statement]]


def load_trust(trusted_root: Path | None, staging: bool) -> TrustMaterial:
    """The trusted root to verify with: a file, else the embedded staging or production root."""
    if trusted_root is not None and staging:
        raise UsageError("give either --trusted-root or --staging, not both")
    return load_trusted_root(trusted_root, staging=staging)


def keyless_bundle_verifier(policy: KeylessPolicy, trust: TrustMaterial,
                            predicate_type: str = COSIGN_SIGN_PREDICATE,
                            thresholds: Thresholds | None = None) -> BundleVerifier:
    """A ``bundle_verifier`` for :func:`verifier.image.verify_key_signatures`.

    ``thresholds`` (:class:`verifier.sigstore.bundle.Thresholds`) default to what ``trust``
    implies: a root listing no transparency log (GitHub's Sigstore instance: Fulcio and a
    TSA) needs a signed timestamp instead of a log entry, so such bundles verify on images
    given that root.

    It returns ``(signer, statement)`` where ``signer`` names the certificate identity and
    issuer, or raises :class:`VerificationError` whose ``reason`` names the failing check
    (``certificate-identity``, ``certificate-issuer``, ``certificate-validity``,
    ``inclusion-proof``, ``payload-digest-mismatch``, …).
    """

    def verify(summary: BundleSummary, digest: Digest) -> tuple[str, Statement]:
        if summary.material == "publicKey":
            raise VerificationError("bundle is signed with a public key, not a certificate (verify it with --key)",
                                    reason="verification-material")
        result = verify_bundle(summary.raw, policy=policy, expect_dsse=True, trusted_root=trust,
                               thresholds=thresholds)
        if result.payload is None or result.payload_type is None:
            raise VerificationError("verified bundle carries no DSSE payload", reason="payload-type")
        # Judge the payload the signature was verified over, not a second parse of the bundle.
        envelope = Envelope(payload_type=result.payload_type, payload=result.payload, signatures=())
        statement = check_bundle_statement(envelope, digest, predicate_type)
        return result.signer, statement

    return verify


@dataclass(frozen=True)
class LegacyMaterial:
    """The keyless verification material of one legacy ``.sig`` layer, parsed from its annotations."""

    certificate: x509.Certificate
    set_signature: bytes
    body: bytes
    integrated_time: int
    log_index: int
    log_id: bytes
    rfc3161_timestamp: bytes | None


def parse_legacy_material(annotations: Mapping[str, str]) -> LegacyMaterial:
    """Read cosign's annotations (``pkg/oci/static``, ``pkg/cosign/bundle``); VerificationError if malformed.

    The chain annotation is not read: it is unauthenticated, and the path is built to the
    trusted root's CA certificates, as the bundle verifier does.
    """
    pem = annotations.get(CERTIFICATE_ANNOTATION, "")
    if len(pem) > MAX_ANNOTATION_CHARS:
        raise _malformed("certificate annotation is too large")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as e:
        raise _malformed(f"certificate annotation is not a PEM certificate: {e}") from e
    entry = parse_rekor_bundle_annotation(annotations)
    if entry is None:
        # cosign would look the entry up online; verification here is offline, so fail closed.
        raise VerificationError("legacy signature has no Rekor bundle annotation (transparency log entry with SET)",
                                reason="tlog-missing")
    return LegacyMaterial(cert, entry.set_signature, entry.body, entry.integrated_time, entry.log_index,
                          entry.log_id, parse_rfc3161_annotation(annotations))


@dataclass(frozen=True)
class RekorBundleEntry:
    """cosign's ``bundle.RekorBundle`` annotation: a Rekor v1 entry with its SET (no inclusion proof)."""

    set_signature: bytes
    body: bytes
    integrated_time: int
    log_index: int
    log_id: bytes


def parse_rekor_bundle_annotation(annotations: Mapping[str, str]) -> RekorBundleEntry | None:
    """The ``dev.sigstore.cosign/bundle`` annotation, or None when the layer has none."""
    raw = annotations.get(REKOR_BUNDLE_ANNOTATION)
    if not raw:
        return None
    doc = _json_object(raw, "Rekor bundle")
    payload = doc.get("Payload")
    if not isinstance(payload, dict):
        raise _malformed("Rekor bundle annotation has no Payload object")
    integrated, index, log_id = payload.get("integratedTime"), payload.get("logIndex"), payload.get("logID")
    if not isinstance(integrated, int) or not isinstance(index, int) or not _is_uint(integrated) \
            or not _is_uint(index) or not isinstance(log_id, str):
        raise _malformed("Rekor bundle Payload needs integratedTime, logIndex (integers) and logID (hex)")
    try:
        log_id_bytes = bytes.fromhex(log_id)
    except ValueError as e:
        raise _malformed("Rekor bundle logID is not hex") from e
    return RekorBundleEntry(_b64(doc.get("SignedEntryTimestamp"), "SignedEntryTimestamp"),
                            _b64(payload.get("body"), "Payload.body"), integrated, index, log_id_bytes)


def parse_rfc3161_annotation(annotations: Mapping[str, str]) -> bytes | None:
    """The DER timestamp of the ``dev.sigstore.cosign/rfc3161timestamp`` annotation, if any."""
    if RFC3161_ANNOTATION not in annotations:
        return None
    return _b64(_json_object(annotations[RFC3161_ANNOTATION], "RFC 3161 timestamp").get(
        "SignedRFC3161Timestamp"), "SignedRFC3161Timestamp")


def verify_rekor_bundle_entry(entry: RekorBundleEntry, trust: TrustMaterial, signer: tlog.Signer,
                              content: tlog.MessageContent | tlog.DsseContent) -> datetime:
    """SET by a trusted log key valid at the integrated time, and a logged body recording exactly
    this signature, signer and content; the SET-proven time."""
    log_key = trust.log_key(entry.log_id)
    if log_key is None:
        raise VerificationError("log entry was not made by a transparency log in the trusted root"
                                f" (log id {entry.log_id.hex()[:16]}…)", reason="tlog-key")
    tlog.verify_set(log_key, entry.set_signature, body=entry.body, integrated_time=entry.integrated_time,
                    log_index=entry.log_index)
    set_time = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
    if not log_key.valid_at(set_time):
        raise VerificationError(f"log key was not valid at {set_time.isoformat()} (trusted root validity window)",
                                reason="tlog-key")
    # The logged entry must be this signature, by this signer, over this payload
    # (CVE-2022-36056: a valid entry for another artifact proves nothing about this one).
    try:
        doc = json.loads(entry.body)
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError("transparency log entry body is not JSON", reason="tlog-body") from e
    kind = doc.get("kind") if isinstance(doc, dict) else None
    version = doc.get("apiVersion") if isinstance(doc, dict) else None
    tlog.check_entry_body(entry.body, str(kind), str(version), signer, content)
    return set_time


def verify_legacy_signature(payload: bytes, signature: bytes, annotations: Mapping[str, str],
                            policy: KeylessPolicy, trust: TrustMaterial) -> str:
    """Verify a keyless legacy signature over ``payload``; return ``"identity (issuer …)"``.

    The payload's digest is *not* compared with the image here: the caller does that for
    every legacy layer (:func:`verifier.image._check_legacy_layer`).
    """
    content = tlog.MessageContent(signature, "sha256", hashlib.sha256(payload).digest())
    return _verify_legacy(payload, content, annotations, policy, trust)


def verify_legacy_attestation(envelope: Envelope, annotations: Mapping[str, str], policy: KeylessPolicy,
                              trust: TrustMaterial) -> str:
    """Verify a keyless cosign ``.att`` layer (a DSSE envelope); return ``"identity (issuer …)"``.

    cosign 2.x ``attest`` without the bundle format logs such envelopes as Rekor ``intoto``
    0.0.2 entries (newer clients as ``dsse`` 0.0.1); both are checked against the envelope.
    The statement's subject and predicate type are the caller's to check.
    """
    if len(envelope.signatures) != 1:
        raise VerificationError(f"keyless attestation envelope has {len(envelope.signatures)} signatures, "
                                "expected exactly one", reason="signature-malformed")
    content = tlog.DsseContent(envelope.payload_type, envelope.payload, envelope.signatures[0].sig)
    return _verify_legacy(content.pae(), content, annotations, policy, trust)


def _verify_legacy(signed: bytes, content: tlog.MessageContent | tlog.DsseContent, annotations: Mapping[str, str],
                   policy: KeylessPolicy, trust: TrustMaterial) -> str:
    """The checks every keyless legacy layer gets: ``content.signature`` over ``signed`` by the
    certificate, timestamps, the SET, the logged entry, then the certificate chain and identity."""
    signature = content.signature
    material = parse_legacy_material(annotations)
    cert = material.certificate
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise VerificationError("legacy signing certificate is a CA certificate, not a leaf",
                                    reason="certificate-chain")
    except x509.ExtensionNotFound:
        pass
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise VerificationError("signing certificate has an unsupported key type", reason="signature")
    if not tlog.verify_signature(key, signature, signed):
        raise VerificationError("signature does not verify with the signing certificate's key", reason="signature")
    signer = tlog.Signer(key, cert)

    # Time from the TSA (over the raw signature bytes, cosign's tsBytes) …
    stamps = (material.rfc3161_timestamp,) if material.rfc3161_timestamp is not None else ()
    times = _verify_timestamps(ParsedBundle("legacy", "certificate", (), (), stamps, None, None), trust, signature)

    # … and from the SET, which a trusted log key must have signed while valid, over this entry.
    entry = RekorBundleEntry(material.set_signature, material.body, material.integrated_time, material.log_index,
                             material.log_id)
    times.append(verify_rekor_bundle_entry(entry, trust, signer, content))

    identity, issuer = verify_certificate(cert, policy, trust, times)
    return f"{identity} (issuer {issuer})"


def keyless_legacy_verifier(policy: KeylessPolicy, trust: TrustMaterial) -> LegacyVerifier:
    """A ``legacy_verifier`` for :func:`verifier.image.verify_key_signatures` (see :func:`verify_legacy_signature`)."""

    def verify(payload: bytes, signature: bytes, annotations: Mapping[str, str]) -> str:
        return verify_legacy_signature(payload, signature, annotations, policy, trust)

    return verify


def keyless_legacy_attestation_verifier(policy: KeylessPolicy, trust: TrustMaterial) -> LegacyAttestationVerifier:
    """A ``legacy_verifier`` for :func:`verifier.attestation.examine_attestations` (keyless ``.att`` layers)."""

    def verify(envelope: Envelope, annotations: Mapping[str, str]) -> str:
        return verify_legacy_attestation(envelope, annotations, policy, trust)

    return verify


def _malformed(message: str) -> VerificationError:
    # A layer that does not parse is one signature that does not count, not an unusable command.
    return VerificationError(f"legacy signature: {message}", reason="signature-malformed")


def _json_object(text: str, what: str) -> dict[str, Any]:
    if len(text) > MAX_ANNOTATION_CHARS:
        raise _malformed(f"{what} annotation is too large")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise _malformed(f"{what} annotation is not JSON") from e
    if not isinstance(doc, dict):
        raise _malformed(f"{what} annotation is not a JSON object")
    return doc


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _b64(value: Any, what: str) -> bytes:
    # Go's encoding/json writes []byte as standard padded base64.
    if not isinstance(value, str) or not value:
        raise _malformed(f"{what} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _malformed(f"{what} is not base64") from e
