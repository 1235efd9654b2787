"""PKCS#11 token keys (SoftHSM v2) signing every format, verified with the plain public PEM.

One token per module: an ECDSA P-256 and an RSA 3072 pair made by openssl and imported with
softhsm2-util (keys imgseal never saw), and a P-384 pair made by ``imgseal keys generate
--pkcs11``. Each signs a bundle, a legacy ``.sig`` and an attestation; ``imgseal verify`` checks
them with the public PEM alone, and sigstore-js (@sigstore/verify) cross-checks the bundle.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from imgseal import attach
from imgseal.digest import Digest
from imgseal.payloads import BUNDLE_PREDICATE_ANNOTATION, BUNDLE_V03_MEDIA, COSIGN_SIGN_PREDICATE, MAX_BUNDLE_BYTES
from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import SigstoreRig, node_verify
from tests.integration.softhsm import SoftHsmToken, make_token, openssl_key, require_softhsm

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    require_softhsm()
    directory = tmp_path_factory.mktemp("softhsm")
    tok = make_token(directory)
    for name, kind, key_id in (("ext-ec", "ecdsa-p256", b"\x01"), ("ext-rsa", "rsa-3072", b"\x02")):
        private, _ = openssl_key(directory, name, kind)
        tok.import_pem(private, name, key_id)
    return tok


@pytest.fixture(scope="module")
def generated(token: SoftHsmToken, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A P-384 pair made on the token by imgseal: its URI (as reported) and the public PEM written."""
    out = tmp_path_factory.mktemp("gen")
    proc = _imgseal("keys", "generate", "--pkcs11", token.uri("gen-p384"), "--type", "ecdsa-p384",
                    "--output-prefix", str(out / "gen"), "-o", "json", env=token.env(), cwd=out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["key_type"] == "ecdsa-p384" and not (out / "gen.key").exists()
    return result["key_uri"], Path(result["public_key"])


def _imgseal(*args: str, env: dict[str, str], cwd: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSEAL_", "COSIGN_", "SOFTHSM"))}
    base["DOCKER_CONFIG"] = str(cwd / "docker-config-empty")
    return subprocess.run([sys.executable, "-m", "imgseal", *args], capture_output=True, text=True,
                          env={**base, **env}, cwd=cwd, input=input, timeout=120, check=False)


def signature_bundle(host: str, repo: str, digest: Digest) -> bytes:
    """The one cosign-sign bundle (not an attestation) attached to ``digest``."""
    store = registry_store(host, repo)
    bundles = [store.get_blob(layer, max_bytes=MAX_BUNDLE_BYTES) for att in attach.discover(store, digest)
               if att.artifact_type == BUNDLE_V03_MEDIA
               and att.manifest.annotations.get(BUNDLE_PREDICATE_ANNOTATION) == COSIGN_SIGN_PREDICATE
               for layer in att.manifest.layers]
    assert len(bundles) == 1, bundles
    return bundles[0]


def _keys(token: SoftHsmToken, generated: tuple[str, Path]) -> dict[str, tuple[str, Path]]:
    return {
        "openssl-ecdsa-p256": (token.uri("ext-ec"), token.directory / "ext-ec.pub"),
        "openssl-rsa-3072": (token.uri("ext-rsa", key_id=b"\x02"), token.directory / "ext-rsa.pub"),
        "generated-ecdsa-p384": generated,
    }


@pytest.mark.parametrize("which", ["openssl-ecdsa-p256", "openssl-rsa-3072", "generated-ecdsa-p384"])
def test_token_key_signs_every_format_and_the_plain_pem_verifies(
        which: str, token: SoftHsmToken, generated: tuple[str, Path], registry: Any, sigstore_rig: SigstoreRig,
        tmp_path: Path) -> None:
    uri, pub = _keys(token, generated)[which]
    repo = f"pkcs11/{which}"
    desc = push_image(registry.host, repo, content=which.encode())
    ref = f"{registry.host}/{repo}@{desc.digest}"
    env = token.env()
    for fmt in ("bundle", "legacy"):
        r = _imgseal("sign", ref, "--key", uri, "--format", fmt, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    predicate = tmp_path / "p.json"
    predicate.write_text(json.dumps({"builder": which}))
    r = _imgseal("attest", ref, "--key", uri, "--predicate", str(predicate), "--type", "custom", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _imgseal("attest", ref, "--key", uri, "--predicate", str(predicate), "--type", "https://example.com/l/v1",
                 "--format", "legacy", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    # Verification needs nothing but the public PEM: no token, no PIN, no module.
    r = _imgseal("verify", ref, "--key", str(pub), "-o", "json", env={}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    formats = sorted(v["format"] for v in json.loads(r.stdout)["verified"])
    assert formats == ["bundle", "legacy"], r.stdout
    for type_ in ("custom", "https://example.com/l/v1"):
        r = _imgseal("verify-attestation", ref, "--key", str(pub), "--type", type_, "-o", "json", env={}, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["verified"][0]["statement"]["predicate"] == {"builder": which}

    # Independent verifiers agree on the bundle: openssl on the DSSE signature (DER ECDSA or
    # PKCS#1 v1.5, the key file's scheme), and sigstore-js on the whole bundle; another key is refused.
    raw = signature_bundle(registry.host, repo, desc.digest)
    envelope = json.loads(raw)["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"])
    pae = b"DSSEv1 %d %s %d %s" % (len(envelope["payloadType"]), envelope["payloadType"].encode(), len(payload),
                                   payload)
    (tmp_path / "pae").write_bytes(pae)
    (tmp_path / "sig").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    digest_flag = "-sha384" if "p384" in which else "-sha256"
    checked = subprocess.run(["openssl", "dgst", digest_flag, "-verify", str(pub), "-signature", str(tmp_path / "sig"),
                              str(tmp_path / "pae")], capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stderr
    if "p384" in which:
        return  # sigstore-js verifies key signatures with SHA-256 only (core crypto.verify default), so not P-384
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(raw)
    ok = node_verify(bundle, sigstore_rig.trusted_root_path, key=pub, digest=str(desc.digest), tlog_threshold=0,
                     timestamp_threshold=0)
    assert ok.ok, ok.message
    other = _keys(token, generated)["openssl-ecdsa-p256" if which != "openssl-ecdsa-p256" else "openssl-rsa-3072"][1]
    assert not node_verify(bundle, sigstore_rig.trusted_root_path, key=other, digest=str(desc.digest),
                           tlog_threshold=0, timestamp_threshold=0).ok


PROBE = """
import sys
from imgseal.cli._keyload import load_private_key
from keys import sign
print(sign(load_private_key(sys.argv[1]), b"payload to sign").hex())
"""


def test_rsa_token_signature_is_byte_identical_to_the_key_file_signature(token: SoftHsmToken,
                                                                       tmp_path: Path) -> None:
    # PKCS#1 v1.5 is deterministic: the token and the same key as a file must give the same bytes.
    import sys

    from keys import import_private_pem, sign

    proc = subprocess.run([sys.executable, "-c", PROBE, token.uri("ext-rsa")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **token.env()}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    file_key = import_private_pem((token.directory / "ext-rsa.pem").read_bytes(), None)
    assert bytes.fromhex(proc.stdout.strip()) == sign(file_key, b"payload to sign")


def test_keys_public_reads_the_token_public_key(token: SoftHsmToken, generated: tuple[str, Path],
                                                tmp_path: Path) -> None:
    for uri, pub in _keys(token, generated).values():
        r = _imgseal("keys", "public", uri, env=token.env(), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        want = serialization.load_pem_public_key(pub.read_bytes())
        got = serialization.load_pem_public_key(r.stdout.encode())
        assert got.public_numbers() == want.public_numbers()  # type: ignore[union-attr]


def test_generated_key_is_sensitive_and_unextractable_on_the_token(token: SoftHsmToken,
                                                                   generated: tuple[str, Path]) -> None:
    # OpenSC's listing: one block per object, each starting at column 0.
    blocks: list[str] = []
    for line in token.list_objects().splitlines():
        if line and not line[0].isspace():
            blocks.append(line)
        elif blocks:
            blocks[-1] += "\n" + line
    [private] = [b for b in blocks if b.startswith("Private Key Object; EC") and "label:      gen-p384" in b]
    assert "sensitive" in private and "never extractable" in private, private


def test_generate_refuses_a_label_already_on_the_token(token: SoftHsmToken, tmp_path: Path) -> None:
    r = _imgseal("keys", "generate", "--pkcs11", token.uri("ext-ec"), "--output-prefix", str(tmp_path / "x"),
                 env=token.env(), cwd=tmp_path)
    assert r.returncode == 2 and "already holds a key" in r.stderr, r.stderr
    assert not (tmp_path / "x.pub").exists()


def test_generate_into_an_unwritable_place_leaves_nothing_on_the_token(token: SoftHsmToken, tmp_path: Path) -> None:
    # The .pub is checked before the pair is made: a pair whose public half could not be written
    # would sit on the token under that label, and every retry would be refused ("already holds").
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    import os

    # root writes into a 0500 directory anyway: there only the missing directory can be tried
    for prefix in (tmp_path / "missing" / "p", *([locked / "p"] if os.geteuid() != 0 else [])):
        r = _imgseal("keys", "generate", "--pkcs11", token.uri("not-written"), "--output-prefix", str(prefix),
                     env=token.env(), cwd=tmp_path)
        assert r.returncode == 2 and "cannot write" in _one_error_line(r), r.stderr
    r = _imgseal("keys", "generate", "--pkcs11", token.uri("not-written"), "--output-prefix", str(tmp_path / "p"),
                 env=token.env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgseal: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize(("case", "expect"), [
    ("wrong-pin", "PIN is incorrect"),
    ("no-module", "PKCS#11 module not found"),
    ("not-a-module", "cannot load PKCS#11 module"),
    ("no-token", "token 'nope' not found"),
    ("no-object", "no private key with label 'missing'"),
    ("unusable-type", "imgseal signs with ECDSA"),
    ("no-module-given", "no PKCS#11 module"),
])
def test_token_errors_are_one_line_exit_4(case: str, expect: str, token: SoftHsmToken, tmp_path: Path) -> None:
    env = token.env()
    uri = token.uri("ext-ec")
    if case == "wrong-pin":
        env["IMGSEAL_PKCS11_PIN"] = "999999"
    elif case == "no-module":
        uri = uri.replace(str(token.module), "/nonexistent/libpkcs11.so")
    elif case == "not-a-module":
        uri = uri.replace(str(token.module), str(token.conf))
    elif case == "no-token":
        uri = uri.replace(f"token={token.label}", "token=nope")
    elif case == "no-object":
        uri = token.uri("missing")
    elif case == "unusable-type":
        if "ext-ed" not in token.list_objects():
            private, _ = openssl_key(token.directory, "ext-ed", "ed25519")
            token.import_pem(private, "ext-ed", b"\x09")
        uri = token.uri("ext-ed")
    elif case == "no-module-given":
        uri = token.uri("ext-ec", module=False)
    r = _imgseal("keys", "public", uri, env=env, cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert expect in _one_error_line(r)
    assert token.pin not in r.stderr + r.stdout and "999999" not in r.stderr


def test_module_path_from_the_environment(token: SoftHsmToken, tmp_path: Path) -> None:
    r = _imgseal("keys", "public", token.uri("ext-ec", module=False),
                 env={**token.env(), "IMGSEAL_PKCS11_MODULE": str(token.module)}, cwd=tmp_path)
    assert r.returncode == 0 and "BEGIN PUBLIC KEY" in r.stdout, r.stderr


def test_pin_in_the_uri_works_with_a_warning_and_is_never_echoed(token: SoftHsmToken, tmp_path: Path) -> None:
    uri = token.uri("ext-ec") + f"&pin-value={token.pin}"
    r = _imgseal("keys", "public", uri, "-o", "json", env=token.env(pin=False), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pin-value" in r.stderr and "IMGSEAL_PKCS11_PIN" in r.stderr
    # A failure that names the key (no such object) still shows the URI without the PIN.
    bad = token.uri("missing") + f"&pin-value={token.pin}"
    r = _imgseal("sign", "localhost:1/none@sha256:" + "0" * 64, "--key", bad, env=token.env(pin=False), cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert token.pin not in r.stdout + r.stderr


def test_no_pin_and_no_terminal_is_a_usage_error(token: SoftHsmToken, tmp_path: Path) -> None:
    r = _imgseal("keys", "public", token.uri("ext-ec"), env=token.env(pin=False), cwd=tmp_path, input="")
    assert r.returncode == 2 and "IMGSEAL_PKCS11_PIN" in _one_error_line(r)


def test_token_signature_witnessed_by_the_rig(token: SoftHsmToken, registry: Any, sigstore_rig: SigstoreRig,
                                              tmp_path: Path) -> None:
    # A token key, a Rekor entry and a TSA timestamp: the bundle sigstore-js accepts with both thresholds at 1.
    desc = push_image(registry.host, "pkcs11/witnessed", content=b"pkcs11 witnessed")
    ref = f"{registry.host}/pkcs11/witnessed@{desc.digest}"
    r = _imgseal("sign", ref, "--key", token.uri("ext-ec"), "--tlog-upload", "--trust-config",
                 str(sigstore_rig.trust_config_path), env=token.env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pub = token.directory / "ext-ec.pub"
    r = _imgseal("verify", ref, "--key", str(pub), "--trusted-root", str(sigstore_rig.trusted_root_path),
                 "--require-tlog", "--require-timestamp", env={}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(signature_bundle(registry.host, "pkcs11/witnessed", desc.digest))
    ok = node_verify(bundle, sigstore_rig.trusted_root_path, key=pub, digest=str(desc.digest), tlog_threshold=1,
                     timestamp_threshold=1)
    assert ok.ok, ok.message


def test_provenance_attest_with_a_token_key(token: SoftHsmToken, registry: Any, tmp_path: Path) -> None:
    desc = push_image(registry.host, "pkcs11/provenance", content=b"pkcs11 provenance")
    ref = f"{registry.host}/pkcs11/provenance@{desc.digest}"
    r = _imgseal("provenance", ref, "--ci", "generic", "--builder-id", "https://ci.example.com/builder",
                 "--source-uri", "git+https://github.com/acme/app@refs/heads/main", "--source-digest",
                 "gitCommit:" + "a" * 40, "--attest", "--key", token.uri("ext-rsa"), env=token.env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _imgseal("verify-attestation", ref, "--type", "slsaprovenance1", "--key", str(token.directory / "ext-rsa.pub"),
                 "--source-uri", "github.com/acme/app", env={}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
