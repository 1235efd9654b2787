"""Registries as they are: every quirk profile (tests/integration/quirks.py) × every attachment operation.

Each cell must either work — and a write is then read back through the same front with the
key that wrote it, so "exit 0" means "stored and discoverable" — or end in exit 3 with one
``imgseal: error:`` line naming the limitation and the option that works around it. Never a
traceback, never exit 1 or 2 for a registry's limitation.

One front, one image and one seeded signature + attestation per profile (module-scoped), so
the matrix costs one image push per profile; the CLI runs in-process (typer's runner) for
speed. ``pytest -s`` prints the table docs/registries.md reproduces.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgseal import notice
from imgseal.cli.main import app
from imgseal.digest import Digest
from imgseal.reference import Reference, parse_reference
from imgseal.store import StoreFactory
from imgseal.store.base import Store
from keys import PrivateKey, encrypt_private_key, generate, public_pem
from signer.attest import attest
from signer.image import sign_with_key
from tests.fault_proxy import FaultProxy
from tests.integration.images import push_image, registry_store
from tests.integration.quirks import PROFILES, Profile
from tests.integration.referrers_double import ReferrersDouble

pytestmark = pytest.mark.registry

PASSWORD = "quirks-pass"
OPS = ("sign", "sign --format bundle", "sign --format legacy", "attest", "verify", "verify-attestation", "tree",
       "copy", "copy in", "gate")
TABLE: dict[tuple[str, str], str] = {}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


_runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The CLI in this process (a real argument parse, exit codes and streams), failing on any traceback."""
    notice._said.clear()  # each run is a fresh process as far as notices go
    base: dict[str, str | None] = {"IMGSEAL_PASSWORD": PASSWORD, "IMGSEAL_REFERRERS_MODE": None,
                                   "IMGSEAL_INSECURE_REGISTRIES": None, "COSIGN_REPOSITORY": None}
    result = _runner.invoke(app, list(args), env={**base, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("traceback:\n" + "".join(traceback.format_exception(result.exception)))
    return Ran(result.exit_code, result.stdout, result.stderr)


@dataclass
class Keys:
    dir: Path
    names: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    objects: dict[str, PrivateKey] = field(default_factory=dict)

    def make(self, name: str) -> tuple[Path, Path]:
        if name not in self.names:
            key = generate("ecdsa-p256")
            priv, pub = self.dir / f"{name}.key", self.dir / f"{name}.pub"
            priv.write_bytes(encrypt_private_key(key, PASSWORD.encode(), scrypt_n=32768))
            pub.write_bytes(public_pem(key))
            self.names[name], self.objects[name] = (priv, pub), key
        return self.names[name]

    def key(self, name: str) -> PrivateKey:
        self.make(name)
        return self.objects[name]


@dataclass
class Source:
    """An OCI layout holding an image with a bundle signature, a legacy signature and a bundle attestation."""

    path: Path
    digest: Digest


@dataclass
class Site:
    """One profile: its front, its image (with a seeded signature and attestation) and scratch space."""

    profile: Profile
    proxy: FaultProxy
    repo: str
    digest: Digest
    work: Path
    keys: Keys
    source: Source

    @property
    def ref(self) -> str:
        return f"{self.proxy.host}/{self.repo}@{self.digest}"


def _store(host: str, repo: str) -> Store:
    ref = parse_reference(f"{host}/{repo}:x")
    assert isinstance(ref, Reference)
    return StoreFactory().open(ref)


def _seed(site: Site, upstream: str) -> None:
    """A signature and an attestation by the seed key, written as a working client would write them there."""
    host = upstream if site.profile.seed_upstream else site.proxy.host
    store = _store(host, site.repo)
    key = site.keys.key("seed")
    subject = store.get_manifest(site.digest).descriptor()
    name = f"{host}/{site.repo}"
    sign_with_key(store, name, subject, key)
    attest(store, name, subject, "https://example.com/quirks/v1", {"seeded": True}, key=key)


@pytest.fixture(scope="module")
def sites(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Site]]:  # type: ignore[no-untyped-def]
    made: dict[str, Site] = {}
    doubles: list[ReferrersDouble] = []
    keys = Keys(tmp_path_factory.mktemp("quirk-keys"))
    source = _source(tmp_path_factory.mktemp("quirk-source") / "layout", keys)

    def site(name: str) -> Site:
        if name in made:
            return made[name]
        profile = next(p for p in PROFILES if p.name == name)
        upstream = registry.host
        if profile.referrers_api:
            double = ReferrersDouble(registry.host).start()
            doubles.append(double)
            upstream = double.host
        proxy = FaultProxy(upstream).start()
        assert isinstance(proxy, FaultProxy)
        profile.install(proxy)
        repo = f"quirks/{name}"
        desc = push_image(upstream, repo, content=name.encode())
        s = Site(profile, proxy, repo, desc.digest, tmp_path_factory.mktemp(name), keys, source)
        _seed(s, upstream)
        made[name] = s
        return s

    yield site  # type: ignore[misc]
    for s in made.values():
        s.proxy.stop()
    for d in doubles:
        d.stop()
    if TABLE:
        profiles = [p.name for p in PROFILES]
        print("\n| profile | " + " | ".join(OPS) + " |\n|---|" + "---|" * len(OPS))
        for p in profiles:
            print(f"| {p} | " + " | ".join(TABLE.get((p, op), "·") for op in OPS) + " |")


def _source(path: Path, keys: Keys) -> Source:
    from imgseal.store.layout import LayoutStore
    from tests.integration.images import layout_image

    desc = layout_image(path, content=b"copied in")
    store = LayoutStore(path)
    key = keys.key("seed")
    name = "registry.example/quirks/source"
    sign_with_key(store, name, desc, key, fmt="bundle")
    sign_with_key(store, name, desc, key, fmt="legacy")
    attest(store, name, desc, "https://example.com/quirks/v1", {"seeded": True}, key=key)
    return Source(path, desc.digest)


def _gate_files(site: Site, pub: Path) -> tuple[Path, Path]:
    policy = site.work / "policy.yaml"
    policy.write_text(f"""\
version: 1
default: deny
rules:
  - name: quirks
    match: ["{site.proxy.host}/quirks/**"]
    require:
      signatures:
        keys: [{pub}]
""")
    deploy = site.work / "deploy.yaml"
    deploy.write_text(f"""\
apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
    - name: app
      image: {site.ref}
""")
    return policy, deploy


def perform(site: Site, op: str) -> tuple[Ran, Ran | None]:
    """Run ``op`` through the front; for a write, also read it back (its own key only)."""
    ref = site.ref
    seed_pub = site.keys.make("seed")[1]
    if op.startswith("sign"):
        priv, pub = site.keys.make(op.replace(" ", "_"))
        extra = op.split()[1:]
        r = run("sign", ref, "--key", str(priv), *extra, "-o", "json")
        return r, (run("verify", ref, "--key", str(pub), "-o", "json") if r.code == 0 else None)
    if op == "attest":
        priv, pub = site.keys.make("attest")
        predicate = site.work / "predicate.json"
        predicate.write_text('{"built": "here"}')
        r = run("attest", ref, "--predicate", str(predicate), "--type", "https://example.com/quirks/v1",
                "--key", str(priv), "-o", "json")
        back = None
        if r.code == 0:
            back = run("verify-attestation", ref, "--type", "https://example.com/quirks/v1", "--key", str(pub),
                       "--where", "predicate.built==here", "-o", "json")
        return r, back
    if op == "verify":
        return run("verify", ref, "--key", str(seed_pub), "-o", "json"), None
    if op == "verify-attestation":
        return run("verify-attestation", ref, "--type", "https://example.com/quirks/v1", "--key", str(seed_pub),
                   "--where", "predicate.seeded==true", "-o", "json"), None
    if op == "tree":
        return run("tree", ref, "-o", "json"), None
    if op == "copy":
        layout = site.work / "copied"
        r = run("copy", ref, f"oci-layout:{layout}", "-o", "json")
        back = run("verify", f"oci-layout:{layout}@{site.digest}", "--key", str(seed_pub)) if r.code == 0 else None
        return r, back
    if op == "copy in":
        target = f"{site.proxy.host}/{site.repo}-in"
        r = run("copy", f"oci-layout:{site.source.path}@{site.source.digest}", f"{target}:v1", "-o", "json")
        back = None
        if r.code == 0:
            back = run("verify-attestation", f"{target}@{site.source.digest}", "--type",
                       "https://example.com/quirks/v1", "--key", str(seed_pub))
            if back.code == 0:
                back = run("verify", f"{target}@{site.source.digest}", "--key", str(seed_pub), "--threshold", "1")
        return r, back
    if op == "gate":
        policy, deploy = _gate_files(site, seed_pub)
        return run("gate", "--policy", str(policy), str(deploy), "--no-cache"), None
    raise AssertionError(op)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("profile", [p.name for p in PROFILES])
def test_profile_operation(sites, profile: str, op: str) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites(profile)
    r, back = perform(site, op)
    expected = site.profile.expect.get(op)
    if expected is None:
        TABLE[(profile, op)] = "pass" if r.code == 0 else f"exit {r.code}"
        assert r.code == 0, f"{profile} × {op}: exit {r.code}: {r.stderr}"
        assert back is None or back.code == 0, f"{profile} × {op}: written but not read back: {back.stderr}"
        if op == "tree":
            kinds = {a["kind"] for a in json.loads(r.stdout)["attachments"]}
            assert kinds >= {"signature", "attestation"}, r.stdout
        if op in ("copy", "copy in"):
            assert json.loads(r.stdout)["attachments"] >= (2 if op == "copy" else 3), r.stdout
        return
    TABLE[(profile, op)] = "exit 3" if r.code == 3 else f"exit {r.code} (!)"
    errors = [line for line in r.stderr.splitlines() if line.startswith("imgseal: error:")]
    assert r.code == 3, f"{profile} × {op}: expected exit 3, got {r.code}: {r.stderr}"
    assert len(errors) == 1, r.stderr
    for word in expected:
        assert word in errors[0], f"{word!r} missing from: {errors[0]}"


# -- what the matrix cannot show: how each degradation looks ----------------------------------------


def test_refused_subject_falls_back_to_legacy_with_one_notice(sites) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites("refuses-subject")
    priv, pub = site.keys.make("fallback-notice")
    r = run("sign", site.ref, "--key", str(priv), "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["signed"][0]["format"] == "legacy"
    notices = [line for line in r.stderr.splitlines() if line.startswith("imgseal: notice:")]
    assert len(notices) == 1 and "refuses OCI 1.1 artifact manifests" in notices[0] and "legacy" in notices[0]
    back = run("verify", site.ref, "--key", str(pub), "-o", "json")
    assert back.code == 0 and json.loads(back.stdout)["verified"][0]["foundVia"] == "cosign-sig-tag", back.stderr
    # Explicit --format bundle is "bundle or fail": nothing is written, the error names --format legacy.
    priv2, pub2 = site.keys.make("bundle-or-fail")
    r = run("sign", site.ref, "--key", str(priv2), "--format", "bundle")
    assert r.code == 3 and "--format legacy" in r.stderr and "405" in r.stderr, r.stderr
    assert run("verify", site.ref, "--key", str(pub2)).code == 1


def test_gitlab_alias_is_never_read_as_referrers_nor_written(sites, registry) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites("gitlab-digest-tag")
    r = run("tree", site.ref, "-o", "json")
    assert r.code == 0, r.stderr
    tree = json.loads(r.stdout)
    assert any("answers the tag" in n and "itself" in n for n in tree["notes"]), tree
    assert all(a["foundVia"] != "referrers-tag-index" for a in tree["attachments"]), tree
    # Writes never PUT the aliased name (it would be taken as a write to the image's digest).
    tag = site.digest.tag_form
    assert not [s for s in site.proxy.seen if s.method == "PUT" and s.path.endswith(f"/manifests/{tag}")]
    # The image is untouched: its bytes still hash to its digest.
    assert registry_store(registry.host, site.repo).get_manifest(site.digest).digest == site.digest


def test_gitlab_alias_of_a_multi_arch_image_lists_no_children(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """oras-go #1396: an index subject's own children came back as its referrers."""
    from tests.integration.images import push_index
    from tests.integration.quirks import _gitlab_digest_tag

    index = push_index(registry.host, "quirks/gitlab-multi")
    with FaultProxy(registry.host) as proxy:
        assert isinstance(proxy, FaultProxy)
        _gitlab_digest_tag(proxy)
        ref = f"{proxy.host}/quirks/gitlab-multi@{index.digest}"
        assert run("tree", ref, "-o", "json").stdout.count('"digest"') == 0  # nothing attached, no children
        key = generate("ecdsa-p256")
        (tmp_path / "k.key").write_bytes(encrypt_private_key(key, PASSWORD.encode(), scrypt_n=32768))
        (tmp_path / "k.pub").write_bytes(public_pem(key))
        r = run("sign", ref, "--key", str(tmp_path / "k.key"))
        assert r.code == 0 and "the shared index is not written" in r.stderr, r.stderr
        tree = json.loads(run("tree", ref, "-o", "json").stdout)
        assert [a["kind"] for a in tree["attachments"]] == ["signature"], tree
        assert run("verify", ref, "--key", str(tmp_path / "k.pub")).code == 0


@pytest.mark.parametrize("profile", ["tags-list-401", "tags-list-403"])
def test_denied_tag_listing_is_said_in_tree_and_debug(sites, cli, profile: str) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites(profile)
    r = run("tree", site.ref)
    assert r.code == 0 and "note: tag listing denied" in r.stdout, r.stdout
    # --debug configures logging once per process: a real process, as a user runs it.
    r = cli("--debug", "verify", site.ref, "--key", str(site.keys.make("seed")[1]))
    assert r.code == 0 and "tag listing denied" in r.stderr, r.stderr[-2000:]


def test_oci_subject_header_alone_is_not_a_referrers_api(sites, registry) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites("oci-subject-without-api")
    tags = registry_store(registry.host, site.repo).list_tags()
    # The tag schema was used: the index and per-artifact tags exist although every PUT said OCI-Subject.
    assert site.digest.tag_form in tags and any(t.endswith(".att") and t.count(".") == 2 for t in tags), tags


def test_if_match_ignored_loses_no_entry(sites, registry) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites("if-match-ignored")
    index = registry_store(registry.host, site.repo).get_manifest(site.digest.tag_form)
    listed = {d.digest for d in index.manifests}  # type: ignore[union-attr]
    store = registry_store(registry.host, site.repo)
    from imgseal import attach

    referrers = [a.digest for a in attach.discover(store, site.digest) if a.found_via != attach.VIA_LEGACY_SIG]
    assert referrers and set(referrers) <= listed, (referrers, listed)
    # The front did replace the index at least once (the stale replay happened).
    assert any(s.action == "Respond" for s in site.proxy.seen)


def test_delete_refused_on_replace_is_reported_not_claimed(sites) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites("delete-405")
    priv, _ = site.keys.make("replace")
    predicate = site.work / "replace.json"
    args = ("--type", "https://example.com/replace/v1", "--key", str(priv), "-o", "json")
    for n in (1, 2):
        predicate.write_text(json.dumps({"n": n}))
        r = run("attest", site.ref, "--predicate", str(predicate), *args, "--replace")
        assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["replaced"] == [] and "would not delete" in r.stderr, (r.stdout, r.stderr)


def test_persistent_rate_limit_is_one_line_and_does_not_wait(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.fault_proxy import Status, match
    from tests.integration.quirks import JSON, registry_error

    with FaultProxy(registry.host) as proxy:
        assert isinstance(proxy, FaultProxy)
        proxy.add(match("GET", "/manifests/"), Status(429, {
            "Content-Type": JSON, "Retry-After": "3600", "RateLimit-Limit": "100;w=21600",
            "RateLimit-Remaining": "0;w=21600"}, registry_error("TOOMANYREQUESTS", "pull rate limit")))
        started = time.monotonic()
        (tmp_path / "k.pub").write_bytes(public_pem(generate("ecdsa-p256")))
        r = run("verify", f"{proxy.host}/quirks/none:v1", "--key", str(tmp_path / "k.pub"))
        elapsed = time.monotonic() - started
    lines = [line for line in r.stderr.splitlines() if line.startswith("imgseal: error:")]
    assert r.code == 3 and len(lines) == 1, r.stderr
    assert "rate-limits" in lines[0] and "RateLimit-Remaining 0;w=21600" in lines[0] and "3600" in lines[0]
    assert "docker login" in lines[0] and elapsed < 5


# -- --referrers-mode ----------------------------------------------------------------------------------


def test_referrers_mode_tag_never_asks_the_api(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    double = ReferrersDouble(registry.host).start()
    try:
        desc = push_image(double.host, "quirks/mode-tag", content=b"mode tag")
        ref = f"{double.host}/quirks/mode-tag@{desc.digest}"
        key = generate("ecdsa-p256")
        (tmp_path / "k.key").write_bytes(encrypt_private_key(key, PASSWORD.encode(), scrypt_n=32768))
        (tmp_path / "k.pub").write_bytes(public_pem(key))
        assert run("sign", ref, "--key", str(tmp_path / "k.key"), "--referrers-mode", "tag").code == 0
        r = run("verify", ref, "--key", str(tmp_path / "k.pub"), env={"IMGSEAL_REFERRERS_MODE": "tag"})
        assert r.code == 0, r.stderr
        assert not [s for s in double.requests_seen if "/referrers/" in s]
        assert desc.digest.tag_form in registry_store(registry.host, "quirks/mode-tag").list_tags()
        # auto on the same registry: its API indexed the subject manifest when it was pushed, as a registry
        # with the API does whatever tag it is pushed under, so the API path finds the same signature.
        assert run("verify", ref, "--key", str(tmp_path / "k.pub")).code == 0
    finally:
        double.stop()


def test_referrers_mode_api_fails_where_there_is_none(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    desc = push_image(registry.host, "quirks/mode-api", content=b"mode api")
    key = generate("ecdsa-p256")
    (tmp_path / "k.key").write_bytes(encrypt_private_key(key, PASSWORD.encode(), scrypt_n=32768))
    r = run("sign", f"{registry.host}/quirks/mode-api@{desc.digest}", "--key", str(tmp_path / "k.key"),
            "--referrers-mode", "api")
    assert r.code == 3 and "no referrers API" in r.stderr and "--referrers-mode auto" in r.stderr, r.stderr
    r = run("tree", f"{registry.host}/quirks/mode-api@{desc.digest}", env={"IMGSEAL_REFERRERS_MODE": "sideways"})
    assert r.code == 2 and "IMGSEAL_REFERRERS_MODE must be auto, api or tag" in r.stderr, r.stderr


# -- cosign 3.0.x fallback indexes (cosign #4641) --------------------------------------------------------


def test_bare_fallback_index_entries_still_verify(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """cosign ≤ 3.0.x (go-containerregistry < 0.22.1) wrote fallback entries with neither artifactType
    nor annotations (cosign #4641, fixed for new writes only by cosign #5098); they must verify."""
    from imgseal.manifest import OCI_INDEX, Descriptor, ImageManifest, build_index
    from imgseal.store.layout import LayoutStore

    desc = push_image(registry.host, "quirks/bare-index", content=b"bare index")
    upstream = registry_store(registry.host, "quirks/bare-index")
    key = generate("ecdsa-p256")
    (tmp_path / "k.pub").write_bytes(public_pem(key))
    # Sign into an OCI layout (referrers by digest, no tags), then place the referrer on the
    # registry by digest and write the index as cosign 3.0.x did.
    layout = LayoutStore(tmp_path / "layout", create=True)
    subject = upstream.get_manifest(desc.digest)
    layout.put_manifest(subject.raw, subject.media_type)
    signed = sign_with_key(layout, f"{registry.host}/quirks/bare-index", subject.descriptor(), key, fmt="bundle")
    assert signed.artifact is not None
    referrer = layout.get_manifest(signed.artifact.digest)
    assert isinstance(referrer, ImageManifest)
    for blob in (referrer.config, *referrer.layers):
        upstream.put_blob(layout.get_blob(blob, max_bytes=1 << 20), blob.digest)
    upstream.put_manifest(referrer.raw, referrer.media_type)
    bare = Descriptor(referrer.media_type, referrer.digest, len(referrer.raw))
    upstream.put_manifest(build_index([bare]), OCI_INDEX, tag=desc.digest.tag_form)
    assert b"artifactType" not in upstream.get_manifest(desc.digest.tag_form).raw
    r = run("verify", f"{registry.host}/quirks/bare-index@{desc.digest}", "--key", str(tmp_path / "k.pub"),
            "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["verified"][0]["foundVia"] == "referrers-tag-index"


def test_copy_into_a_refusing_registry_keeps_what_fits(sites) -> None:  # type: ignore[no-untyped-def]
    site: Site = sites("refuses-subject")
    target = f"{site.proxy.host}/{site.repo}-kept"
    r = run("copy", f"oci-layout:{site.source.path}@{site.source.digest}", f"{target}:v1")
    assert r.code == 3 and "but not 2 OCI 1.1 artifact(s)" in r.stderr, r.stderr
    # The image and its legacy .sig arrived and verify there; the bundles are named as not copied.
    v = run("verify", f"{target}@{site.source.digest}", "--key", str(site.keys.make("seed")[1]), "-o", "json")
    assert v.code == 0, v.stderr
    assert {x["foundVia"] for x in json.loads(v.stdout)["verified"]} == {"cosign-sig-tag"}


def test_keyless_signing_falls_back_to_a_legacy_layer_that_verifies(sites, cli, sigstore_rig) -> None:  # type: ignore[no-untyped-def]
    """Keyless with no --format on a registry refusing subject: the legacy .sig layer carries the
    certificate, chain and Rekor bundle annotations and verifies offline."""
    from tests.integration.sigstore_rig import DEFAULT_ISSUER
    from tests.integration.test_keyless_legacy import ALICE, NO_AMBIENT

    site: Site = sites("refuses-artifact-type")
    r = cli("sign", site.ref, "--keyless", "--trust-config", str(sigstore_rig.trust_config_path),
            "--identity-token", sigstore_rig.mint_token(ALICE), "-o", "json", env=NO_AMBIENT)
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["signed"][0]["format"] == "legacy" and "imgseal: notice:" in r.stderr
    v = cli("verify", site.ref, "--certificate-identity", ALICE, "--certificate-oidc-issuer", DEFAULT_ISSUER,
            "--trusted-root", str(sigstore_rig.trusted_root_path), "-o", "json")
    assert v.code == 0, v.stderr
    assert [x["foundVia"] for x in json.loads(v.stdout)["verified"]] == ["cosign-sig-tag"]


def test_a_referrers_api_that_lists_nothing_gets_the_tag_schema_too(sites, registry) -> None:  # type: ignore[no-untyped-def]
    """sigstore-js #1187: a 200 from /referrers proved nothing there; a signature pushed only by digest
    would be signed and never found. The listing is read back after the push."""
    site: Site = sites("referrers-false-200")
    priv, pub = site.keys.make("false-200")
    r = run("sign", site.ref, "--key", str(priv), "--format", "bundle")
    assert r.code == 0 and "does not list" in r.stderr and "tag schema too" in r.stderr, r.stderr
    assert site.digest.tag_form in registry_store(registry.host, site.repo).list_tags()
    v = run("verify", site.ref, "--key", str(pub), "-o", "json")
    assert v.code == 0 and json.loads(v.stdout)["verified"][0]["foundVia"] == "referrers-tag-index", v.stderr
