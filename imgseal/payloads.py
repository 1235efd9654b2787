"""Signed payload formats both sides need: cosign simple signing, the cosign v3 statement, key bundles.

cosign's legacy payload (``specs/SIGNATURE_SPEC.md``), key order as cosign writes it::

    {"critical":{"identity":{"docker-reference":"<registry>/<repo>"},
                 "image":{"docker-manifest-digest":"sha256:<hex>"},
                 "type":"cosign container image signature"},
     "optional":{…}|null}

cosign's verifier requires ``critical.type`` exactly and the digest equal to the image's;
``docker-reference`` is informational (cosign does not check it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from imgseal.digest import Digest
from imgseal.dsse import Envelope
from imgseal.errors import Error, InvalidInputError
from imgseal.manifest import load_json

SIMPLESIGNING_TYPE: Final = "cosign container image signature"
COSIGN_SIGN_PREDICATE: Final = "https://sigstore.dev/cosign/sign/v1"
BUNDLE_V03_MEDIA: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_MEDIA_TYPES: Final = frozenset({
    BUNDLE_V03_MEDIA,
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
})
MAX_BUNDLE_BYTES: Final = 16 << 20
SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION: Final = "dev.sigstore.cosign/chain"
REKOR_BUNDLE_ANNOTATION: Final = "dev.sigstore.cosign/bundle"
BUNDLE_CONTENT_ANNOTATION: Final = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION: Final = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION: Final = "org.opencontainers.image.created"


def simple_signing_payload(docker_reference: str, digest: Digest, optional: Mapping[str, str] | None) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": str(digest)},
            "type": SIMPLESIGNING_TYPE,
        },
        "optional": dict(optional) if optional else None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SimpleSigning:
    docker_reference: str
    digest: Digest
    optional: Mapping[str, Any]


def parse_simple_signing(payload: bytes) -> SimpleSigning:
    """Parse a cosign simple-signing payload strictly enough for a verifier."""
    data = load_json(payload, what="simple-signing payload", max_bytes=1 << 20)
    critical = data.get("critical") if isinstance(data, dict) else None
    if not isinstance(critical, dict):
        raise InvalidInputError("simple-signing payload has no 'critical' object", reason="payload-malformed")
    if critical.get("type") != SIMPLESIGNING_TYPE:
        raise InvalidInputError(f"simple-signing payload type is {critical.get('type')!r}, expected "
                                f"{SIMPLESIGNING_TYPE!r}", reason="payload-malformed")
    image = critical.get("image")
    identity = critical.get("identity") or {}
    if not isinstance(image, dict) or not isinstance(identity, dict):
        raise InvalidInputError("simple-signing payload has a malformed 'critical' section", reason="payload-malformed")
    # cosign matches these keys case-insensitively (Docker-manifest-digest appears in the wild).
    lowered = {k.lower(): v for k, v in image.items() if isinstance(k, str)}
    digest_text = lowered.get("docker-manifest-digest")
    if not isinstance(digest_text, str):
        raise InvalidInputError("simple-signing payload names no docker-manifest-digest", reason="payload-malformed")
    try:
        digest = Digest.parse(digest_text)
    except Error as e:
        raise InvalidInputError(f"simple-signing payload digest: {e.message}", reason="payload-malformed") from e
    ref = {k.lower(): v for k, v in identity.items() if isinstance(k, str)}.get("docker-reference", "")
    optional = data.get("optional") or {}
    if not isinstance(optional, dict):
        raise InvalidInputError("simple-signing payload 'optional' is not an object", reason="payload-malformed")
    return SimpleSigning(ref if isinstance(ref, str) else "", digest, optional)


def public_key_hint(public_der: bytes) -> str:
    """A key hint for bundles: base64 of the SHA-256 of the PKIX DER (unauthenticated, a hint only)."""
    return base64.b64encode(bytes.fromhex(Digest.of(public_der).hex)).decode()


def dsse_key_bundle(envelope: Envelope, public_der: bytes, *, tlog_entries: Sequence[Mapping[str, Any]] = (),
                    rfc3161_timestamps: Sequence[bytes] = ()) -> bytes:
    """A Sigstore bundle v0.3 for a DSSE envelope signed with a self-managed key.

    Without witnesses it has no log entry (cosign ``--tlog-upload=false``); ``tlog_entries``
    (protobuf-JSON ``TransparencyLogEntry``) and ``rfc3161_timestamps`` (DER ``TimeStampResp``)
    go where the bundle spec puts them (``verificationMaterial.tlogEntries`` /
    ``timestampVerificationData.rfc3161Timestamps[].signedTimestamp``)."""
    material: dict[str, Any] = {"publicKey": {"hint": public_key_hint(public_der)},
                                "tlogEntries": [dict(e) for e in tlog_entries]}
    if rfc3161_timestamps:
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(t).decode()} for t in rfc3161_timestamps]}
    doc = {
        "mediaType": BUNDLE_V03_MEDIA,
        "verificationMaterial": material,
        "dsseEnvelope": envelope.to_dict(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class BundleSummary:
    """Just enough of a bundle to route it: its content and its verification material kind."""

    media_type: str
    content: str  # "dsse" | "message"
    material: str  # "publicKey" | "x509CertificateChain" | "certificate"
    tlog_entries: int
    envelope: Envelope | None
    raw: bytes
    timestamps: int = 0  # RFC 3161 timestamps in timestampVerificationData

    @property
    def witnessed(self) -> bool:
        """Carries a log entry or a timestamp: material a key check alone cannot judge."""
        return self.tlog_entries > 0 or self.timestamps > 0


def summarise_bundle(raw: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES) -> BundleSummary:
    """Parse a bundle just enough to route it. ``max_bytes`` bounds the JSON: 16 MiB suits
    signatures; attestation bundles carry whole predicates (SBOMs of tens of MB) and pass a
    larger bound (verifier.attestation)."""
    data = load_json(raw, what="Sigstore bundle", max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise InvalidInputError("Sigstore bundle is not a JSON object", reason="bundle-malformed")
    media_type = data.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise InvalidInputError(f"unsupported Sigstore bundle mediaType {str(media_type)[:80]!r}",
                                reason="bundle-malformed")
    material = data.get("verificationMaterial")
    if not isinstance(material, dict):
        raise InvalidInputError("Sigstore bundle has no verificationMaterial", reason="bundle-malformed")
    kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in material]
    if len(kinds) != 1:
        raise InvalidInputError("Sigstore bundle must have exactly one of publicKey, x509CertificateChain, "
                                "certificate", reason="bundle-malformed")
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list):
        raise InvalidInputError("Sigstore bundle tlogEntries is not a list", reason="bundle-malformed")
    stamps = (material.get("timestampVerificationData") or {})
    stamps = stamps.get("rfc3161Timestamps") if isinstance(stamps, dict) else None
    if stamps is not None and not isinstance(stamps, list):
        raise InvalidInputError("Sigstore bundle rfc3161Timestamps is not a list", reason="bundle-malformed")
    count = len(stamps or [])
    if "dsseEnvelope" in data and "messageSignature" not in data:
        envelope = Envelope.from_json(data["dsseEnvelope"])
        return BundleSummary(str(media_type), "dsse", kinds[0], len(entries), envelope, raw, count)
    if "messageSignature" in data and "dsseEnvelope" not in data:
        return BundleSummary(str(media_type), "message", kinds[0], len(entries), None, raw, count)
    raise InvalidInputError("Sigstore bundle must have exactly one of dsseEnvelope, messageSignature",
                            reason="bundle-malformed")
