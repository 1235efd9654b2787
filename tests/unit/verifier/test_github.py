"""verifier.github: gh attestation verify's criteria on certificates built here (no services)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imgseal.errors import InvalidInputError, UsageError, VerificationError
from verifier.github import (
    GITHUB_HOSTED,
    GithubPolicy,
    check_claims,
    issuer_organisation,
    parse_trusted_roots,
    read_claims,
    trust_domain,
)

ROOT = Path(__file__).resolve().parents[3]


def _utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _cert(san: str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
          issuer_org: str = "GitHub, Inc.", **claims: str) -> x509.Certificate:
    values = {
        "8": "https://token.actions.githubusercontent.com",
        "9": san, "10": "b" * 40, "11": GITHUB_HOSTED, "12": "https://github.com/acme/app", "13": "a" * 40,
        "14": "refs/heads/main", "16": "https://github.com/acme",
    }
    values.update(claims)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_org),
                                       x509.NameAttribute(NameOID.COMMON_NAME, "Fulcio Intermediate l2")]))
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=10))
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=True))
    for arc, value in values.items():
        if value:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{arc}"), _utf8(value)),
                critical=False)
    return builder.sign(key, hashes.SHA256())


def _policy(**kw: object) -> GithubPolicy:
    kw.setdefault("owner", None if "repo" in kw else "acme")
    return GithubPolicy.create(**kw)  # type: ignore[arg-type]


def test_claims_are_read_from_the_fulcio_extensions() -> None:
    claims = read_claims(_cert())
    assert claims.issuer == "https://token.actions.githubusercontent.com"
    assert claims.source_repository_owner_uri == "https://github.com/acme"
    assert claims.runner_environment == GITHUB_HOSTED
    assert claims.build_signer_digest == "b" * 40


def test_a_claim_that_is_not_utf8string_fails_closed() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(minutes=1))
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.16"),
                                                      b"\x04\x03abc"), critical=False)
            .sign(key, hashes.SHA256()))
    with pytest.raises(VerificationError) as e:
        read_claims(cert)
    assert e.value.reason == "github-claims"


@pytest.mark.parametrize(("kw", "cert_kw", "reason"), [
    ({}, {}, None),
    ({"owner": "Acme"}, {}, None),
    ({"owner": "other"}, {}, "github-signer"),
    ({"owner": "acme"}, {"16": "https://github.com/other"}, "github-owner"),
    ({"repo": "acme/app"}, {}, None),
    ({"repo": "acme/app"}, {"12": "https://github.com/acme/app-fork"}, "github-repo"),
    ({"signer_workflow": "acme/app/.github/workflows/release.yml"}, {}, None),
    ({"signer_workflow": "acme/app/.github/workflows/release"}, {}, "github-signer"),
    ({"signer_workflow": "acme/app/.github/workflows/release.yml@refs/heads/main"}, {}, None),
    ({"signer_workflow": "acme/app/.github/workflows/release.yml@refs/heads/mai"}, {}, "github-signer"),
    # The value is literal: regexp metacharacters match only themselves (cli/cli #9507).
    ({"signer_workflow": "acme/app/.github/workflows/release.ym."}, {}, "github-signer"),
    ({"signer_workflow": "acme/app/.github/workflows/.*"}, {}, "github-signer"),
    ({"deny_self_hosted_runners": True}, {"11": "self-hosted"}, "github-runner"),
    ({"deny_self_hosted_runners": True}, {"11": ""}, "github-runner"),
    ({"oidc_issuer": "https://token.actions.githubusercontent.com/acme"}, {}, "github-issuer"),
    ({"source_ref": "refs/tags/v1"}, {}, "github-source-ref"),
    ({"source_digest": "a" * 40}, {}, None),
    ({"signer_digest": "c" * 40}, {}, "github-signer-digest"),
    ({"certificate_identity": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"}, {},
     None),
    ({"certificate_identity_regexp": "https://github.com/acme/app/.*"}, {}, None),
    ({"certificate_identity_regexp": "https://github.com/acme/app"}, {}, "github-signer"),  # whole SAN only
])
def test_check_claims(kw: dict[str, object], cert_kw: dict[str, str], reason: str | None) -> None:
    policy = _policy(**kw)
    cert = _cert(**cert_kw)
    if reason is None:
        check_claims(cert, policy)
        return
    with pytest.raises(VerificationError) as e:
        check_claims(cert, policy)
    assert e.value.reason == reason, e.value


def test_enterprise_issuer_hint() -> None:
    cert = _cert(**{"8": "https://token.actions.githubusercontent.com/acme"})
    with pytest.raises(VerificationError, match="custom OIDC issuer policy"):
        check_claims(cert, _policy())
    check_claims(cert, _policy(oidc_issuer="https://token.actions.githubusercontent.com/acme"))


def test_ghe_tenant_issuer_moves_every_url_to_the_tenant_host() -> None:
    policy = _policy(oidc_issuer="https://token.actions.acme-corp.ghe.com")
    assert policy.host == "acme-corp.ghe.com"
    cert = _cert(san="https://acme-corp.ghe.com/acme/app/.github/workflows/release.yml@refs/heads/main",
                 **{"8": "https://token.actions.acme-corp.ghe.com", "16": "https://acme-corp.ghe.com/acme",
                    "12": "https://acme-corp.ghe.com/acme/app"})
    check_claims(cert, policy)
    with pytest.raises(VerificationError) as e:
        check_claims(_cert(), policy)  # a github.com certificate is not the tenant's
    assert e.value.reason == "github-signer"


@pytest.mark.parametrize("kw", [
    {"owner": "acme", "repo": "acme/app"}, {}, {"owner": "ac/me"}, {"repo": "acme"}, {"repo": "acme/app/x"},
    {"signer_repo": "acme", "owner": "acme"}, {"signer_workflow": "acme/app", "owner": "acme"},
    {"signer_workflow": "acme/app/x.yml", "signer_repo": "acme/app", "owner": "acme"},
    {"source_digest": "ABC", "owner": "acme"}, {"source_ref": "main", "owner": "acme"},
    {"oidc_issuer": "http://token.actions.githubusercontent.com", "owner": "acme"},
])
def test_bad_options_are_usage_errors(kw: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        GithubPolicy.create(**kw)  # type: ignore[arg-type]


def test_enterprise_managed_user_owner() -> None:
    policy = _policy(owner="octocat_acme")
    cert = _cert(san="https://github.com/octocat_acme/app/.github/workflows/release.yml@refs/heads/main",
                 **{"16": "https://github.com/octocat_acme"})
    check_claims(cert, policy)


def test_repo_sets_owner_and_describe_lists_the_criteria() -> None:
    policy = _policy(repo="acme/app", source_ref="refs/heads/main", deny_self_hosted_runners=True)
    assert policy.owner == "acme"
    text = "\n".join(policy.describe())
    assert "source repository URI must be https://github.com/acme/app" in text
    assert "runner environment must be github-hosted" in text
    assert "predicate type must be https://slsa.dev/provenance/v1" in text


def test_trust_domain_follows_the_issuer_organisation() -> None:
    assert trust_domain(issuer_organisation(_cert())) == "github"
    assert trust_domain(issuer_organisation(_cert(issuer_org="sigstore.dev"))) == "public-good"
    assert trust_domain("Example Corp") == "custom"


def test_trusted_roots_as_one_document_or_json_lines() -> None:
    one = (ROOT / "verifier" / "data" / "trusted_root.production.json").read_bytes()
    assert len(parse_trusted_roots(one, source="t")) == 1
    staging = (ROOT / "verifier" / "data" / "trusted_root.staging.json").read_bytes()
    lines = b"\n".join(json.dumps(json.loads(d)).encode() for d in (one, staging)) + b"\n"
    assert len(parse_trusted_roots(lines, source="t")) == 2
    with pytest.raises(InvalidInputError, match="line 2"):
        parse_trusted_roots(lines.splitlines()[0] + b"\n{\"mediaType\": 1}\n", source="t")
    with pytest.raises(InvalidInputError):
        parse_trusted_roots(b"\n\n", source="t")
