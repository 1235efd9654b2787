"""``imgseal repair`` and ``imgseal clean`` against the real registry (tag schema) and the referrers-API double."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgseal import attach
from imgseal.digest import Digest
from imgseal.manifest import OCI_INDEX, OCI_MANIFEST, Descriptor, ImageIndex, build_index, build_manifest
from tests.integration.images import push_image, registry_store
from tests.integration.peer_formats import SLSA_V1, bundle_referrer, cosign_legacy_signature
from tests.integration.referrers_double import ReferrersDouble
from tests.integration.test_cosign_formats import key_pair
from tests.integration.test_sign_verify import make_key

pytestmark = pytest.mark.registry


def _index(store: Any, subject: Digest) -> ImageIndex:
    index = store.get_manifest(attach.referrers_tag(subject))
    assert isinstance(index, ImageIndex)
    return index


def test_repair_fills_cosign_30x_entries_adds_tagged_artifacts_and_drops_stale_ones(registry, cli,
                                                                                  tmp_path: Path) -> None:
    repo = "repair/app"
    desc = push_image(registry.host, repo, content=b"repair me")
    other = push_image(registry.host, repo, tag="other", content=b"another image")
    store = registry_store(registry.host, repo)
    sign, pub, der = key_pair(tmp_path)
    name = f"{registry.host}/{repo}"
    # cosign 3.0.x: a bundle referrer whose index entry has neither artifactType nor annotations (cosign #4641).
    bare = Digest.parse(bundle_referrer(store, name, desc, sign, der, bare_index=True))
    # imgseal's own attachment that the shared index lost (a concurrent writer dropped it, cosign #2432).
    lost = attach.attach(store, desc, artifact_type="application/example.sbom",
                         layers=[attach.Layer(b"sbom", "text/plain")], annotations={"k": "v"})
    attach.update_referrers_index(store, desc.digest, remove=[lost.digest])
    # An entry whose manifest is gone, and one that names another image.
    gone_raw = build_manifest(config=attach.EMPTY_DESCRIPTOR, layers=[], subject=desc, artifact_type="x/y")
    gone = Descriptor(OCI_MANIFEST, Digest.of(gone_raw), len(gone_raw))
    foreign = attach.attach(store, other, artifact_type="application/example.other",
                            layers=[attach.Layer(b"other", "text/plain")])
    store.put_manifest(gone_raw, OCI_MANIFEST)  # distribution refuses an index naming a manifest it lacks
    entries = [*_index(store, desc.digest).manifests, gone, foreign]
    store.put_manifest(build_index(entries), OCI_INDEX, tag=attach.referrers_tag(desc.digest))
    store.delete_manifest(gone.digest)
    before = _index(store, desc.digest).digest
    # A reader filtering by artifact type does not see the bare entry before the repair.
    assert [d.artifact_type for d in _index(store, desc.digest).manifests if d.digest == bare] == [None]

    ref = f"{name}@{desc.digest}"
    r = cli("repair", ref, "--dry-run", "-o", "json")
    assert r.code == 0, r.stderr
    report = json.loads(r.stdout)
    actions = {c["digest"]: c["action"] for c in report["changes"]}
    assert actions == {str(bare): "fill", str(lost.digest): "add", str(gone.digest): "drop",
                       str(foreign.digest): "drop"}
    assert not report["written"] and _index(store, desc.digest).digest == before

    r = cli("repair", ref)
    assert r.code == 0, r.stderr
    assert f"fill {bare}" in r.stdout and "names another subject" in r.stdout and "manifest is gone" in r.stdout
    repaired = {d.digest: d for d in _index(store, desc.digest).manifests}
    assert set(repaired) == {bare, lost.digest}
    assert repaired[bare].artifact_type == attach.BUNDLE_V03
    assert repaired[bare].annotations["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert repaired[lost.digest].artifact_type == "application/example.sbom"
    assert dict(repaired[lost.digest].annotations) == {"k": "v"}
    # The repaired index still verifies, and a second repair has nothing to do.
    assert cli("verify", ref, "--key", str(pub)).code == 0
    r = cli("repair", ref, "-o", "json")
    assert r.code == 0 and json.loads(r.stdout)["changes"] == [] and not json.loads(r.stdout)["written"]


def test_repair_without_an_index_builds_one_from_attachment_tags(registry, cli) -> None:
    repo = "repair/noindex"
    desc = push_image(registry.host, repo, content=b"no index")
    store = registry_store(registry.host, repo)
    added = attach.attach(store, desc, artifact_type="application/example.a", layers=[attach.Layer(b"a", "x/y")])
    store.delete_manifest(_index(store, desc.digest).digest)  # the shared index is lost, the tag remains
    r = cli("repair", f"{registry.host}/{repo}:v1", "-o", "json")
    assert r.code == 0, r.stderr
    assert [c["action"] for c in json.loads(r.stdout)["changes"]] == ["add"]
    assert [d.digest for d in _index(store, desc.digest).manifests] == [added.digest]


def _fill(registry_host: str, repo: str, tmp_path: Path) -> tuple[str, Descriptor, Path]:
    """An image with a bundle signature, a legacy signature, a bundle attestation and a legacy attestation."""
    from signer.attest import attest, key_bundle_signer
    from signer.image import sign_with_key

    desc = push_image(registry_host, repo, content=repo.encode())
    store = registry_store(registry_host, repo)
    name = f"{registry_host}/{repo}"
    _, pub, key = make_key(tmp_path, "k")
    for fmt in ("bundle", "legacy"):
        sign_with_key(store, name, desc, key, fmt=fmt)
        attest(store, name, desc, "https://example.com/custom/v1", {"team": "core"},
               signer=key_bundle_signer(key), key=key, fmt=fmt)
    return f"{name}@{desc.digest}", desc, pub


def _kinds(host: str, repo: str, subject: Digest) -> list[str]:
    from imgseal.maintenance import kind_of

    return sorted(kind_of(a) for a in attach.discover(registry_store(host, repo), subject))


def test_clean_signatures_then_everything(registry, cli, tmp_path: Path) -> None:
    repo = "clean/app"
    ref, desc, pub = _fill(registry.host, repo, tmp_path)
    assert _kinds(registry.host, repo, desc.digest) == ["attestation"] * 2 + ["signature"] * 2
    r = cli("clean", ref, "--type", "signature", "--dry-run", "-o", "json")
    assert r.code == 0, r.stderr
    planned = json.loads(r.stdout)["wouldRemove"]
    assert sorted(t["kind"] for t in planned) == ["signature", "signature"]
    # Not a terminal and no --yes: refused, one line, nothing deleted.
    r = cli("clean", ref, "--type", "signature")
    assert r.code == 2 and "--yes" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert len(_kinds(registry.host, repo, desc.digest)) == 4

    r = cli("clean", ref, "--type", "signature", "--yes")
    assert r.code == 0, r.stderr
    assert r.stdout.count("removed signature") == 2
    r = cli("verify", ref, "--key", str(pub), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-signatures"
    assert _kinds(registry.host, repo, desc.digest) == ["attestation", "attestation"]

    r = cli("clean", ref, "--yes", "-o", "json")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] and result["refused"] == [] and len(result["removed"]) == 3  # two attestations, the index
    assert _kinds(registry.host, repo, desc.digest) == []
    # Nothing is left under the digest's tags: no index, no attachment tags, no legacy tags.
    store = registry_store(registry.host, repo)
    assert [t for t in store.list_tags() if t.startswith(desc.digest.tag_form)] == []
    assert store.has_manifest(desc.digest)  # the image itself is untouched


def test_clean_reports_what_the_registry_will_not_delete(no_delete_registry, cli, tmp_path: Path) -> None:
    ref, desc, _pub = _fill(no_delete_registry.host, "clean/nodelete", tmp_path)
    r = cli("clean", ref, "--yes")
    assert r.code == 3
    assert r.stdout.count("NOT removed") == 4
    error = [line for line in r.stderr.splitlines() if line.startswith("imgseal: error:")]
    assert len(error) == 1 and "refused 4 of 4" in error[0] and "REGISTRY_STORAGE_DELETE_ENABLED" in error[0]
    # Nothing was lost from view: the index still lists what is still there.
    assert len(_kinds(no_delete_registry.host, "clean/nodelete", desc.digest)) == 4


@pytest.fixture
def double(registry) -> Iterator[ReferrersDouble]:
    d = ReferrersDouble(registry.host).start()
    yield d
    d.stop()


def test_clean_through_the_referrers_api_and_an_older_fallback_index(double: ReferrersDouble, cli,
                                                                     tmp_path: Path) -> None:
    repo = "clean/api"
    desc = push_image(double.host, repo, content=b"clean api")
    store = registry_store(double.host, repo)
    sign, _pub, der = key_pair(tmp_path)
    name = f"{double.host}/{repo}"
    bundle_referrer(store, name, desc, sign, der, index=False)
    bundle_referrer(store, name, desc, sign, der, predicate_type=SLSA_V1, predicate={"buildDefinition": {}},
                    index=False)
    # A fallback index left from before the registry had the API (written by cosign 3.0.x, bare entry).
    old = Digest.parse(bundle_referrer(store, name, desc, sign, der, created="2025-01-01T00:00:00Z",
                                       bare_index=True))
    cosign_legacy_signature(store, name, desc, sign)
    ref = f"{name}@{desc.digest}"
    plan = json.loads(cli("clean", ref, "--dry-run", "-o", "json").stdout)["wouldRemove"]
    vias = {t["digest"]: t["foundVia"] for t in plan}
    assert len(plan) == 4 and vias[str(old)] == ["referrers-api", "referrers-tag-index"]
    r = cli("clean", ref, "--type", "attestation", "--yes", "-o", "json")
    assert r.code == 0, r.stderr
    assert [t["kind"] for t in json.loads(r.stdout)["removed"]] == ["attestation"]
    r = cli("clean", ref, "--yes", "-o", "json")
    assert r.code == 0, r.stderr
    assert store.referrers(desc.digest) == []
    assert [t for t in store.list_tags() if t.startswith(desc.digest.tag_form)] == []
    assert any(s.startswith("DELETE") for s in double.requests_seen)


def test_clean_and_repair_usage_errors(cli) -> None:
    ref = f"127.0.0.1:1/app@sha256:{'c' * 64}"
    r = cli("clean", ref, "--type", "sbom")
    assert r.code == 2 and "--type" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("repair", "not a reference")
    assert r.code == 2 and r.stderr.startswith("imgseal: error:")


def _on_a_terminal(args: list[str], answer: bytes, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin/stdout/stderr, answering the prompt with ``answer``."""
    import os
    import subprocess
    import sys
    import time

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "imgseal", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break  # the child closed the terminal
        if not chunk:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, answer)
            answered = True
    os.close(master)
    return proc.wait(timeout=30), seen.decode(errors="replace")


