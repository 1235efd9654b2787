"""Read a private key from any PEM form cosign's ``import-key-pair`` reads (and a few more).

cosign (``pkg/cosign/keys.go`` ``ImportKeyPair``) accepts PKCS#1 ``RSA PRIVATE KEY``, SEC1
``EC PRIVATE KEY`` and PKCS#8 ``PRIVATE KEY``, and only unencrypted ones. We also read a
password-protected PKCS#8 ``ENCRYPTED PRIVATE KEY``, an OpenSSL-encrypted legacy PEM
(``Proc-Type: 4,ENCRYPTED``), and an existing cosign key file (to re-encrypt or relabel it).
The same strength rules as cosign's ``goodkey`` apply to every path.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from imgseal.errors import KeyMaterialError
from keys.cosign import DECRYPT_FAILED, ENCRYPTED_PEM_TYPES, MAX_KEY_FILE_SIZE, decrypt_private_key
from keys.material import PrivateKey, supported_private_key
from keys.pem import PemBlock, first_pem_block

PLAIN_PEM_TYPES: Final = frozenset({"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"})
PKCS8_ENCRYPTED_PEM_TYPE: Final = "ENCRYPTED PRIVATE KEY"


def import_private_pem(pem: bytes, password: bytes | None) -> PrivateKey:
    """The private key in ``pem``; ``password`` decrypts it if the PEM is encrypted (else ignored)."""
    if len(pem) > MAX_KEY_FILE_SIZE:
        raise KeyMaterialError("not a private key file: it is far too large", reason="bad-key")
    block = first_pem_block(pem)
    if block is None:
        raise KeyMaterialError("no PEM private key found in the input", reason="bad-key")
    if _encrypted(block):
        if password is None:
            raise KeyMaterialError("the PEM private key is encrypted and no password was given",
                                   reason="password-required")
        if block.type in ENCRYPTED_PEM_TYPES:
            return decrypt_private_key(block.raw, password)
        return _load(block.raw, password)
    if block.type in PLAIN_PEM_TYPES:
        return _load(block.raw, None)
    raise KeyMaterialError(
        f"unsupported PEM type {block.type!r}; expected PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC1),"
        " RSA PRIVATE KEY (PKCS#1), ENCRYPTED PRIVATE KEY or a cosign key",
        reason="bad-key",
    )


def pem_is_encrypted(pem: bytes) -> bool:
    """True if the first PEM block in ``pem`` is a password-protected private key of a kind we read."""
    block = first_pem_block(pem[:MAX_KEY_FILE_SIZE])
    return block is not None and _encrypted(block)


def _encrypted(block: PemBlock) -> bool:
    if block.type in ENCRYPTED_PEM_TYPES or block.type == PKCS8_ENCRYPTED_PEM_TYPE:
        return True
    # RFC 1421 legacy OpenSSL encryption: "Proc-Type: 4,ENCRYPTED" plus "DEK-Info".
    return block.type in PLAIN_PEM_TYPES and any(
        name == "Proc-Type" and "ENCRYPTED" in value for name, value in block.headers
    )


def _load(raw: bytes, password: bytes | None) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(raw, password=password)
    except ValueError as e:
        if password is not None and "password" in str(e).lower():
            raise KeyMaterialError(DECRYPT_FAILED, reason="key-decrypt-failed") from e
        raise KeyMaterialError("the PEM private key does not parse", reason="bad-key") from e
    except UnsupportedAlgorithm as e:
        raise KeyMaterialError(f"unsupported private key algorithm: {e}", reason="unsupported-key") from e
    except TypeError as e:  # encryption state disagrees with the headers
        raise KeyMaterialError("the PEM private key does not parse", reason="bad-key") from e
    return supported_private_key(key)
