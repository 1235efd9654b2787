"""Notary Project (notation) signatures: build a JWS envelope over an artifact descriptor.

Pure signing logic, no registry I/O. The envelope follows the Notary Project specifications
(notaryproject/specifications):

* ``specs/signature-specification.md`` — payload ``{"targetArtifact": <descriptor>}`` of media
  type ``application/vnd.cncf.notary.payload.v1+json``; algorithm chosen from the signing
  certificate's key ("Algorithm Selection"); certificate requirements for the chain.
* ``specs/signature-envelope-jws.md`` — JWS JSON *flattened* serialization; protected header
  ``alg``, ``cty``, ``crit``, ``io.cncf.notary.signingScheme`` (``notary.x509``),
  ``io.cncf.notary.signingTime`` and optional ``io.cncf.notary.expiry``; unprotected header
  ``x5c`` (leaf first, standard base64 DER) and ``io.cncf.notary.signingAgent``.

The lead stores the envelope as the single ``application/jose+json`` layer of a referrer
manifest with ``artifactType`` :data:`ARTIFACT_TYPE` and the annotations from
:func:`signature_manifest_annotations`.

The verifier (``verifier.notation.envelope``) re-implements the chain rules independently, because
``signer`` and ``verifier`` never import each other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from imgseal import __version__, attach
from imgseal.digest import Digest
from imgseal.errors import Error, InvalidInputError, KeyMaterialError, UsageError
from imgseal.manifest import Descriptor
from imgseal.store.base import Store

PAYLOAD_MEDIA_TYPE: Final = "application/vnd.cncf.notary.payload.v1+json"
ENVELOPE_MEDIA_TYPE: Final = "application/jose+json"
ARTIFACT_TYPE: Final = "application/vnd.cncf.notary.signature"
THUMBPRINT_ANNOTATION: Final = "io.cncf.notary.x509chain.thumbprint#S256"
CREATED_ANNOTATION: Final = "org.opencontainers.image.created"
SIGNING_SCHEME: Final = "notary.x509"

HEADER_SIGNING_SCHEME: Final = "io.cncf.notary.signingScheme"
HEADER_SIGNING_TIME: Final = "io.cncf.notary.signingTime"
HEADER_EXPIRY: Final = "io.cncf.notary.expiry"
HEADER_SIGNING_AGENT: Final = "io.cncf.notary.signingAgent"

DEFAULT_SIGNING_AGENT: Final = f"imgseal/{__version__}"

# Descriptor fields the payload may carry (signature-specification.md "Payload"): the three
# required ones, annotations, and artifactType. notation's SanitizeTargetArtifact keeps the
# same set minus artifactType; anything else (urls, platform, data) is refused rather than
# silently signed.
_DESCRIPTOR_FIELDS: Final = frozenset({"mediaType", "digest", "size", "annotations", "artifactType"})

# signature-specification.md "Algorithm Selection": the key decides the algorithm.
_RSA_ALGS: Final = {2048: "PS256", 3072: "PS384", 4096: "PS512"}
_EC_ALGS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_COORD_BYTES: Final = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}

_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class NotationSigner:
    """A checked signing key with its certificate chain (leaf first, root last)."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]
    alg: str

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


# --- loading -----------------------------------------------------------------------------


def load_signing_material(key_pem: bytes, chain_pem: bytes, *, password: bytes | None = None) -> NotationSigner:
    """Load a private key and its PEM certificate chain and check them for notation signing.

    Refuses (each with a specific one-line error): keys that are not RSA 2048/3072/4096 or
    ECDSA P-256/P-384/P-521; a key that does not match the leaf certificate; a leaf without
    the ``digitalSignature`` key usage or the ``codeSigning`` extended key usage; a chain that
    is not ordered leaf → intermediates → self-signed root; CA certificates without
    ``cA=true`` / ``keyCertSign`` (signature-specification.md "Certificate Requirements").
    """
    key = _load_private_key(key_pem, password)
    chain = _load_chain(chain_pem)
    leaf = chain[0]
    alg = algorithm_for_key(key.public_key())
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise KeyMaterialError(
            "the private key does not match the leaf certificate (first certificate of the chain)",
            hint="put the signing certificate first in the chain file",
            reason="notation-key-mismatch",
        )
    _check_leaf_usages(leaf)
    _check_chain_order(chain)
    return NotationSigner(private_key=key, chain=chain, alg=alg)


