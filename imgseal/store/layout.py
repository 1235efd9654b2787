"""An OCI image layout directory (image-spec ``image-layout.md``), read and written.

``oci-layout`` holds ``{"imageLayoutVersion": "1.0.0"}``; ``index.json`` lists manifests
(tags in the ``org.opencontainers.image.ref.name`` annotation); blobs live at
``blobs/<alg>/<hex>``. Blob paths are only ever built from a validated :class:`Digest`, so
no input can escape the directory. Referrers are found by scanning ``index.json`` for
manifests whose ``subject`` names the digest (as ORAS's OCI store does); ``index.json`` is
rewritten atomically under a file lock so concurrent writers do not lose entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from imgseal.digest import CHUNK, Digest, VerifyingReader
from imgseal.errors import InvalidInputError, NotFoundError, UsageError
from imgseal.manifest import (
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    REF_NAME_ANNOTATION,
    Descriptor,
    Manifest,
    canonical_json,
    load_json,
    parse_manifest,
)

LAYOUT_VERSION: Final = {"imageLayoutVersion": "1.0.0"}
MAX_INDEX_BYTES: Final = 64 << 20


class LayoutStore:
    """Read and write an OCI image layout directory."""

    def __init__(self, root: Path, *, create: bool = False) -> None:
        self.root = root
        marker = root / "oci-layout"
        if not marker.exists():
            if not create:
                if not root.exists():
                    raise NotFoundError(f"OCI layout directory {root} does not exist")
                raise InvalidInputError(f"{root} is not an OCI image layout (no oci-layout file)")
            root.mkdir(parents=True, exist_ok=True)
            (root / "blobs").mkdir(exist_ok=True)
            _atomic_write(marker, json.dumps(LAYOUT_VERSION).encode())
            if not (root / "index.json").exists():
                _atomic_write(root / "index.json", canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                                   "manifests": []}))
        else:
            data = load_json(_read_file(marker, 4096), what=f"{marker}", max_bytes=4096)
            if not isinstance(data, dict) or data.get("imageLayoutVersion") != "1.0.0":
                raise InvalidInputError(f"{marker}: unsupported imageLayoutVersion")
        self._subject_cache: dict[Digest, Digest | None] = {}

    @property
    def location(self) -> str:
        return f"oci-layout:{self.root}"

    @property
    def repository(self) -> str:
        return ""

    # -- index.json --------------------------------------------------------------------

    def _index_entries(self) -> list[Descriptor]:
        path = self.root / "index.json"
        data = load_json(_read_file(path, MAX_INDEX_BYTES), what=f"{path}", max_bytes=MAX_INDEX_BYTES)
        if not isinstance(data, dict) or not isinstance(data.get("manifests"), list):
            raise InvalidInputError(f"{path} is not an image index")
        return [Descriptor.from_dict(d, what=f"index.json entry {i}") for i, d in enumerate(data["manifests"])]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".imgseal.lock").open("a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write_index(self, entries: list[Descriptor]) -> None:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e.to_dict() for e in entries]}
        _atomic_write(self.root / "index.json", canonical_json(doc))

    # -- blobs -------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        # Digest's constructor already guaranteed [a-z0-9]+ algorithm and lowercase hex: no traversal possible.
        return self.root / "blobs" / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def blob_chunks(self, desc: Descriptor) -> Iterator[bytes]:
        path = self.blob_path(desc.digest)

        def chunks() -> Iterator[bytes]:
            try:
                with path.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        yield chunk
            except FileNotFoundError as e:
                raise NotFoundError(f"blob {desc.digest} is missing from {self.location}") from e

        return iter(VerifyingReader(chunks(), desc.digest, desc.size, what=f"blob {desc.digest}"))

    def get_blob(self, desc: Descriptor, *, max_bytes: int) -> bytes:
        if desc.size > max_bytes:
            raise InvalidInputError(f"blob {desc.digest} is {desc.size} bytes, over the {max_bytes}-byte limit")
        return b"".join(self.blob_chunks(desc))

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
        digest = digest or Digest.of(data)
        digest.check(data, what="blob")
        path = self.blob_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, data)
        return digest

    def put_blob_file(self, path: Path, digest: Digest, size: int) -> None:
        target = self.blob_path(digest)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                reader = VerifyingReader(iter(lambda: src.read(CHUNK), b""), digest, size, what=f"blob {digest}")
                for chunk in reader:
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # -- manifests ---------------------------------------------------------------------

    def _find_tag(self, tag: str) -> Descriptor:
        for entry in self._index_entries():
            if entry.annotations.get(REF_NAME_ANNOTATION) == tag:
                return entry
        raise NotFoundError(f"tag {tag!r} not found in {self.location}")

    def get_manifest(self, ref: str | Digest) -> Manifest:
        if isinstance(ref, Digest):
            desc = Descriptor(MANIFEST_TYPES[0], ref, -1)
        else:
            desc = self._find_tag(ref)
        path = self.blob_path(desc.digest)
        try:
            raw = _read_file(path, MAX_MANIFEST_BYTES)
        except FileNotFoundError as e:
            raise NotFoundError(f"manifest {desc.digest} not found in {self.location}") from e
        desc.digest.check(raw, what=f"manifest {desc.digest} in {self.location}")
        if desc.size >= 0 and desc.size != len(raw):
            raise InvalidInputError(f"index.json says manifest {desc.digest} is {desc.size} bytes, it is {len(raw)}")
        media_type = desc.media_type if not isinstance(ref, Digest) else None
        return parse_manifest(raw, content_type=media_type, digest=desc.digest)

    def only_manifest(self) -> Digest:
        """The digest of the layout's single image (for ``oci-layout:PATH`` with no tag or digest)."""
        images = [e for e in self._index_entries() if e.artifact_type is None]
        if len(images) != 1:
            tags = ", ".join(self.list_tags()) or "none"
            raise UsageError(f"{self.location} holds {len(images)} images: name one with :TAG or @DIGEST "
                             f"(tags: {tags})")
        return images[0].digest

    def has_manifest(self, ref: str | Digest) -> bool:
        if isinstance(ref, Digest):
            return self.blob_path(ref).is_file()
        try:
            self._find_tag(ref)
        except NotFoundError:
            return False
        return True

    def put_manifest(self, raw: bytes, media_type: str, *, tag: str | None = None) -> Digest:
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidInputError(f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
        manifest = parse_manifest(raw, content_type=media_type)
        digest = self.put_blob(raw)
        annotations: dict[str, str] = {}
        if tag:
            _check_tag(tag)
            annotations[REF_NAME_ANNOTATION] = tag
        entry = Descriptor(media_type, digest, len(raw), annotations, manifest.artifact_type)
        with self._locked():
            entries = self._index_entries()
            if tag:
                entries = [e for e in entries if e.annotations.get(REF_NAME_ANNOTATION) != tag]
            elif any(e.digest == digest for e in entries):
                return digest
            entries.append(entry)
            self._write_index(entries)
        return digest

    def delete_manifest(self, digest: Digest) -> None:
        with self._locked():
            entries = self._index_entries()
            kept = [e for e in entries if e.digest != digest]
            if len(kept) == len(entries):
                raise NotFoundError(f"manifest {digest} not in {self.location}")
            self._write_index(kept)

    def list_tags(self) -> list[str]:
        return [t for e in self._index_entries() if (t := e.annotations.get(REF_NAME_ANNOTATION))]

    def referrers(self, digest: Digest, artifact_type: str | None = None) -> list[Descriptor] | None:
        found: list[Descriptor] = []
        for entry in self._index_entries():
            if entry.media_type not in MANIFEST_TYPES:
                continue
            subject = self._subject_of(entry)
            if subject != digest:
                continue
            manifest = self.get_manifest(entry.digest)
            kind = manifest.artifact_type
            if kind is None and not manifest.is_index:
                kind = manifest.config.media_type  # type: ignore[union-attr]
            if artifact_type is not None and kind != artifact_type:
                continue
            found.append(Descriptor(manifest.media_type, entry.digest, len(manifest.raw),
                                    dict(manifest.annotations), kind))
        return found

    def _subject_of(self, entry: Descriptor) -> Digest | None:
        if entry.digest not in self._subject_cache:
            try:
                raw = _read_file(self.blob_path(entry.digest), MAX_MANIFEST_BYTES)
                data = load_json(raw, what=f"manifest {entry.digest}")
            except (OSError, InvalidInputError):
                self._subject_cache[entry.digest] = None
                return None
            subject = data.get("subject") if isinstance(data, dict) else None
            digest = None
            if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
                with contextlib.suppress(Exception):
                    digest = Digest.parse(subject["digest"])
            self._subject_cache[entry.digest] = digest
        return self._subject_cache[entry.digest]


def _check_tag(tag: str) -> None:
    import re

    if not re.fullmatch(r"[\w][\w.-]{0,127}", tag, flags=re.ASCII):
        raise UsageError(f"invalid tag {tag[:140]!r}")


def _read_file(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidInputError(f"{path} is over the {limit}-byte limit")
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename: a reader never sees a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

