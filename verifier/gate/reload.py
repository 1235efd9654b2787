"""Hot reload: the policy file and the TLS files re-read when they change, without a restart.

A ConfigMap (or Secret) volume is ``policy.yaml -> ..data/policy.yaml``, ``..data ->
..<timestamp>/``, and an update swaps ``..data`` with one rename (REFERENCE.md §8): a watch on
the file's inode alone misses it. So each watched file is polled by the identity of what it
*resolves* to (real path, inode, size, mtime), which every kind of update changes: an edit in
place, a rename over it, a symlink swap of a parent.

A new policy that does not load keeps the last good one in force; every problem is logged
(one line each, with its line number), counted in the metrics, and shown by ``/readyz``
until a good one loads. TLS files reload into the live :class:`ssl.SSLContext`, so new
connections get the new certificate; a pair that does not load (the certificate written
before its key, mid-rotation) keeps the old pair, and is tried again at the next poll.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imgseal.errors import Error
from verifier.gate.evaluator import Evaluator
from verifier.gate.metrics import WebhookMetrics
from verifier.gate.policy_file import PolicyError, load_policy

DEFAULT_INTERVAL: Final = 2.0

Log = Callable[..., None]


def file_identity(path: Path) -> tuple[object, ...] | None:
    """What ``path`` resolves to now (None if it does not): changes with any kind of update."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class ReloadStatus:
    """What ``/readyz`` shows: the policy in force and, if the newest one did not load, why."""

    loaded_at: float = field(default_factory=time.time)
    sha256: str = ""
    errors: tuple[str, ...] = ()
    failed_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"loadedAt": round(self.loaded_at, 3), "sha256": self.sha256,
                               "lastReloadOk": not self.errors}
        if self.errors:
            doc["errors"] = list(self.errors[:20])
            doc["failedAt"] = round(self.failed_at or 0, 3)
        return doc


class LivePolicy:
    """The evaluator in force; replaced (never mutated) when the policy file changes and loads."""

    def __init__(self, path: Path, evaluator: Evaluator, metrics: WebhookMetrics, log: Log) -> None:
        self.path = path
        self.evaluator = evaluator
        self.metrics = metrics
        self.log = log
        self._identity = file_identity(path)
        self.status = ReloadStatus(sha256=_sha256(path))
        self._lock = threading.Lock()

    def check(self) -> bool:
        """Reload if the file changed; True if a new policy is now in force."""
        identity = file_identity(self.path)
        if identity == self._identity:
            return False
        with self._lock:
            self._identity = identity
            return self._reload()

    def _reload(self) -> bool:
        # Reloaded even if the policy's bytes are the same: a ConfigMap update may change only
        # a key file beside it.
        digest = _sha256(self.path)
        try:
            policy = load_policy(self.path)
        except PolicyError as e:
            problems = [issue.render(str(self.path)) for issue in e.issues] or [e.one_line()]
            return self._failed(problems)
        except Error as e:
            return self._failed([e.one_line()])
        except (RecursionError, ValueError, OSError) as e:  # a hostile file is a failed load too
            return self._failed([f"{self.path}: cannot load: {type(e).__name__}: {e}"[:500]])
        self.evaluator = self.evaluator.with_policy(policy)
        self.status = ReloadStatus(sha256=digest)
        self.metrics.reloaded(True)
        self.log("policy-reload", result="success", policy=str(self.path), rules=len(policy.rules), sha256=digest)
        return True

    def _failed(self, problems: list[str]) -> bool:
        for problem in problems:
            self.log("policy-reload-error", policy=str(self.path), error=problem)
        self.status.errors = tuple(problems)
        self.status.failed_at = time.time()
        self.metrics.reloaded(False)
        self.log("policy-reload", result="failure", policy=str(self.path), problems=len(problems),
                 kept_sha256=self.status.sha256)
        return False


class LiveCertificate:
    """The serving certificate and key, reloaded into the live SSL context when either changes."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path, log: Log) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self.log = log
        self._identity = (file_identity(cert), file_identity(key))
        self.error: str | None = None

    def check(self) -> bool:
        identity = (file_identity(self.cert), file_identity(self.key))
        if identity == self._identity and self.error is None:
            return False
        self._identity = identity
        try:
            self._load()
        except (OSError, ssl.SSLError) as e:
            if self.error != str(e):
                self.log("tls-reload", result="failure", cert=str(self.cert), error=str(e))
            self.error = str(e)  # tried again at the next poll, until the pair matches
            return False
        self.error = None
        self.log("tls-reload", result="success", cert=str(self.cert))
        return True

    def _load(self) -> None:
        """Load the pair into the live context only once it is known to load.

        ``load_cert_chain`` sets the certificate before it checks the key: on a mismatched pair
        it raises with the live context already holding the new certificate, and every
        handshake fails. So the bytes are read once, tried in a scratch context, and only
        then loaded (from the same private copies) into the live one.
        """
        cert, key = self.cert.read_bytes(), self.key.read_bytes()
        with tempfile.TemporaryDirectory(prefix="imgseal-tls-") as tmp:
            cert_copy, key_copy = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            for path, data in ((cert_copy, cert), (key_copy, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_copy, key_copy)
            self.context.load_cert_chain(cert_copy, key_copy)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