def algorithm_for_key(public_key: object) -> str:
    """JWS ``alg`` for a public key per the spec's selection table; KeyMaterialError otherwise."""
    if isinstance(public_key, rsa.RSAPublicKey):
        alg = _RSA_ALGS.get(public_key.key_size)
        if alg is None:
            raise KeyMaterialError(
                f"unsupported RSA key size {public_key.key_size} bits for notation"
                " (supported: 2048, 3072, 4096)",
                reason="notation-unsupported-key",
            )
        return alg
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        ec_alg = _EC_ALGS.get(public_key.curve.name)
        if ec_alg is None:
            raise KeyMaterialError(
                f"unsupported ECDSA curve {public_key.curve.name} for notation"
                " (supported: P-256, P-384, P-521)",
                reason="notation-unsupported-key",
            )
        return ec_alg
    raise KeyMaterialError(
        f"unsupported key type {type(public_key).__name__} for notation (supported: RSA, ECDSA)",
        reason="notation-unsupported-key",
    )


def _load_private_key(key_pem: bytes, password: bytes | None) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except TypeError as exc:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        raise KeyMaterialError(f"cannot read the private key: {exc}", reason="notation-key-unreadable") from exc
    except ValueError as exc:
        raise KeyMaterialError(
            "cannot read the private key: not a PEM private key or wrong password",
            reason="notation-key-unreadable",
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(
            f"unsupported key type {type(key).__name__} for notation (supported: RSA, ECDSA)",
            reason="notation-unsupported-key",
        )
    algorithm_for_key(key.public_key())
    return key


def _load_chain(chain_pem: bytes) -> tuple[x509.Certificate, ...]:
    if b"-----BEGIN CERTIFICATE-----" not in chain_pem:
        raise InvalidInputError("the certificate chain file holds no PEM certificate", reason="notation-bad-chain")
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise InvalidInputError(
            f"cannot parse the certificate chain: {exc}", reason="notation-bad-chain"
        ) from exc
    return tuple(certs)


def _public_der(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _check_leaf_usages(leaf: x509.Certificate) -> None:
    subject = leaf.subject.rfc4514_string()
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise UsageError(
            f"signing certificate {subject!r} has no keyUsage extension; notation requires"
            " digitalSignature",
            reason="notation-missing-usage",
        ) from None
    if not ku.digital_signature:
        raise UsageError(
            f"signing certificate {subject!r} lacks the digitalSignature key usage",
            reason="notation-missing-usage",
        )
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise UsageError(
            f"signing certificate {subject!r} has no extendedKeyUsage extension; codeSigning is required",
            reason="notation-missing-usage",
        ) from None
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise UsageError(
            f"signing certificate {subject!r} lacks the codeSigning extended key usage",
            reason="notation-missing-usage",
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_chain_order(chain: Sequence[x509.Certificate]) -> None:
    """Leaf first, each certificate issued by the next, ending in a self-signed root.

    signature-specification.md "Other requirements": the chain MUST be ordered and MUST contain
    the root; a single certificate must be self-signed (then it is both leaf and root).
    """
    for i, cert in enumerate(chain[:-1]):
        parent = chain[i + 1]
        if not _issued_by(cert, parent):
            raise InvalidInputError(
                f"certificate chain is not ordered leaf first: certificate {i} "
                f"({cert.subject.rfc4514_string()!r}) is not issued by certificate {i + 1} "
                f"({parent.subject.rfc4514_string()!r})",
                reason="notation-bad-chain",
            )
        _check_ca(parent)
    root = chain[-1]
    if not _issued_by(root, root):
        raise InvalidInputError(
            f"certificate chain must end with a self-signed root; {root.subject.rfc4514_string()!r} is not",
            hint="append the root CA certificate to the chain file",
            reason="notation-bad-chain",
        )


def _check_ca(cert: x509.Certificate) -> None:
    subject = cert.subject.rfc4514_string()
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise InvalidInputError(
            f"CA certificate {subject!r} in the chain lacks basicConstraints cA=true",
            reason="notation-bad-chain",
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is None or not ku.key_cert_sign:
        raise InvalidInputError(
            f"CA certificate {subject!r} in the chain lacks the keyCertSign key usage",
            reason="notation-bad-chain",
        )


# --- signing -----------------------------------------------------------------------------


def sign_descriptor(
    signer: NotationSigner,
    descriptor: Mapping[str, Any],
    *,
    signing_time: datetime | None = None,
    expiry: timedelta | None = None,
    signing_agent: str = DEFAULT_SIGNING_AGENT,
) -> bytes:
    """Sign ``descriptor`` and return the JWS envelope (JSON bytes, flattened serialization).

    ``signing_time`` defaults to now; it is truncated to whole seconds (the spec says the
    fractional second SHOULD NOT be used; notation-core-go truncates too). ``expiry`` is a
    duration after the signing time. Every certificate must be valid at the signing time.
    """
    target = _check_descriptor(descriptor)
    when = _signing_time(signing_time)
    for cert in signer.chain:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise KeyMaterialError(
                f"certificate {cert.subject.rfc4514_string()!r} is not valid at the signing time"
                f" {_rfc3339(when)} (valid {_rfc3339(cert.not_valid_before_utc)} to"
                f" {_rfc3339(cert.not_valid_after_utc)})",
                reason="notation-certificate-expired",
            )
    protected: dict[str, Any] = {
        "alg": signer.alg,
        "cty": PAYLOAD_MEDIA_TYPE,
        HEADER_SIGNING_SCHEME: SIGNING_SCHEME,
        HEADER_SIGNING_TIME: _rfc3339(when),
    }
    # signature-envelope-jws.md "crit": signingScheme always; expiry when present.
    crit = [HEADER_SIGNING_SCHEME]
    if expiry is not None:
        if expiry <= timedelta(0):
            raise UsageError("signature expiry must be a positive duration", reason="invalid-duration")
        protected[HEADER_EXPIRY] = _rfc3339(when + expiry)
        crit.append(HEADER_EXPIRY)
    protected["crit"] = crit
    if not isinstance(signing_agent, str):
        raise UsageError("signing agent must be a string")

    payload = _canonical_json({"targetArtifact": target})
    protected_b64 = b64url(_canonical_json(protected))
    payload_b64 = b64url(payload)
    signing_input = f"{protected_b64}.{payload_b64}".encode("ascii")
    signature = _sign(signer.private_key, signer.alg, signing_input)
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in signer.chain]
    header: dict[str, Any] = {"x5c": x5c}
    if signing_agent:
        header[HEADER_SIGNING_AGENT] = signing_agent
    envelope = {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": header,
        "signature": b64url(signature),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def _check_descriptor(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(descriptor, Mapping):
        raise InvalidInputError("descriptor to sign must be a JSON object")
    unknown = sorted(set(descriptor) - _DESCRIPTOR_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"descriptor to sign has unsupported field(s) {', '.join(map(repr, unknown))}"
            " (allowed: mediaType, digest, size, annotations, artifactType)"
        )
    media_type = descriptor.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidInputError("descriptor to sign needs a non-empty string mediaType")
    digest = descriptor.get("digest")
    if not isinstance(digest, str):
        raise InvalidInputError("descriptor to sign needs a string digest")
    try:
        Digest.parse(digest)
    except Error as exc:
        raise InvalidInputError(f"descriptor to sign has a bad digest: {exc.message}") from exc
    size = descriptor.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError("descriptor to sign needs a non-negative integer size")
    target: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    annotations = descriptor.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidInputError("descriptor annotations must map strings to strings")
        if annotations:
            target["annotations"] = dict(annotations)
    artifact_type = descriptor.get("artifactType")
    if artifact_type is not None:
        if not isinstance(artifact_type, str) or not artifact_type:
            raise InvalidInputError("descriptor artifactType must be a non-empty string")
        target["artifactType"] = artifact_type
    return target


def _signing_time(value: datetime | None) -> datetime:
    if value is None:
        value = datetime.now(UTC)
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError("signing time must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical_json(value: Any) -> bytes:
    # Sorted keys, no spaces: the byte form notation-go produces (Go marshals maps sorted).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: str, data: bytes) -> bytes:
    hash_alg = _HASHES[alg[2:]]()
    if isinstance(key, rsa.RSAPrivateKey):
        # RFC 7518 section 3.5: PSS with MGF1 of the same hash and salt length = hash size.
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size), hash_alg)
    der = key.sign(data, ec.ECDSA(hash_alg))
    r, s = decode_dss_signature(der)
    # RFC 7518 section 3.4: JWS ECDSA signatures are R || S, each left-padded to the curve size.
    size = _EC_COORD_BYTES[key.curve.name]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# --- referrer manifest helpers -----------------------------------------------------------


def thumbprint_annotation(chain: Sequence[x509.Certificate]) -> str:
    """Value of ``io.cncf.notary.x509chain.thumbprint#S256``: JSON array of SHA-256 hex.

    signature-specification.md "Storage": the fingerprints of the chain in envelope order;
    notation writes lowercase hex with Go's compact ``json.Marshal``.
    """
    prints = [hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in chain]
    return json.dumps(prints, separators=(",", ":"))


def signature_manifest_annotations(envelope: bytes) -> dict[str, str]:
    """Manifest annotations for an envelope made by :func:`sign_descriptor`.

    The required thumbprint annotation, and ``org.opencontainers.image.created`` set to the
    signing time as notation does.
    """
    try:
        doc = json.loads(envelope)
        certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in doc["header"]["x5c"]]
        protected = json.loads(base64.urlsafe_b64decode(doc["protected"] + "=" * (-len(doc["protected"]) % 4)))
        created = protected[HEADER_SIGNING_TIME]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"not a notation JWS envelope: {exc}") from exc
    if not isinstance(created, str):
        raise InvalidInputError("notation envelope signing time is not a string")
    return {THUMBPRINT_ANNOTATION: thumbprint_annotation(certs), CREATED_ANNOTATION: created}


def parse_duration(text: str) -> timedelta:
    """Parse an expiry such as ``30d``, ``12h``, ``90m`` or ``45s`` (one positive integer + unit)."""
    if not isinstance(text, str):
        raise UsageError("duration must be a string such as 30d, 12h or 90m", reason="invalid-duration")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"invalid duration {text[:40]!r}: expected a positive whole number followed by d, h, m or s"
            " (e.g. 30d, 12h, 90m)",
            reason="invalid-duration",
        )
    return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


def sign_image_notation(
    store: Store,
    subject: Descriptor,
    signer: NotationSigner,
    *,
    expiry: timedelta | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Sign ``subject`` as notation does and attach the JWS envelope as an OCI referrer.

    The referrer has ``artifactType: application/vnd.cncf.notary.signature``, an empty config,
    one ``application/jose+json`` layer holding the envelope, and the chain thumbprint annotation.
    """
    descriptor: dict[str, Any] = {"mediaType": subject.media_type, "digest": str(subject.digest),
                                  "size": subject.size}
    if annotations:
        descriptor["annotations"] = dict(annotations)
    envelope = sign_descriptor(signer, descriptor, expiry=expiry)
    return attach.attach(store, subject, artifact_type=ARTIFACT_TYPE,
                         layers=[attach.Layer(envelope, ENVELOPE_MEDIA_TYPE)],
                         annotations=signature_manifest_annotations(envelope))
