"""Writing images: a minimal image builder (for the demo and tests) and copying between stores."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from imgseal.digest import Digest
from imgseal.manifest import (
    OCI_CONFIG,
    Descriptor,
    ImageIndex,
    Manifest,
    Platform,
    build_index,
    build_manifest,
)
from imgseal.store.base import Store

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
SMALL_BLOB = 8 << 20
LINUX_AMD64 = Platform("linux", "amd64")


def tar_layer(files: Mapping[str, bytes]) -> tuple[bytes, bytes]:
    """A reproducible gzipped tar of ``files``; returns (compressed, uncompressed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), uncompressed


def build_image(
    store: Store,
    layers: list[Mapping[str, bytes]],
    *,
    tag: str | None = None,
    platform: Platform = LINUX_AMD64,
    labels: Mapping[str, str] | None = None,
) -> Descriptor:
    """Write a small OCI image (config + gzip layers) to ``store``; return its manifest descriptor."""
    layer_descs: list[Descriptor] = []
    diff_ids: list[str] = []
    for files in layers:
        compressed, uncompressed = tar_layer(files)
        digest = store.put_blob(compressed)
        layer_descs.append(Descriptor(LAYER_GZIP, digest, len(compressed)))
        diff_ids.append(f"sha256:{hashlib.sha256(uncompressed).hexdigest()}")
    config: dict[str, object] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Labels": dict(labels or {})},
    }
    if platform.variant:
        config["variant"] = platform.variant
    config_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_desc = Descriptor(OCI_CONFIG, store.put_blob(config_raw), len(config_raw))
    raw = build_manifest(config=config_desc, layers=layer_descs)
    digest = store.put_manifest(raw, "application/vnd.oci.image.manifest.v1+json", tag=tag)
    return Descriptor("application/vnd.oci.image.manifest.v1+json", digest, len(raw))


def build_multiplatform(store: Store, images: Mapping[Platform, list[Mapping[str, bytes]]], *,
                        tag: str | None = None) -> Descriptor:
    """Write one image per platform and an OCI index over them."""
    children = []
    for platform, layers in images.items():
        desc = build_image(store, layers, platform=platform)
        children.append(Descriptor(desc.media_type, desc.digest, desc.size, platform=platform))
    raw = build_index(children)
    digest = store.put_manifest(raw, "application/vnd.oci.image.index.v1+json", tag=tag)
    return Descriptor("application/vnd.oci.image.index.v1+json", digest, len(raw))


def copy_blob(src: Store, dst: Store, desc: Descriptor) -> None:
    """Copy one blob, verifying it on the way; large blobs go through a temp file, never memory."""
    if dst.has_blob(desc.digest):
        return
    if desc.size <= SMALL_BLOB:
        dst.put_blob(src.get_blob(desc, max_bytes=SMALL_BLOB), desc.digest)
        return
    fd, tmp = tempfile.mkstemp(prefix="imgseal-blob-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in src.blob_chunks(desc):
                f.write(chunk)
        dst.put_blob_file(Path(tmp), desc.digest, desc.size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def copy_manifest(src: Store, dst: Store, manifest: Manifest, *, tag: str | None = None) -> Digest:
    """Copy a manifest and everything it names (children first, blobs before manifests): digests are kept."""
    if isinstance(manifest, ImageIndex):
        for child in manifest.manifests:
            copy_manifest(src, dst, src.get_manifest(child.digest))
    else:
        for blob in (manifest.config, *manifest.layers):
            copy_blob(src, dst, blob)
    return dst.put_manifest(manifest.raw, manifest.media_type, tag=tag)
