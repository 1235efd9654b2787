"""Fault injection between imgseal and the real docker-registry (tests/fault_proxy.py in between).

What must hold under every fault:
- transient faults (5xx, 429 with Retry-After, dropped connections, stalls) are retried
  within a bounded budget and then succeed, or end in exit 3 naming the cause;
- substituted or truncated content is never accepted: exit 1 naming the blob or manifest;
- credentials never reach a host that blobs are redirected to;
- a tag that changes between requests never yields a mix: the digest reported is the
  digest of the bytes that were verified.

Each scenario adds its runs to ``LEDGER``; the module prints the table (``pytest -s``)
that docs/reliability.md reproduces. Stalls are tested at library level with a small
client timeout (the CLI's is 30 s).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgseal.content import fetch_manifest, verify_deep
from imgseal.digest import Digest
from imgseal.errors import DigestMismatchError, Error, NetworkError, RegistryError
from imgseal.manifest import ImageManifest
from imgseal.store.registry import RegistryClient, RegistryOptions, RegistryStore
from tests.fault_proxy import (
    Drop,
    DropMidBody,
    FaultProxy,
    Forward,
    Redirect,
    RedirectTarget,
    Stall,
    Status,
    Substitute,
    Truncate,
    flip_last_byte,
    match,
)
from tests.integration.images import push_image, registry_store

pytestmark = pytest.mark.registry

BLOB_GET = match("GET", r"/blobs/sha256:")
MANIFEST_GET = match("GET", r"/manifests/")

# fault -> [runs, outcomes, wrong accepts]
LEDGER: dict[str, list[object]] = defaultdict(lambda: [0, Counter(), 0])


def record(fault: str, outcome: str, wrong_accept: bool = False) -> None:
    entry = LEDGER[fault]
    entry[0] = int(entry[0]) + 1  # type: ignore[call-overload]
    entry[1][outcome] += 1  # type: ignore[index]
    entry[2] = int(entry[2]) + int(wrong_accept)  # type: ignore[call-overload]


@pytest.fixture(scope="module", autouse=True)
def ledger_summary() -> Iterator[None]:
    yield
    print("\n| fault | runs | outcome | wrong accepts |\n|---|---|---|---|")
    for fault, (runs, outcomes, wrong) in LEDGER.items():
        shown = ", ".join(f"{k} ×{v}" for k, v in sorted(outcomes.items()))  # type: ignore[attr-defined]
        print(f"| {fault} | {runs} | {shown} | {wrong} |")


@pytest.fixture
def proxy(registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as p:
        yield p  # type: ignore[misc]


@pytest.fixture(scope="module")
def image(registry) -> dict[str, object]:
    """One image (two layers + config) with its blob digests and total size, pushed once."""
    desc = push_image(registry.host, "faults/app", content=b"fault injection " * 64)
    manifest = registry_store(registry.host, "faults/app").get_manifest(desc.digest)
    assert isinstance(manifest, ImageManifest)
    blobs = [manifest.config, *manifest.layers]
    return {"digest": desc.digest, "blobs": [b.digest for b in blobs], "bytes": sum(b.size for b in blobs)}


def deep(cli, ref: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("digest", ref, "--deep", "-o", "json", env=env)


def fast_store(host: str, repo: str, **opts: float) -> RegistryStore:
    """A library-level store with small timeouts and backoff (the CLI's are 30 s and 0.25 s)."""
    options = RegistryOptions(**{"timeout": 0.5, "backoff_base": 0.01, "backoff_max": 0.05, "retry_budget": 10.0,
                                 **opts})  # type: ignore[arg-type]
    return RegistryClient(host, options).repository(repo)


def classify(code: int) -> str:
    return {0: "ok (exit 0)", 1: "rejected (exit 1)", 2: "bad input (exit 2)", 3: "gave up (exit 3)"}.get(
        code, f"exit {code}")


# -- transient faults: retried, then success --------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503])
def test_transient_5xx_is_retried_then_succeeds(proxy: FaultProxy, cli, image, code: int) -> None:  # type: ignore[no-untyped-def]
    proxy.add(MANIFEST_GET, Status(code), times=2)
    proxy.add(BLOB_GET, Status(code), times=2)
    r = deep(cli, f"{proxy.host}/faults/app:v1")
    record("5xx ×2 on manifest and blob GETs", classify(r.code))
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["digest"] == str(image["digest"]) and result["verified"]["bytes"] == image["bytes"]
    assert sum(1 for s in proxy.seen if s.action == "Status") == 4


def test_429_retry_after_is_honoured(proxy: FaultProxy, cli, image) -> None:  # type: ignore[no-untyped-def]
    proxy.add(BLOB_GET, Status(429, {"Retry-After": "1"}), times=1)
    r = deep(cli, f"{proxy.host}/faults/app@{image['digest']}")
    record("429 + Retry-After: 1", classify(r.code))
    assert r.code == 0, r.stderr
    limited = next(s for s in proxy.seen if s.action == "Status")
    again = next(s for s in proxy.seen if s.path == limited.path and s.at > limited.at)
    assert again.at - limited.at >= 0.9, "Retry-After was not honoured"


def test_dropped_connections_are_retried(proxy: FaultProxy, cli, image) -> None:  # type: ignore[no-untyped-def]
    proxy.add(MANIFEST_GET, Drop(), times=1)
    proxy.add(BLOB_GET, Drop(), times=2)
    r = deep(cli, f"{proxy.host}/faults/app:v1")
    record("connection reset before the answer ×3", classify(r.code))
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["verified"]["bytes"] == image["bytes"]


# -- persistent faults: bounded, then exit 3 with the cause --------------------------------------------


def test_persistent_5xx_gives_up_with_exit_3(proxy: FaultProxy, cli, image) -> None:  # type: ignore[no-untyped-def]
    proxy.add(BLOB_GET, Status(502, {"Content-Type": "text/plain"}, b"bad gateway"))
    started = time.monotonic()
    r = deep(cli, f"{proxy.host}/faults/app@{image['digest']}")
    elapsed = time.monotonic() - started
    record("502 forever on blobs", classify(r.code))
    assert r.code == 3, r.stderr
    assert "kept failing" in r.stderr and "502" in r.stderr and "/blobs/" in r.stderr
    assert json.loads(r.stdout)["reason"] == "registry-unavailable"
    per_blob = Counter(s.path for s in proxy.seen if s.action == "Status")
    assert max(per_blob.values()) == RegistryOptions().max_attempts  # bounded attempts
    assert elapsed < 20


def test_persistent_connection_drop_gives_up_with_exit_3(proxy: FaultProxy, cli, image) -> None:  # type: ignore[no-untyped-def]
    proxy.add(MANIFEST_GET, Drop())
    r = deep(cli, f"{proxy.host}/faults/app:v1")
    record("connection reset forever", classify(r.code))
    assert r.code == 3 and "cannot reach registry" in r.stderr and "/manifests/v1" in r.stderr, r.stderr


@pytest.mark.parametrize("target", ["manifest", "blob"])
def test_drop_mid_body_is_never_accepted(proxy: FaultProxy, cli, image, target: str) -> None:  # type: ignore[no-untyped-def]
    proxy.add(MANIFEST_GET if target == "manifest" else BLOB_GET, DropMidBody(0.5), times=1)
    r = deep(cli, f"{proxy.host}/faults/app@{image['digest']}")
    record(f"connection dropped mid-body ({target})", classify(r.code), wrong_accept=False)
    # A short body is either retried (and then fully verified) or reported; never a partial accept.
    assert r.code in (0, 3), r.stderr
    if r.code == 3:
        assert "mid-body" in r.stderr or "cannot reach" in r.stderr
    else:
        assert json.loads(r.stdout)["verified"]["bytes"] == image["bytes"]


# -- corrupt content: never accepted, exit 1 naming what --------------------------------------------


@pytest.mark.parametrize("fault", ["truncate", "substitute"])
def test_corrupt_blob_is_rejected_naming_it(proxy: FaultProxy, cli, image, fault: str) -> None:  # type: ignore[no-untyped-def]
    victim = image["blobs"][1]  # type: ignore[index]
    action = Truncate() if fault == "truncate" else Substitute(flip_last_byte)
    proxy.add(match("GET", f"/blobs/{victim}"), action)
    for ref in (f"{proxy.host}/faults/app:v1", f"{proxy.host}/faults/app@{image['digest']}"):
        r = deep(cli, ref)
        record(f"blob {fault}d", classify(r.code), wrong_accept=r.code == 0)
        assert r.code == 1, r.stderr
        assert str(victim) in r.stderr and ("digest mismatch" in r.stderr or "size mismatch" in r.stderr)


@pytest.mark.parametrize("fault", ["truncate", "substitute"])
def test_corrupt_manifest_by_digest_is_rejected(proxy: FaultProxy, cli, image, fault: str) -> None:  # type: ignore[no-untyped-def]
    action = Truncate() if fault == "truncate" else Substitute(flip_last_byte)
    proxy.add(MANIFEST_GET, action)
    r = deep(cli, f"{proxy.host}/faults/app@{image['digest']}")
    record(f"manifest {fault}d (by digest)", classify(r.code), wrong_accept=r.code == 0)
    assert r.code == 1, r.stderr
    assert str(image["digest"]) in r.stderr and "manifest" in r.stderr


def test_other_manifest_under_original_digest_header_is_rejected(registry, proxy: FaultProxy, cli, image) -> None:  # type: ignore[no-untyped-def]
    """By tag there is nothing to compare with but the registry's own Docker-Content-Digest."""
    other = push_image(registry.host, "faults/app", tag="other", content=b"another image")
    other_raw = registry_store(registry.host, "faults/app").get_manifest(other.digest).raw
    proxy.add(match("GET", "/manifests/v1$"), Substitute(lambda _raw: other_raw))
    r = deep(cli, f"{proxy.host}/faults/app:v1")
    record("tag answers another manifest, header kept", classify(r.code), wrong_accept=r.code == 0)
    assert r.code == 1 and "registry claims" in r.stderr, r.stderr


def test_truncated_manifest_by_tag_is_not_accepted(proxy: FaultProxy, cli) -> None:  # type: ignore[no-untyped-def]
    proxy.add(match("GET", "/manifests/v1$"), Truncate())
    r = deep(cli, f"{proxy.host}/faults/app:v1")
    record("manifest truncated (by tag)", classify(r.code), wrong_accept=r.code == 0)
    assert r.code in (1, 2) and "manifest" in r.stderr, r.stderr


# -- redirects: credentials stay home ---------------------------------------------------------------


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> dict[str, str]:
    conf = tmp_path / "docker-config"
    conf.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (conf / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(conf)}


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_credentials_never_reach_redirect_target(registry, proxy: FaultProxy, cli, image, tmp_path: Path,
                                                 scheme: str) -> None:  # type: ignore[no-untyped-def]
    env = _docker_config(tmp_path, proxy.host, "alice", "s3cret-pass")
    if scheme == "basic":
        proxy.require_basic("alice", "s3cret-pass")
    else:
        proxy.require_bearer("tok-" + "x" * 24)
    with RedirectTarget(registry.host) as target:
        proxy.add(BLOB_GET, Redirect(target))  # type: ignore[arg-type]
        r = deep(cli, f"{proxy.host}/faults/app:v1", env=env)
        leaked = [s for s in target.seen if any(k.lower() in ("authorization", "cookie") for k in s.headers)]  # type: ignore[attr-defined]
        record(f"blob redirect to another host ({scheme} auth)", classify(r.code), wrong_accept=bool(leaked))
        assert r.code == 0, r.stderr
        assert len(target.seen) == 3  # type: ignore[attr-defined]
        assert not leaked
        # The registry itself did get credentials (otherwise the test proves nothing).
        assert any("Authorization" in s.headers for s in proxy.seen if "/blobs/" in s.path)


def test_redirect_target_serving_other_bytes_is_rejected(registry, proxy: FaultProxy, cli, image) -> None:  # type: ignore[no-untyped-def]
    with RedirectTarget(registry.host, serve=flip_last_byte) as target:
        proxy.add(BLOB_GET, Redirect(target))  # type: ignore[arg-type]
        r = deep(cli, f"{proxy.host}/faults/app:v1")
        record("redirect target substitutes bytes", classify(r.code), wrong_accept=r.code == 0)
        assert r.code == 1 and "digest mismatch" in r.stderr, r.stderr


# -- a tag that moves between requests ----------------------------------------------------------------


def test_tag_swapped_between_requests_never_mixes(registry, proxy: FaultProxy, cli) -> None:  # type: ignore[no-untyped-def]
    """Every manifest GET of the tag alternates between two images; no answer may mix them."""
    a = push_image(registry.host, "faults/swap", tag="a", content=b"A" * 300)
    b = push_image(registry.host, "faults/swap", tag="b", content=b"B" * 5000)
    sizes = {}
    for d in (a, b):
        m = registry_store(registry.host, "faults/swap").get_manifest(d.digest)
        assert isinstance(m, ImageManifest)
        sizes[str(d.digest)] = sum(x.size for x in (m.config, *m.layers))
    flip = {"n": 0}

    def alternate(r) -> bool:  # type: ignore[no-untyped-def]
        if r.method in ("GET", "HEAD") and r.path.endswith("/manifests/live"):
            flip["n"] += 1
            return flip["n"] % 2 == 0
        return False

    proxy.add(alternate, Forward("/v2/faults/swap/manifests/b"))
    proxy.add(match(None, "/manifests/live$"), Forward("/v2/faults/swap/manifests/a"))
    for _ in range(4):
        r = deep(cli, f"{proxy.host}/faults/swap:live")
        assert r.code == 0, r.stderr
        result = json.loads(r.stdout)
        mixed = result["verified"]["bytes"] != sizes[result["digest"]]
        record("tag moves between requests", f"ok, reported {'a' if result['digest'] == str(a.digest) else 'b'}",
               wrong_accept=mixed)
        assert not mixed


def test_tag_swap_while_signing_signs_the_fetched_bytes(registry, proxy: FaultProxy, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``sign --resolve-tag`` under a moving tag: the digest it reports is the one the signature names."""
    from keys import encrypt_private_key, generate, public_pem

    a = push_image(registry.host, "faults/swapsign", tag="a", content=b"sign A")
    b = push_image(registry.host, "faults/swapsign", tag="b", content=b"sign B")
    key = generate("ecdsa-p256")
    (tmp_path / "k.key").write_bytes(encrypt_private_key(key, b"pw"))
    (tmp_path / "k.pub").write_bytes(public_pem(key))
    flip = {"n": 0}

    def alternate(r) -> bool:  # type: ignore[no-untyped-def]
        if r.path.endswith("/manifests/live"):
            flip["n"] += 1
            return flip["n"] % 2 == 1
        return False

    proxy.add(alternate, Forward("/v2/faults/swapsign/manifests/b"))
    proxy.add(match(None, "/manifests/live$"), Forward("/v2/faults/swapsign/manifests/a"))
    r = cli("sign", f"{proxy.host}/faults/swapsign:live", "--key", str(tmp_path / "k.key"), "--resolve-tag",
            "-o", "json", env={"IMGSEAL_PASSWORD": "pw"})
    assert r.code == 0, r.stderr
    signed = json.loads(r.stdout)["signed"][0]["reference"].split("@")[1]
    unsigned = str(a.digest) if signed == str(b.digest) else str(b.digest)
    ok = cli("verify", f"{registry.host}/faults/swapsign@{signed}", "--key", str(tmp_path / "k.pub"))
    no = cli("verify", f"{registry.host}/faults/swapsign@{unsigned}", "--key", str(tmp_path / "k.pub"))
    record("tag moves while signing", classify(ok.code), wrong_accept=no.code == 0)
    assert ok.code == 0 and no.code == 1, (ok.stderr, no.stderr)


# -- distribution 2.8's link-file race on manifest PUT -------------------------------------------------

MANIFEST_PUT = match("PUT", r"/manifests/")


def _registry_refusal(code: str, message: str) -> Status:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return Status(400, {"Content-Type": "application/json"}, body)


def _sign_via(proxy: FaultProxy, registry, cli, tmp_path: Path, repo: str, *extra: str):  # type: ignore[no-untyped-def]
    from keys import encrypt_private_key, generate, public_pem

    desc = push_image(registry.host, repo, content=repo.encode())
    key = generate("ecdsa-p256")
    (tmp_path / "k.key").write_bytes(encrypt_private_key(key, b"pw", scrypt_n=32768))
    (tmp_path / "k.pub").write_bytes(public_pem(key))
    r = cli("sign", f"{proxy.host}/{repo}@{desc.digest}", "--key", str(tmp_path / "k.key"), *extra,
            env={"IMGSEAL_PASSWORD": "pw"})
    return desc, r


def test_manifest_put_refused_while_a_blob_is_repushed_is_retried(registry, proxy: FaultProxy, cli,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    """distribution 2.8 rewrites a blob's link file in place on every push of that blob; a
    concurrent manifest PUT then reads a partial link and answers DIGEST_INVALID. Signers
    pushing the same empty config blob hit this, so the PUT is retried (bounded)."""
    proxy.add(MANIFEST_PUT, _registry_refusal("DIGEST_INVALID", "provided digest did not match uploaded content"),
              times=2)
    proxy.add(MANIFEST_PUT, _registry_refusal("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"), times=1)
    desc, r = _sign_via(proxy, registry, cli, tmp_path, "faults/linkrace")
    record("manifest PUT refused DIGEST_INVALID ×2, BLOB_UNKNOWN ×1", classify(r.code))
    assert r.code == 0, r.stderr
    v = cli("verify", f"{registry.host}/faults/linkrace@{desc.digest}", "--key", str(tmp_path / "k.pub"))
    assert v.code == 0, v.stderr


@pytest.mark.parametrize(("code", "retried"), [("DIGEST_INVALID", True), ("MANIFEST_INVALID", False)])
def test_manifest_put_refused_for_good_gives_up_with_exit_3(registry, proxy: FaultProxy, cli,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path, code: str, retried: bool) -> None:
    from imgseal.store.registry import MANIFEST_PUT_ATTEMPTS

    repo = f"faults/refused-{code.lower().replace('_', '-')}"
    proxy.add(MANIFEST_PUT, _registry_refusal(code, "refused"))
    # --format bundle: bundle or fail (without it a refusal falls back to legacy: tests/integration/test_quirks.py)
    desc, r = _sign_via(proxy, registry, cli, tmp_path, repo, "--format", "bundle")
    record(f"manifest PUT refused {code} forever", classify(r.code))
    assert r.code == 3 and code in r.stderr, r.stderr
    assert sum(1 for s in proxy.seen if s.action == "Status") == (MANIFEST_PUT_ATTEMPTS if retried else 1)
    v = cli("verify", f"{registry.host}/{repo}@{desc.digest}", "--key", str(tmp_path / "k.pub"))
    assert v.code == 1, v.stderr  # nothing half-attached was left behind


# -- stalls (library level: small client timeout) ------------------------------------------------------


def test_stall_once_is_retried(proxy: FaultProxy, image) -> None:  # type: ignore[no-untyped-def]
    store = fast_store(proxy.host, "faults/app")
    proxy.add(MANIFEST_GET, Stall(3.0), times=1)
    proxy.add(BLOB_GET, Stall(3.0), times=1)
    started = time.monotonic()
    manifest = store.get_manifest(image["digest"])  # type: ignore[arg-type]
    result = verify_deep(store, manifest)
    record("stall past the timeout, once (library)", "ok")
    assert result.total_bytes == image["bytes"]
    assert time.monotonic() - started < 3.0  # the stall was cut by the client's 0.5 s timeout


@pytest.mark.parametrize("after_headers", [False, True])
def test_stall_forever_is_bounded(proxy: FaultProxy, image, after_headers: bool) -> None:  # type: ignore[no-untyped-def]
    store = fast_store(proxy.host, "faults/app", max_attempts=3)
    manifest = store.get_manifest(image["digest"])  # type: ignore[arg-type]
    proxy.add(BLOB_GET, Stall(5.0, after_headers=after_headers))
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        verify_deep(store, manifest)
    elapsed = time.monotonic() - started
    record(f"stall forever{' mid-body' if after_headers else ''} (library)", "gave up (NetworkError, exit 3)")
    assert elapsed < 4.0
    assert ("mid-body" if after_headers else "cannot reach registry") in str(info.value)


# -- soaks: random faults on every request (library level, seeded) ----------------------------------


TRANSIENT: list[Callable[[], object]] = [lambda: Status(503), lambda: Status(429, {"Retry-After": "0"}),
                                         lambda: Drop(), lambda: Status(500)]


def test_soak_transient_faults(proxy: FaultProxy, image) -> None:  # type: ignore[no-untyped-def]
    """40 runs, each request faulted with p = 0.25: success with every byte verified, or NetworkError/RegistryError."""
    rng = random.Random(20240601)
    for action in TRANSIENT:
        proxy.add(lambda _r: rng.random() < 0.0625, action())  # type: ignore[arg-type]
    for _ in range(40):
        store = fast_store(proxy.host, "faults/app", max_attempts=4)
        try:
            manifest = fetch_manifest(store, "v1", None)
            result = verify_deep(store, manifest)
        except (NetworkError, RegistryError) as e:
            record("soak: random 5xx/429/reset (library)", f"gave up ({type(e).__name__})")
            continue
        ok = manifest.digest == image["digest"] and result.total_bytes == image["bytes"]
        record("soak: random 5xx/429/reset (library)", "ok", wrong_accept=not ok)
        assert ok


def test_soak_corrupting_faults(proxy: FaultProxy, image) -> None:  # type: ignore[no-untyped-def]
    """40 runs by digest, each content GET corrupted with p = 0.2: any run that saw a corruption must fail."""
    rng = random.Random(7)
    content = match("GET", r"/(blobs|manifests)/sha256:")
    corruptions = [Substitute(flip_last_byte), Truncate(), Substitute(lambda b: b + b"\n"), DropMidBody(0.3)]
    for action in corruptions:
        proxy.add(lambda r, rng=rng: content(r) and rng.random() < 0.05, action)  # type: ignore[misc]
    for _ in range(40):
        proxy.seen.clear()
        store = fast_store(proxy.host, "faults/app", max_attempts=2)
        try:
            manifest = store.get_manifest(image["digest"])  # type: ignore[arg-type]
            verify_deep(store, manifest)
        except (DigestMismatchError, NetworkError) as e:
            record("soak: random substitute/truncate (library)", f"rejected ({type(e).__name__})")
            continue
        except Error as e:  # pragma: no cover - reported with the cause if it ever happens
            pytest.fail(f"unexpected {type(e).__name__}: {e}")
        # A mid-body drop may legitimately be retried; a served corruption never may be accepted.
        corrupted = any(s.action in ("Substitute", "Truncate") for s in proxy.seen)
        record("soak: random substitute/truncate (library)", "ok (no corruption drawn)", wrong_accept=corrupted)
        assert not corrupted


def test_digest_header_is_checked_against_bytes(proxy: FaultProxy, image) -> None:  # type: ignore[no-untyped-def]
    """Sanity for the ledger: the library rejects a substituted manifest by digest with a DigestMismatchError."""
    proxy.add(MANIFEST_GET, Substitute(flip_last_byte))
    store = fast_store(proxy.host, "faults/app")
    with pytest.raises(DigestMismatchError, match=str(image["digest"])):
        store.get_manifest(Digest.parse(str(image["digest"])))


def test_closed_port_names_the_refusal_on_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    # requests wraps the OS error in two layers of urllib3 text ("HTTPSConnectionPool(...): Max
    # retries exceeded ... (Caused by NewConnectionError(...")) and cutting that at 200 characters
    # used to drop the one part a user needs: "Connection refused".
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("digest", f"127.0.0.1:{port}/app:v1")
    lines = r.stderr.strip().splitlines()
    assert r.code == 3 and len(lines) == 1, r.stderr
    assert lines[0] == f"imgseal: error: cannot reach registry 127.0.0.1:{port}: connection refused", r.stderr
