"""Loading key material named on the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgseal.errors import UsageError

if TYPE_CHECKING:
    from keys import PrivateKey, PublicKey


def load_private_key(ref: str) -> PrivateKey:
    """A private key from a path or ``env://VAR``: cosign's encrypted format, or a plain PEM."""
    from imgseal.cli._password import read_password
    from keys import decrypt_private_key, import_private_pem, is_encrypted_key_file, pem_is_encrypted, read_key_ref

    pem = read_key_ref(ref)
    if is_encrypted_key_file(pem):
        return decrypt_private_key(pem, read_password(confirm=False))
    return import_private_pem(pem, read_password(confirm=False) if pem_is_encrypted(pem) else None)


def load_public_keys(refs: list[str]) -> dict[str, PublicKey]:
    """Public keys by display name (the reference as given). A private key file is refused."""
    from keys import load_public_key, read_key_ref

    out: dict[str, PublicKey] = {}
    for ref in refs:
        pem = read_key_ref(ref)
        if b"PRIVATE KEY" in pem:
            raise UsageError(f"--key {ref}: this is a private key; verify with the public key (.pub)",
                             reason="bad-key-ref")
        out[ref] = load_public_key(pem)
    return out


def parse_annotations(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid annotation {item[:80]!r}: expected key=value", reason="bad-annotation")
        out[key] = value
    return out
