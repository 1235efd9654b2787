"""Pushing small test images with imgseal's own writer."""

from __future__ import annotations

from pathlib import Path

from imgseal.image import build_image, build_multiplatform
from imgseal.manifest import Descriptor, Platform
from imgseal.reference import Reference, parse_reference
from imgseal.store import StoreFactory
from imgseal.store.base import Store
from imgseal.store.layout import LayoutStore


def registry_store(host: str, repo: str) -> Store:
    ref = parse_reference(f"{host}/{repo}:x")
    assert isinstance(ref, Reference)
    return StoreFactory().open(ref)


def push_image(host: str, repo: str, tag: str = "v1", content: bytes = b"hello") -> Descriptor:
    return build_image(registry_store(host, repo), [{"app/data.txt": content}, {"etc/conf": b"x=" + content}], tag=tag)


def push_index(host: str, repo: str, tag: str = "multi") -> Descriptor:
    images = {
        Platform("linux", "amd64"): [{"a": b"amd64 " + repo.encode()}],
        Platform("linux", "arm64", "v8"): [{"a": b"arm64 " + repo.encode()}],
    }
    return build_multiplatform(registry_store(host, repo), images, tag=tag)


def layout_image(path: Path, tag: str = "v1", content: bytes = b"hello") -> Descriptor:
    return build_image(LayoutStore(path, create=True), [{"app/data.txt": content}], tag=tag)
