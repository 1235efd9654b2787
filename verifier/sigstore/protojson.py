"""Reading protobuf JSON (proto3 JSON mapping) strictly: the rules Sigstore's messages need.

Shared by the bundle parser (verifier.sigstore.bundle) and the trusted-root parser
(verifier.sigstore.trust). Both apply what sigstore-python's models applied: required members
present, unknown ones refused (the trusted-root parser ignores them instead), snake_case
names accepted as proto3 JSON parsers accept them, ``null`` read as absent, ``bytes`` as
standard or URL-safe base64, 64-bit integers as decimal strings (or JSON numbers) within the
unsigned 64-bit domain.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any, Final

UINT64_MAX: Final = 2**64 - 1
_B64_CHARS: Final = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


class ProtoJsonError(Exception):
    """A member that does not follow the message's shape (the caller turns it into its own error)."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def fields(obj: Any, where: str, required: Iterable[str], optional: Iterable[str] = (), *,
           ignore_unknown: bool = False) -> dict[str, Any]:
    """The members of a message as {camelName: value}; refuse missing ones, and unknown ones
    unless ``ignore_unknown`` (the proto3 JSON parser option that readers of newer
    documents use, protojson ``DiscardUnknown``).

    A member given twice (both spellings) is refused. ``null`` is the same as absent.
    """
    if not isinstance(obj, dict):
        raise ProtoJsonError(f"{where}: expected an object")
    required = tuple(required)
    allowed = set(required) | set(optional)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in allowed else camel(key)
        if name not in allowed:
            if ignore_unknown:
                continue
            raise ProtoJsonError(f"{where}.{key}: unknown field")
        if name in out:
            raise ProtoJsonError(f"{where}.{name}: given twice")
        if value is not None:
            out[name] = value
    for name in required:
        if name not in out:
            raise ProtoJsonError(f"{where}.{name}: field required")
    return out


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ProtoJsonError(f"{where}: expected a string")
    return value


def array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtoJsonError(f"{where}: expected an array")
    return value


def b64(value: Any, where: str) -> bytes:
    """proto3 JSON ``bytes``: standard or URL-safe base64, padded or not; nothing else.

    Line breaks are skipped, as Go's decoder (protojson) skips them: some producers wrap
    long values at 76 characters (conformance case rekor2-timestamp-with-incorrect-time_fail).
    """
    if isinstance(value, str):
        value = value.replace("\r", "").replace("\n", "")
    if not isinstance(value, str) or not _B64_CHARS.fullmatch(value) or len(value.rstrip("=")) % 4 == 1:
        raise ProtoJsonError(f"{where}: invalid base64")
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ProtoJsonError(f"{where}: invalid base64") from None


def uint64(value: Any, where: str) -> int:
    """proto3 JSON 64-bit integer: a decimal string (or a JSON number), 0 … 2**64-1."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        n = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        raise ProtoJsonError(f"{where}: expected an unsigned 64-bit integer, got {str(value)[:24]!r}")
    if not 0 <= n <= UINT64_MAX:
        raise ProtoJsonError(f"{where}: value exceeds the uint64 domain: {n}")
    return n
