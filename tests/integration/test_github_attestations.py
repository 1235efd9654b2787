"""GitHub artifact attestations end to end: made as actions/attest makes them (sigstore-js signs,
@sigstore/oci attaches) against the offline rig and a real docker-registry, verified by
``imgseal verify-attestation --github-owner|--github-repo`` and cross-checked with @sigstore/verify.

See tests/integration/github_rig.py for the two instances (public good, GitHub's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgseal.digest import Digest
from tests.integration.github_rig import (
    PASSWORD,
    SLSA_V1,
    USER,
    Workflow,
    attest,
    auth_file,
    js_verify,
    provenance_statement,
)
from tests.integration.images import push_image
from tests.integration.referrers_double import ReferrersDouble
from tests.integration.registry_rig import RegistryInstance, corrupt_blob, registry_available, start_registry
from tests.integration.sigstore_rig import SigstoreRig, require_rig, start_rig

pytestmark = [pytest.mark.registry, pytest.mark.sigstore]

ACME = Workflow()


@pytest.fixture(scope="module")
def gh_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInstance]:
    if not registry_available():
        pytest.skip("docker-registry is not installed")
    require_rig()
    workdir = tmp_path_factory.mktemp("gh-registry")
    with start_registry(workdir, htpasswd={USER: PASSWORD}) as instance:
        # imgseal (in tests and in the CLI processes) reads the registry's credentials from here.
        saved = os.environ.get("REGISTRY_AUTH_FILE")
        os.environ["REGISTRY_AUTH_FILE"] = str(auth_file(workdir / "auth.json", instance.host))
        try:
            yield instance
        finally:
            if saved is None:
                os.environ.pop("REGISTRY_AUTH_FILE", None)
            else:
                os.environ["REGISTRY_AUTH_FILE"] = saved


@pytest.fixture(scope="module")
def public_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreRig]:
    require_rig()
    with start_rig(tmp_path_factory.mktemp("public-good"), issuer_org="sigstore.dev") as rig:
        yield rig


@pytest.fixture(scope="module")
def roots(public_rig: SigstoreRig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `gh attestation trusted-root` prints: JSON lines, one trusted root per line."""
    path = tmp_path_factory.mktemp("roots") / "trusted_root.jsonl"
    path.write_text(json.dumps(json.loads(public_rig.trusted_root_path.read_text())) + "\n")
    return path


def _image(registry: RegistryInstance, repo: str, content: bytes | None = None) -> tuple[str, str]:
    desc = push_image(registry.host, repo, content=content or repo.encode())
    return f"{registry.host}/{repo}", str(desc.digest)


