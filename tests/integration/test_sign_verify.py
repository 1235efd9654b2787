"""Sign → verify round trips and attacks against the real docker-registry and OCI layouts."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imgseal import attach
from imgseal.dsse import sign_envelope
from imgseal.intoto import PAYLOAD_TYPE, image_statement
from imgseal.payloads import COSIGN_SIGN_PREDICATE, dsse_key_bundle, simple_signing_payload
from keys import encrypt_private_key, generate, public_pem, sign
from keys.material import public_der
from signer.image import attach_bundle
from tests.integration.images import layout_image, push_image, push_index, registry_store

pytestmark = pytest.mark.registry
PASSWORD = "correct horse"
ENV = {"IMGSEAL_PASSWORD": PASSWORD}


def make_key(directory: Path, name: str, kind: str = "ecdsa-p256") -> tuple[Path, Path, object]:
    key = generate(kind)
    priv = directory / f"{name}.key"
    pub = directory / f"{name}.pub"
    priv.write_bytes(encrypt_private_key(key, PASSWORD.encode()))
    pub.write_bytes(public_pem(key))
    return priv, pub, key


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519", "rsa-3072"])
@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
def test_round_trip_every_key_type_and_format(registry, cli, tmp_path: Path, kind: str, fmt: str) -> None:
    repo = f"rt/{kind}-{fmt}"
    desc = push_image(registry.host, repo, content=repo.encode())
    priv, pub, _ = make_key(tmp_path, "k", kind)
    ref = f"{registry.host}/{repo}@{desc.digest}"
    r = cli("sign", ref, "--key", str(priv), "--format", fmt, "-a", "team=core", env=ENV)
    assert r.code == 0, r.stderr
    r = cli("verify", f"{registry.host}/{repo}:v1", "--key", str(pub), "-a", "team=core", "-o", "json")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] and result["digest"] == str(desc.digest)
    assert result["verified"][0]["format"] == fmt
    r = cli("verify", ref, "--key", str(pub), "-a", "team=other", "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "annotation-mismatch"


def test_tag_only_sign_is_refused_unless_resolve_tag(registry, cli, tmp_path: Path) -> None:
    desc = push_image(registry.host, "rt/tagonly")
    priv, pub, _ = make_key(tmp_path, "k")
    r = cli("sign", f"{registry.host}/rt/tagonly:v1", "--key", str(priv), env=ENV)
    assert r.code == 2 and "names no digest" in r.stderr and "--resolve-tag" in r.stderr
    r = cli("sign", f"{registry.host}/rt/tagonly:v1", "--key", str(priv), "--resolve-tag", env=ENV)
    assert r.code == 0 and "warning" in r.stderr and str(desc.digest) in r.stderr
    assert cli("verify", f"{registry.host}/rt/tagonly@{desc.digest}", "--key", str(pub)).code == 0


def test_wrong_password_is_exit_4_one_line(registry, cli, tmp_path: Path) -> None:
    desc = push_image(registry.host, "rt/pw")
    priv, _, _ = make_key(tmp_path, "k")
    r = cli("sign", f"{registry.host}/rt/pw@{desc.digest}", "--key", str(priv), env={"IMGSEAL_PASSWORD": "nope"})
    assert r.code == 4
    assert r.stderr.strip() == "imgseal: error: wrong password or corrupted key file"


def test_recursive_index_signs_every_child(registry, cli, tmp_path: Path) -> None:
    index = push_index(registry.host, "rt/index")
    priv, pub, _ = make_key(tmp_path, "k")
    r = cli("sign", f"{registry.host}/rt/index@{index.digest}", "--key", str(priv), "-r", "-o", "json", env=ENV)
    assert r.code == 0, r.stderr
    signed = json.loads(r.stdout)["signed"]
    assert len(signed) == 3
    for item in signed:
        assert cli("verify", item["reference"], "--key", str(pub)).code == 0


def test_threshold_counts_distinct_keys(registry, cli, tmp_path: Path) -> None:
    desc = push_image(registry.host, "rt/threshold")
    ref = f"{registry.host}/rt/threshold@{desc.digest}"
    k1, p1, _ = make_key(tmp_path, "a")
    _, p2, _ = make_key(tmp_path, "b")
    assert cli("sign", ref, "--key", str(k1), env=ENV).code == 0
    assert cli("sign", ref, "--key", str(k1), "--format", "legacy", env=ENV).code == 0
    r = cli("verify", ref, "--key", str(p1), "--key", str(p2), "--threshold", "2")
    assert r.code == 1 and "1 of 2" in r.stderr
    assert cli("verify", ref, "--key", str(p1), "--key", str(p2)).code == 0


def test_no_signatures_and_wrong_key(registry, cli, tmp_path: Path) -> None:
    desc = push_image(registry.host, "rt/none")
    ref = f"{registry.host}/rt/none@{desc.digest}"
    k1, _, _ = make_key(tmp_path, "a")
    _, p2, _ = make_key(tmp_path, "b")
    r = cli("verify", ref, "--key", str(p2), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-signatures"
    assert cli("sign", ref, "--key", str(k1), env=ENV).code == 0
    r = cli("verify", ref, "--key", str(p2), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-matching-signature"


def test_signature_copied_from_another_image_is_refused(registry, cli, tmp_path: Path) -> None:
    a = push_image(registry.host, "attack/copy", tag="a", content=b"image a")
    b = push_image(registry.host, "attack/copy", tag="b", content=b"image b")
    store = registry_store(registry.host, "attack/copy")
    _, pub, key = make_key(tmp_path, "k")
    # A valid bundle for image A, attached to image B (its subject says B, its statement says A).
    statement = image_statement("x", a.digest, COSIGN_SIGN_PREDICATE, {}).to_bytes()
    env = sign_envelope(PAYLOAD_TYPE, statement, [("", lambda m: sign(key, m))])  # type: ignore[arg-type]
    attach_bundle(store, b, dsse_key_bundle(env, public_der(key)), COSIGN_SIGN_PREDICATE)  # type: ignore[arg-type]
    # And a legacy payload for A appended to B's .sig image.
    payload = simple_signing_payload("x", a.digest, None)
    sig = base64.b64encode(sign(key, payload)).decode()  # type: ignore[arg-type]
    attach.attach_legacy(store, b.digest, suffix="sig",
                         layer=attach.Layer(payload, attach.SIMPLESIGNING, {"dev.cosignproject.cosign/signature": sig}))
    r = cli("verify", f"{registry.host}/attack/copy@{b.digest}", "--key", str(pub), "-o", "json")
    assert r.code == 1
    out = json.loads(r.stdout)
    assert out["reason"] == "payload-digest-mismatch"
    assert {x["reason"] for x in out["rejected"]} == {"payload-digest-mismatch"}


def test_tampered_and_non_intoto_bundles_are_refused(registry, cli, tmp_path: Path) -> None:
    desc = push_image(registry.host, "attack/tamper")
    store = registry_store(registry.host, "attack/tamper")
    _, pub, key = make_key(tmp_path, "k")
    statement = image_statement("x", desc.digest, COSIGN_SIGN_PREDICATE, {}).to_bytes()
    env = sign_envelope(PAYLOAD_TYPE, statement, [("", lambda m: sign(key, m))])  # type: ignore[arg-type]
    bundle = json.loads(dsse_key_bundle(env, public_der(key)))  # type: ignore[arg-type]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(statement.replace(b"cosign/sign", b"cosign/sigX")).decode()
    attach_bundle(store, desc, json.dumps(bundle).encode(), COSIGN_SIGN_PREDICATE)
    other = sign_envelope("text/plain", statement, [("", lambda m: sign(key, m))])  # type: ignore[arg-type]
    attach_bundle(store, desc, dsse_key_bundle(other, public_der(key)), COSIGN_SIGN_PREDICATE)  # type: ignore[arg-type]
    r = cli("verify", f"{registry.host}/attack/tamper@{desc.digest}", "--key", str(pub), "-o", "json")
    assert r.code == 1
    reasons = {x["reason"] for x in json.loads(r.stdout)["rejected"]}
    assert reasons == {"no-matching-signature", "payload-type"}


def test_swapped_manifest_behind_tag_is_not_verified(fresh_registry, cli, tmp_path: Path) -> None:
    good = push_image(fresh_registry.host, "attack/swap", tag="v1", content=b"good")
    priv, pub, _ = make_key(tmp_path, "k")
    assert cli("sign", f"{fresh_registry.host}/attack/swap@{good.digest}", "--key", str(priv), env=ENV).code == 0
    evil = push_image(fresh_registry.host, "attack/swap", tag="v1", content=b"evil")
    r = cli("verify", f"{fresh_registry.host}/attack/swap:v1", "--key", str(pub), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["digest"] == str(evil.digest)
    assert json.loads(r.stdout)["reason"] == "no-signatures"


def test_signature_blob_failing_its_digest_is_refused(fresh_registry, cli, tmp_path: Path) -> None:
    from tests.integration.registry_rig import corrupt_blob

    desc = push_image(fresh_registry.host, "attack/blob")
    priv, pub, _ = make_key(tmp_path, "k")
    r = cli("sign", f"{fresh_registry.host}/attack/blob@{desc.digest}", "--key", str(priv), "-o", "json", env=ENV)
    artifact = json.loads(r.stdout)["signed"][0]["artifact"]
    store = registry_store(fresh_registry.host, "attack/blob")
    layer = store.get_manifest(attach.Digest.parse(artifact)).layers[0]  # type: ignore[attr-defined,union-attr]
    corrupt_blob(fresh_registry.storage_dir, layer.digest)
    r = cli("verify", f"{fresh_registry.host}/attack/blob@{desc.digest}", "--key", str(pub), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["rejected"][0]["reason"] == "digest-mismatch"


def test_layout_sign_verify_and_copy_air_gapped(registry, cli, tmp_path: Path) -> None:
    desc = push_image(registry.host, "copy/src")
    priv, pub, _ = make_key(tmp_path, "k")
    src = f"{registry.host}/copy/src@{desc.digest}"
    assert cli("sign", src, "--key", str(priv), env=ENV).code == 0
    assert cli("sign", src, "--key", str(priv), "--format", "legacy", env=ENV).code == 0
    layout = tmp_path / "carry"
    r = cli("copy", src, f"oci-layout:{layout}:v1")
    assert r.code == 0, r.stderr
    r = cli("verify", f"oci-layout:{layout}:v1", "--key", str(pub), "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["digest"] == str(desc.digest)
    r = cli("copy", f"oci-layout:{layout}:v1", f"{registry.host}/copy/dst:v1")
    assert r.code == 0, r.stderr
    r = cli("verify", f"{registry.host}/copy/dst:v1", "--key", str(pub), "-o", "json")
    assert r.code == 0, r.stderr
    assert {v["format"] for v in json.loads(r.stdout)["verified"]} == {"bundle", "legacy"}
    tree = cli("tree", f"{registry.host}/copy/dst:v1", "-o", "json")
    vias = {a["foundVia"] for a in json.loads(tree.stdout)["attachments"]}
    assert vias >= {"referrers-tag-index", "cosign-sig-tag"}


def test_layout_signing_in_place(tmp_path: Path, cli) -> None:
    desc = layout_image(tmp_path / "lay")
    priv, pub, _ = make_key(tmp_path, "k")
    assert cli("sign", f"oci-layout:{tmp_path}/lay@{desc.digest}", "--key", str(priv), env=ENV).code == 0
    assert cli("verify", f"oci-layout:{tmp_path}/lay:v1", "--key", str(pub)).code == 0


def _sign_process(ref: str, key: Path) -> tuple[int, str]:
    env = {"IMGSEAL_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "imgseal", "sign", ref, "--key", str(key)], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    return proc.returncode, proc.stderr.strip()


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_32_concurrent_signers_lose_nothing(registry, cli, tmp_path: Path, round_: int) -> None:
    desc = push_image(registry.host, f"race/app{round_}", content=f"race {round_}".encode())
    ref = f"{registry.host}/race/app{round_}@{desc.digest}"
    keys = []
    for i in range(32):
        key = generate("ecdsa-p256")
        # N=32768 is one of the scrypt costs cosign accepts; it keeps 32 processes' key decryption quick.
        priv = tmp_path / f"k{i}.key"
        priv.write_bytes(encrypt_private_key(key, PASSWORD.encode(), scrypt_n=32768))
        (tmp_path / f"k{i}.pub").write_bytes(public_pem(key))
        keys.append(priv)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda k: _sign_process(ref, k), keys))
    failures = [f"exit {code}: {err}" for code, err in results if code != 0]
    assert not failures, "\n".join(failures)
    store = registry_store(registry.host, f"race/app{round_}")
    found = attach.discover(store, desc.digest)
    assert len(found) == 32
    # One verify with all 32 keys and --threshold 32: passes only if every key's signature verifies.
    key_args = [a for i in range(32) for a in ("--key", str(tmp_path / f"k{i}.pub"))]
    r = cli("verify", ref, *key_args, "--threshold", "32", "-o", "json")
    assert r.code == 0, r.stderr
    assert len(json.loads(r.stdout)["signers"]) == 32
