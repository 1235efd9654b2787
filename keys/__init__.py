"""Key material: generation, cosign-format encryption, loading and export.

The public surface, re-exported here so callers write ``from keys import sign, verify``:

* :mod:`keys.material` - key types, ``generate``, ``public_pem``, ``load_public_key``, ``sign``,
  ``verify``, ``key_id``, ``key_type_name``, ``hash_algorithm``;
* :mod:`keys.cosign` - the encrypted cosign key file (``encrypt_private_key``, ``decrypt_private_key``);
* :mod:`keys.importing` - ``import_private_pem`` for PKCS#8, SEC1 and PKCS#1 PEM;
* :mod:`keys.refs` - ``read_key_ref`` for file paths and ``env://VAR``;
* :mod:`keys.files` - ``write_key_pair`` / ``write_new_file`` (0600, atomic, no silent overwrite).

This package imports nothing of imgseal but :mod:`imgseal.errors`.
"""

from keys.cosign import decrypt_private_key, encrypt_private_key, encrypted_body, is_encrypted_key_file
from keys.files import write_key_pair, write_new_file
from keys.importing import import_private_pem, pem_is_encrypted
from keys.material import (
    DEFAULT_KEY_TYPE,
    GENERATE_KEY_TYPES,
    PrivateKey,
    PublicKey,
    generate,
    hash_algorithm,
    key_id,
    key_type_name,
    load_public_key,
    public_key_of,
    public_pem,
    sign,
    verify,
)
from keys.refs import read_key_ref

__all__ = [
    "DEFAULT_KEY_TYPE",
    "GENERATE_KEY_TYPES",
    "PrivateKey",
    "PublicKey",
    "decrypt_private_key",
    "encrypt_private_key",
    "encrypted_body",
    "generate",
    "hash_algorithm",
    "import_private_pem",
    "is_encrypted_key_file",
    "key_id",
    "key_type_name",
    "load_public_key",
    "pem_is_encrypted",
    "public_key_of",
    "public_pem",
    "read_key_ref",
    "sign",
    "verify",
    "write_key_pair",
    "write_new_file",
]
