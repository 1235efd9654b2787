"""Success caches: only successes are remembered, by (digest, rule fingerprint), for a TTL.

On disk for the CLI (:class:`DiskCache`) and in memory for the webhook (:class:`MemoryCache`),
as Kyverno does (60 min). The key is the digest a tag resolved to; tags are resolved on every
run, except that the webhook may remember a resolution for a few seconds (:class:`TagCache`).
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


class TagCache:
    """Tag -> digest resolutions for a few seconds, per pulling identity (the webhook's, opt-in).

    Why: a warm admission of a 5-image Pod otherwise spends most of its time, and most of
    the registry's, asking five tags what they point to; a Deployment scaled up asks the same
    five for every Pod in the same second. What it costs: a tag moved less than ``ttl``
    seconds ago is seen late. Whatever is admitted is still a digest that was verified, and
    ``/mutate`` pins the Pod to exactly that digest; a ``/validate``-only webhook already has
    that window between admission and the kubelet's pull. ``ttl`` 0 disables it.
    Keyed by who pulled as well (``scope``): a resolution made with one namespace's
    credentials is not reused for another's.
    """

    def __init__(self, ttl: float, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, scope: str, name: str, tag: str) -> str | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            found = self._entries.get((scope, name, tag))
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, scope: str, name: str, tag: str, digest: str) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
                while len(self._entries) >= self.max_entries:
                    del self._entries[next(iter(self._entries))]
            self._entries[(scope, name, tag)] = (time.monotonic() + self.ttl, digest)


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
