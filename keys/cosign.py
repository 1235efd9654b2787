"""cosign's encrypted private key file: scrypt + NaCl secretbox around a PKCS#8 key.

The format is go-securesystemslib's ``encrypted`` package as cosign uses it (``pkg/cosign/keys.go``
``marshalKeyPair`` / ``LoadPrivateKey``)::

    -----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
    base64 of {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":b64(32 bytes)},
               "cipher":{"name":"nacl/secretbox","nonce":b64(24 bytes)},"ciphertext":b64}
    -----END ENCRYPTED SIGSTORE PRIVATE KEY-----

The secretbox key is ``scrypt(password, salt, N, r, p, 32)`` and the plaintext is the PKCS#8 DER
private key. cosign writes the ``SIGSTORE`` label; older releases wrote ``ENCRYPTED COSIGN PRIVATE
KEY``, which is still read. Only the three scrypt strengths securesystemslib defines are accepted
(``CheckParams``: legacy N=2**15, standard N=2**16, OWASP N=2**17, all r=8 p=1): the parameters come
from the file, so anything else could make us spend unbounded memory and time before the password
is even checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import Any, Final

from imgseal.errors import KeyMaterialError
from keys.material import PrivateKey, load_pkcs8_der, private_pkcs8_der, validate_key
from keys.pem import pem_decode, pem_encode

SIGSTORE_PEM_TYPE: Final = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM_TYPE: Final = "ENCRYPTED COSIGN PRIVATE KEY"
ENCRYPTED_PEM_TYPES: Final = frozenset({SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE})

SCRYPT_N_ALLOWED: Final = frozenset({32768, 65536, 131072})
SCRYPT_N_DEFAULT: Final = 65536
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_SIZE: Final = 32
NONCE_SIZE: Final = 24
_SECRETBOX_KEY_SIZE: Final = 32
_SECRETBOX_MAC_SIZE: Final = 16
# A cosign key file for a 4096-bit RSA key is under 4 KiB; anything this large is not a key file.
MAX_KEY_FILE_SIZE: Final = 64 * 1024

DECRYPT_FAILED: Final = "wrong password or corrupted key file"

# --- the encrypted document (securesystemslib ``encrypted.Encrypt`` / ``Decrypt``) ----------


def _scrypt_key(password: bytes, salt: bytes, n: int) -> bytes:
    # OpenSSL needs 128*r*N bytes plus a little; hashlib's default cap (32 MiB) is below N=2**16.
    return hashlib.scrypt(
        password, salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=128 * SCRYPT_R * n + (1 << 20), dklen=_SECRETBOX_KEY_SIZE,
    )


def encrypt_blob(plaintext: bytes, password: bytes, *, scrypt_n: int = SCRYPT_N_DEFAULT) -> bytes:
    """The JSON document securesystemslib's ``encrypted.Encrypt`` produces for ``plaintext``."""
    from nacl.secret import SecretBox

    if scrypt_n not in SCRYPT_N_ALLOWED:
        raise KeyMaterialError(
            f"scrypt N={scrypt_n} is not one of {sorted(SCRYPT_N_ALLOWED)}", reason="bad-kdf-params"
        )
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    box = SecretBox(_scrypt_key(password, salt, scrypt_n))
    ciphertext = box.encrypt(plaintext, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode("ascii"),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode("ascii")},
        "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
    }
    # Compact separators: byte-for-byte the shape Go's json.Marshal writes.
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def _corrupt() -> KeyMaterialError:
    return KeyMaterialError(DECRYPT_FAILED, reason="key-decrypt-failed")


def _field(obj: Any, key: str, kind: type) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _corrupt()
    value = obj[key]
    # bool is an int subclass; a JSON true is never a valid scrypt parameter.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _corrupt()
    return value


def _b64_field(obj: Any, key: str) -> bytes:
    try:
        return base64.b64decode(_field(obj, key, str), validate=True)
    except (binascii.Error, ValueError):
        raise _corrupt() from None


