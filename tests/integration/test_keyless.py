"""Keyless signing and verification of images, end to end against the offline Sigstore rig.

`imgseal sign --keyless` talks to the rig's Fulcio, Rekor v1 and TSA (tests/sigstore_rig) and
attaches the bundle to an image in the real docker-registry; `imgseal verify` checks it offline
against the rig's trusted root. Every attack must end in exit 1 with a reason naming the check
that failed, and every bundle imgseal writes (keyless and key-based) is cross-checked by two
independent verifiers: sigstore-python's ``Verifier`` and sigstore-js (verify.mjs).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgseal import attach
from imgseal.digest import Digest
from imgseal.payloads import BUNDLE_V03_MEDIA, COSIGN_SIGN_PREDICATE, MAX_BUNDLE_BYTES
from keys import encrypt_private_key, generate, public_pem
from signer.image import attach_bundle
from tests.integration.images import push_image, registry_store
from tests.integration.sigstore_rig import CERT_LIFETIME_S, DEFAULT_ISSUER, SigstoreRig, make_rig_fixture, node_verify

pytestmark = [pytest.mark.registry, pytest.mark.sigstore]

ALICE = "alice@example.com"
#: No ambient CI credentials may leak into the signing process (id.detect_credential reads these).
NO_AMBIENT = {"SIGSTORE_ID_TOKEN": "", "GITHUB_ACTIONS": "", "GITLAB_CI": "", "BUILDKITE": "", "CIRCLECI": "",
              "GOOGLE_SERVICE_ACCOUNT_NAME": ""}

# Rekor integrates every entry two certificate lifetimes after the certificate was issued,
# and there is no TSA: the only verified time lies outside the certificate's validity.
late_rig = make_rig_fixture("late_rig", scope="module", tsa=False, rekor_clock_offset=2 * CERT_LIFETIME_S)


@dataclass(frozen=True)
class SignedImage:
    host: str
    repo: str
    content: bytes
    digest: Digest
    bundle: bytes

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}@{self.digest}"


def fetch_bundle(host: str, repo: str, digest: Digest) -> bytes:
    """The one cosign-sign bundle attached to ``digest`` (fetched by digest, so checked)."""
    store = registry_store(host, repo)
    bundles = [store.get_blob(layer, max_bytes=MAX_BUNDLE_BYTES)
               for att in attach.discover(store, digest) if att.artifact_type == BUNDLE_V03_MEDIA
               for layer in att.manifest.layers]
    assert len(bundles) == 1, bundles
    return bundles[0]


def sign_keyless(cli, rig: SigstoreRig, ref: str, identity: str = ALICE, issuer: str = DEFAULT_ISSUER,
                 *extra: str):  # type: ignore[no-untyped-def]
    return cli("sign", ref, "--keyless", "--trust-config", str(rig.trust_config_path),
               "--identity-token", rig.mint_token(identity, issuer=issuer), *extra, env=NO_AMBIENT)


def verify_keyless(cli, rig: SigstoreRig, ref: str, *extra: str, identity: str = ALICE,  # type: ignore[no-untyped-def]
                   issuer: str = DEFAULT_ISSUER):
    return cli("verify", ref, "--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
               "--trusted-root", str(rig.trusted_root_path), "-o", "json", *extra)


@pytest.fixture(scope="module")
def signed(registry, sigstore_rig: SigstoreRig, tmp_path_factory: pytest.TempPathFactory) -> SignedImage:
    import subprocess
    import sys

    repo, content = "keyless/app", b"keyless app"
    desc = push_image(registry.host, repo, content=content)
    ref = f"{registry.host}/{repo}@{desc.digest}"
    token = sigstore_rig.mint_token(ALICE)
    proc = subprocess.run([sys.executable, "-m", "imgseal", "sign", ref, "--keyless", "--trust-config",
                           str(sigstore_rig.trust_config_path), "--identity-token", token, "-a", "team=core"],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=tmp_path_factory.mktemp("sign"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ref
    return SignedImage(registry.host, repo, content, desc.digest, fetch_bundle(registry.host, repo, desc.digest))


# --- the happy path ---------------------------------------------------------------------------


def test_keyless_round_trip(cli, sigstore_rig: SigstoreRig, signed: SignedImage) -> None:
    r = verify_keyless(cli, sigstore_rig, f"{signed.host}/{signed.repo}:v1", "-a", "team=core")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] and result["digest"] == str(signed.digest)
    (verified,) = result["verified"]
    assert verified["signer"] == f"{ALICE} (issuer {DEFAULT_ISSUER})"
    assert verified["payload"]["predicateType"] == COSIGN_SIGN_PREDICATE
    assert verified["payload"]["subject"][0]["digest"] == {"sha256": signed.digest.hex}
    assert "matching identity verified" in r.stderr


def test_bundle_has_certificate_tlog_entry_and_timestamp(signed: SignedImage) -> None:
    doc = json.loads(signed.bundle)
    assert doc["mediaType"] == BUNDLE_V03_MEDIA
    material = doc["verificationMaterial"]
    assert "certificate" in material and len(material["tlogEntries"]) == 1
    assert material["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
    assert len(material["timestampVerificationData"]["rfc3161Timestamps"]) == 1
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    assert statement["predicate"] == {"annotations": {"team": "core"}}


def test_identity_and_issuer_regexps(cli, sigstore_rig: SigstoreRig, signed: SignedImage) -> None:
    r = cli("verify", signed.ref, "--certificate-identity-regexp", r".*@example\.com",
            "--certificate-oidc-issuer-regexp", r"https://oidc\.rig\..*", "--trusted-root",
            str(sigstore_rig.trusted_root_path))
    assert r.code == 0, r.stderr
    # Regexps must match the whole value, not a substring.
    r = cli("verify", signed.ref, "--certificate-identity-regexp", "alice", "--certificate-oidc-issuer",
            DEFAULT_ISSUER, "--trusted-root", str(sigstore_rig.trusted_root_path), "-o", "json")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "certificate-identity", r.stderr


# --- rejections: each names the failing check -------------------------------------------------


@pytest.mark.parametrize(("identity", "issuer", "reason"), [
    ("bob@example.com", DEFAULT_ISSUER, "certificate-identity"),
    ("alice@example.co", DEFAULT_ISSUER, "certificate-identity"),
    (ALICE, "https://other-issuer.example", "certificate-issuer"),
], ids=["wrong-identity", "identity-prefix", "wrong-issuer"])
def test_wrong_identity_or_issuer(cli, sigstore_rig: SigstoreRig, signed: SignedImage, identity: str, issuer: str,
                                  reason: str) -> None:
    r = verify_keyless(cli, sigstore_rig, signed.ref, identity=identity, issuer=issuer)
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] == reason
    assert "does not match the policy" in r.stderr


def test_github_claims_must_match(cli, sigstore_rig: SigstoreRig, signed: SignedImage) -> None:
    r = verify_keyless(cli, sigstore_rig, signed.ref, "--certificate-github-workflow-repository", "org/repo")
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "certificate-claims", r.stderr


def test_other_trusted_root_rejects(cli, late_rig: SigstoreRig, signed: SignedImage) -> None:
    r = verify_keyless(cli, late_rig, signed.ref)
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] in ("tlog-key", "timestamp", "certificate-chain"), r.stdout


def test_expired_certificate_without_valid_timestamp(cli, registry, late_rig: SigstoreRig) -> None:
    desc = push_image(registry.host, "keyless/late", content=b"late")
    ref = f"{registry.host}/keyless/late@{desc.digest}"
    r = sign_keyless(cli, late_rig, ref)
    assert r.code == 0, r.stderr  # signing does not judge log times; verification must
    r = verify_keyless(cli, late_rig, ref)
    assert r.code == 1, r.stderr
    # verify_bundle builds the chain at each verified time first; the X.509 path check is
    # what refuses the expired leaf, and its message says why.
    assert json.loads(r.stdout)["reason"] in ("certificate-chain", "certificate-validity")
    assert "not valid at" in r.stderr


def _same_image_elsewhere(signed: SignedImage, repo: str) -> str:
    """Push the signed image's content under another repository: same digest, no signatures."""
    desc = push_image(signed.host, repo, content=signed.content)
    assert desc.digest == signed.digest
    return repo


