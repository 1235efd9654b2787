"""Fulcio certificates in Sigstore bundles: chain, SCT, key usage and the signer's identity.

The certificate half of :mod:`verifier.sigstore.bundle`'s decision, also used by the legacy
``.sig`` / ``.att`` verifiers (:mod:`verifier.keyless`): the leaf must chain to a Fulcio CA of
the trusted root at every verified time and be valid then, carry one SCT signed by a CT log of
the root (RFC 6962 §3.2), be for code signing, and name the identity and OIDC issuer the
:class:`KeylessPolicy` asks for (Fulcio ``docs/oid-info.md`` for the extensions).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from imgseal.errors import UsageError, VerificationError
from verifier.sigstore import tlog
from verifier.sigstore.tlog import PublicKey
from verifier.sigstore.trust import CtLogKey, TrustMaterial

_OID_ISSUER_V1: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OID_OTHERNAME_SAN: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
# Fulcio OID extensions (fulcio docs/oid-info.md): (deprecated raw-string v1, DER UTF8String v2).
_GITHUB_CLAIMS: Final = {
    "trigger": ("1.3.6.1.4.1.57264.1.2", "1.3.6.1.4.1.57264.1.20"),
    "sha": ("1.3.6.1.4.1.57264.1.3", "1.3.6.1.4.1.57264.1.13"),
    "repository": ("1.3.6.1.4.1.57264.1.5", "1.3.6.1.4.1.57264.1.12"),
    "ref": ("1.3.6.1.4.1.57264.1.6", "1.3.6.1.4.1.57264.1.14"),
}


@dataclass(frozen=True)
class KeylessPolicy:
    """Who must have signed a certificate bundle.

    Exactly one of ``identity`` / ``identity_regexp`` (matched against the certificate's
    SAN: email, URI or Sigstore other-name) and one of ``issuer`` / ``issuer_regexp``
    (Fulcio OID 1.3.6.1.4.1.57264.1.8, else 1.1). Regexps must match the whole value.
    The optional GitHub claims compare exactly with the Fulcio extensions: ``github_repository``
    (``owner/repo``), ``github_ref`` (``refs/heads/main``), ``github_trigger`` (``push``),
    ``github_sha`` (commit).
    """

    identity: str | None = None
    issuer: str | None = None
    identity_regexp: str | None = None
    issuer_regexp: str | None = None
    github_repository: str | None = None
    github_ref: str | None = None
    github_trigger: str | None = None
    github_sha: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise UsageError("give exactly one of certificate identity or certificate identity regexp")
        if (self.issuer is None) == (self.issuer_regexp is None):
            raise UsageError("give exactly one of certificate OIDC issuer or certificate OIDC issuer regexp")
        for what, rx in (("identity", self.identity_regexp), ("issuer", self.issuer_regexp)):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as e:
                    raise UsageError(f"invalid certificate {what} regexp {rx[:60]!r}: {e}") from e


# --- certificates ---------------------------------------------------------------------------


def verify_certificate(cert: x509.Certificate, policy: KeylessPolicy, trust: TrustMaterial,
                       times: Sequence[datetime], *, require_sct: bool = True) -> tuple[str, str]:
    """Chain, validity at every time, SCT (unless ``require_sct`` is False: an instance without
    a CT log, such as GitHub's), key usage, then the identity policy; returns (identity, issuer)."""
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
    from cryptography.x509.verification import VerificationError as X509Error

    if not trust.fulcio_certs:
        raise VerificationError("trusted root lists no certificate authority", reason="certificate-chain")
    # Fulcio leaves carry the code-signing EKU, not client/server auth: relax only the EKU
    # rule of the WebPKI profiles (as sigstore-python does), then check EKU ourselves.
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage,
                                                                     Criticality.NON_CRITICAL, None)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.ExtendedKeyUsage,
                                                                     Criticality.NON_CRITICAL, None)
    chain: list[x509.Certificate] = []
    for t in times:
        verifier = (PolicyBuilder().store(Store(list(trust.fulcio_certs))).time(t)
                    .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
        try:
            chain = verifier.verify(cert, []).chain[1:]
        except (X509Error, x509.UnsupportedGeneralNameType, ValueError) as e:
            raise VerificationError(f"certificate does not chain to a trusted CA at {t.isoformat()}: {e}",
                                    reason="certificate-chain") from e
        if not cert.not_valid_before_utc <= t <= cert.not_valid_after_utc:
            raise VerificationError(f"certificate was not valid at signing time {t.isoformat()}",
                                    reason="certificate-validity")

    if require_sct:
        verify_sct(cert, chain, trust.ct_keys)

    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise VerificationError(f"certificate lacks key usage extensions: {e}", reason="certificate-usage") from e
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise VerificationError("certificate is not for code signing (KeyUsage/EKU)", reason="certificate-usage")

    return _check_policy(cert, policy)


def verify_sct(cert: x509.Certificate, chain: Sequence[x509.Certificate], ct_keys: Sequence[CtLogKey],
               now: datetime | None = None) -> None:
    """The leaf's one embedded SCT must be signed by a CT log key of the trusted root (RFC 6962 §3.2).

    The checks sigstore-python's ``verify_sct`` makes (its ``_internal/sct.py``), on our own
    inputs: exactly one SCT; for a precertificate entry, the issuer (the chain's first
    certificate, or the second when the first is a CT pre-issuer) must be a CA whose key is
    ECDSA or RSA, and its SHA-256 SPKI hash joins the signed data with the TBS certificate
    without the SCT list; the SCT must be SHA-256 and verify with the log key its log id
    names (every listed key when none matches, as an unauthenticated hint should be).
    Keys whose validity has not started at ``now`` are not offered, and expired ones are
    (a log key signs SCTs for certificates that outlive it).
    """
    import struct

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.certificate_transparency import LogEntryType
    from cryptography.x509.oid import ExtendedKeyUsageOID

    def bad(why: str) -> VerificationError:
        return VerificationError(f"certificate's SCT does not verify: {why}", reason="sct")

    try:
        scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound:
        raise bad("the certificate has no signed certificate timestamp extension") from None
    except ValueError as e:
        raise bad(f"the SCT extension does not parse: {e}") from e
    if len(scts) != 1:
        raise bad(f"expected one certificate timestamp, found {len(scts)}")
    sct = scts[0]
    if sct.entry_type == LogEntryType.PRE_CERTIFICATE:
        if not chain:
            raise bad("no issuer certificate in the chain")
        issuer = chain[0]
        try:
            if ExtendedKeyUsageOID.CERTIFICATE_TRANSPARENCY in issuer.extensions.get_extension_for_class(
                    x509.ExtendedKeyUsage).value:
                if len(chain) < 2:
                    raise bad("the pre-issuer has no issuer in the chain")
                issuer = chain[1]
        except x509.ExtensionNotFound:
            pass
        if not _is_ca(issuer):
            raise bad("the issuer certificate is not a CA")
        issuer_key = issuer.public_key()
        if not isinstance(issuer_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise bad("the issuer key is not ECDSA or RSA")
        entry = hashlib.sha256(tlog.spki_der(issuer_key)).digest() + _u24(cert.tbs_precertificate_bytes)
    elif sct.entry_type == LogEntryType.X509_CERTIFICATE:
        entry = _u24(cert.public_bytes(serialization.Encoding.DER))
    else:  # pragma: no cover - cryptography knows only these two
        raise bad(f"unknown SCT entry type {sct.entry_type!r}")
    if not isinstance(sct.signature_hash_algorithm, hashes.SHA256):
        raise bad("only SHA-256 SCT signatures are accepted")
    millis = int(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000)
    # RFC 6962 §3.2 digitally-signed struct: version, signature_type certificate_timestamp(0),
    # timestamp, entry type, the entry, extensions.
    signed = (struct.pack("!BBQH", sct.version.value, 0, millis, sct.entry_type.value) + entry
              + struct.pack("!H", len(sct.extension_bytes)) + sct.extension_bytes)
    when = now or datetime.now(UTC)
    keys = []
    for ct in ct_keys:
        if ct.valid_from is not None and when < ct.valid_from:
            continue
        loaded = _ct_key(ct)
        if loaded is not None:
            keys.append(loaded)
    named = [k for k in keys if tlog.key_id(k[0]) == sct.log_id]
    for key, algorithm in named or keys:
        if tlog.verify_signature_with(key, sct.signature, signed, algorithm):
            return
    raise bad("no certificate-transparency log key in the trusted root verifies it")


def _u24(data: bytes) -> bytes:
    """TLS ``opaque<1..2^24-1>``: a 3-byte length, then the bytes."""
    if not 0 < len(data) < 1 << 24:
        raise VerificationError("certificate's SCT does not verify: certificate too large", reason="sct")
    return len(data).to_bytes(3, "big") + data


def _is_ca(cert: x509.Certificate) -> bool:
    """sigstore-python ``cert_is_ca``: v3, critical BasicConstraints CA and keyCertSign, both or neither."""
    if cert.version != x509.Version.v3:
        return False
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    if not constraints.critical:
        return False
    try:
        cert_sign = cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca and cert_sign


# protobuf-specs PublicKeyDetails -> the hash a CT log key signs with (sigstore-python ``Key``).
_CT_KEY_HASHES: Final = {
    "PKCS1_RSA_PKCS1V5": "sha256", "PKIX_RSA_PKCS1V15_2048_SHA256": "sha256",
    "PKIX_RSA_PKCS1V15_3072_SHA256": "sha256", "PKIX_RSA_PKCS1V15_4096_SHA256": "sha256",
    "PKIX_ECDSA_P256_SHA_256": "sha256", "PKIX_ECDSA_P384_SHA_384": "sha384", "PKIX_ECDSA_P521_SHA_512": "sha512",
    "PKIX_ED25519": "",
}


def _ct_key(ct: CtLogKey) -> tuple[PublicKey, str] | None:
    """The key and its hash, or None for a key type we cannot use (skipped, as sigstore-python does)."""
    algorithm = _CT_KEY_HASHES.get(ct.key_details)
    if algorithm is None:
        return None
    try:
        key = serialization.load_der_public_key(ct.raw_bytes)
    except (ValueError, UnsupportedAlgorithm):
        return None
    want = (rsa.RSAPublicKey if ct.key_details.startswith(("PKCS1_RSA", "PKIX_RSA")) else
            ed25519.Ed25519PublicKey if ct.key_details == "PKIX_ED25519" else ec.EllipticCurvePublicKey)
    return (key, algorithm) if isinstance(key, want) else None


def der_utf8(raw: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0c) — Fulcio's v2 extension values; None for anything else."""
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    length, offset = raw[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 3 or len(raw) < 2 + n:  # a claim of 16 MiB or more is no claim
            return None
        length, offset = int.from_bytes(raw[2 : 2 + n], "big"), 2 + n
    if offset + length != len(raw):
        return None
    try:
        return raw[offset:].decode()
    except UnicodeDecodeError:
        return None


def extension(cert: x509.Certificate, v1_oid: str, v2_oid: str) -> str | None:
    exts = {e.oid.dotted_string: e.value for e in cert.extensions}
    v2 = exts.get(v2_oid)
    if isinstance(v2, x509.UnrecognizedExtension):
        return der_utf8(v2.value)
    v1 = exts.get(v1_oid)
    if isinstance(v1, x509.UnrecognizedExtension):
        try:
            return v1.value.decode()
        except UnicodeDecodeError:
            return None
    return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """The SAN values a Sigstore identity can match: emails, URIs, Sigstore other-names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values: list[str] = list(san.get_values_for_type(x509.RFC822Name))
    values += san.get_values_for_type(x509.UniformResourceIdentifier)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _OID_OTHERNAME_SAN and (text := der_utf8(other.value)) is not None:
            values.append(text)
    return values


def _check_policy(cert: x509.Certificate, policy: KeylessPolicy) -> tuple[str, str]:
    issuer = extension(cert, _OID_ISSUER_V1.dotted_string, _OID_ISSUER_V2.dotted_string)
    if issuer is None:
        raise VerificationError("certificate has no OIDC issuer extension", reason="certificate-issuer")
    if not (issuer == policy.issuer if policy.issuer is not None
            else re.fullmatch(policy.issuer_regexp or "", issuer)):
        raise VerificationError(f"certificate OIDC issuer {issuer!r} does not match the policy",
                                reason="certificate-issuer")
    identities = certificate_identities(cert)
    matched = [i for i in identities if (i == policy.identity if policy.identity is not None
                                        else re.fullmatch(policy.identity_regexp or "", i))]
    if not matched:
        raise VerificationError(f"certificate identity {', '.join(identities)[:200] or '(none)'} does not match"
                                " the policy", reason="certificate-identity")
    for claim, want in (("repository", policy.github_repository), ("ref", policy.github_ref),
                        ("trigger", policy.github_trigger), ("sha", policy.github_sha)):
        if want is None:
            continue
        got = extension(cert, *_GITHUB_CLAIMS[claim])
        if claim == "repository" and got is not None:
            got = got.removeprefix("https://github.com/")
        if got != want:
            raise VerificationError(f"certificate GitHub workflow {claim} {got!r} is not {want!r}",
                                    reason="certificate-claims")
    return matched[0], issuer