def decrypt_blob(document: bytes, password: bytes) -> bytes:
    """The plaintext of a securesystemslib encrypted document.

    The KDF parameters are checked before scrypt runs (see the module docstring). A wrong password
    and a damaged document are indistinguishable to an authenticated cipher, so both raise
    :class:`KeyMaterialError` with the same message.
    """
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    if len(document) > MAX_KEY_FILE_SIZE:
        raise _corrupt()
    try:
        doc = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise _corrupt() from None
    kdf = _field(doc, "kdf", dict)
    cipher = _field(doc, "cipher", dict)
    if _field(kdf, "name", str) != "scrypt":
        raise KeyMaterialError(f"unsupported key file: KDF {kdf['name']!r} (only scrypt)",
                               reason="bad-kdf-params")
    if _field(cipher, "name", str) != "nacl/secretbox":
        raise KeyMaterialError(f"unsupported key file: cipher {cipher['name']!r} (only nacl/secretbox)",
                               reason="bad-kdf-params")
    params = _field(kdf, "params", dict)
    n, r, p = _field(params, "N", int), _field(params, "r", int), _field(params, "p", int)
    if n not in SCRYPT_N_ALLOWED or r != SCRYPT_R or p != SCRYPT_P:
        raise KeyMaterialError(
            f"unsupported scrypt parameters N={n} r={r} p={p} in the key file"
            f" (accepted: N in {sorted(SCRYPT_N_ALLOWED)}, r={SCRYPT_R}, p={SCRYPT_P})",
            reason="bad-kdf-params",
        )
    salt = _b64_field(kdf, "salt")
    nonce = _b64_field(cipher, "nonce")
    ciphertext = _b64_field(doc, "ciphertext")
    if not salt or len(nonce) != NONCE_SIZE or len(ciphertext) < _SECRETBOX_MAC_SIZE:
        raise _corrupt()
    box = SecretBox(_scrypt_key(password, salt, n))
    try:
        plaintext: bytes = box.decrypt(ciphertext, nonce)
    except CryptoError:
        raise _corrupt() from None
    return plaintext


# --- private key files ------------------------------------------------------------------------


def encrypt_private_key(key: PrivateKey, password: bytes, *, scrypt_n: int = SCRYPT_N_DEFAULT,
                        pem_type: str = SIGSTORE_PEM_TYPE) -> bytes:
    """The cosign key file (PEM bytes) holding ``key`` encrypted under ``password``."""
    if pem_type not in ENCRYPTED_PEM_TYPES:
        raise KeyMaterialError(f"unknown key file PEM type {pem_type!r}", reason="bad-key")
    validate_key(key)
    return pem_encode(pem_type, encrypt_blob(private_pkcs8_der(key), password, scrypt_n=scrypt_n))


def encrypted_body(pem: bytes) -> bytes:
    """The encrypted JSON document inside a cosign key file; a clear error if ``pem`` is not one.

    Cheap (no scrypt), so a caller can reject a wrong file before asking for a password.
    """
    if len(pem) > MAX_KEY_FILE_SIZE:
        raise KeyMaterialError("not a cosign private key: the file is far too large", reason="bad-key")
    block = pem_decode(pem)
    if block is None:
        raise KeyMaterialError("not a cosign private key: no PEM block found", reason="bad-key")
    pem_type, body = block
    if pem_type not in ENCRYPTED_PEM_TYPES:
        raise KeyMaterialError(
            f"not a cosign private key: PEM type {pem_type!r}",
            hint="convert other private keys with 'imgseal keys import'",
            reason="bad-key",
        )
    return body


def is_encrypted_key_file(pem: bytes) -> bool:
    """True if ``pem`` is framed as a cosign/sigstore encrypted private key (not yet decrypted)."""
    try:
        encrypted_body(pem)
    except KeyMaterialError:
        return False
    return True


def decrypt_private_key(pem: bytes, password: bytes) -> PrivateKey:
    """The private key in a cosign key file (``LoadPrivateKey``): decrypt, then parse PKCS#8."""
    der = decrypt_blob(encrypted_body(pem), password)
    try:
        return load_pkcs8_der(der)
    except KeyMaterialError as e:
        # The password was right (the MAC verified), so this is a key file cosign would refuse too:
        # old cosign releases wrote SEC1 "EC PRIVATE KEY" DER inside COSIGN-labelled files.
        raise KeyMaterialError(f"the decrypted key is unusable: {e.message}", reason=e.reason) from e
