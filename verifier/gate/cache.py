"""Success caches: only successes are remembered, by (digest, rule fingerprint), for a TTL.

On disk for the CLI (:class:`DiskCache`) and in memory for the webhook (:class:`MemoryCache`),
as Kyverno does (60 min). A tag is never cached: it is resolved on every run, and the key is
the digest it resolved to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Final, Protocol

DEFAULT_TTL: Final = 3600.0


def _cache_key(digest: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{digest}\n{fingerprint}".encode()).hexdigest()


class MemoryCache:
    """Successes in memory with a TTL and a bound (the webhook's cache)."""

    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = 1000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, float] = {}
        self._lock = threading.Lock()

    def hit(self, digest: str, fingerprint: str) -> bool:
        key = _cache_key(digest, fingerprint)
        with self._lock:
            expires = self._entries.get(key)
            if expires is None:
                return False
            if expires < time.time():
                del self._entries[key]
                return False
            return True

    def record(self, digest: str, fingerprint: str) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                oldest = min(self._entries, key=self._entries.__getitem__)
                del self._entries[oldest]
            self._entries[_cache_key(digest, fingerprint)] = time.time() + self.ttl


class DiskCache:
    """Successes on disk, one JSON file per (digest, rule fingerprint), written atomically with mode 0600.

    A file that is unreadable, malformed, expired or for another key is a miss, never a hit.
    """

    def __init__(self, directory: Path, ttl: float = DEFAULT_TTL) -> None:
        self.directory = directory
        self.ttl = ttl

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def hit(self, digest: str, fingerprint: str) -> bool:
        key = _cache_key(digest, fingerprint)
        try:
            data = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return False
        if not isinstance(data, dict) or data.get("digest") != digest or data.get("rule") != fingerprint:
            return False
        verified_at = data.get("verifiedAt")
        return isinstance(verified_at, int | float) and 0 <= time.time() - verified_at < self.ttl

    def record(self, digest: str, fingerprint: str) -> None:
        key = _cache_key(digest, fingerprint)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            body = json.dumps({"digest": digest, "rule": fingerprint, "verifiedAt": time.time()}).encode()
            write_atomic(self._path(key), body, mode=0o600)
        except OSError:
            pass  # a cache that cannot be written only costs time


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("imgseal")) / "gate"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write via a temporary file in the same directory and ``os.replace``: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class SuccessCache(Protocol):
    """What :class:`Evaluator` needs of a cache (both caches above fit)."""

    def hit(self, digest: str, fingerprint: str) -> bool: ...

    def record(self, digest: str, fingerprint: str) -> None: ...
