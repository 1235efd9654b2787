"""Where a private key's password comes from: the environment, else a terminal prompt.

Never a command-line option: argv is visible to every user on the host (``ps``, ``/proc``) and lands
in shell history. ``IMGSEAL_PASSWORD`` wins; ``COSIGN_PASSWORD`` is honoured so existing cosign
pipelines work unchanged. As in cosign (``os.LookupEnv``), a variable that is set but empty means the
empty password, which the key format allows.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Final

from imgseal.errors import UsageError

PASSWORD_ENV_VARS: Final = ("IMGSEAL_PASSWORD", "COSIGN_PASSWORD")


def _env_bytes(name: str) -> bytes | None:
    # os.environb keeps the exact bytes; the password must not depend on the locale's encoding.
    environb = getattr(os, "environb", None)
    if environb is not None:
        value: bytes | None = environb.get(name.encode("ascii"))
        return value
    text = os.environ.get(name)
    return None if text is None else text.encode("utf-8", "surrogateescape")


def _stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def read_password(confirm: bool) -> bytes:
    """The password for a private key.

    ``confirm`` (for a password that will encrypt a new key file) asks twice on a terminal and
    requires both answers to match. With no variable set and no terminal, fail rather than hang.
    """
    for name in PASSWORD_ENV_VARS:
        value = _env_bytes(name)
        if value is not None:
            return value
    if not _stdin_is_tty():
        raise UsageError(
            "no password for the private key: set IMGSEAL_PASSWORD (or COSIGN_PASSWORD),"
            " or run in a terminal to be prompted",
            reason="password-required",
        )
    try:
        first = getpass.getpass("Enter password for private key: ")
        if confirm:
            second = getpass.getpass("Enter password for private key again: ")
            if first != second:
                raise UsageError("the passwords do not match", reason="password-mismatch")
    except EOFError:
        raise UsageError("no password entered", reason="password-required") from None
    return first.encode("utf-8", "surrogateescape")


def prompt_secret(prompt: str, what: str, env_name: str) -> str:
    """One secret typed on the terminal (no echo); fail rather than hang without a terminal."""
    if not _stdin_is_tty():
        raise UsageError(f"no {what}: set {env_name}, or run in a terminal to be prompted", reason="pin-required")
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise UsageError(f"no {what} entered", reason="pin-required") from None
