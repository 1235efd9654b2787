"""`imgseal digest` against the real docker-registry and OCI layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.images import layout_image, push_image, push_index
from tests.integration.registry_rig import corrupt_blob

pytestmark = pytest.mark.registry


def test_digest_of_tag_prints_pinned_reference(registry, cli) -> None:
    desc = push_image(registry.host, "digest/app")
    r = cli("digest", f"{registry.host}/digest/app:v1")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"{registry.host}/digest/app@{desc.digest}"


def test_digest_json_and_deep(registry, cli) -> None:
    desc = push_image(registry.host, "digest/json")
    r = cli("digest", f"{registry.host}/digest/json@{desc.digest}", "--deep", "-o", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["digest"] == str(desc.digest)
    assert data["size"] == desc.size
    assert data["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert data["verified"]["blobs"] == 3  # config + 2 layers


def test_index_lists_platforms_and_deep_platform(registry, cli) -> None:
    desc = push_index(registry.host, "digest/multi")
    r = cli("digest", f"{registry.host}/digest/multi:multi", "-o", "json")
    data = json.loads(r.stdout)
    assert data["digest"] == str(desc.digest)
    assert sorted(m["platform"] for m in data["manifests"]) == ["linux/amd64", "linux/arm64/v8"]
    r = cli("digest", f"{registry.host}/digest/multi:multi", "--deep", "--platform", "linux/arm64", "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["verified"]["blobs"] == 2
    r = cli("digest", f"{registry.host}/digest/multi:multi", "--deep", "--platform", "windows/amd64")
    assert r.code == 3 and "no manifest for platform windows/amd64" in r.stderr


def test_wrong_digest_is_a_mismatch_naming_both(registry, cli) -> None:
    desc = push_image(registry.host, "digest/wrong")
    other = push_image(registry.host, "digest/other", content=b"other")
    # The other digest does not exist in this repository: not found (3), not a silent accept.
    r = cli("digest", f"{registry.host}/digest/wrong@{other.digest}")
    assert r.code == 3
    assert desc.digest != other.digest


def test_tampered_blob_fails_deep_and_names_blob(fresh_registry, cli) -> None:
    desc = push_image(fresh_registry.host, "tamper/app")
    ok = cli("digest", f"{fresh_registry.host}/tamper/app:v1", "--deep", "-o", "json")
    assert ok.code == 0
    from tests.integration.images import registry_store

    manifest = registry_store(fresh_registry.host, "tamper/app").get_manifest(desc.digest)
    layer = manifest.layers[0]  # type: ignore[union-attr]
    corrupt_blob(fresh_registry.storage_dir, layer.digest)
    r = cli("digest", f"{fresh_registry.host}/tamper/app:v1", "--deep")
    assert r.code == 1, r.stderr
    assert str(layer.digest) in r.stderr and "digest mismatch" in r.stderr
    assert "Traceback" not in r.stderr


def test_tampered_manifest_fails_by_digest(fresh_registry, cli) -> None:
    from tests.integration.registry_rig import blob_path

    desc = push_image(fresh_registry.host, "tamper/man")
    path = blob_path(fresh_registry.storage_dir, desc.digest)
    # Still valid JSON (the registry must be able to serve it), but not the signed bytes.
    path.write_bytes(path.read_bytes().replace(b'"config":{', b'"config": {', 1))
    r = cli("digest", f"{fresh_registry.host}/tamper/man@{desc.digest}")
    assert r.code == 1
    assert str(desc.digest) in r.stderr and "hash to" in r.stderr


def test_layout_reference(tmp_path: Path, cli) -> None:
    desc = layout_image(tmp_path / "lay")
    base = f"oci-layout:{tmp_path}/lay"
    for ref in (f"{base}:v1", f"{base}@{desc.digest}", base):
        r = cli("digest", ref, "--deep")
        assert r.code == 0, r.stderr
        assert r.stdout.splitlines()[0].endswith(f"@{desc.digest}")


def test_tls_registry_with_auth(secure_registry, cli, tmp_path: Path) -> None:
    import base64

    from imgseal.image import build_image
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from imgseal.store.auth import Credentials
    from imgseal.store.registry import RegistryOptions

    user, password = secure_registry.credentials
    options = RegistryOptions(ca_file=secure_registry.ca_cert_path,
                              credentials={secure_registry.host: Credentials(user, password)})
    store = StoreFactory(options).open(parse_reference(f"{secure_registry.host}/secure/app:v1"))
    desc = build_image(store, [{"f": b"secure"}], tag="v1")
    ref = f"{secure_registry.host}/secure/app:v1"
    # No credentials: access denied (exit 3), one line.
    r = cli("digest", ref, "--ca-file", str(secure_registry.ca_cert_path))
    assert r.code == 3 and "credentials" in r.stderr.lower() and len(r.stderr.strip().splitlines()) == 1
    # Wrong CA: says so.
    r = cli("digest", ref)
    assert r.code == 3 and "certificate" in r.stderr.lower()
    # Credentials from a docker config.json.
    config = tmp_path / "dockercfg"
    config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {secure_registry.host: {"auth": auth}}}))
    r = cli("digest", ref, "--ca-file", str(secure_registry.ca_cert_path), env={"DOCKER_CONFIG": str(config)})
    assert r.code == 0, r.stderr
    assert r.stdout.strip().endswith(str(desc.digest))
    # Credentials from a credential helper on PATH.
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-imgsealtest"
    helper.write_text(f"#!/bin/sh\nread server\necho '{{\"Username\":\"{user}\",\"Secret\":\"{password}\"}}'\n")
    helper.chmod(0o755)
    (config / "config.json").write_text(json.dumps({"credHelpers": {secure_registry.host: "imgsealtest"}}))
    import os

    r = cli("digest", ref, "--ca-file", str(secure_registry.ca_cert_path),
            env={"DOCKER_CONFIG": str(config), "PATH": f"{helper_dir}:{os.environ['PATH']}"})
    assert r.code == 0, r.stderr
