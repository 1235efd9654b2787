"""A TUF repository built with python-tuf's Metadata API and served on 127.0.0.1.

It mimics GitHub's (tuf-repo.github.com): consistent snapshots, one target
``trusted_root.json`` stored as ``targets/<sha256>.trusted_root.json``, metadata at the base
URL (``1.root.json`` …, ``timestamp.json``, ``N.snapshot.json``, ``N.targets.json``). Keys are
ECDSA P-256 (securesystemslib ``CryptoSigner``), one per role, threshold 1.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp

ROLES = ("root", "targets", "snapshot", "timestamp")
TARGET = "trusted_root.json"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@dataclass
class TufRepository:
    directory: Path
    signers: dict[str, CryptoSigner] = field(default_factory=dict)
    root: Metadata[Root] | None = None
    version: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> TufRepository:
        (self.directory / "targets").mkdir(parents=True, exist_ok=True)
        handler = partial(_Quiet, directory=str(self.directory))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def init(self) -> Path:
        """Root v1 (one key per role); returns the path of 1.root.json (the client's bootstrap)."""
        (self.directory / "targets").mkdir(parents=True, exist_ok=True)
        self.signers = {role: CryptoSigner.generate_ecdsa() for role in ROLES}
        root = Root(expires=_in(days=365))
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        return self._write_root()

    def rotate_root(self, role: str = "targets") -> None:
        """Root v+1 with a new key for ``role``, signed by the old and the new root keys."""
        assert self.root is not None
        old_root_signer = self.signers["root"]
        new = CryptoSigner.generate_ecdsa()
        root = self.root.signed
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(new.public_key, role)
        self.signers[role] = new
        if role == "root":
            self.root.signatures.clear()
            self.root.signed.version += 1
            self.root.sign(old_root_signer, append=True)
            self.root.sign(new, append=True)
            self._store(self.root, f"{self.root.signed.version}.root.json")
            return
        root.version += 1
        self._write_root()

    def publish(self, target: bytes, *, timestamp_expires: datetime | None = None,
                tamper_target: bool = False, name: str = TARGET) -> None:
        """Targets, snapshot and timestamp metadata for ``target`` (written under its hash)."""
        self.version += 1
        info = TargetFile.from_data(name, target, ["sha256"])
        stored = target + b" " if tamper_target else target
        (self.directory / "targets" / f"{info.hashes['sha256']}.{name}").write_bytes(stored)
        targets = Metadata(Targets(version=self.version, expires=_in(days=30), targets={name: info}))
        self._sign_store(targets, "targets", f"{self.version}.targets.json")
        snapshot = Metadata(Snapshot(version=self.version, expires=_in(days=7),
                                     meta={"targets.json": MetaFile(version=self.version)}))
        self._sign_store(snapshot, "snapshot", f"{self.version}.snapshot.json")
        timestamp = Metadata(Timestamp(version=self.version, expires=timestamp_expires or _in(days=1),
                                       snapshot_meta=MetaFile(version=self.version)))
        self._sign_store(timestamp, "timestamp", "timestamp.json")

    def _write_root(self) -> Path:
        assert self.root is not None
        self.root.signatures.clear()
        self.root.sign(self.signers["root"])
        return self._store(self.root, f"{self.root.signed.version}.root.json")

    def _sign_store(self, md: Metadata[Any], role: str, name: str) -> None:
        md.sign(self.signers[role])
        self._store(md, name)

    def _store(self, md: Metadata[Any], name: str) -> Path:
        path = self.directory / name
        path.write_bytes(md.to_bytes())
        return path


def _in(**delta: float) -> datetime:
    return (datetime.now(UTC) + timedelta(**delta)).replace(microsecond=0)
