"""Key material: the key types imgseal supports, generation, PEM export, signing and verification.

The choices mirror cosign and sigstore/sigstore so that keys and signatures interoperate:

* Key types are those of sigstore's algorithm registry (``pkg/signature/algorithm_registry.go``):
  ECDSA on P-256/P-384/P-521, RSA PKCS#1 v1.5 with 2048-4096 bit moduli, and Ed25519.
* The hash each key type signs with is the registry's default (``LoadDefaultSignerVerifier``):
  P-256 with SHA-256, P-384 with SHA-384, P-521 with SHA-512, RSA with SHA-256.
* Ed25519 key files sign **Ed25519ph** (RFC 8032 §5.1, SHA-512 prehash, empty context), as
  cosign has since 2.4: its ``LoadPrivateKey`` applies ``GetDefaultLoadOptions``, which is
  ``WithED25519ph()`` ("the only available option for hashedrekord entries"). Older cosign
  signed pure Ed25519, so verification accepts either scheme unless told which. That is
  safe: Ed25519ph signs under RFC 8032's ``dom2`` prefix, so a signature of one scheme never
  verifies as the other (a test checks this both ways).
* Weak keys are refused as cosign's ``goodkey.ValidatePubKey`` refuses them (P-224, secp256k1,
  RSA below 2048 or above 4096 bits).

Nothing here prints or prompts; every failure is a :class:`imgseal.errors.Error`.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from imgseal.errors import InvalidInputError, KeyMaterialError, UsageError

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

DEFAULT_KEY_TYPE: Final = "ecdsa-p256"

# The kinds ``generate`` accepts. RSA 2048 is loaded and verified but not generated: sigstore's
# registry still lists it, yet new keys should not be that small.
GENERATE_KEY_TYPES: Final[tuple[str, ...]] = (
    "ecdsa-p256",
    "ecdsa-p384",
    "ecdsa-p521",
    "ed25519",
    "rsa-3072",
    "rsa-4096",
)

_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}
_CURVE_NAMES: Final[dict[str, str]] = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
# sigstore algorithm registry: PKIX_ECDSA_P256_SHA_256, PKIX_ECDSA_P384_SHA_384, PKIX_ECDSA_P521_SHA_512.
_CURVE_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_RSA_BITS: Final = frozenset({2048, 3072, 4096})
# Go's crypto/rsa refuses public exponents above 2**31 - 1, so cosign could not load such a key.
_RSA_MAX_EXPONENT: Final = 2**31 - 1


def generate(kind: str = DEFAULT_KEY_TYPE) -> PrivateKey:
    """A fresh private key of ``kind`` (one of :data:`GENERATE_KEY_TYPES`)."""
    if kind in ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521"):
        curve_name = next(name for name, short in _CURVE_NAMES.items() if kind == f"ecdsa-{short}")
        return ec.generate_private_key(_CURVES[curve_name]())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind in ("rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    raise UsageError(
        f"unknown key type {kind!r}; choose one of {', '.join(GENERATE_KEY_TYPES)}",
        reason="unknown-key-type",
    )


def public_key_of(key: PrivateKey | PublicKey) -> PublicKey:
    """The public half of ``key`` (a public key is returned as it is)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key.public_key()
    return key


