"""Keyless attestations: `imgseal attest --keyless` / `provenance --attest --keyless` / `verify-attestation`
with certificate identities, end to end against the offline Sigstore rig and the real docker-registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imgseal import attach
from imgseal.payloads import BUNDLE_PREDICATE_ANNOTATION, MAX_BUNDLE_BYTES
from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import DEFAULT_ISSUER, SigstoreRig
from tests.integration.test_attest import BUILDER, DATA
from tests.integration.test_keyless import ALICE, NO_AMBIENT

pytestmark = [pytest.mark.registry, pytest.mark.sigstore]

BOB = "bob@example.com"
SPDX = "https://spdx.dev/Document"


def _image(registry: Any, repo: str) -> str:
    desc = push_image(registry.host, repo, content=repo.encode())
    return f"{registry.host}/{repo}@{desc.digest}"


def _keyless(rig: SigstoreRig, identity: str = ALICE) -> tuple[str, ...]:
    return ("--keyless", "--trust-config", str(rig.trust_config_path), "--identity-token", rig.mint_token(identity))


def _attest(cli: Any, rig: SigstoreRig, ref: str, predicate: Path, *extra: str, identity: str = ALICE) -> Any:
    return cli("attest", ref, "--predicate", str(predicate), "--type", "spdxjson", *_keyless(rig, identity),
               *extra, "-o", "json", env=NO_AMBIENT)


def _verify(cli: Any, rig: SigstoreRig, ref: str, type_: str, *extra: str, identity: str = ALICE,
            issuer: str = DEFAULT_ISSUER) -> tuple[int, dict[str, Any], str]:
    r = cli("verify-attestation", ref, "--type", type_, "--certificate-identity", identity,
            "--certificate-oidc-issuer", issuer, "--trusted-root", str(rig.trusted_root_path), *extra, "-o", "json")
    return r.code, json.loads(r.stdout), r.stderr


def _spdx_bundles(host: str, ref: str) -> list[str]:
    repo, _, digest = ref.removeprefix(f"{host}/").partition("@")
    store = registry_store(host, repo)
    from imgseal.digest import Digest

    return sorted(str(a.digest) for a in attach.discover(store, Digest.parse(digest))
                  if a.manifest.annotations.get(BUNDLE_PREDICATE_ANNOTATION) == SPDX)


def test_keyless_attest_verify_round_trip_and_wrong_identity(registry, cli, sigstore_rig: SigstoreRig,
                                                             tmp_path: Path) -> None:
    ref = _image(registry, "attkl/app")
    predicate = tmp_path / "sbom.json"
    predicate.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "app"}))
    r = _attest(cli, sigstore_rig, ref, predicate)
    assert r.code == 0, r.stderr
    attached = json.loads(r.stdout)
    assert attached["format"] == "bundle" and attached["predicateType"] == SPDX

    code, out, err = _verify(cli, sigstore_rig, ref, "spdxjson")
    assert code == 0, err
    (verified,) = out["verified"]
    assert ALICE in verified["signer"]
    assert verified["statement"]["predicate"] == {"spdxVersion": "SPDX-2.3", "name": "app"}
    code, out, _ = _verify(cli, sigstore_rig, ref, "spdxjson", "--where", "predicate.name==app",
                           identity=".*@example\\.com")
    assert code == 1  # a regexp given as a literal identity does not match
    r = cli("verify-attestation", ref, "--type", "spdxjson", "--certificate-identity-regexp", ".*@example\\.com",
            "--certificate-oidc-issuer", DEFAULT_ISSUER, "--trusted-root", str(sigstore_rig.trusted_root_path))
    assert r.code == 0, r.stderr

    # Wrong identity, wrong issuer, another type: exit 1 with the failing check named.
    code, out, _ = _verify(cli, sigstore_rig, ref, "spdxjson", identity=BOB)
    assert code == 1 and out["reason"] == "certificate-identity", out
    code, out, _ = _verify(cli, sigstore_rig, ref, "spdxjson", issuer="https://evil.example.com")
    assert code == 1 and out["reason"] == "certificate-issuer", out
    code, out, _ = _verify(cli, sigstore_rig, ref, "cyclonedx")
    assert code == 1 and out["reason"] == "no-attestations", out
    # Keys and identities are exclusive; an identity without an issuer is a usage error.
    pub = tmp_path / "k.pub"
    pub.write_text("unused")
    r = cli("verify-attestation", ref, "--type", "spdxjson", "--key", str(pub), "--certificate-identity", ALICE)
    assert r.code == 2 and "--key cannot be combined" in r.stderr
    r = cli("verify-attestation", ref, "--type", "spdxjson", "--certificate-identity", ALICE)
    assert r.code == 2 and "--certificate-oidc-issuer" in r.stderr


def test_replace_removes_only_the_same_identitys_attestations(registry, cli, sigstore_rig: SigstoreRig,
                                                             tmp_path: Path) -> None:
    ref = _image(registry, "attkl/replace")
    predicate = tmp_path / "sbom.json"
    predicate.write_text(json.dumps({"v": 1}))
    first = json.loads(_attest(cli, sigstore_rig, ref, predicate).stdout)["artifact"]
    bobs = json.loads(_attest(cli, sigstore_rig, ref, predicate, identity=BOB).stdout)["artifact"]
    assert _spdx_bundles(registry.host, ref) == sorted([first, bobs])
    predicate.write_text(json.dumps({"v": 2}))
    r = _attest(cli, sigstore_rig, ref, predicate, "--replace")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["replaced"] == [first]  # Alice's earlier one; Bob's is not ours
    assert _spdx_bundles(registry.host, ref) == sorted([result["artifact"], bobs])
    code, out, err = _verify(cli, sigstore_rig, ref, "spdxjson")
    assert code == 0 and [v["statement"]["predicate"] for v in out["verified"]] == [{"v": 2}], err


def test_keyless_provenance_attest(registry, cli, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    ref = _image(registry, "attkl/slsa")
    env = {**json.loads((DATA / "github-actions-env.json").read_text()), **NO_AMBIENT}
    r = cli("provenance", ref, "--ci", "github", "--output", str(tmp_path / "prov.json"), "--attest",
            *_keyless(sigstore_rig), env=env)
    assert r.code == 0, r.stderr
    written = json.loads((tmp_path / "prov.json").read_text())
    code, out, err = _verify(cli, sigstore_rig, ref, "slsaprovenance1", "--builder-id", BUILDER, "--source-uri",
                             "github.com/acme/app", "--source-branch", "main")
    assert code == 0, err
    assert out["verified"][0]["statement"]["predicate"] == written
    code, out, _ = _verify(cli, sigstore_rig, ref, "slsaprovenance1", "--source-uri", "github.com/acme/other")
    assert code == 1 and out["reason"] == "slsa-source-uri"
    r = cli("provenance", ref, "--ci", "github", "--keyless", env=env)
    assert r.code == 2 and "--attest" in r.stderr


def test_usage_errors_and_oversize_predicate_before_signing(registry, cli, sigstore_rig: SigstoreRig,
                                                          tmp_path: Path) -> None:
    ref = _image(registry, "attkl/usage")
    predicate = tmp_path / "p.json"
    predicate.write_text("{}")
    r = cli("attest", ref, "--predicate", str(predicate), "--keyless", "--format", "legacy", env=NO_AMBIENT)
    assert r.code == 2 and "legacy" in r.stderr
    r = cli("attest", ref, "--predicate", str(predicate), "--key", "k.key", "--keyless", env=NO_AMBIENT)
    assert r.code == 2 and "not both" in r.stderr
    r = cli("attest", ref, "--predicate", str(predicate), "--identity-token", "x", env=NO_AMBIENT)
    assert r.code == 2 and "need --keyless" in r.stderr
    # A predicate whose bundle would pass 16 MiB: refused before any token is read or
    # certificate requested (the token here is garbage, and no Fulcio call is made).
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "x" * (MAX_BUNDLE_BYTES * 3 // 4)}))
    r = cli("attest", ref, "--predicate", str(big), "--keyless", "--trust-config",
            str(sigstore_rig.trust_config_path), "--identity-token", "not-a-jwt", "-o", "json", env=NO_AMBIENT)
    assert r.code == 2, r.stderr
    assert json.loads(r.stdout)["reason"] == "predicate-too-large"
    assert "16 MiB" in r.stderr and "--key" in r.stderr
    assert _spdx_bundles(registry.host, ref) == []
