"""``imgseal registry probe`` on the real registry (plain, TLS + basic auth, deletes off) and the referrers double."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import push_image, registry_store
from tests.integration.referrers_double import ReferrersDouble

pytestmark = pytest.mark.registry
KEYS = {"registry", "repository", "api_version", "referrers_api", "tag_list", "auth", "subject_manifests", "delete"}


def _probe(cli: Any, ref: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = cli("registry", "probe", ref, "-o", "json", *args, env=env)
    assert r.code == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    assert set(result) >= KEYS
    return result


def test_distribution_read_only_then_write_test(registry, cli) -> None:
    desc = push_image(registry.host, "probe/plain", content=b"probe")
    tags_before = registry_store(registry.host, "probe/plain").list_tags()
    result = _probe(cli, f"{registry.host}/probe/plain:v1")
    assert result["registry"] == registry.host and result["repository"] == "probe/plain"
    assert result["api_version"] == "registry/2.0"  # distribution's Docker-Distribution-API-Version
    assert (result["referrers_api"], result["tag_list"], result["auth"]) == (False, True, "none")
    assert result["subject_manifests"] is None and result["delete"] is None  # read-only: not tested

    result = _probe(cli, f"{registry.host}/probe/plain@{desc.digest}", "--write-test")
    assert result["subject_manifests"] is True and result["delete"] is True
    assert result["oci_subject_header"] is False
    # The throwaway artifact is gone and no tag was added.
    assert registry_store(registry.host, "probe/plain").list_tags() == tags_before


def test_basic_auth_over_tls(secure_registry, cli, tmp_path: Path) -> None:
    from imgseal.image import build_image
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from imgseal.store.auth import Credentials
    from imgseal.store.registry import RegistryOptions

    user, password = secure_registry.credentials
    options = RegistryOptions(ca_file=secure_registry.ca_cert_path,
                              credentials={secure_registry.host: Credentials(user, password)})
    build_image(StoreFactory(options).open(parse_reference(f"{secure_registry.host}/probe/tls:v1")),
                [{"f": b"probe tls"}], tag="v1")
    config = tmp_path / "dockercfg"
    config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {secure_registry.host: {"auth": auth}}}))
    result = _probe(cli, f"{secure_registry.host}/probe/tls:v1", "--ca-file", str(secure_registry.ca_cert_path),
                    env={"DOCKER_CONFIG": str(config)})
    assert result["auth"] == "basic" and result["tag_list"] is True
    # Without credentials: one line, exit 3.
    r = cli("registry", "probe", f"{secure_registry.host}/probe/tls:v1", "--ca-file",
            str(secure_registry.ca_cert_path))
    assert r.code == 3 and len(r.stderr.strip().splitlines()) == 1


def test_write_test_where_deletes_are_off(no_delete_registry, cli) -> None:
    push_image(no_delete_registry.host, "probe/nodelete", content=b"probe nodelete")
    result = _probe(cli, f"{no_delete_registry.host}/probe/nodelete:v1", "--write-test")
    assert result["subject_manifests"] is True and result["delete"] is False
    assert any("delete refused" in n and "stays at" in n for n in result["notes"])


@pytest.fixture
def double(registry) -> Iterator[ReferrersDouble]:
    d = ReferrersDouble(registry.host).start()
    yield d
    d.stop()


def test_referrers_api_is_found_by_its_index(double: ReferrersDouble, cli) -> None:
    push_image(double.host, "probe/api", content=b"probe api")
    result = _probe(cli, f"{double.host}/probe/api:v1", "--write-test")
    assert result["referrers_api"] is True and result["oci_subject_header"] is True
    assert result["delete"] is True
    assert double.referrers.get(("probe/api", str(registry_store(double.host, "probe/api")
                                                  .get_manifest("v1").digest))) == []


def test_oci_subject_header_alone_is_not_a_referrers_api(registry, cli) -> None:
    """ECR sent OCI-Subject on pushes without having the referrers API (sigstore-js #1183)."""
    header_only = ReferrersDouble(registry.host, serve_api=False).start()
    try:
        push_image(header_only.host, "probe/header", content=b"probe header")
        result = _probe(cli, f"{header_only.host}/probe/header:v1", "--write-test")
    finally:
        header_only.stop()
    assert result["oci_subject_header"] is True and result["referrers_api"] is False
    assert any("OCI-Subject" in n for n in result["notes"])


def test_probe_usage_and_reachability_errors(cli, tmp_path: Path) -> None:
    r = cli("registry", "probe", f"oci-layout:{tmp_path}/x:v1")
    assert r.code == 2 and "OCI layout" in r.stderr
    r = cli("registry", "probe", "127.0.0.1:1/nothing:v1")
    assert r.code == 3 and len(r.stderr.strip().splitlines()) == 1


def test_bearer_token_auth(registry, cli) -> None:
    """A front that demands Bearer tokens from its token service, as Docker Hub, GHCR and most clouds do."""
    from tests.fault_proxy import FaultProxy

    push_image(registry.host, "probe/bearer", content=b"probe bearer")
    with FaultProxy(registry.host) as front:
        front.require_bearer("tok-" + "y" * 24)
        result = _probe(cli, f"{front.host}/probe/bearer:v1")
        assert any("/token" in s.path for s in front.seen)  # a token was fetched, then used
    assert result["auth"] == "bearer" and result["tag_list"] is True and result["referrers_api"] is False
