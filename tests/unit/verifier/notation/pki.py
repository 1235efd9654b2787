"""A throwaway X.509 PKI for the notation tests, made with cryptography.

Root CA → intermediate CA → code-signing leaves (RSA or ECDSA), plus the broken leaves the
tests need (no codeSigning EKU, no digitalSignature, expired, with a CRL location) and a
second, unrelated CA. All validity periods are fixed around :data:`NOW` so tests are
deterministic. Keys are cached per kind because RSA 4096 generation is slow.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
VALID_FROM = datetime(2024, 1, 1, tzinfo=UTC)
VALID_TO = datetime(2030, 1, 1, tzinfo=UTC)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

KEY_KINDS = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521")
ALG_FOR_KIND = {
    "rsa2048": "PS256",
    "rsa3072": "PS384",
    "rsa4096": "PS512",
    "p256": "ES256",
    "p384": "ES384",
    "p521": "ES512",
}

LEAF_SUBJECT = {"C": "US", "ST": "WA", "L": "Seattle", "O": "imgseal-test", "OU": "Build", "CN": "Signer"}
_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}


@functools.cache
def make_key(kind: str, slot: int = 0) -> PrivateKey:
    """A private key of ``kind``; ``slot`` gives distinct keys of the same kind."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    return ec.generate_private_key(curves[kind])


def name(attrs: dict[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in attrs.items()])


@dataclass(frozen=True)
class Issued:
    key: PrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm:
    return (
        hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256 else hashes.SHA256()
    )


def issue(
    subject: dict[str, str],
    key: PrivateKey,
    *,
    issuer: Issued | None,
    ca: bool,
    path_length: int | None = None,
    digital_signature: bool = True,
    key_cert_sign: bool | None = None,
    code_signing: bool = True,
    extra_ekus: tuple[x509.ObjectIdentifier, ...] = (),
    not_before: datetime = VALID_FROM,
    not_after: datetime = VALID_TO,
    crl_url: str | None = None,
    include_key_usage: bool = True,
    bc_critical: bool = True,
    sign_hash: hashes.HashAlgorithm | None = None,
) -> Issued:
    """Issue a certificate; ``issuer=None`` makes it self-signed."""
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer.cert.subject if issuer else name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=bc_critical)
    if include_key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca if key_cert_sign is None else key_cert_sign,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if not ca:
        ekus = ([ExtendedKeyUsageOID.CODE_SIGNING] if code_signing else []) + list(extra_ekus)
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            critical=False,
        )
    cert = builder.sign(signer_key, sign_hash or _hash_for(signer_key))
    return Issued(key=key, cert=cert)


@dataclass(frozen=True)
class NotationPKI:
    kind: str
    root: Issued
    intermediate: Issued
    leaf: Issued
    leaf_no_codesigning: Issued
    leaf_no_digital_signature: Issued
    leaf_expired: Issued
    leaf_with_crl: Issued
    other_root: Issued
    other_leaf: Issued

    def chain(self, leaf: Issued | None = None) -> list[x509.Certificate]:
        leaf = leaf or self.leaf
        if leaf is self.other_leaf:
            return [leaf.cert, self.other_root.cert]
        return [leaf.cert, self.intermediate.cert, self.root.cert]

    def chain_pem(self, leaf: Issued | None = None) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain(leaf))


@functools.cache
def build_pki(kind: str = "p256") -> NotationPKI:
    """A PKI whose leaves use keys of ``kind`` (CAs use P-256/P-384 for speed)."""
    root = issue({"C": "US", "O": "imgseal-test", "CN": "Test Root"}, make_key("p384", 1), issuer=None, ca=True)
    inter = issue(
        {"C": "US", "O": "imgseal-test", "CN": "Test Intermediate"},
        make_key("p256", 2),
        issuer=root,
        ca=True,
        path_length=0,
    )
    leaf_key = make_key(kind)
    leaf = issue(LEAF_SUBJECT, leaf_key, issuer=inter, ca=False)
    no_cs = issue({**LEAF_SUBJECT, "CN": "No CodeSigning"}, leaf_key, issuer=inter, ca=False, code_signing=False)
    no_ds = issue(
        {**LEAF_SUBJECT, "CN": "No DigitalSignature"}, leaf_key, issuer=inter, ca=False, digital_signature=False
    )
    expired = issue(
        {**LEAF_SUBJECT, "CN": "Expired"},
        leaf_key,
        issuer=inter,
        ca=False,
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 6, 1, tzinfo=UTC),
    )
    with_crl = issue(
        {**LEAF_SUBJECT, "CN": "With CRL"}, leaf_key, issuer=inter, ca=False, crl_url="http://127.0.0.1:9/crl"
    )
    other_root = issue({"C": "US", "O": "elsewhere", "CN": "Other Root"}, make_key("p256", 3), issuer=None, ca=True)
    other_leaf = issue(
        {"C": "US", "ST": "WA", "O": "imgseal-test", "CN": "Impostor"}, leaf_key, issuer=other_root, ca=False
    )
    return NotationPKI(kind, root, inter, leaf, no_cs, no_ds, expired, with_crl, other_root, other_leaf)


# --- an independent JWS builder for crafted (hostile) envelopes ---------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    """Sign ``data`` as JWS ``alg`` with any key (even one that does not fit ``alg``)."""
    hash_alg = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size), hash_alg)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_alg)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def craft_envelope(
    key: PrivateKey,
    chain: list[x509.Certificate],
    protected: dict[str, Any] | bytes,
    payload: dict[str, Any] | bytes,
    *,
    alg: str | None = None,
    header_extra: dict[str, Any] | None = None,
) -> bytes:
    """Build and sign a flattened JWS envelope exactly as given (no validation)."""
    protected_bytes = protected if isinstance(protected, bytes) else json.dumps(protected).encode()
    payload_bytes = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    p64, b64 = b64url(protected_bytes), b64url(payload_bytes)
    sign_alg = alg or (json.loads(protected_bytes).get("alg") if not isinstance(protected, bytes) else "ES256")
    signature = raw_sign(key, sign_alg, f"{p64}.{b64}".encode())
    header = {"x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]}
    header.update(header_extra or {})
    return json.dumps({"payload": b64, "protected": p64, "header": header, "signature": b64url(signature)}).encode()
