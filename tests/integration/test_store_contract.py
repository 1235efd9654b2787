"""One contract suite over every Store: the real docker-registry and an OCI layout."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgseal.digest import Digest
from imgseal.errors import DigestMismatchError, InvalidInputError, NotFoundError
from imgseal.image import build_image, copy_manifest
from imgseal.manifest import EMPTY_DESCRIPTOR, EMPTY_JSON, MAX_MANIFEST_BYTES, OCI_MANIFEST, Descriptor
from imgseal.store.base import Store
from imgseal.store.layout import LayoutStore
from tests.integration.images import registry_store

_counter = itertools.count()


@pytest.fixture(params=["registry", "layout"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "layout":
        yield LayoutStore(tmp_path / "layout", create=True)
    else:
        registry = request.getfixturevalue("registry")
        yield registry_store(registry.host, f"contract/repo{next(_counter)}")


def test_blob_round_trip_and_verification(store: Store) -> None:
    data = b"some blob bytes"
    digest = store.put_blob(data)
    assert digest == Digest.of(data) and store.has_blob(digest)
    assert store.get_blob(Descriptor("application/octet-stream", digest, len(data)), max_bytes=1024) == data
    with pytest.raises(DigestMismatchError):
        store.get_blob(Descriptor("application/octet-stream", digest, len(data) - 1), max_bytes=1024)
    with pytest.raises(InvalidInputError):
        store.get_blob(Descriptor("application/octet-stream", digest, len(data)), max_bytes=4)
    assert not store.has_blob(Digest.of(b"absent"))


def test_manifest_by_tag_and_digest(store: Store) -> None:
    desc = build_image(store, [{"f": b"contract"}], tag="v1")
    by_tag = store.get_manifest("v1")
    by_digest = store.get_manifest(desc.digest)
    assert by_tag.raw == by_digest.raw and by_tag.digest == desc.digest
    assert store.has_manifest("v1") and store.has_manifest(desc.digest)
    assert "v1" in store.list_tags()
    with pytest.raises(NotFoundError):
        store.get_manifest("no-such-tag")
    with pytest.raises(NotFoundError):
        store.get_manifest(Digest.of(b"nope"))


def test_retag_moves_the_tag(store: Store) -> None:
    a = build_image(store, [{"f": b"a"}], tag="moving")
    b = build_image(store, [{"f": b"b"}], tag="moving")
    assert a.digest != b.digest
    assert store.get_manifest("moving").digest == b.digest


def test_subject_manifest_is_accepted(store: Store) -> None:
    image = build_image(store, [{"f": b"subject"}], tag="s")
    store.put_blob(EMPTY_JSON)
    from imgseal.manifest import build_manifest

    raw = build_manifest(config=EMPTY_DESCRIPTOR, layers=[], subject=image, artifact_type="application/example")
    digest = store.put_manifest(raw, OCI_MANIFEST)
    fetched = store.get_manifest(digest)
    assert fetched.subject is not None and fetched.subject.digest == image.digest


def test_oversize_manifest_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInputError):
        store.put_manifest(b" " * (MAX_MANIFEST_BYTES + 1), OCI_MANIFEST)


def test_copy_between_stores_preserves_digests(store: Store, tmp_path: Path) -> None:
    src = LayoutStore(tmp_path / "src", create=True)
    desc = build_image(src, [{"a": b"1"}, {"b": b"2"}], tag="c")
    assert copy_manifest(src, store, src.get_manifest("c"), tag="c") == desc.digest
    assert store.get_manifest("c").raw == src.get_manifest(desc.digest).raw
