"""Key signatures witnessed by the Sigstore rig's Rekor and TSA, and judged by their proven time.

``sign/attest --key … --tlog-upload --trust-config RIG`` logs the DSSE bundle in the rig's Rekor
(dsse 0.0.1, entry with inclusion proof and SET) and timestamps it at the rig's TSA (the signing
config lists both). sigstore-js verifies the result with both thresholds at 1; our verifier
refuses a tampered entry, a bundle without an entry under --require-tlog, and — for a retired
key (``not_after``) — any signature whose proven time is not before the retirement.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imgseal import attach
from imgseal.digest import Digest
from imgseal.errors import VerificationError
from imgseal.payloads import REKOR_BUNDLE_ANNOTATION, summarise_bundle
from keys import load_public_key
from signer.image import attach_bundle
from signer.keyless import RFC3161_ANNOTATION
from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import SigstoreRig, make_rig_fixture, node_verify
from tests.integration.test_pkcs11 import signature_bundle
from tests.integration.test_sign_verify import ENV, make_key
from verifier.key_witness import KeyBundleCheck, KeyWitnessPolicy
from verifier.sigstore.trust import load_trusted_root

pytestmark = [pytest.mark.registry, pytest.mark.sigstore]

#: A rig whose Rekor clock runs two hours slow: its entries prove an earlier time. (No TSA: the
#: mock TSA's certificate starts at the rig's start-up, so an earlier genTime would not verify.)
early_rig = make_rig_fixture("early_rig", scope="module", tsa=False, rekor_clock_offset=-7200)


def _signed(cli: Any, registry: Any, rig: SigstoreRig | None, tmp_path: Path, repo: str,
            *extra: str) -> tuple[str, Path, bytes]:
    """Sign a fresh image with a new key file; ``rig`` (its trust config: Rekor and TSA URLs) or none."""
    desc = push_image(registry.host, repo, content=repo.encode())
    ref = f"{registry.host}/{repo}@{desc.digest}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    priv, pub, _ = make_key(tmp_path, "k")
    config = ("--trust-config", str(rig.trust_config_path)) if rig is not None else ()
    r = cli("sign", ref, "--key", str(priv), *config, *extra, env=ENV)
    assert r.code == 0, r.stderr
    legacy = "legacy" in extra
    return ref, pub, b"" if legacy else signature_bundle(registry.host, repo, desc.digest)


def test_witnessed_key_bundle_verifies_here_and_in_sigstore_js(cli, registry, sigstore_rig: SigstoreRig,
                                                              tmp_path: Path) -> None:
    ref, pub, bundle = _signed(cli, registry, sigstore_rig, tmp_path, "witness/both", "--tlog-upload")
    material = json.loads(bundle)["verificationMaterial"]
    [entry] = material["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert entry["inclusionProof"]["checkpoint"]["envelope"] and entry["inclusionPromise"]["signedEntryTimestamp"]
    assert len(material["timestampVerificationData"]["rfc3161Timestamps"]) == 1
    r = cli("verify", ref, "--key", str(pub), "--trusted-root", str(sigstore_rig.trusted_root_path),
            "--require-tlog", "--require-timestamp", "-o", "json")
    assert r.code == 0, r.stderr
    assert "transparency log entry and an RFC 3161 timestamp" in r.stderr
    path = tmp_path / "bundle.json"
    path.write_bytes(bundle)
    digest = ref.rsplit("@", 1)[1]
    ok = node_verify(path, sigstore_rig.trusted_root_path, key=pub, digest=digest, tlog_threshold=1,
                     timestamp_threshold=1)
    assert ok.ok, ok.message
    # Present witnesses are always checked: against the embedded production root, the rig TSA and log are unknown.
    r = cli("verify", ref, "--key", str(pub), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] in ("timestamp", "tlog-key"), r.stdout


def test_explicit_urls_log_only_or_timestamp_only(cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    desc = push_image(registry.host, "witness/urls", content=b"urls")
    ref = f"{registry.host}/witness/urls@{desc.digest}"
    priv, pub, _ = make_key(tmp_path, "k")
    root = str(sigstore_rig.trusted_root_path)
    r = cli("sign", ref, "--key", str(priv), "--timestamp-server", f"{sigstore_rig.url}/api/v1/timestamp", env=ENV)
    assert r.code == 0, r.stderr
    r = cli("verify", ref, "--key", str(pub), "--trusted-root", root, "--require-timestamp")
    assert r.code == 0, r.stderr
    r = cli("verify", ref, "--key", str(pub), "--trusted-root", root, "--require-tlog", "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "tlog-missing", r.stdout
    r = cli("sign", ref, "--key", str(priv), "--tlog-upload", "--rekor-url", sigstore_rig.url, env=ENV)
    assert r.code == 0, r.stderr
    r = cli("verify", ref, "--key", str(pub), "--trusted-root", root, "--require-tlog")
    assert r.code == 0, r.stderr


def test_bare_key_signatures_are_refused_under_require_tlog(cli, registry, sigstore_rig: SigstoreRig,
                                                            tmp_path: Path) -> None:
    desc = push_image(registry.host, "witness/bare", content=b"bare")
    ref = f"{registry.host}/witness/bare@{desc.digest}"
    priv, pub, _ = make_key(tmp_path, "k")
    for fmt in ("bundle", "legacy"):
        assert cli("sign", ref, "--key", str(priv), "--format", fmt, env=ENV).code == 0
    assert cli("verify", ref, "--key", str(pub)).code == 0
    for flag, reason in (("--require-tlog", "tlog-missing"), ("--require-timestamp", "timestamp")):
        r = cli("verify", ref, "--key", str(pub), "--trusted-root", str(sigstore_rig.trusted_root_path), flag,
                "-o", "json")
        assert r.code == 1, r.stderr
        result = json.loads(r.stdout)
        assert result["reason"] == reason and len(result["rejected"]) == 2, result


def test_attestation_witnessed_and_required(cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    desc = push_image(registry.host, "witness/att", content=b"att")
    ref = f"{registry.host}/witness/att@{desc.digest}"
    priv, pub, _ = make_key(tmp_path, "k")
    predicate = tmp_path / "p.json"
    predicate.write_text('{"ok": true}')
    root = str(sigstore_rig.trusted_root_path)
    assert cli("attest", ref, "--key", str(priv), "--predicate", str(predicate), env=ENV).code == 0
    r = cli("verify-attestation", ref, "--key", str(pub), "--trusted-root", root, "--require-tlog", "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "tlog-missing", r.stdout
    r = cli("attest", ref, "--key", str(priv), "--predicate", str(predicate), "--tlog-upload", "--trust-config",
            str(sigstore_rig.trust_config_path), "--replace", env=ENV)
    assert r.code == 0, r.stderr
    r = cli("verify-attestation", ref, "--key", str(pub), "--trusted-root", root, "--require-tlog",
            "--require-timestamp", "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["verified"][0]["statement"]["predicate"] == {"ok": True}


def _tamper_set_time(bundle: bytes) -> bytes:
    doc = json.loads(bundle)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) - 86400)  # claim a day earlier
    return json.dumps(doc).encode()


def _tamper_body(bundle: bytes) -> bytes:
    doc = json.loads(bundle)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    body["spec"]["payloadHash"]["value"] = "0" * 64
    entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps(doc).encode()


@pytest.mark.parametrize("tamper", [_tamper_set_time, _tamper_body])
def test_tampered_log_entry_is_refused(tamper: Any, cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    name = tamper.__name__.strip("_")
    _, pub, bundle = _signed(cli, registry, sigstore_rig, tmp_path, f"witness/{name}", "--tlog-upload")
    # The same image in another repository carries only the tampered bundle.
    desc = push_image(registry.host, f"witness/{name}-copy", content=f"witness/{name}".encode())
    attach_bundle(registry_store(registry.host, f"witness/{name}-copy"), desc, tamper(bundle),
                  "https://sigstore.dev/cosign/sign/v1")
    r = cli("verify", f"{registry.host}/witness/{name}-copy@{desc.digest}", "--key", str(pub), "--trusted-root",
            str(sigstore_rig.trusted_root_path), "-o", "json")
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] in ("tlog-set", "tlog-body", "inclusion-proof"), r.stdout


def _check(pub: Path, rig: SigstoreRig, not_after: datetime) -> KeyBundleCheck:
    keys = {"k": load_public_key(pub.read_bytes())}
    return KeyBundleCheck(keys, KeyWitnessPolicy(not_after=not_after),
                          lambda: load_trusted_root(rig.trusted_root_path))


def test_retired_key_admits_only_signatures_proven_before_retirement(cli, registry, sigstore_rig: SigstoreRig,
                                                                     early_rig: SigstoreRig, tmp_path: Path) -> None:
    retired = datetime.now(UTC) - timedelta(hours=1)
    # Witnessed now (after the retirement): refused.
    _, pub, now_bundle = _signed(cli, registry, sigstore_rig, tmp_path, "retire/now", "--tlog-upload")
    with pytest.raises(VerificationError) as info:
        _check(pub, sigstore_rig, retired)(summarise_bundle(now_bundle))
    assert info.value.reason == "key-retired" and "at or after" in info.value.message
    # Witnessed by a log whose clock says two hours ago (before the retirement): admitted.
    _, pub, early_bundle = _signed(cli, registry, early_rig, tmp_path / "e", "retire/early", "--tlog-upload")
    signer, envelope = _check(pub, early_rig, retired)(summarise_bundle(early_bundle))
    assert signer == "k" and envelope.payload
    # A TSA time alone decides as well: after the retirement refused, before a later one admitted.
    _, pub, stamped = _signed(cli, registry, sigstore_rig, tmp_path / "t", "retire/tsa")  # config's TSA, no log
    assert not json.loads(stamped)["verificationMaterial"]["tlogEntries"]
    with pytest.raises(VerificationError) as info:
        _check(pub, sigstore_rig, retired)(summarise_bundle(stamped))
    assert info.value.reason == "key-retired"
    assert _check(pub, sigstore_rig, datetime.now(UTC) + timedelta(hours=1))(summarise_bundle(stamped))[0] == "k"
    # No witness at all: no proven time, never admitted for a retired key, even with a far-future date.
    _, pub, bare = _signed(cli, registry, None, tmp_path / "b", "retire/bare")
    with pytest.raises(VerificationError) as info:
        _check(pub, sigstore_rig, datetime.now(UTC) + timedelta(days=365))(summarise_bundle(bare))
    assert info.value.reason == "key-retired" and "no proven signing time" in info.value.message


def _legacy_layer(host: str, repo: str, digest: Any) -> Any:
    store = registry_store(host, repo)
    [layer] = [layer for att in attach.discover(store, digest) if att.found_via == attach.VIA_LEGACY_SIG
               for layer in att.manifest.layers]
    return store, layer


def test_legacy_sig_and_att_carry_cosign_witness_annotations(cli, registry, sigstore_rig: SigstoreRig,
                                                              tmp_path: Path) -> None:
    ref, pub, _ = _signed(cli, registry, sigstore_rig, tmp_path, "witness/legacy", "--tlog-upload", "--format",
                          "legacy")
    digest = Digest.parse(ref.rsplit("@", 1)[1])
    store, layer = _legacy_layer(registry.host, "witness/legacy", digest)
    rekor_bundle = json.loads(layer.annotations[REKOR_BUNDLE_ANNOTATION])
    assert sorted(rekor_bundle) == ["Payload", "SignedEntryTimestamp"]
    assert json.loads(base64.b64decode(rekor_bundle["Payload"]["body"]))["kind"] == "hashedrekord"
    assert "SignedRFC3161Timestamp" in json.loads(layer.annotations[RFC3161_ANNOTATION])
    root = str(sigstore_rig.trusted_root_path)
    r = cli("verify", ref, "--key", str(pub), "--trusted-root", root, "--require-tlog", "--require-timestamp")
    assert r.code == 0, r.stderr
    predicate = tmp_path / "p.json"
    predicate.write_text('{"legacy": true}')
    r = cli("attest", ref, "--key", str(tmp_path / "k.key"), "--predicate", str(predicate), "--format", "legacy",
            "--tlog-upload", "--trust-config", str(sigstore_rig.trust_config_path), env=ENV)
    assert r.code == 0, r.stderr
    r = cli("verify-attestation", ref, "--key", str(pub), "--trusted-root", root, "--require-tlog",
            "--require-timestamp", "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["verified"][0]["format"] == "legacy"
    # The same layer with its SET time moved is refused; without the rig's root its witnesses are unknown.
    tampered = dict(layer.annotations)
    rekor_bundle["Payload"]["integratedTime"] -= 86400
    tampered[REKOR_BUNDLE_ANNOTATION] = json.dumps(rekor_bundle, separators=(",", ":"))
    copy = push_image(registry.host, "witness/legacy-copy", content=b"witness/legacy")
    assert copy.digest == digest
    payload = store.get_blob(layer, max_bytes=1 << 20)
    attach.attach_legacy(registry_store(registry.host, "witness/legacy-copy"), digest, suffix="sig",
                         layer=attach.Layer(payload, attach.SIMPLESIGNING, tampered))
    r = cli("verify", f"{registry.host}/witness/legacy-copy@{digest}", "--key", str(pub), "--trusted-root", root,
            "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "tlog-set", r.stdout
    r = cli("verify", ref, "--key", str(pub), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] in ("timestamp", "tlog-key"), r.stdout


def test_witness_options_need_key(cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    priv, _, _ = make_key(tmp_path, "k")
    ref = f"{registry.host}/witness/none@sha256:{'0' * 64}"
    r = cli("sign", ref, "--keyless", "--tlog-upload", env=ENV)
    assert r.code == 2 and "witness --key signatures" in r.stderr
    r = cli("sign", ref, "--key", str(priv), "--rekor-url", sigstore_rig.url, env=ENV)
    assert r.code == 2 and "--rekor-url needs --tlog-upload" in r.stderr
    r = cli("sign", ref, "--key", str(priv), "--tlog-upload", "--rekor-url", "ftp://x", env=ENV)
    assert r.code == 2 and "http(s)" in r.stderr