def _attach(host: str, repo: str, digest: Digest, bundle: bytes) -> None:
    store = registry_store(host, repo)
    attach_bundle(store, store.get_manifest(digest).descriptor(), bundle, COSIGN_SIGN_PREDICATE)


def test_tampered_inclusion_proof(cli, sigstore_rig: SigstoreRig, signed: SignedImage) -> None:
    doc = json.loads(signed.bundle)
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    root = bytearray(base64.b64decode(proof["rootHash"]))
    root[0] ^= 1
    proof["rootHash"] = base64.b64encode(bytes(root)).decode()
    repo = _same_image_elsewhere(signed, "keyless/tampered-proof")
    _attach(signed.host, repo, signed.digest, json.dumps(doc).encode())
    r = verify_keyless(cli, sigstore_rig, f"{signed.host}/{repo}@{signed.digest}")
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] == "inclusion-proof", r.stdout


def test_bundle_moved_to_another_image(cli, sigstore_rig: SigstoreRig, signed: SignedImage) -> None:
    other = push_image(signed.host, "keyless/moved", content=b"another image")
    _attach(signed.host, "keyless/moved", other.digest, signed.bundle)
    r = verify_keyless(cli, sigstore_rig, f"{signed.host}/keyless/moved@{other.digest}")
    assert r.code == 1, r.stderr
    assert json.loads(r.stdout)["reason"] == "payload-digest-mismatch"
    assert str(signed.digest) in r.stderr and str(other.digest) in r.stderr


