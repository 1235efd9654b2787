"""Resolving references to verified manifests, and deep verification of every blob."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from imgseal.digest import Digest
from imgseal.errors import DigestMismatchError, Error
from imgseal.manifest import Descriptor, ImageIndex, ImageManifest, Manifest, Platform
from imgseal.store.base import Store

ProgressCallback = Callable[[Descriptor, int], None]


def fetch_manifest(store: Store, tag: str | None, digest: Digest | None) -> Manifest:
    """Fetch by digest when one is given (bytes checked against it), else by tag."""
    if digest is not None:
        return store.get_manifest(digest)
    if tag is None:
        # An OCI layout reference may name neither: take the layout's only image.
        from imgseal.store.layout import LayoutStore

        if isinstance(store, LayoutStore):
            return store.get_manifest(store.only_manifest())
        tag = "latest"
    return store.get_manifest(tag)


@dataclass
class DeepResult:
    """What ``--deep`` checked: every manifest and blob, with sizes."""

    manifests: list[Descriptor] = field(default_factory=list)
    blobs: list[Descriptor] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


def children_to_check(index: ImageIndex, platform: Platform | None) -> list[Descriptor]:
    if platform is None:
        return list(index.manifests)
    return [index.select(platform)]


def verify_deep(
    store: Store,
    manifest: Manifest,
    *,
    platform: Platform | None = None,
    workers: int = 4,
    on_progress: ProgressCallback | None = None,
    on_blob_start: Callable[[Descriptor], None] | None = None,
) -> DeepResult:
    """Fetch and check the config and every layer of ``manifest`` (each child, for an index).

    Blobs are streamed and hashed as they arrive, never held in memory whole; a size or
    digest mismatch raises :class:`DigestMismatchError` naming the blob. Blobs are fetched
    by a bounded pool of workers; each distinct digest is checked once.
    """
    result = DeepResult()
    images: list[ImageManifest] = []
    if isinstance(manifest, ImageIndex):
        for child in children_to_check(manifest, platform):
            sub = store.get_manifest(child.digest)
            if sub.media_type != child.media_type:
                raise DigestMismatchError(
                    f"index entry {child.digest} declares {child.media_type} but the manifest is {sub.media_type}")
            if len(sub.raw) != child.size:
                raise DigestMismatchError(f"index entry {child.digest} declares {child.size} bytes, got {len(sub.raw)}")
            result.manifests.append(child)
            if isinstance(sub, ImageIndex):
                nested = verify_deep(store, sub, platform=platform, workers=workers, on_progress=on_progress,
                                     on_blob_start=on_blob_start)
                result.manifests.extend(nested.manifests)
                result.blobs.extend(nested.blobs)
            else:
                images.append(sub)
    else:
        images.append(manifest)
    seen: set[Digest] = {b.digest for b in result.blobs}
    todo: list[Descriptor] = []
    for image in images:
        for blob in (image.config, *image.layers):
            if blob.digest not in seen:
                seen.add(blob.digest)
                todo.append(blob)
    lock = threading.Lock()

    def check(desc: Descriptor) -> Descriptor:
        if on_blob_start is not None:
            on_blob_start(desc)
        for chunk in store.blob_chunks(desc):
            if on_progress is not None:
                with lock:
                    on_progress(desc, len(chunk))
        return desc

    if todo:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            futures = [pool.submit(check, d) for d in todo]
            try:
                for future in futures:
                    result.blobs.append(future.result())
            except Error:
                for f in futures:
                    f.cancel()
                raise
    return result