def validate_key(key: PrivateKey | PublicKey) -> None:
    """Refuse key types and sizes that cosign refuses (``goodkey.ValidatePubKey``)."""
    pub = public_key_of(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in _CURVES:
            raise KeyMaterialError(
                f"ECDSA curve {pub.curve.name} is not allowed; use P-256, P-384 or P-521",
                reason="weak-key",
            )
    elif isinstance(pub, rsa.RSAPublicKey):
        numbers = pub.public_numbers()
        if pub.key_size not in _RSA_BITS:
            raise KeyMaterialError(
                f"RSA key size {pub.key_size} is not allowed; use 2048, 3072 or 4096 bits",
                reason="weak-key",
            )
        if numbers.e < 3 or numbers.e % 2 == 0 or numbers.e > _RSA_MAX_EXPONENT:
            raise KeyMaterialError(f"RSA public exponent {numbers.e} is not allowed", reason="weak-key")
    elif not isinstance(pub, ed25519.Ed25519PublicKey):
        raise KeyMaterialError(f"unsupported key type {type(pub).__name__}", reason="unsupported-key")


def key_type_name(key: PrivateKey | PublicKey) -> str:
    """A short name for the key's type: ``ecdsa-p256``, ``rsa-3072``, ``ed25519``..."""
    pub = public_key_of(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return "ecdsa-" + _CURVE_NAMES.get(pub.curve.name, pub.curve.name)
    if isinstance(pub, rsa.RSAPublicKey):
        return f"rsa-{pub.key_size}"
    return "ed25519"


def hash_algorithm(key: PrivateKey | PublicKey) -> hashes.HashAlgorithm | None:
    """The hash signatures with ``key`` use; ``None`` for (pure) Ed25519, which hashes internally."""
    pub = public_key_of(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        hash_type = _CURVE_HASHES.get(pub.curve.name)
        if hash_type is None:
            raise KeyMaterialError(f"ECDSA curve {pub.curve.name} is not allowed", reason="weak-key")
        return hash_type()
    if isinstance(pub, rsa.RSAPublicKey):
        return hashes.SHA256()
    return None


def private_pkcs8_der(key: PrivateKey) -> bytes:
    """The unencrypted PKCS#8 DER encoding: the plaintext inside a cosign key file."""
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _der_length(der: bytes, pos: int) -> tuple[int, int]:
    """(content length, header bytes used) of the DER length field at ``pos``."""
    first = der[pos]
    if first < 0x80:
        return first, 1
    count = first & 0x7F
    if not 1 <= count <= 4:
        raise IndexError("unsupported DER length")
    return int.from_bytes(der[pos + 1 : pos + 1 + count], "big"), 1 + count


def _looks_like_pkcs8(der: bytes) -> bool:
    """PrivateKeyInfo (RFC 5208) is SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING ... }.

    cryptography's DER loader also takes SEC1 and PKCS#1, which start SEQUENCE { INTEGER, OCTET STRING
    | INTEGER ... }; Go's ``x509.ParsePKCS8PrivateKey`` (and so cosign) refuses those inside a key file.
    """
    try:
        if der[0] != 0x30:
            return False
        pos = 1 + _der_length(der, 1)[1]
        if der[pos] != 0x02:
            return False
        length, used = _der_length(der, pos + 1)
        return der[pos + 1 + used + length] == 0x30
    except IndexError:
        return False


def load_pkcs8_der(der: bytes) -> PrivateKey:
    """Parse a PKCS#8 DER private key of a supported type (what cosign's ``ParsePKCS8PrivateKey`` reads)."""
    if not _looks_like_pkcs8(der):
        raise KeyMaterialError("the key file does not hold a PKCS#8 private key", reason="bad-key")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyMaterialError("the key file does not hold a PKCS#8 private key", reason="bad-key") from e
    return supported_private_key(key)


def supported_private_key(key: object) -> PrivateKey:
    """``key`` as a :data:`PrivateKey`, if it is of a supported type and strength."""
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyMaterialError(
            f"unsupported private key type {type(key).__name__}; use ECDSA, RSA or Ed25519",
            reason="unsupported-key",
        )
    validate_key(key)
    return key


def public_der(key: PrivateKey | PublicKey) -> bytes:
    """The PKIX (SubjectPublicKeyInfo) DER encoding of the public key."""
    return public_key_of(key).public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    """The PKIX ``PUBLIC KEY`` PEM, as cosign writes ``cosign.pub``."""
    return public_key_of(key).public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem: bytes) -> PublicKey:
    """Parse a PKIX ``PUBLIC KEY`` PEM of a supported type and strength."""
    if b"-----BEGIN PUBLIC KEY-----" not in pem:
        kind = "a private key" if b"PRIVATE KEY-----" in pem else "not a PEM public key"
        raise InvalidInputError(
            f"expected a PEM 'PUBLIC KEY' block, got {kind}",
            hint="give the .pub file, or export it with 'imgseal keys public'",
            reason="bad-public-key",
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise InvalidInputError("the PEM public key does not parse", reason="bad-public-key") from e
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise InvalidInputError(
            f"unsupported public key type {type(key).__name__}; use ECDSA, RSA or Ed25519",
            reason="unsupported-key",
        )
    validate_key(key)
    return key


def key_id(key: PrivateKey | PublicKey) -> str:
    """Hex SHA-256 of the PKIX DER public key: a stable hint (e.g. a bundle's ``publicKey.hint``)."""
    return hashlib.sha256(public_der(key)).hexdigest()


def sign(key: PrivateKey, data: bytes, *, ed25519ph: bool | None = None) -> bytes:
    """Sign ``data`` the way cosign does for this key type.

    ECDSA signatures are ASN.1 DER (as Go's ``ecdsa.SignASN1``); RSA is PKCS#1 v1.5 with SHA-256;
    Ed25519 is Ed25519ph (cosign's default) unless ``ed25519ph=False`` asks for pure Ed25519.
    """
    if ed25519ph and not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError("Ed25519ph applies only to Ed25519 keys", reason="bad-algorithm")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        hash_alg = hash_algorithm(key)
        assert hash_alg is not None
        return key.sign(data, ec.ECDSA(hash_alg))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if ed25519ph is False:
        return key.sign(data)
    return _ed25519ph_sign(key, data)


def verify(public_key: PublicKey, data: bytes, signature: bytes, *, ed25519ph: bool | None = None) -> bool:
    """True iff ``signature`` is a valid signature over ``data`` by ``public_key`` (see :func:`sign`).

    For Ed25519, ``ed25519ph=None`` accepts Ed25519ph or pure Ed25519 (cosign before and since
    2.4); ``True`` or ``False`` accepts only that scheme.
    """
    if ed25519ph and not isinstance(public_key, ed25519.Ed25519PublicKey):
        return False
    if isinstance(public_key, ed25519.Ed25519PublicKey) and ed25519ph is None:
        return verify(public_key, data, signature, ed25519ph=True) or verify(public_key, data, signature,
                                                                            ed25519ph=False)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            hash_alg = hash_algorithm(public_key)
            assert hash_alg is not None
            public_key.verify(signature, data, ec.ECDSA(hash_alg))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif ed25519ph:
            return _ed25519ph_verify(public_key, data, signature)
        else:
            public_key.verify(signature, data)
    except (InvalidSignature, ValueError):
        # ValueError: a signature that is not even well-formed (bad DER, wrong length) is invalid.
        return False
    return True


# --- Ed25519ph (RFC 8032 §5.1) -----------------------------------------------------------
# cryptography has no Ed25519ph; libsodium's crypto_sign_ed25519ph_* (via PyNaCl) implements it
# with the empty context, which is what Go's ed25519 with crypto.SHA512 options produces.


def _ed25519ph_sign(key: ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    from nacl import bindings

    seed = key.private_bytes_raw()
    _, secret = bindings.crypto_sign_seed_keypair(seed)
    state = bindings.crypto_sign_ed25519ph_state()
    bindings.crypto_sign_ed25519ph_update(state, data)
    signature: bytes = bindings.crypto_sign_ed25519ph_final_create(state, secret)
    return signature


def _ed25519ph_verify(public_key: ed25519.Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    from nacl import bindings
    from nacl.exceptions import BadSignatureError, CryptoError

    if len(signature) != 64:
        return False
    state = bindings.crypto_sign_ed25519ph_state()
    bindings.crypto_sign_ed25519ph_update(state, data)
    try:
        return bool(bindings.crypto_sign_ed25519ph_final_verify(state, signature, public_key.public_bytes_raw()))
    except (BadSignatureError, CryptoError):
        return False