def test_clean_asks_on_a_terminal(registry, tmp_path: Path) -> None:
    import os

    ref, desc, _ = _fill(registry.host, "clean/tty", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSEAL_", "COSIGN_"))}
    code, text = _on_a_terminal(["clean", ref, "--type", "attestation"], b"n\n", env)
    assert code == 2 and "Delete 2 artifact(s)" in text and "not confirmed" in text, text
    assert len(_kinds(registry.host, "clean/tty", desc.digest)) == 4
    code, text = _on_a_terminal(["clean", ref, "--type", "attestation"], b"y\n", env)
    assert code == 0 and text.count("removed attestation") == 2, text
    assert _kinds(registry.host, "clean/tty", desc.digest) == ["signature", "signature"]


@pytest.fixture
def front(registry) -> Iterator[Any]:
    from tests.fault_proxy import FaultProxy

    with FaultProxy(registry.host) as p:
        yield p


def test_a_registry_that_answers_the_index_tag_with_the_image(registry, front, cli) -> None:
    """GitLab's registry resolves the tag sha256-<hex> to the manifest sha256:<hex> (oras-go #1396)."""
    from tests.fault_proxy import Forward, match

    repo = "quirk/gitlab"
    desc = push_image(registry.host, repo, content=b"gitlab quirk")
    store = registry_store(registry.host, repo)
    lost = attach.attach(store, desc, artifact_type="application/example.a", layers=[attach.Layer(b"a", "x/y")])
    store.delete_manifest(_index(store, desc.digest).digest)  # only the attachment tag is left
    front.add(match(path=rf"/manifests/{desc.digest.tag_form}$"), Forward(path=f"/v2/{repo}/manifests/{desc.digest}"))
    ref = f"{front.host}/{repo}@{desc.digest}"
    r = cli("repair", ref, "--dry-run", "-o", "json")
    assert r.code == 3 and "answers the tag" in r.stderr, r.stderr
    assert not store.has_manifest(desc.digest.tag_form)  # nothing was written
    plan = json.loads(cli("clean", ref, "--dry-run", "-o", "json").stdout)["wouldRemove"]
    assert [(t["digest"], t["foundVia"]) for t in plan] == [(str(lost.digest), ["attachment-tag"])]


def test_tag_listing_denied(registry, front, cli) -> None:
    """Pull-only tokens on some registries deny tags/list; the index and legacy tags still serve."""
    from tests.fault_proxy import Status, match

    repo = "quirk/notags"
    desc = push_image(registry.host, repo, content=b"no tag listing")
    store = registry_store(registry.host, repo)
    listed = attach.attach(store, desc, artifact_type="application/example.a", layers=[attach.Layer(b"a", "x/y")])
    front.add(match(path=r"/tags/list"), Status(403, {"Content-Type": "application/json"},
                                                b'{"errors":[{"code":"DENIED","message":"pull only"}]}'))
    ref = f"{front.host}/{repo}@{desc.digest}"
    r = cli("repair", ref, "-o", "json")
    assert r.code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["changes"] == [] and any("tag listing denied" in n for n in report["notes"])
    plan = json.loads(cli("clean", ref, "--dry-run", "-o", "json").stdout)
    assert [t["digest"] for t in plan["wouldRemove"]] == [str(listed.digest)]
    assert any("tag listing denied" in n for n in plan["notes"])
    probe = json.loads(cli("registry", "probe", ref, "-o", "json").stdout)
    assert probe["tag_list"] is False


def test_clean_an_oci_layout(cli, tmp_path: Path) -> None:
    from imgseal.store.layout import LayoutStore
    from signer.image import sign_with_key
    from tests.integration.images import layout_image

    desc = layout_image(tmp_path / "lay")
    store = LayoutStore(tmp_path / "lay")
    _, _, key = make_key(tmp_path, "k")
    for fmt in ("bundle", "legacy"):
        sign_with_key(store, "oci-layout", desc, key, fmt=fmt)
    ref = f"oci-layout:{tmp_path}/lay@{desc.digest}"
    plan = json.loads(cli("clean", ref, "--dry-run", "-o", "json").stdout)["wouldRemove"]
    assert sorted((t["foundVia"][0], t["artifactType"]) for t in plan) == [
        ("cosign-sig-tag", attach.SIMPLESIGNING), ("referrers-api", attach.BUNDLE_V03)]
    r = cli("clean", ref, "--yes")
    assert r.code == 0, r.stderr
    assert attach.discover(LayoutStore(tmp_path / "lay"), desc.digest) == []
    assert LayoutStore(tmp_path / "lay").has_manifest(desc.digest)
    # Nothing left: a real run says so as a real run (not a dry run), in text and JSON alike.
    r = cli("clean", ref, "--yes", "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout) | {"reference": None} == {"ok": True, "reference": None, "dryRun": False,
                                                           "notes": [], "removed": [], "refused": []}
    r = cli("clean", ref, "--yes")
    assert r.code == 0 and r.stdout.splitlines()[1:] == ["  (nothing attached)"], r.stdout
    r = cli("clean", ref, "--type", "attestation", "--dry-run")
    assert r.code == 0 and r.stdout.splitlines()[1:] == ["  (nothing attached of that type)"], r.stdout