def test_key_signature_does_not_satisfy_identity(cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    desc = push_image(registry.host, "keyless/keyonly", content=b"key only")
    key = generate("ecdsa-p256")
    (tmp_path / "k.key").write_bytes(encrypt_private_key(key, b"pw"))
    ref = f"{registry.host}/keyless/keyonly@{desc.digest}"
    assert cli("sign", ref, "--key", str(tmp_path / "k.key"), env={"IMGSEAL_PASSWORD": "pw"}).code == 0
    r = verify_keyless(cli, sigstore_rig, ref)
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-matching-signature", r.stderr
    assert "key-signed bundle" in r.stderr


# --- usage and availability errors ---------------------------------------------------------------


def test_key_and_identity_are_exclusive(cli, signed: SignedImage, tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_bytes(public_pem(generate("ecdsa-p256")))
    r = cli("verify", signed.ref, "--key", str(pub), "--certificate-identity", ALICE, "--certificate-oidc-issuer",
            DEFAULT_ISSUER)
    assert r.code == 2 and "cannot be combined" in r.stderr
    r = cli("verify", signed.ref, "--certificate-identity", ALICE)
    assert r.code == 2 and "--certificate-oidc-issuer" in r.stderr


def test_sign_usage_errors(cli, sigstore_rig: SigstoreRig, signed: SignedImage, tmp_path: Path) -> None:
    tc = str(sigstore_rig.trust_config_path)
    # No token anywhere and stdin is not a terminal: no browser flow, a clear exit 2.
    r = cli("sign", signed.ref, "--keyless", "--trust-config", tc, env=NO_AMBIENT)
    assert r.code == 2 and "no identity token" in r.stderr, r.stderr
    r = cli("sign", signed.ref, "--keyless", "--trust-config", tc,
            "--identity-token", sigstore_rig.mint_token(ALICE, expired=True), env=NO_AMBIENT)
    assert r.code == 2 and "identity token refused" in r.stderr, r.stderr
    r = cli("sign", signed.ref, "--keyless", "--trust-config", tc, "--identity-token", "@" + str(tmp_path / "none"))
    assert r.code == 2 and "cannot read identity token file" in r.stderr
    r = cli("sign", signed.ref, "--keyless", "--format", "legacy", "--trust-config", tc, env=NO_AMBIENT)
    assert r.code == 2 and "no identity token" in r.stderr  # legacy keyless is supported; the token is missing
    r = cli("sign", signed.ref, "--keyless", "--key", "x.key")
    assert r.code == 2 and "not both" in r.stderr
    (tmp_path / "bad.json").write_text('{"mediaType": "nope"}')
    r = cli("sign", signed.ref, "--keyless", "--trust-config", str(tmp_path / "bad.json"), env=NO_AMBIENT)
    assert r.code == 2 and "ClientTrustConfig" in r.stderr, r.stderr


def test_token_from_file_and_environment(cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    for how in ("file", "env"):
        desc = push_image(registry.host, f"keyless/token-{how}", content=how.encode())
        ref = f"{registry.host}/keyless/token-{how}@{desc.digest}"
        token = sigstore_rig.mint_token(ALICE)
        if how == "file":
            (tmp_path / "token").write_text(token + "\n")
            args, env = ["--identity-token", "@" + str(tmp_path / "token")], NO_AMBIENT
        else:
            args, env = [], {**NO_AMBIENT, "SIGSTORE_ID_TOKEN": token}
        r = cli("sign", ref, "--keyless", "--trust-config", str(sigstore_rig.trust_config_path), *args, env=env)
        assert r.code == 0, r.stderr
        assert verify_keyless(cli, sigstore_rig, ref).code == 0


def test_unreachable_fulcio_is_exit_3(cli, sigstore_rig: SigstoreRig, signed: SignedImage, tmp_path: Path) -> None:
    config = sigstore_rig.trust_config_path.read_text().replace(sigstore_rig.url, "http://127.0.0.1:9")
    (tmp_path / "down.json").write_text(config)
    r = cli("sign", signed.ref, "--keyless", "--trust-config", str(tmp_path / "down.json"), "--identity-token",
            sigstore_rig.mint_token(ALICE), env=NO_AMBIENT)
    assert r.code == 3, r.stderr
    assert "network failure" in r.stderr and "Traceback" not in r.stderr


def test_trust_update_offline_is_exit_3(cli, tmp_path: Path) -> None:
    # No test may reach the network: a proxy on a closed loopback port makes TUF fail at once.
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    r = cli("trust", "update", "--output", str(tmp_path / "root.json"), env=env, timeout=60)
    assert r.code == 3, r.stderr
    assert "cannot refresh the production trusted root" in r.stderr and "--trusted-root" in r.stderr
    assert not (tmp_path / "root.json").exists()


# --- independent cross-checks -------------------------------------------------------------------


def test_keyless_bundle_verifies_with_sigstore_python(sigstore_rig: SigstoreRig, signed: SignedImage) -> None:
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy

    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(sigstore_rig.trusted_root_path)))
    payload_type, payload = verifier.verify_dsse(Bundle.from_json(signed.bundle),
                                                 policy.Identity(identity=ALICE, issuer=DEFAULT_ISSUER))
    assert payload_type == "application/vnd.in-toto+json"
    # verify_dsse does not bind the statement to the image: check the subject ourselves.
    assert json.loads(payload)["subject"][0]["digest"] == {"sha256": signed.digest.hex}


def test_keyless_bundle_verifies_with_sigstore_js(sigstore_rig: SigstoreRig, signed: SignedImage,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(signed.bundle)
    result = node_verify(path, sigstore_rig.trusted_root_path, identity=ALICE, issuer=DEFAULT_ISSUER,
                         digest=str(signed.digest))
    assert result.ok, result.message
    wrong = node_verify(path, sigstore_rig.trusted_root_path, identity=ALICE, issuer=DEFAULT_ISSUER,
                        digest="sha256:" + "0" * 64)
    assert wrong.returncode == 1, wrong.message


def test_key_bundle_verifies_with_sigstore_js(cli, registry, sigstore_rig: SigstoreRig, tmp_path: Path) -> None:
    # sigstore-python cannot verify public-key bundles (its #916, #1244): sigstore-js can.
    desc = push_image(registry.host, "keyless/keybundle", content=b"key bundle")
    key = generate("ecdsa-p256")
    (tmp_path / "k.key").write_bytes(encrypt_private_key(key, b"pw"))
    (tmp_path / "k.pub").write_bytes(public_pem(key))
    ref = f"{registry.host}/keyless/keybundle@{desc.digest}"
    assert cli("sign", ref, "--key", str(tmp_path / "k.key"), env={"IMGSEAL_PASSWORD": "pw"}).code == 0
    path = tmp_path / "bundle.json"
    path.write_bytes(fetch_bundle(registry.host, "keyless/keybundle", desc.digest))
    result = node_verify(path, sigstore_rig.trusted_root_path, key=tmp_path / "k.pub", digest=str(desc.digest),
                         tlog_threshold=0, timestamp_threshold=0)
    assert result.ok, result.message
    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(generate("ecdsa-p256")))
    result = node_verify(path, sigstore_rig.trusted_root_path, key=other, digest=str(desc.digest),
                         tlog_threshold=0, timestamp_threshold=0)
    assert result.returncode == 1, result.message
