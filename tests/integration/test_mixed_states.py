"""One digest, attachments written by different tools: each read correctly, alone and all together.

States (the bytes come from tests/integration/peer_formats.py, assembled from each tool's
published format, except notation's, written by imgseal's notation signer):

- ``cosign-v2``: a legacy simple-signing ``.sig`` signature (key A);
- ``cosign-v3``: a Sigstore bundle referrer with cosign's sign predicate (key A); on the tag
  schema its index entry is bare, as cosign 3.0.x wrote it (cosign #4641);
- ``actions-attest``: a bundle referrer of SLSA provenance with ``dev.sigstore.bundle.content``
  and ``predicateType`` annotations, as actions/attest pushes it (key B);
- ``notation``: a Notary Project JWS signature;
- ``all``: every one of them on the same digest — with A's bundle and A's legacy signature
  being one signer, counted once.

Each state runs on the real registry (referrers tag schema) and on the referrers-API double.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import push_image, registry_store
from tests.integration.peer_formats import SLSA_V1, bundle_referrer, cosign_legacy_signature
from tests.integration.referrers_double import ReferrersDouble
from tests.integration.test_cosign_formats import key_pair
from tests.unit.verifier.notation.pki import build_pki
from tests.unit.verifier.notation.test_envelope import IDENTITY, write_store

pytestmark = pytest.mark.registry
STATES = ["cosign-v2", "cosign-v3", "actions-attest", "notation", "all"]
PROVENANCE = {"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                                  "externalParameters": {"workflow": {"ref": "refs/heads/main"}}},
              "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}


@pytest.fixture(params=["tag-schema", "referrers-api"])
def backend(request: pytest.FixtureRequest, registry: Any) -> Iterator[tuple[str, bool]]:
    """(host, whether it has the referrers API): the real registry, or the double in front of it."""
    if request.param == "tag-schema":
        yield registry.host, False
        return
    double = ReferrersDouble(registry.host).start()
    yield double.host, True
    double.stop()


def _keys(tmp_path: Path, name: str) -> Any:
    directory = tmp_path / name
    directory.mkdir()
    return key_pair(directory)


def _notation_files(tmp_path: Path, scope: str) -> tuple[Path, Path]:
    policy = tmp_path / "trustpolicy.json"
    policy.write_text(json.dumps({"version": "1.0", "trustPolicies": [{
        "name": "ours", "registryScopes": [scope], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:ours"], "trustedIdentities": [IDENTITY]}]}))
    return policy, write_store(tmp_path / "trust", "ours", build_pki("p256").root.cert)


@pytest.mark.parametrize("state", STATES)
def test_each_state_and_all_together(backend: tuple[str, bool], cli, tmp_path: Path, state: str) -> None:
    from signer.notation import load_signing_material, sign_image_notation

    host, api = backend
    repo = f"mixed/{state}"
    desc = push_image(host, repo, content=f"{host} {state}".encode())
    store = registry_store(host, repo)
    name = f"{host}/{repo}"
    sign_a, pub_a, der_a = _keys(tmp_path, "a")
    sign_b, pub_b, der_b = _keys(tmp_path, "b")
    present = {state} if state != "all" else set(STATES) - {"all"}
    if "cosign-v2" in present:
        cosign_legacy_signature(store, name, desc, sign_a, {"env": "prod"})
    if "cosign-v3" in present:
        bundle_referrer(store, name, desc, sign_a, der_a, index=not api, bare_index=True)
    if "actions-attest" in present:
        bundle_referrer(store, name, desc, sign_b, der_b, predicate_type=SLSA_V1, predicate=PROVENANCE,
                        index=not api)
    if "notation" in present:
        pki = build_pki("p256")
        sign_image_notation(store, desc, load_signing_material(pki.leaf.key_pem(), pki.chain_pem()))
    ref = f"{name}@{desc.digest}"

    tree = json.loads(cli("tree", ref, "-o", "json").stdout)["attachments"]
    expected = sorted(
        [("signature", "cosign-sig-tag")] * ("cosign-v2" in present)
        + [("signature", "referrers-api" if api else "referrers-tag-index")] * ("cosign-v3" in present)
        + [("attestation", "referrers-api" if api else "referrers-tag-index")] * ("actions-attest" in present)
        + [("signature", "referrers-api" if api else "referrers-tag-index")] * ("notation" in present))
    assert sorted((a["kind"], a["foundVia"]) for a in tree) == expected
    assert [a["predicateType"] for a in tree if a["kind"] == "attestation"] == [SLSA_V1] * ("actions-attest" in present)

    signed_by_a = {"cosign-v2", "cosign-v3"} & present
    r = cli("verify", ref, "--key", str(pub_a), "-o", "json")
    if signed_by_a:
        assert r.code == 0, r.stderr
        out = json.loads(r.stdout)
        formats = {"cosign-v2": "legacy", "cosign-v3": "bundle"}
        assert sorted(v["format"] for v in out["verified"]) == sorted(formats[s] for s in signed_by_a)
        assert len(out["signers"]) == 1  # a bundle and a legacy signature by one key are one signer
    else:
        assert r.code == 1, r.stderr
    if state == "all":
        # Two formats by one key do not make a threshold of two (C signed nothing).
        _, pub_c, _ = _keys(tmp_path, "c")
        r = cli("verify", ref, "--key", str(pub_a), "--key", str(pub_c), "--threshold", "2", "-o", "json")
        assert r.code == 1 and json.loads(r.stdout)["reason"] == "threshold", r.stdout
        # B signed only an attestation: it is not a signature of the image.
        assert cli("verify", ref, "--key", str(pub_b)).code == 1

    r = cli("verify-attestation", ref, "--type", "slsaprovenance1", "--key", str(pub_b), "-o", "json")
    if "actions-attest" in present:
        assert r.code == 0, r.stderr
        assert json.loads(r.stdout)["verified"][0]["statement"]["predicate"] == PROVENANCE
    else:
        assert r.code == 1, r.stderr

    if "notation" in present or state == "cosign-v3":
        policy, trust_store = _notation_files(tmp_path, name)
        r = cli("verify", ref, "--notation", "--trust-policy", str(policy), "--trust-store", str(trust_store))
        assert r.code == (0 if "notation" in present else 1), r.stderr
