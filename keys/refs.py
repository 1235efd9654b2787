"""Key references: a file path or ``env://VAR``, as cosign's ``--key`` accepts them.

cosign also resolves KMS URIs (``awskms://``, ``gcpkms://``, ``hashivault://``...) and ``k8s://`` secrets;
imgseal does not, and says so rather than treating such a string as a file name. ``pkcs11:`` URIs name a
key on a token (:mod:`keys.pkcs11`): the commands that sign take them; here, where key *bytes* are wanted,
they are refused without echoing the URI (it may carry a PIN).
"""

from __future__ import annotations

import os
import re
from typing import Final

from imgseal.errors import KeyMaterialError, UsageError

ENV_SCHEME: Final = "env://"
# Larger than any PEM key or cosign key file by two orders of magnitude; refuses to slurp big files.
MAX_KEY_REF_SIZE: Final = 1 << 20

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def read_key_ref(ref: str) -> bytes:
    """The bytes a key reference names: the file's content, or the environment variable's value."""
    if not ref:
        raise UsageError("empty key reference; give a file path or env://VAR", reason="bad-key-ref")
    if ref[:7].lower() == "pkcs11:":
        raise UsageError("a pkcs11: URI names a key on a token, which never leaves it; this command needs a key file",
                         reason="bad-key-ref")
    if ref.startswith(ENV_SCHEME):
        return _read_env(ref.removeprefix(ENV_SCHEME))
    scheme = _URI_SCHEME.match(ref)
    if scheme is not None:
        raise UsageError(
            f"unsupported key reference scheme {scheme.group(1)!r}://; give a file path or env://VAR",
            reason="bad-key-ref",
        )
    return _read_file(ref)


def _read_env(name: str) -> bytes:
    if not _ENV_NAME.fullmatch(name):
        raise UsageError(f"invalid environment variable name in key reference env://{name}",
                         reason="bad-key-ref")
    # os.environb keeps the variable's exact bytes (PEM is ASCII, but never guess an encoding).
    value = os.environb.get(name.encode("ascii"))
    if value is None:
        raise KeyMaterialError(f"environment variable {name} (from env://{name}) is not set",
                               reason="key-unreadable")
    if not value.strip():
        raise KeyMaterialError(f"environment variable {name} (from env://{name}) is empty",
                               reason="key-unreadable")
    if len(value) > MAX_KEY_REF_SIZE:
        raise KeyMaterialError(f"environment variable {name} is too large to hold a key",
                               reason="key-unreadable")
    return value


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_REF_SIZE + 1)
    except FileNotFoundError:
        raise KeyMaterialError(f"key file not found: {path}", reason="key-unreadable") from None
    except IsADirectoryError:
        raise KeyMaterialError(f"key path is a directory, not a file: {path}", reason="key-unreadable") from None
    except PermissionError:
        raise KeyMaterialError(f"cannot read key file {path}: permission denied",
                               reason="key-unreadable") from None
    except OSError as e:
        raise KeyMaterialError(f"cannot read key file {path}: {e.strerror or e}", reason="key-unreadable") from e
    if len(data) > MAX_KEY_REF_SIZE:
        raise KeyMaterialError(f"key file {path} is too large to be a key", reason="key-unreadable")
    if not data.strip():
        raise KeyMaterialError(f"key file {path} is empty", reason="key-unreadable")
    return data
