"""``imgseal keys``: generate, import and export cosign-compatible key pairs.

Key files are cosign's (``ENCRYPTED SIGSTORE PRIVATE KEY``, scrypt + secretbox; see
:mod:`keys.cosign`), so ``cosign sign --key cosign.key`` and ``imgseal`` use the same files.
Passwords come from ``IMGSEAL_PASSWORD`` / ``COSIGN_PASSWORD`` or a terminal prompt, never argv.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Any

import typer

from imgseal.cli._common import OutputFormat, emit_json, guarded, out

DEFAULT_PREFIX = "cosign"


class KeyType(StrEnum):
    """The ``--type`` choices (keys.GENERATE_KEY_TYPES)."""

    ecdsa_p256 = "ecdsa-p256"
    ecdsa_p384 = "ecdsa-p384"
    ecdsa_p521 = "ecdsa-p521"
    ed25519 = "ed25519"
    rsa_3072 = "rsa-3072"
    rsa_4096 = "rsa-4096"


keys_app = typer.Typer(
    name="keys",
    help=(
        "Generate, import and export cosign-compatible key pairs. The password is read from"
        " IMGSEAL_PASSWORD (or COSIGN_PASSWORD), else prompted for on a terminal."
    ),
    no_args_is_help=True,
)

_TYPE_OPTION = typer.Option(KeyType.ecdsa_p256, "--type", "-t", help="Key algorithm.")
_OUTPUT_OPTION = typer.Option(OutputFormat.text, "--output", "-o", help="Output format.")
_PREFIX_OPTION = typer.Option(
    DEFAULT_PREFIX, "--output-prefix",
    help="Write PREFIX.key (private, mode 0600) and PREFIX.pub (public).",
)
_FORCE_OPTION = typer.Option(False, "--force", help="Overwrite existing PREFIX.key / PREFIX.pub.")


def _refuse_existing(prefix: str, force: bool) -> None:
    # Checked before the password prompt so nobody types a password only to be refused.
    # write_key_pair checks again (and atomically) when it writes.
    import os

    from imgseal.errors import UsageError
    from keys.files import key_pair_paths

    if force:
        return
    for path in key_pair_paths(prefix):
        if os.path.lexists(path):
            raise UsageError(f"refusing to overwrite existing file {path}", hint="use --force to overwrite",
                             reason="file-exists")


def _report_pair(private_path: Any, public_path: Any, key: Any, output: OutputFormat) -> None:
    import keys

    if output is OutputFormat.json:
        emit_json({
            "ok": True,
            "private_key": str(private_path),
            "public_key": str(public_path),
            "key_type": keys.key_type_name(key),
            "key_id": keys.key_id(key),
        })
    else:
        out(f"Private key written to {private_path}")
        out(f"Public key written to {public_path}")


_PKCS11_OPTION = typer.Option(
    None, "--pkcs11", metavar="URI",
    help="Create the pair on a PKCS#11 token instead, e.g. 'pkcs11:token=NAME;object=LABEL?module-path=/path/lib.so'"
    " (PIN from IMGSEAL_PKCS11_PIN or a prompt); only PREFIX.pub is written.",
)


@keys_app.command("generate")
def generate_command(
    key_type: KeyType = _TYPE_OPTION,
    output_prefix: str = _PREFIX_OPTION,
    force: bool = _FORCE_OPTION,
    pkcs11: str | None = _PKCS11_OPTION,
    output: OutputFormat = _OUTPUT_OPTION,
) -> None:
    """Generate a key pair: PREFIX.key (encrypted with the password) and PREFIX.pub.

    With --pkcs11 URI the pair is made on the token (the private key is unextractable there) and
    only PREFIX.pub is written; sign with --key URI. Token key types: ecdsa-p256, ecdsa-p384,
    ecdsa-p521, rsa-3072, rsa-4096. Exit codes: 0 written; 2 bad usage; 4 key or token.
    """

    def run() -> None:
        import keys
        from imgseal.cli._password import read_password

        if pkcs11 is not None:
            _generate_on_token(pkcs11, key_type.value, output_prefix, force, output)
            return
        _refuse_existing(output_prefix, force)
        password = read_password(confirm=True)
        key = keys.generate(key_type.value)
        private_path, public_path = keys.write_key_pair(
            output_prefix, keys.encrypt_private_key(key, password), keys.public_pem(key), force=force
        )
        _report_pair(private_path, public_path, key, output)

    guarded(run, output)


def _generate_on_token(ref: str, kind: str, prefix: str, force: bool, output: OutputFormat) -> None:
    import os

    import keys
    from imgseal.cli._keyload import token_pin
    from imgseal.errors import UsageError
    from keys.files import PUBLIC_MODE, check_writable, key_pair_paths
    from keys.pkcs11 import generate_on_token
    from keys.pkcs11_uri import parse_pkcs11_uri

    uri = parse_pkcs11_uri(ref)
    _, public_path = key_pair_paths(prefix)
    if not os.fspath(prefix) or public_path.name == ".pub":
        raise UsageError("the output prefix must name a file, e.g. 'cosign' or 'keys/release'",
                         reason="bad-output-prefix")
    if not force and os.path.lexists(public_path):
        raise UsageError(f"refusing to overwrite existing file {public_path}", hint="use --force to overwrite",
                         reason="file-exists")
    # A pair made on the token cannot be taken back here: make sure its public half can be written first.
    check_writable(public_path)
    made = generate_on_token(uri, kind, lambda: token_pin(uri))
    keys.write_new_file(public_path, keys.public_pem(made.public), mode=PUBLIC_MODE, force=force)
    key_uri = made.uri.redacted()
    if output is OutputFormat.json:
        emit_json({"ok": True, "public_key": str(public_path), "key_uri": key_uri,
                   "key_type": keys.key_type_name(made.public), "key_id": keys.key_id(made.public)})
    else:
        out(f"Key pair created on the token: {key_uri}")
        out(f"Public key written to {public_path}")


@keys_app.command("import")
def import_command(
    pem: str = typer.Argument(..., metavar="PEM",
                              help="Private key PEM (PKCS#8, SEC1 or PKCS#1): a file or env://VAR."),
    output_prefix: str = _PREFIX_OPTION,
    force: bool = _FORCE_OPTION,
    output: OutputFormat = _OUTPUT_OPTION,
) -> None:
    """Re-encrypt an existing private key in cosign's format as PREFIX.key, with PREFIX.pub.

    An encrypted source PEM is decrypted with the same password that encrypts the new key file.
    """

    def run() -> None:
        import keys
        from imgseal.cli._password import read_password

        _refuse_existing(output_prefix, force)
        source = keys.read_key_ref(pem)
        # Parse an unencrypted source before asking for a password, so bad input fails fast.
        key = None if keys.pem_is_encrypted(source) else keys.import_private_pem(source, None)
        password = read_password(confirm=True)
        if key is None:
            key = keys.import_private_pem(source, password)
        private_path, public_path = keys.write_key_pair(
            output_prefix, keys.encrypt_private_key(key, password), keys.public_pem(key), force=force
        )
        _report_pair(private_path, public_path, key, output)

    guarded(run, output)


@keys_app.command("public")
def public_command(
    key_ref: str = typer.Argument(..., metavar="KEY",
                                  help="cosign private key: a file, env://VAR, or a pkcs11: URI of a token key."),
    output: OutputFormat = _OUTPUT_OPTION,
) -> None:
    """Print the public key (PKIX PEM) of a cosign private key or of a PKCS#11 token key."""

    def run() -> None:
        import keys
        from imgseal.cli._password import read_password
        from keys.pkcs11_uri import is_pkcs11_uri

        key: Any
        if is_pkcs11_uri(key_ref):
            from imgseal.cli._keyload import token_public_key

            key = token_public_key(key_ref)
        else:
            data = keys.read_key_ref(key_ref)
            keys.encrypted_body(data)  # a wrong file fails here, before the password prompt
            key = keys.decrypt_private_key(data, read_password(confirm=False))
        pem = keys.public_pem(key).decode("ascii")
        if output is OutputFormat.json:
            emit_json({"ok": True, "public_key": pem, "key_type": keys.key_type_name(key),
                       "key_id": keys.key_id(key)})
        else:
            sys.stdout.write(pem)
            sys.stdout.flush()

    guarded(run, output)


def register(app: typer.Typer) -> None:
    """Add the ``keys`` command group to ``app``."""
    app.add_typer(keys_app, name="keys")
