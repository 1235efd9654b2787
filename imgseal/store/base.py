"""The one small protocol every image location implements (registry repository or OCI layout).

Shared logic (digest checks, deep verification, attachments, copy) is written once on
top of it, as go-containerregistry does with ``partial``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from imgseal.digest import Digest
from imgseal.manifest import Descriptor, Manifest


class Store(Protocol):
    """One repository's worth of content-addressed manifests and blobs, plus tags."""

    @property
    def location(self) -> str:
        """Human description such as ``localhost:5000/team/app`` or ``oci-layout:/path``."""

    @property
    def repository(self) -> str:
        """The repository name (a layout reports ``""``)."""

    def get_manifest(self, ref: str | Digest) -> Manifest:
        """Fetch a manifest by tag or digest; by digest, the bytes are checked against it."""

    def has_manifest(self, ref: str | Digest) -> bool:
        """Whether a manifest exists under this tag or digest."""

    def blob_chunks(self, desc: Descriptor) -> Iterator[bytes]:
        """Stream a blob; the iterator raises DigestMismatchError at the end if size or digest differ."""

    def get_blob(self, desc: Descriptor, *, max_bytes: int) -> bytes:
        """Fetch a small blob fully (refusing more than ``max_bytes``) and check it."""

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob exists."""

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
        """Store bytes as a blob (skipped when present)."""

    def put_blob_file(self, path: Path, digest: Digest, size: int) -> None:
        """Store a file as a blob, streaming it."""

    def put_manifest(self, raw: bytes, media_type: str, *, tag: str | None = None) -> Digest:
        """Store manifest bytes, under ``tag`` if given; return their digest."""

    def list_tags(self) -> list[str]:
        """Every tag in the repository."""

    def referrers(self, digest: Digest, artifact_type: str | None = None) -> list[Descriptor] | None:
        """Referrers of ``digest`` via a native API, or None when the store has none."""

    def delete_manifest(self, digest: Digest) -> None:
        """Delete a manifest by digest."""
