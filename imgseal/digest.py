"""Digests: the value type, hashing of bytes and streams, and a verifying reader.

A digest is ``algorithm ":" encoded`` (image-spec ``descriptor.md``). Only the registered
algorithms ``sha256`` (64 lowercase hex) and ``sha512`` (128 lowercase hex) are accepted;
uppercase hex is invalid by the spec. A digest always names the exact bytes received,
never re-serialised JSON.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from imgseal.errors import DigestMismatchError, InvalidReferenceError

ALGORITHMS: Final[dict[str, int]] = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")
_ANY_ALGORITHM = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
CHUNK: Final = 1 << 20


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest such as ``sha256:<64 hex>``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        expected = ALGORITHMS.get(self.algorithm)
        if expected is None:
            raise InvalidReferenceError(
                f"unsupported digest algorithm {self.algorithm[:32]!r} (expected sha256 or sha512)"
            )
        if len(self.hex) != expected or not _HEX.fullmatch(self.hex):
            raise InvalidReferenceError(
                f"invalid {self.algorithm} digest: expected {expected} lowercase hex characters,"
                f" got {_describe(self.hex)}"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``alg:hex``; raise :class:`InvalidReferenceError` naming what is wrong."""
        if not isinstance(text, str):
            raise InvalidReferenceError("digest must be a string")
        if ":" not in text:
            raise InvalidReferenceError(
                f"invalid digest {_clip(text)!r}: expected 'sha256:<64 hex>' (missing algorithm prefix)"
            )
        algorithm, _, encoded = text.partition(":")
        if not _ANY_ALGORITHM.fullmatch(algorithm):
            raise InvalidReferenceError(f"invalid digest {_clip(text)!r}: malformed algorithm {_clip(algorithm)!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def of_stream(cls, stream: BinaryIO, algorithm: str = "sha256") -> tuple[Digest, int]:
        """Digest and size of everything left in ``stream``."""
        h = hashlib.new(algorithm)
        size = 0
        while chunk := stream.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
        return cls(algorithm, h.hexdigest()), size

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def check(self, data: bytes, *, what: str = "content") -> None:
        """Raise :class:`DigestMismatchError` unless ``data`` hashes to this digest."""
        actual = Digest(self.algorithm, hashlib.new(self.algorithm, data).hexdigest())
        if actual != self:
            raise DigestMismatchError(f"{what} digest mismatch: expected {self}, got {actual}")

    @property
    def tag_form(self) -> str:
        """The referrers/cosign tag form ``sha256-<hex>``."""
        return f"{self.algorithm}-{self.hex}"

    @property
    def short(self) -> str:
        return f"{self.algorithm}:{self.hex[:12]}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(encoded: str) -> str:
    if not encoded:
        return "nothing"
    if encoded != encoded.lower() and _HEX.fullmatch(encoded.lower()):
        return f"uppercase hex {_clip(encoded, 20)!r}"
    if not _HEX.fullmatch(encoded):
        return f"non-hex characters in {_clip(encoded, 20)!r}"
    return f"{len(encoded)} characters"


class VerifyingReader:
    """Wrap an iterator of chunks; hash while reading; fail on overrun or mismatch.

    Nothing read from this reader should be trusted until :meth:`finish` has returned
    (iteration calls it automatically after the last chunk).
    """

    def __init__(self, chunks: Iterable[bytes], expected: Digest, size: int | None, *, what: str) -> None:
        self._chunks = iter(chunks)
        self.expected = expected
        self.size = size
        self.what = what
        self._hash = expected.hasher()
        self.received = 0
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.received += len(chunk)
            if self.size is not None and self.received > self.size:
                raise DigestMismatchError(
                    f"{self.what}: size overrun, more than the {self.size} bytes its descriptor declares"
                )
            self._hash.update(chunk)
            yield chunk
        self.finish()

    def finish(self) -> None:
        if self._done:
            return
        if self.size is not None and self.received != self.size:
            raise DigestMismatchError(
                f"{self.what}: size mismatch, expected {self.size} bytes, got {self.received}"
            )
        actual = Digest(self.expected.algorithm, self._hash.hexdigest())
        if actual != self.expected:
            raise DigestMismatchError(f"{self.what}: digest mismatch, expected {self.expected}, got {actual}")
        self._done = True


def verify_chunks(chunks: Iterable[bytes], expected: Digest, size: int | None, *, what: str) -> int:
    """Consume ``chunks`` fully, verifying size and digest; return the byte count."""
    reader = VerifyingReader(chunks, expected, size, what=what)
    for _ in reader:
        pass
    return reader.received
