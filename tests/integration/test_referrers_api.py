"""The referrers-API path, against a double that implements exactly the spec's endpoint.

distribution 2.8 (Debian's docker-registry) has no referrers API, so the double
(tests/integration/referrers_double.py) adds it in front of the real registry; the tag-schema
fallback is tested against the real registry elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgseal import attach
from tests.integration.images import push_image, registry_store
from tests.integration.referrers_double import ReferrersDouble
from tests.integration.test_sign_verify import ENV, make_key

pytestmark = pytest.mark.registry


@pytest.fixture
def double(registry) -> Iterator[ReferrersDouble]:
    d = ReferrersDouble(registry.host).start()
    yield d
    d.stop()


def test_signatures_use_the_referrers_api_and_no_tags(double: ReferrersDouble, cli, tmp_path: Path) -> None:
    desc = push_image(double.host, "refapi/app")
    ref = f"{double.host}/refapi/app@{desc.digest}"
    pubs = []
    for i in range(5):  # five signatures with a page size of two: three pages
        priv, pub, _ = make_key(tmp_path, f"k{i}")
        pubs.append(pub)
        assert cli("sign", ref, "--key", str(priv), env=ENV).code == 0
    store = registry_store(double.host, "refapi/app")
    # The API path pushes by digest: no referrers tag index, no per-artifact tags.
    assert [t for t in store.list_tags() if t.startswith("sha256-")] == []
    found = attach.discover(store, desc.digest)
    assert len(found) == 5 and {a.found_via for a in found} == {attach.VIA_REFERRERS_API}
    assert any("page=2" in r for r in double.requests_seen)  # Link paging was followed
    args = [a for p in pubs for a in ("--key", str(p))]
    r = cli("verify", ref, *args, "--threshold", "5", "-o", "json")
    assert r.code == 0, r.stderr
    assert len(json.loads(r.stdout)["signers"]) == 5


def test_artifact_type_filter_and_empty_index(double: ReferrersDouble) -> None:
    desc = push_image(double.host, "refapi/filter")
    store = registry_store(double.host, "refapi/filter")
    assert store.referrers(desc.digest) == []  # an empty index, not a 404
    attach.attach(store, desc, artifact_type="application/example.a", layers=[attach.Layer(b"a", "text/plain")])
    attach.attach(store, desc, artifact_type="application/example.b", layers=[attach.Layer(b"b", "text/plain")])
    only_a = store.referrers(desc.digest, "application/example.a")
    assert only_a is not None and [d.artifact_type for d in only_a] == ["application/example.a"]
    assert len(attach.discover(store, desc.digest, artifact_type="application/example.b")) == 1
