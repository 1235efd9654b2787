"""Loading key material named on the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgseal.errors import UsageError

if TYPE_CHECKING:
    from keys import PrivateKey, PublicKey
    from keys.pkcs11_uri import Pkcs11Uri


def load_private_key(ref: str) -> PrivateKey:
    """A private key from a path, ``env://VAR`` (cosign's encrypted format, or a plain PEM) or a
    ``pkcs11:`` URI (the key stays on the token; it signs there)."""
    from keys.pkcs11_uri import is_pkcs11_uri

    if is_pkcs11_uri(ref):
        return load_token_key(ref)
    from imgseal.cli._password import read_password
    from keys import decrypt_private_key, import_private_pem, is_encrypted_key_file, pem_is_encrypted, read_key_ref

    pem = read_key_ref(ref)
    if is_encrypted_key_file(pem):
        return decrypt_private_key(pem, read_password(confirm=False))
    return import_private_pem(pem, read_password(confirm=False) if pem_is_encrypted(pem) else None)


def load_token_key(ref: str) -> PrivateKey:
    """The private key a ``pkcs11:`` URI names; the PIN as :func:`token_pin` finds it."""
    from keys.pkcs11 import open_token_key
    from keys.pkcs11_uri import parse_pkcs11_uri

    uri = parse_pkcs11_uri(ref)
    return open_token_key(uri, lambda: token_pin(uri))


def token_pin(uri: Pkcs11Uri) -> str:
    """The token's user PIN: ``pin-value=`` (warned about), ``$IMGSEAL_PKCS11_PIN``, or a terminal prompt."""
    from imgseal.cli._common import err
    from imgseal.cli._password import prompt_secret
    from keys.pkcs11 import resolve_pin

    label = uri.token or "token"
    return resolve_pin(uri, lambda: prompt_secret(f"Enter PIN for PKCS#11 token {label}: ", "PKCS#11 PIN",
                                                  "IMGSEAL_PKCS11_PIN"), err)


def token_public_key(ref: str) -> PublicKey:
    """The public key of the ``pkcs11:`` key ``ref`` names (read from its public-key object)."""
    from keys.pkcs11 import token_public_key as read_public
    from keys.pkcs11_uri import parse_pkcs11_uri

    uri = parse_pkcs11_uri(ref)
    return read_public(uri, lambda: token_pin(uri))


def display_key_ref(ref: str) -> str:
    """``ref`` as it may be shown: a PKCS#11 URI loses its pin-value."""
    from keys.pkcs11_uri import is_pkcs11_uri, parse_pkcs11_uri

    if is_pkcs11_uri(ref):
        try:
            return parse_pkcs11_uri(ref).redacted()
        except UsageError:
            return "pkcs11:…"
    return ref


def load_public_keys(refs: list[str]) -> dict[str, PublicKey]:
    """Public keys by display name (the reference as given). A private key file is refused."""
    from keys import load_public_key, read_key_ref
    from keys.pkcs11_uri import is_pkcs11_uri

    out: dict[str, PublicKey] = {}
    for ref in refs:
        if is_pkcs11_uri(ref):
            out[display_key_ref(ref)] = token_public_key(ref)
            continue
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
