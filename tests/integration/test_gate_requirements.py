"""``imgseal gate`` with keyless, attestation and notation requirements, against the real docker-registry.

Each policy admits the good image and denies the bad one; the denial names the failed check
(``keyless:``, ``attestation <type>:``, ``notation:``) and the reason code of the verifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import DEFAULT_ISSUER, SigstoreRig
from tests.integration.test_gate import deployment
from tests.integration.test_keyless import ALICE, NO_AMBIENT
from tests.integration.test_sign_verify import ENV, make_key
from tests.unit.verifier.notation.pki import build_pki
from tests.unit.verifier.notation.test_envelope import IDENTITY, write_store

pytestmark = pytest.mark.registry


def gate(cli: Any, tmp_path: Path, policy: str, *images: str) -> dict[str, dict[str, Any]]:
    (tmp_path / "policy.yaml").write_text(policy)
    (tmp_path / "deploy.yaml").write_text(deployment(*images))
    r = cli("gate", "--policy", str(tmp_path / "policy.yaml"), str(tmp_path / "deploy.yaml"), "--no-cache",
            "-o", "json")
    assert r.code in (0, 1), r.stderr + r.stdout
    return {x["image"]: x for x in json.loads(r.stdout)["results"]}


def assert_allowed_and_denied(results: dict[str, dict[str, Any]], good: str, bad: str, check: str,
                              reason: str) -> None:
    assert results[good]["decision"] == "allow", results[good]
    denied = results[bad]
    assert denied["decision"] == "deny", denied
    assert f"denied by rule 'r': {check}:" in denied["message"], denied["message"]
    assert denied["reason"] == reason, denied


@pytest.mark.sigstore
def test_keyless_requirement(registry, cli, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    host = registry.host
    good = push_image(host, "gr/keyless-good", content=b"keyless good")
    bad = push_image(host, "gr/keyless-bad", content=b"keyless bad")
    for repo, desc, who in (("gr/keyless-good", good, ALICE), ("gr/keyless-bad", bad, "mallory@example.com")):
        r = cli("sign", f"{host}/{repo}@{desc.digest}", "--keyless", "--trust-config",
                str(sigstore_rig.trust_config_path), "--identity-token", sigstore_rig.mint_token(who), env=NO_AMBIENT)
        assert r.code == 0, r.stderr
    policy = f"""\
version: 1
rules:
  - name: r
    match: ["{host}/gr/keyless-*"]
    trusted_root: {sigstore_rig.trusted_root_path}
    require:
      keyless:
        - identity: {ALICE}
          issuer: {DEFAULT_ISSUER}
"""
    results = gate(cli, tmp_path, policy, f"{host}/gr/keyless-good:v1", f"{host}/gr/keyless-bad:v1")
    assert_allowed_and_denied(results, f"{host}/gr/keyless-good:v1", f"{host}/gr/keyless-bad:v1", "keyless",
                              "certificate-identity")


def test_attestation_requirement(registry, cli, tmp_path: Path) -> None:
    host = registry.host
    priv, _, _ = make_key(tmp_path, "team")
    images = {}
    for name, source in (("good", "https://github.com/acme/app"), ("bad", "https://github.com/evil/app")):
        desc = push_image(host, f"gr/att-{name}", content=f"att {name}".encode())
        r = cli("provenance", f"{host}/gr/att-{name}@{desc.digest}", "--ci", "generic", "--builder-id",
                "https://ci.example.com/builder", "--source-uri", f"git+{source}@refs/heads/main",
                "--source-digest", "gitCommit:" + "a" * 40, "--attest", "--key", str(priv), env=ENV)
        assert r.code == 0, r.stderr
        images[name] = f"{host}/gr/att-{name}:v1"
    unattested = push_image(host, "gr/att-none", content=b"att none")
    assert unattested.digest
    policy = f"""\
version: 1
rules:
  - name: r
    match: ["{host}/gr/att-*"]
    require:
      attestations:
        - type: slsaprovenance1
          source_uri: github.com/acme/app
          keys: [team.pub]
"""
    results = gate(cli, tmp_path, policy, images["good"], images["bad"], f"{host}/gr/att-none:v1")
    assert_allowed_and_denied(results, images["good"], images["bad"], "attestation https://slsa.dev/provenance/v1",
                              "slsa-source-uri")
    assert results[f"{host}/gr/att-none:v1"]["reason"] == "no-attestations"


def test_notation_requirement(registry, cli, tmp_path: Path) -> None:
    from signer.notation import load_signing_material, sign_image_notation

    host = registry.host
    pki = build_pki("p256")
    good = push_image(host, "gr/notation", tag="good", content=b"notation good")
    bad = push_image(host, "gr/notation", tag="bad", content=b"notation bad")
    store = registry_store(host, "gr/notation")
    sign_image_notation(store, good, load_signing_material(pki.leaf.key_pem(), pki.chain_pem()))
    # Signed by a leaf of a CA the trust store does not hold.
    sign_image_notation(store, bad, load_signing_material(pki.other_leaf.key_pem(), pki.chain_pem(pki.other_leaf)))
    write_store(tmp_path / "trust", "ours", pki.root.cert)
    (tmp_path / "trustpolicy.json").write_text(json.dumps({"version": "1.0", "trustPolicies": [{
        "name": "ours", "registryScopes": [f"{host}/gr/notation"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:ours"], "trustedIdentities": [IDENTITY]}]}))
    policy = f"""\
version: 1
rules:
  - name: r
    match: ["{host}/gr/notation"]
    require:
      notation:
        trust_policy: trustpolicy.json
        trust_store: trust
"""
    results = gate(cli, tmp_path, policy, f"{host}/gr/notation:good", f"{host}/gr/notation:bad")
    assert_allowed_and_denied(results, f"{host}/gr/notation:good", f"{host}/gr/notation:bad", "notation",
                              "notation-authenticity")
    r = cli("policy", "explain", str(tmp_path / "policy.yaml"), f"{host}/gr/notation:good")
    assert r.code == 0 and "notation: a Notary Project signature" in r.stdout
