"""``imgseal sign`` interrupted at every write: no half-attached signature is ever reported.

For each format (cosign v3 bundle referrer, cosign legacy ``.sig``) a clean run is recorded
through tests/fault_proxy.py to learn its writes (PUT/POST/PATCH, in order: blobs, then
the manifest, then the shared referrers index — imgseal/attach.py). Then, for every N, a
fresh image is signed through the proxy with every write from the N-th on failing, in
three ways:

- ``500``: the registry answers 500 (the write did not happen);
- ``reset``: the connection is reset before the write reaches the registry;
- ``commit-reset``: the write reaches the registry, but the answer is lost (the process
  "dies" just after the registry committed).

After each interrupted run, ``imgseal verify --key`` must give exactly what the registry
state implies: the earlier result (no signatures / the earlier signer still verifying) while
the artifact manifest has not landed, and a complete, verifying signature once it has —
never a rejected, malformed, or half-attached one. Then a rerun without faults signs and
verifies. Runs are independent (one repository each) and run in parallel, because every
interrupted run spends its retry budget (5 attempts, about 4 s of backoff).
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgseal.digest import Digest
from imgseal.reference import Reference, parse_reference
from imgseal.store import StoreFactory
from keys import encrypt_private_key, generate, public_pem
from tests.fault_proxy import Drop, FaultProxy, Status
from tests.integration.images import push_image

pytestmark = pytest.mark.registry
PASSWORD = "interrupt me"
ENV = {"IMGSEAL_PASSWORD": PASSWORD}
MODES = {"500": lambda: Status(500), "reset": lambda: Drop(), "commit-reset": lambda: Drop(commit=True)}


@dataclass(frozen=True)
class Keys:
    old: Any
    new: Any
    new_priv: Path
    new_pub: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    old, new = generate("ecdsa-p256"), generate("ecdsa-p256")
    # scrypt N = 32768 (accepted by cosign) halves the key-decryption cost of the many CLI runs.
    (d / "new.key").write_bytes(encrypt_private_key(new, PASSWORD.encode(), scrypt_n=32768))
    (d / "new.pub").write_bytes(public_pem(new))
    return Keys(old, new, d / "new.key", d / "new.pub")


# One client per registry for the in-process checks (no scheme probe and ping per call).
_STORES = StoreFactory()


def _ref(host: str, repo: str) -> Reference:
    ref = parse_reference(f"{host}/{repo}:x")
    assert isinstance(ref, Reference)
    return ref


def library_verify(host: str, repo: str, digest: str, key: Any) -> dict[str, Any]:
    """What ``imgseal verify --key -o json`` reports (code, reason, rejected), computed in-process.

    The same calls as imgseal/cli/verify_cmd.py, without a process start: used for the
    checks around each interrupted run; the check that matters runs the real CLI.
    """
    from imgseal import attach
    from imgseal.errors import VerificationError
    from keys import public_key_of
    from verifier.image import judge, verify_key_signatures

    store = _STORES.open(_ref(host, repo))
    d = Digest.parse(digest)
    outcome = verify_key_signatures(store, d, attach.discover(store, d), {"k": public_key_of(key)})
    rejected = [{"artifact": a, "reason": r, "message": m} for a, r, m in outcome.rejected]
    try:
        judge(outcome, 1)
    except VerificationError as e:
        return {"code": 1, "reason": e.reason, "rejected": rejected}
    return {"code": 0, "reason": None, "rejected": rejected}


def library_sign(host: str, repo: str, digest: str, key: Any, fmt: str) -> None:
    from signer.image import sign_with_key

    store = _STORES.open(_ref(host, repo))
    manifest = store.get_manifest(Digest.parse(digest))
    sign_with_key(store, f"{host}/{repo}", manifest.descriptor(), key, fmt=fmt)


@pytest.fixture(scope="module")
def proxy(registry) -> Any:  # type: ignore[no-untyped-def]
    with FaultProxy(registry.host) as p:
        yield p


def verify(cli, host: str, repo: str, digest: str, pub: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = cli("verify", f"{host}/{repo}@{digest}", "--key", str(pub), "-o", "json")
    result = json.loads(r.stdout)
    result["code"] = r.code
    return result


def write_plan(registry, proxy: FaultProxy, cli, keys: Keys, fmt: str, prior: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """The writes of one clean signing run, as 'METHOD kind' (kind: blob upload / manifest tag).

    With an earlier signature present the plan is shorter (shared blobs already exist).
    """
    repo = f"intr/plan-{fmt}{'-prior' if prior else ''}"
    desc = push_image(registry.host, repo, content=repo.encode())
    if prior:
        library_sign(registry.host, repo, str(desc.digest), keys.old, fmt)
    r = cli("sign", f"{proxy.host}/{repo}@{desc.digest}", "--key", str(keys.new_priv), "--format", fmt, env=ENV)
    assert r.code == 0, r.stderr
    plan = []
    for s in proxy.requests_for(repo, writes_only=True):
        kind = "manifest " + s.path.rsplit("/", 1)[1][:16] if "/manifests/" in s.path else "blob upload"
        plan.append(f"{s.method} {kind}")
    return plan


@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
def test_sign_interrupted_at_every_write(registry, proxy: FaultProxy, cli, keys: Keys, fmt: str) -> None:  # type: ignore[no-untyped-def]
    plans = {prior: write_plan(registry, proxy, cli, keys, fmt, prior) for prior in (False, True)}
    first_manifest = {}
    for prior, plan in plans.items():
        # Write order (imgseal/attach.py): every blob before the first manifest.
        first_manifest[prior] = next(i for i, w in enumerate(plan, 1) if "manifest" in w)
        assert all("blob" in w for w in plan[: first_manifest[prior] - 1]) and plan[-1].startswith("PUT manifest")
    cases = [(mode, n, prior) for prior in (False, True) for mode in MODES for n in range(1, len(plans[prior]) + 1)
             if not (prior and mode != "500")]  # with an earlier signer: once per write

    def run(case: tuple[str, int, bool]) -> tuple[str, int, bool, str]:
        mode, n, prior = case
        repo = f"intr/{fmt}-{mode}-{n}{'-prior' if prior else ''}"
        digest = str(push_image(registry.host, repo, content=repo.encode()).digest)
        if prior:
            library_sign(registry.host, repo, digest, keys.old, fmt)
        before = library_verify(registry.host, repo, digest, keys.new)
        assert before["code"] == 1 and before["reason"] == ("no-matching-signature" if prior else "no-signatures")

        proxy.fail_writes_from(repo, n, MODES[mode]())
        r = cli("sign", f"{proxy.host}/{repo}@{digest}", "--key", str(keys.new_priv), "--format", fmt, env=ENV)
        assert r.code == 3, (case, r.stderr)
        assert r.stderr.startswith("imgseal: error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr

        # Writes before N landed (and N itself for commit-reset); the signature is complete iff its manifest did.
        landed = n if mode == "commit-reset" else n - 1
        complete = landed >= first_manifest[prior]
        after = verify(cli, registry.host, repo, digest, keys.new_pub)
        if complete:
            assert after["code"] == 0 and after["digest"] == digest, (case, after)
            # The only thing the new key may reject is the earlier signer's signature, never a partial one.
            assert [x["reason"] for x in after["rejected"]] == (["no-matching-signature"] if prior else []), after
        else:
            assert {k: after.get(k) for k in ("code", "reason", "rejected")} == before, (case, before, after)
        if prior:
            assert library_verify(registry.host, repo, digest, keys.old)["code"] == 0, case

        # A clean rerun completes and verifies (and the earlier signer still does).
        library_sign(registry.host, repo, digest, keys.new, fmt)
        final = library_verify(registry.host, repo, digest, keys.new)
        assert final["code"] == 0 and len(final["rejected"]) == int(prior), (case, final)
        if prior:
            assert library_verify(registry.host, repo, digest, keys.old)["code"] == 0, case
        return mode, n, prior, "complete" if complete else "unchanged"

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, cases))
    summary = Counter((mode, state) for mode, _, _, state in results)
    print(f"\ninterrupted signing ({fmt}): writes {plans[False]} (with an earlier signer: {len(plans[True])}); "
          f"{len(results)} interrupted runs, "
          f"verify after: {dict(summary)}; half-attached reported: 0")
