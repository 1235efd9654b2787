"""The real-registry rig works, and distribution 2.8 behaves as REFERENCE.md §2 says.

These tests talk to ``docker-registry`` with raw ``requests`` so that the traps our
registry client must handle are pinned down independently of that client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from imgseal.digest import Digest
from imgseal.errors import DigestMismatchError
from tests.integration.registry_rig import (
    RegistryInstance,
    RegistryStartError,
    blob_path,
    corrupt_blob,
    registry_available,
    start_registry,
)

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not registry_available(), reason="docker-registry is not installed"),
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
EMPTY_CONFIG = b"{}"
USER, PASSWORD = "alice", "s3cret-pass"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInstance]:
    with start_registry(tmp_path_factory.mktemp("plain-registry")) as instance:
        yield instance


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInstance]:
    workdir = tmp_path_factory.mktemp("tls-auth-registry")
    with start_registry(workdir, tls=True, htpasswd={USER: PASSWORD}) as instance:
        yield instance


def push_blob(session: requests.Session, base: str, repo: str, data: bytes) -> Digest:
    """Monolithic upload: POST for a session, then PUT the bytes with ``&digest=``."""
    digest = Digest.of(data)
    started = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=5)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    # distribution 2.8 answers with a Location that already has a query (?_state=...).
    assert "?" in location
    if location.startswith("/"):
        location = base + location
    finished = session.put(
        f"{location}&digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=5,
    )
    assert finished.status_code == 201, finished.text
    assert finished.headers["Docker-Content-Digest"] == str(digest)
    return digest


def push_image(session: requests.Session, base: str, repo: str, tag: str, layer: bytes) -> tuple[bytes, Digest]:
    config_digest = push_blob(session, base, repo, EMPTY_CONFIG)
    layer_digest = push_blob(session, base, repo, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": str(config_digest),
                "size": len(EMPTY_CONFIG),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(layer_digest), "size": len(layer)}
            ],
        },
        separators=(",", ":"),
    ).encode()
    put = session.put(
        f"{base}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}, timeout=5
    )
    assert put.status_code == 201, put.text
    digest = Digest.of(manifest)
    assert put.headers["Docker-Content-Digest"] == str(digest)
    return manifest, digest


def test_blob_push_and_fetch(plain: RegistryInstance) -> None:
    with plain.session() as session:
        data = b"hello, registry\n"
        digest = push_blob(session, plain.url, "rig/blobs", data)
        got = session.get(f"{plain.url}/v2/rig/blobs/blobs/{digest}", timeout=5)
        assert got.status_code == 200
        assert got.content == data
        digest.check(got.content, what="blob")
        assert blob_path(plain.storage_dir, digest).read_bytes() == data


def test_oci_manifest_needs_its_media_type_in_accept(plain: RegistryInstance) -> None:
    with plain.session() as session:
        manifest, digest = push_image(session, plain.url, "rig/image", "v1", b"layer-bytes")
        url = f"{plain.url}/v2/rig/image/manifests/v1"

        good = session.get(url, headers={"Accept": ALL_MANIFEST_TYPES}, timeout=5)
        assert good.status_code == 200
        assert good.content == manifest  # byte-for-byte, no re-serialisation
        assert good.headers["Content-Type"] == OCI_MANIFEST
        assert good.headers["Docker-Content-Digest"] == str(digest)
        by_digest = session.get(f"{plain.url}/v2/rig/image/manifests/{digest}", headers={"Accept": ALL_MANIFEST_TYPES})
        assert by_digest.content == manifest

        # The trap: no Accept at all, or only Docker types, and the OCI manifest "does not exist".
        for accept in (None, DOCKER_MANIFEST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}"):
            # requests sends "Accept: */*" by default; a None value drops the header.
            missing = session.get(url, headers={"Accept": accept}, timeout=5)
            assert missing.status_code == 404, (accept, missing.status_code)
            assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_no_referrers_api(plain: RegistryInstance) -> None:
    with plain.session() as session:
        _, digest = push_image(session, plain.url, "rig/referrers", "v1", b"subject")
        response = session.get(
            f"{plain.url}/v2/rig/referrers/referrers/{digest}", headers={"Accept": OCI_INDEX}, timeout=5
        )
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("text/plain")


def test_tampered_blob_is_served_and_caught_by_the_digest_check(plain: RegistryInstance) -> None:
    with plain.session() as session:
        original = b"precious layer contents"
        digest = push_blob(session, plain.url, "rig/tamper", original)
        tampered = corrupt_blob(plain.storage_dir, digest)
        assert tampered != original and len(tampered) == len(original)
        got = session.get(f"{plain.url}/v2/rig/tamper/blobs/{digest}", timeout=5)
        # The registry does not re-hash on read: it serves whatever is on disk, under
        # the original digest. Only the client's check stands between this and a deploy.
        assert got.status_code == 200
        assert got.content == tampered
        assert got.headers["Docker-Content-Digest"] == str(digest)
        with pytest.raises(DigestMismatchError):
            digest.check(got.content, what="blob")


def test_auth_over_tls(secured: RegistryInstance) -> None:
    assert secured.url.startswith("https://127.0.0.1:")
    assert secured.ca_cert_path is not None and secured.ca_cert_path.is_file()
    assert secured.credentials == (USER, PASSWORD)
    with secured.session(authenticated=False) as anonymous:
        denied = anonymous.get(f"{secured.url}/v2/", timeout=5)
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"].startswith("Basic ")
        wrong = anonymous.get(f"{secured.url}/v2/", auth=(USER, "wrong"), timeout=5)
        assert wrong.status_code == 401
    with secured.session() as session:
        assert session.get(f"{secured.url}/v2/", timeout=5).status_code == 200
        manifest, _ = push_image(session, secured.url, "rig/private", "v1", b"private layer")
        got = session.get(
            f"{secured.url}/v2/rig/private/manifests/v1", headers={"Accept": ALL_MANIFEST_TYPES}, timeout=5
        )
        assert got.content == manifest


def test_tls_needs_the_throwaway_ca(secured: RegistryInstance) -> None:
    with requests.Session() as session:
        session.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{secured.url}/v2/", timeout=5)  # system trust store only
        # The certificate names 127.0.0.1 by IP SAN and localhost by DNS SAN.
        port = secured.host.rsplit(":", 1)[1]
        ok = session.get(f"https://localhost:{port}/v2/", verify=str(secured.ca_cert_path), timeout=5)
        assert ok.status_code == 401


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    fake = tmp_path / "fake-registry"
    fake.write_text("#!/bin/sh\necho 'listen tcp: address already in use' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RegistryStartError) as info:
        start_registry(tmp_path / "work", binary=str(fake))
    message = str(info.value)
    assert "5 attempts" in message
    assert "address already in use" in message
    assert len(list((tmp_path / "work").glob("registry-*.log"))) == 5


def test_blob_path_rejects_malformed_digests(tmp_path: Path) -> None:
    from imgseal.errors import InvalidReferenceError

    with pytest.raises(InvalidReferenceError):
        blob_path(tmp_path, "sha256:../../../etc/passwd")
    path = blob_path(tmp_path, "sha256:" + "ab" * 32)
    assert path == tmp_path / "docker/registry/v2/blobs/sha256/ab" / ("ab" * 32) / "data"