def _verify(cli: Any, ref: str, roots: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    r = cli("verify-attestation", ref, "--trusted-root", str(roots), *args, "-o", "json",
            env={"REGISTRY_AUTH_FILE": os.environ["REGISTRY_AUTH_FILE"]})
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        doc = {"stdout": r.stdout}
    return r.code, doc, r.stderr


@pytest.fixture(scope="module")
def public_attested(gh_registry: RegistryInstance, public_rig: SigstoreRig,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """One public-good attestation attached by @sigstore/oci through the tag fallback (no referrers API)."""
    name, digest = _image(gh_registry, "gh/public")
    out = attest(public_rig, ACME, provenance_statement(name, digest), tmp_path_factory.mktemp("att"),
                 image=name, digest=digest, public_good=True)
    return f"{name}@{digest}", digest, out.bundle_path


def test_public_good_attestation_via_tag_fallback(cli, gh_registry: RegistryInstance, public_rig: SigstoreRig,
                                                  public_attested: tuple[str, str, Path], roots: Path) -> None:
    ref, digest, bundle = public_attested
    code, out, err = _verify(cli, ref, roots, "--github-owner", "acme")
    assert code == 0, err
    (verified,) = out["verified"]
    assert verified["foundVia"] == "referrers-tag-index"
    assert verified["trustDomain"] == "public-good"
    assert verified["certificate"]["source_repository_owner_uri"] == "https://github.com/acme"
    assert verified["statement"]["predicateType"] == SLSA_V1
    assert "signer identity (SAN) must start with https://github.com/acme/" in out["policy"]
    # The same bundle is accepted by sigstore-js with the public-good thresholds (log, SCT, time).
    assert js_verify(bundle, public_rig.trusted_root_path, ACME, digest, github=False) == "OK"
    # A tag resolves to the digest too, as gh's oci:// does.
    code, out, err = _verify(cli, ref.split("@")[0] + ":v1", roots, "--github-repo", "acme/app")
    assert code == 0, err


# Each option once passing and once failing, on the one public-good attestation above.
FLAG_CASES = [
    (("--github-owner", "acme"), None),
    (("--github-owner", "ACME"), None),  # GitHub names are case-insensitive (gh compares with EqualFold)
    (("--github-owner", "other"), "github-signer"),
    (("--github-repo", "acme/app"), None),
    (("--github-repo", "acme/api"), "github-signer"),
    (("--github-repo", "acme/api", "--signer-repo", "acme/app"), "github-repo"),
    (("--github-owner", "acme", "--signer-repo", "acme/app"), None),
    (("--github-owner", "acme", "--signer-repo", "acme/shared"), "github-signer"),
    (("--github-owner", "acme", "--signer-workflow", "acme/app/.github/workflows/release.yml"), None),
    (("--github-owner", "acme", "--signer-workflow", "github.com/acme/app/.github/workflows/release.yml"), None),
    (("--github-owner", "acme", "--signer-workflow",
      "acme/app/.github/workflows/release.yml@refs/heads/main"), None),
    # cli/cli #9507: a prefix of the workflow path, or another ref, must not pass.
    (("--github-owner", "acme", "--signer-workflow", "acme/app/.github/workflows/rel"), "github-signer"),
    (("--github-owner", "acme", "--signer-workflow", "acme/app/.github/workflows/release.y.l"), "github-signer"),
    (("--github-owner", "acme", "--signer-workflow",
      "acme/app/.github/workflows/release.yml@refs/heads/dev"), "github-signer"),
    (("--github-owner", "acme", "--source-ref", "refs/heads/main"), None),
    (("--github-owner", "acme", "--source-ref", "refs/heads/dev"), "github-source-ref"),
    (("--github-owner", "acme", "--source-digest", "a" * 40), None),
    (("--github-owner", "acme", "--source-digest", "c" * 40), "github-source-digest"),
    (("--github-owner", "acme", "--signer-digest", "b" * 40), None),
    (("--github-owner", "acme", "--signer-digest", "c" * 40), "github-signer-digest"),
    (("--github-owner", "acme", "--deny-self-hosted-runners"), None),
    # gh's --cert-identity / --cert-identity-regex (here the regexp must match the whole SAN).
    (("--github-owner", "acme", "--certificate-identity",
      "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"), None),
    (("--github-owner", "acme", "--certificate-identity",
      "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/dev"), "github-signer"),
    (("--github-owner", "acme", "--certificate-identity-regexp",
      r"https://github\.com/acme/app/\.github/workflows/release\.yml@refs/(heads/main|tags/v.*)"), None),
    (("--github-owner", "acme", "--certificate-identity-regexp", "https://github.com/acme/"), "github-signer"),
    (("--github-owner", "acme", "--cert-oidc-issuer", "https://token.actions.githubusercontent.com"), None),
    (("--github-owner", "acme", "--cert-oidc-issuer", "https://token.actions.githubusercontent.com/acme"),
     "github-issuer"),
    (("--github-owner", "acme", "--type", "https://spdx.dev/Document"), "no-attestations"),
]


@pytest.mark.parametrize(("args", "reason"), FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_each_option_passes_and_fails(args: tuple[str, ...], reason: str | None,
                                      public_attested: tuple[str, str, Path], gh_registry: RegistryInstance,
                                      roots: Path) -> None:
    """In-process (the CLI's own code path, minus process start-up) to keep the matrix fast."""
    from typer.testing import CliRunner

    from imgseal.cli.main import app

    ref, _, _ = public_attested
    result = CliRunner().invoke(app, ["verify-attestation", ref, "--trusted-root", str(roots), *args, "-o", "json"])
    out = json.loads(result.stdout)
    if reason is None:
        assert result.exit_code == 0, out
        assert out["ok"] is True
    else:
        assert result.exit_code == 1, out
        assert out["reason"] == reason, out


def test_self_hosted_runner_denied_only_when_asked(cli, gh_registry: RegistryInstance, public_rig: SigstoreRig,
                                                   roots: Path, tmp_path: Path) -> None:
    name, digest = _image(gh_registry, "gh/selfhosted")
    attest(public_rig, replace(ACME, runner_environment="self-hosted"), provenance_statement(name, digest), tmp_path,
           image=name, digest=digest, public_good=True)
    code, _, err = _verify(cli, f"{name}@{digest}", roots, "--github-owner", "acme")
    assert code == 0, err
    code, out, _ = _verify(cli, f"{name}@{digest}", roots, "--github-owner", "acme", "--deny-self-hosted-runners")
    assert code == 1 and out["reason"] == "github-runner", out
    assert "self-hosted" in out["rejected"][0]["message"]


def test_reusable_workflow_needs_signer_repo(cli, gh_registry: RegistryInstance, public_rig: SigstoreRig,
                                             roots: Path, tmp_path: Path) -> None:
    """A reusable workflow in acme/shared signs for acme/app: the default SAN check (the source
    repository) fails, --signer-repo / --signer-workflow name the signer (gh's reusable-workflow case)."""
    name, digest = _image(gh_registry, "gh/reusable")
    wf = replace(ACME, signer_repository="acme/shared", workflow=".github/workflows/build.yml")
    attest(public_rig, wf, provenance_statement(name, digest), tmp_path, image=name, digest=digest, public_good=True)
    ref = f"{name}@{digest}"
    code, out, _ = _verify(cli, ref, roots, "--github-repo", "acme/app")
    assert code == 1 and out["reason"] == "github-signer", out
    code, _, err = _verify(cli, ref, roots, "--github-repo", "acme/app", "--signer-repo", "acme/shared")
    assert code == 0, err
    code, _, err = _verify(cli, ref, roots, "--github-repo", "acme/app", "--signer-workflow",
                           "acme/shared/.github/workflows/build.yml")
    assert code == 0, err


def test_attestation_for_another_digest_or_a_blob_never_counts(cli, gh_registry: RegistryInstance,
                                                               public_rig: SigstoreRig, roots: Path,
                                                               tmp_path: Path) -> None:
    name, digest = _image(gh_registry, "gh/victim")
    _, other = _image(gh_registry, "gh/victim", content=b"another build")
    # A valid attestation about image B, attached beside image A.
    attest(public_rig, ACME, provenance_statement(name, other), tmp_path, image=name, digest=digest,
           public_good=True)
    # An attestation about a release tarball (a blob), attached beside image A too.
    blob = Digest.of(b"app-1.0.tar.gz contents")
    attest(public_rig, ACME, provenance_statement("app-1.0.tar.gz", str(blob)), tmp_path, image=name, digest=digest,
           public_good=True)
    code, out, _ = _verify(cli, f"{name}@{digest}", roots, "--github-owner", "acme")
    assert code == 1 and out["reason"] == "payload-digest-mismatch", out
    assert len(out["rejected"]) == 2
    # Image B itself has nothing attached: the bundle about it sits beside A only.
    code, out, _ = _verify(cli, f"{name}@{other}", roots, "--github-owner", "acme")
    assert code == 1 and out["reason"] == "no-attestations", out


def test_tampered_bundle_layer_is_refused(cli, gh_registry: RegistryInstance, public_rig: SigstoreRig,
                                          roots: Path, tmp_path: Path) -> None:
    name, digest = _image(gh_registry, "gh/tampered")
    out = attest(public_rig, ACME, provenance_statement(name, digest), tmp_path, image=name, digest=digest,
                 public_good=True)
    ref = f"{name}@{digest}"
    code, _, err = _verify(cli, ref, roots, "--github-owner", "acme")
    assert code == 0, err
    layer = Digest.of(out.bundle_path.read_bytes())
    corrupt_blob(gh_registry.storage_dir, layer)
    code, result, _ = _verify(cli, ref, roots, "--github-owner", "acme")
    assert code == 1 and result["reason"] == "digest-mismatch", result


def test_rewritten_statement_in_a_new_layer_is_refused(cli, gh_registry: RegistryInstance, public_rig: SigstoreRig,
                                                       roots: Path, tmp_path: Path) -> None:
    """Someone who can push re-attaches the bundle with its statement edited (bytes and digest
    consistent): the signature no longer verifies, and the untouched original still does."""
    import base64

    from imgseal import attach
    from imgseal.manifest import Descriptor
    from tests.integration.images import registry_store

    name, digest = _image(gh_registry, "gh/rewritten")
    out = attest(public_rig, ACME, provenance_statement(name, digest), tmp_path, image=name, digest=digest,
                 public_good=True)
    doc = out.bundle()
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example/builder"
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    store = registry_store(gh_registry.host, "gh/rewritten")
    manifest = store.get_manifest(Digest.parse(digest))
    subject = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
    attach.attach(store, subject, artifact_type=doc["mediaType"],
                  layers=[attach.Layer(json.dumps(doc).encode(), doc["mediaType"])],
                  annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                               "dev.sigstore.bundle.predicateType": SLSA_V1})
    ref = f"{name}@{digest}"
    code, result, err = _verify(cli, ref, roots, "--github-owner", "acme", "--builder-id",
                                "https://evil.example/builder")
    assert code == 1 and result["reason"] == "slsa-builder-id", result  # only the genuine one verified
    assert any(r["reason"] == "signature" for r in result["rejected"]), result
    code, result, err = _verify(cli, ref, roots, "--github-owner", "acme")
    assert code == 0, err
    assert len(result["verified"]) == 1 and len(result["rejected"]) == 1


@pytest.fixture(scope="module")
def gh_double(gh_registry: RegistryInstance) -> Iterator[ReferrersDouble]:
    """The registry behind a referrers-API double: @sigstore/oci sees OCI-Subject and a 200 from its probe."""
    double = ReferrersDouble(gh_registry.host).start()
    saved = os.environ["REGISTRY_AUTH_FILE"]
    os.environ["REGISTRY_AUTH_FILE"] = str(auth_file(Path(saved).with_name("auth-double.json"), double.host,
                                                     gh_registry.host))
    try:
        yield double
    finally:
        os.environ["REGISTRY_AUTH_FILE"] = saved
        double.stop()


def test_referrers_api_attachment(cli, gh_double: ReferrersDouble, public_rig: SigstoreRig, roots: Path,
                                  tmp_path: Path) -> None:
    """With a referrers API, @sigstore/oci pushes the referrer only (no sha256-<hex> tag), and
    imgseal finds it through the API."""
    desc = push_image(gh_double.host, "gh/viaapi", content=b"referrers api")
    name, digest = f"{gh_double.host}/gh/viaapi", str(desc.digest)
    attest(public_rig, ACME, provenance_statement(name, digest), tmp_path, image=name, digest=digest,
           public_good=True)
    assert not any(r.startswith("PUT") and "/manifests/sha256-" in r for r in gh_double.requests_seen)
    code, out, err = _verify(cli, f"{name}@{digest}", roots, "--github-repo", "acme/app")
    assert code == 0, err
    assert out["verified"][0]["foundVia"] == "referrers-api"


# --- GitHub's own instance: Fulcio and a TSA, no log, no CT log ---------------------------------


@pytest.fixture(scope="module")
def github_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreRig]:
    require_rig()
    with start_rig(tmp_path_factory.mktemp("github"), issuer_org="GitHub, Inc.", rekor=False, ctlog=False) as rig:
        yield rig


@pytest.fixture(scope="module")
def both_roots(public_rig: SigstoreRig, github_rig: SigstoreRig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roots") / "trusted_root.jsonl"
    path.write_text("".join(json.dumps(json.loads(r.trusted_root_path.read_text())) + "\n"
                            for r in (public_rig, github_rig)))
    return path


def test_github_instance_attestation(cli, gh_registry: RegistryInstance, github_rig: SigstoreRig, roots: Path,
                                     both_roots: Path, tmp_path: Path) -> None:
    root = json.loads(github_rig.trusted_root_path.read_text())
    assert "tlogs" not in root and "ctlogs" not in root  # GitHub's root lists no log, as the real one
    name, digest = _image(gh_registry, "gh/private")
    out = attest(github_rig, ACME, provenance_statement(name, digest), tmp_path, image=name, digest=digest)
    bundle = out.bundle()
    assert "tlogEntries" not in bundle["verificationMaterial"] or not bundle["verificationMaterial"]["tlogEntries"]
    assert bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    ref = f"{name}@{digest}"
    code, result, err = _verify(cli, ref, both_roots, "--github-repo", "acme/app", "--source-ref", "refs/heads/main",
                                "--deny-self-hosted-runners")
    assert code == 0, err
    (verified,) = result["verified"]
    assert verified["trustDomain"] == "github" and verified["foundVia"] == "referrers-tag-index"
    assert verified["certificate"]["source_repository_visibility_at_signing"] == "private"
    # sigstore-js agrees with GitHub's thresholds: a timestamp, no log, no SCT.
    assert js_verify(out.bundle_path, github_rig.trusted_root_path, ACME, digest, github=True) == "OK"
    # Claims are checked as for public good.
    code, result, _ = _verify(cli, ref, both_roots, "--github-repo", "acme/app", "--source-ref", "refs/tags/v1")
    assert code == 1 and result["reason"] == "github-source-ref", result
    # Without GitHub's root (only the public-good one), it cannot be trusted, and the error says how.
    code, result, err = _verify(cli, ref, roots, "--github-repo", "acme/app")
    assert code == 1 and result["reason"] == "github-trust-domain", result
    assert "trust update --github" in err
    # Nor with the embedded public-good root alone (no --trusted-root).
    r = cli("verify-attestation", ref, "--github-repo", "acme/app", "-o", "json",
            env={"REGISTRY_AUTH_FILE": os.environ["REGISTRY_AUTH_FILE"]})
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "github-trust-domain", r.stdout


def test_github_instance_through_the_referrers_api(cli, gh_double: ReferrersDouble, github_rig: SigstoreRig,
                                                   both_roots: Path, tmp_path: Path) -> None:
    desc = push_image(gh_double.host, "gh/private-api", content=b"private via api")
    name, digest = f"{gh_double.host}/gh/private-api", str(desc.digest)
    attest(github_rig, ACME, provenance_statement(name, digest), tmp_path, image=name, digest=digest)
    code, out, err = _verify(cli, f"{name}@{digest}", both_roots, "--github-owner", "acme")
    assert code == 0, err
    assert out["verified"][0]["foundVia"] == "referrers-api" and out["verified"][0]["trustDomain"] == "github"


def test_certificates_from_the_other_trust_domain(cli, gh_registry: RegistryInstance, public_rig: SigstoreRig,
                                                  github_rig: SigstoreRig, both_roots: Path,
                                                  tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The domain's rules cannot be dodged: a public-good certificate without a log entry is
    refused (public good needs one), and a GitHub-instance certificate from another CA than
    the root's (an impostor instance naming itself "GitHub, Inc.") does not chain."""
    name, digest = _image(gh_registry, "gh/domains")
    # sigstore.dev certificate, timestamp only (as GitHub's instance signs): no log entry.
    attest(public_rig, ACME, provenance_statement(name, digest), tmp_path, image=name, digest=digest)
    code, out, _ = _verify(cli, f"{name}@{digest}", both_roots, "--github-owner", "acme")
    assert code == 1 and out["reason"] == "tlog-missing", out
    with start_rig(tmp_path_factory.mktemp("impostor"), issuer_org="GitHub, Inc.", rekor=False,
                   ctlog=False) as impostor:
        name2, digest2 = _image(gh_registry, "gh/impostor")
        attest(impostor, ACME, provenance_statement(name2, digest2), tmp_path, image=name2, digest=digest2)
        impostor_root = json.loads(impostor.trusted_root_path.read_text())
    ref2 = f"{name2}@{digest2}"
    code, out, _ = _verify(cli, ref2, both_roots, "--github-owner", "acme")
    assert code == 1 and out["reason"] == "timestamp", out  # its TSA is not GitHub's either
    # Even with the impostor's TSA trusted, its certificate does not chain to GitHub's CA.
    mixed = json.loads(github_rig.trusted_root_path.read_text())
    mixed["timestampAuthorities"] = impostor_root["timestampAuthorities"]
    mixed_roots = tmp_path / "mixed.jsonl"
    mixed_roots.write_text(json.dumps(mixed) + "\n")
    code, out, _ = _verify(cli, ref2, mixed_roots, "--github-owner", "acme")
    assert code == 1 and out["reason"] == "certificate-chain", out


def test_gate_github_requirement(cli, gh_registry: RegistryInstance, github_rig: SigstoreRig, both_roots: Path,
                                 tmp_path: Path) -> None:
    """The same checks as a deploy-gate requirement; policy check and explain show them."""
    from tests.integration.test_gate import deployment

    good_name, good = _image(gh_registry, "gh/gate-good")
    bad_name, bad = _image(gh_registry, "gh/gate-bad")
    attest(github_rig, ACME, provenance_statement(good_name, good), tmp_path, image=good_name, digest=good)
    attest(github_rig, replace(ACME, runner_environment="self-hosted"), provenance_statement(bad_name, bad), tmp_path,
           image=bad_name, digest=bad)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
rules:
  - name: r
    match: ["{gh_registry.host}/gh/gate-*"]
    trusted_root: {both_roots}
    require:
      github:
        repo: acme/app
        signer_workflow: acme/app/.github/workflows/release.yml
        source_ref: refs/heads/main
        deny_self_hosted_runners: true
        predicate_type: slsaprovenance1
""")
    env = {"REGISTRY_AUTH_FILE": os.environ["REGISTRY_AUTH_FILE"]}
    r = cli("policy", "check", str(policy), env=env)
    assert r.code == 0, r.stderr
    r = cli("policy", "explain", str(policy), f"{good_name}:v1", env=env)
    assert r.code == 0, r.stderr
    assert "github attestation: OIDC issuer must be https://token.actions.githubusercontent.com" in r.stdout + r.stderr
    assert "runner environment must be github-hosted" in r.stdout + r.stderr
    (tmp_path / "deploy.yaml").write_text(deployment(f"{good_name}:v1", f"{bad_name}:v1"))
    r = cli("gate", "--policy", str(policy), str(tmp_path / "deploy.yaml"), "--no-cache", "-o", "json", env=env)
    results = {x["image"]: x for x in json.loads(r.stdout)["results"]}
    assert results[f"{good_name}:v1"]["decision"] == "allow", results
    denied = results[f"{bad_name}:v1"]
    assert denied["decision"] == "deny" and denied["reason"] == "github-runner", denied
    assert "github:" in denied["message"], denied
    assert r.code == 1


@pytest.mark.parametrize(("args", "needle"), [
    (("--github-owner", "acme", "--key", "k.pub"), "cannot be combined with --key"),
    (("--github-owner", "acme", "--certificate-oidc-issuer", "x"), "cannot be combined with --certificate-oidc-issuer"),
    (("--github-owner", "acme", "--certificate-identity", "x", "--signer-repo", "a/b"), "not several"),
    (("--github-owner", "acme", "--certificate-identity-regexp", "("), "not a regular expression"),
    (("--signer-repo", "acme/app"), "needs --github-owner ORG or --github-repo"),
    (("--github-owner", "acme", "--github-repo", "acme/app"), "exactly one of --github-owner"),
    (("--github-repo", "acme"), "--github-repo must be OWNER/REPO"),
    (("--github-owner", "acme", "--signer-repo", "a/b", "--signer-workflow", "a/b/c.yml"), "not several"),
    (("--github-owner", "acme", "--source-digest", "xyz"), "--source-digest must be"),
    (("--github-owner", "acme", "--cert-oidc-issuer", "http://x"), "must be an https:// URL"),
])
def test_usage_errors_before_any_network(cli, args: tuple[str, ...], needle: str) -> None:
    r = cli("verify-attestation", "127.0.0.1:9/never/contacted:v1", *args)
    assert r.code == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("imgseal: error: ") and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def github_attested(gh_registry: RegistryInstance, github_rig: SigstoreRig,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    """One attestation from GitHub's instance, attached through the tag fallback."""
    name, digest = _image(gh_registry, "gh/private-matrix")
    attest(github_rig, ACME, provenance_statement(name, digest), tmp_path_factory.mktemp("att-gh"), image=name,
           digest=digest)
    return f"{name}@{digest}"


@pytest.mark.parametrize(("args", "reason"), FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_each_option_on_githubs_instance(args: tuple[str, ...], reason: str | None, github_attested: str,
                                         both_roots: Path) -> None:
    """The same matrix on the other trust domain: the claims are checked alike."""
    from typer.testing import CliRunner

    from imgseal.cli.main import app

    result = CliRunner().invoke(app, ["verify-attestation", github_attested, "--trusted-root", str(both_roots),
                                      *args, "-o", "json"])
    out = json.loads(result.stdout)
    if reason is None:
        assert result.exit_code == 0, out
        assert out["verified"][0]["trustDomain"] == "github"
    else:
        assert result.exit_code == 1, out
        assert out["reason"] == reason, out


def test_air_gapped_copy_verifies_offline(cli, gh_registry: RegistryInstance, github_attested: str,
                                          both_roots: Path, tmp_path: Path) -> None:
    """`imgseal copy` carries the attestation with its exact bytes into an OCI layout, where
    verify-attestation needs neither the registry nor GitHub."""
    env = {"REGISTRY_AUTH_FILE": os.environ["REGISTRY_AUTH_FILE"]}
    layout = tmp_path / "layout"
    r = cli("copy", github_attested, f"oci-layout:{layout}:v1", env=env)
    assert r.code == 0, r.stderr
    digest = github_attested.split("@", 1)[1]
    r = cli("verify-attestation", f"oci-layout:{layout}@{digest}", "--github-repo", "acme/app",
            "--trusted-root", str(both_roots), "-o", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["verified"][0]["trustDomain"] == "github"


def test_attestations_kept_in_another_repository(cli, gh_registry: RegistryInstance, github_rig: SigstoreRig,
                                                 both_roots: Path, tmp_path: Path) -> None:
    """--attachments-repo (cosign's COSIGN_REPOSITORY) reads the referrers from another repository."""
    name, digest = _image(gh_registry, "gh/mirrored", content=b"mirrored")
    # The attestations live beside a copy of the image in another repository (a mirror).
    sigs, same = _image(gh_registry, "gh/attestations", content=b"mirrored")
    assert same == digest
    attest(github_rig, ACME, provenance_statement(name, digest), tmp_path, image=sigs, digest=digest)
    ref = f"{name}@{digest}"
    code, out, _ = _verify(cli, ref, both_roots, "--github-repo", "acme/app")
    assert code == 1 and out["reason"] == "no-attestations", out
    code, out, err = _verify(cli, ref, both_roots, "--github-repo", "acme/app", "--attachments-repo", sigs)
    assert code == 0, err
    assert "reading attachments from" in err
