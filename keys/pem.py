"""Minimal PEM (RFC 7468) framing, matching Go's ``encoding/pem`` where cosign depends on it."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?",
    re.DOTALL,
)


@dataclass(frozen=True)
class PemBlock:
    """One decoded PEM block: its label, headers (``Proc-Type`` etc.), body, and exact source bytes."""

    type: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes


def pem_encode(pem_type: str, body: bytes) -> bytes:
    """PEM as Go's ``pem.EncodeToMemory`` writes it: 64-column base64 lines, trailing newline."""
    b64 = base64.b64encode(body)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    head = f"-----BEGIN {pem_type}-----\n".encode()
    tail = f"-----END {pem_type}-----\n".encode()
    return head + b"".join(line + b"\n" for line in lines) + tail


def first_pem_block(data: bytes) -> PemBlock | None:
    """The first well-formed PEM block in ``data``, or ``None``.

    Header lines (``Proc-Type: 4,ENCRYPTED``) end at a blank line, as in RFC 1421 and Go's
    ``pem.Decode``. A block whose body is not valid base64 counts as no block.
    """
    match = _PEM_BLOCK.search(data)
    if match is None:
        return None
    lines = match.group(2).splitlines()
    headers: list[tuple[str, str]] = []
    if lines and b":" in lines[0]:
        blank = [i for i, line in enumerate(lines) if not line.strip()]
        if not blank:
            return None
        for line in lines[: blank[0]]:
            name, _, value = line.decode("ascii", "replace").partition(":")
            headers.append((name.strip(), value.strip()))
        lines = lines[blank[0] + 1 :]
    try:
        body = base64.b64decode(b"".join(line.strip() for line in lines), validate=True)
    except (binascii.Error, ValueError):
        return None
    return PemBlock(match.group(1).decode("ascii"), tuple(headers), body, match.group(0))


def pem_decode(data: bytes) -> tuple[str, bytes] | None:
    """The type and body of the first PEM block in ``data``, or ``None`` if there is none."""
    block = first_pem_block(data)
    return None if block is None else (block.type, block.body)
