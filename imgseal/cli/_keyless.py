"""The keyless verification options ``verify`` and ``verify-attestation`` share (cosign's flag names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgseal.errors import UsageError

if TYPE_CHECKING:
    from keys import PublicKey
    from verifier.attestation import BundleVerifier, LegacyAttestationVerifier
    from verifier.image import LegacyVerifier
    from verifier.key_witness import KeyBundleCheck
    from verifier.sigstore.bundle import KeylessPolicy
    from verifier.sigstore.trust import TrustMaterial

IdentityOption = Annotated[str | None, typer.Option(
    "--certificate-identity", help="Keyless: the signer identity (certificate SAN) expected.")]
IdentityRegexpOption = Annotated[str | None, typer.Option(
    "--certificate-identity-regexp", help="Keyless: a regexp the signer identity must fully match.")]
IssuerOption = Annotated[str | None, typer.Option(
    "--certificate-oidc-issuer", help="Keyless: the OIDC issuer expected.")]
IssuerRegexpOption = Annotated[str | None, typer.Option(
    "--certificate-oidc-issuer-regexp", help="Keyless: a regexp the OIDC issuer must fully match.")]
GithubRepositoryOption = Annotated[str | None, typer.Option(
    "--certificate-github-workflow-repository", help="Keyless: GitHub repository (owner/repo) claim.")]
GithubRefOption = Annotated[str | None, typer.Option(
    "--certificate-github-workflow-ref", help="Keyless: GitHub ref claim, e.g. refs/heads/main.")]
GithubTriggerOption = Annotated[str | None, typer.Option(
    "--certificate-github-workflow-trigger", help="Keyless: GitHub event claim, e.g. push.")]
GithubShaOption = Annotated[str | None, typer.Option(
    "--certificate-github-workflow-sha", help="Keyless: GitHub commit SHA claim.")]
TrustedRootOption = Annotated[Path | None, typer.Option(
    "--trusted-root", dir_okay=False, help="Sigstore trusted root JSON (default: embedded production): Fulcio, Rekor "
    "and TSA keys for keyless signatures, Rekor and TSA keys for witnessed --key signatures.")]
StagingOption = Annotated[bool, typer.Option("--staging", help="Use the embedded Sigstore staging root.")]
RequireTlogOption = Annotated[bool, typer.Option(
    "--require-tlog", help="With --key: count only signatures whose bundle carries a verified Rekor entry.")]
RequireTimestampOption = Annotated[bool, typer.Option(
    "--require-timestamp", help="With --key: count only signatures whose bundle carries a verified RFC 3161 "
    "timestamp.")]


@dataclass(frozen=True)
class KeylessVerifiers:
    """The hooks one keyless ``verify`` run passes to ``verify_key_signatures``: bundles and legacy ``.sig`` layers."""

    bundle: BundleVerifier
    legacy: LegacyVerifier


@dataclass(frozen=True)
class KeylessAttestationVerifiers:
    """The hooks one keyless ``verify-attestation`` run passes on: bundles and cosign legacy ``.att`` layers."""

    bundle: BundleVerifier
    legacy: LegacyAttestationVerifier


def keyless_attestation_verifiers(
    *,
    keys_given: bool,
    identity: str | None,
    identity_regexp: str | None,
    issuer: str | None,
    issuer_regexp: str | None,
    gh_repository: str | None,
    gh_ref: str | None,
    gh_trigger: str | None,
    gh_sha: str | None,
    trusted_root: Path | None,
    staging: bool,
    predicate_type: str,
) -> KeylessAttestationVerifiers | None:
    """The attestation hooks the keyless options ask for, or None when none was given.

    --key and the keyless options are exclusive, as in cosign: one run checks one kind of trust.
    """
    chosen = _policy_and_trust(keys_given=keys_given, identity=identity, identity_regexp=identity_regexp,
                               issuer=issuer, issuer_regexp=issuer_regexp, gh_repository=gh_repository,
                               gh_ref=gh_ref, gh_trigger=gh_trigger, gh_sha=gh_sha, trusted_root=trusted_root,
                               staging=staging)
    if chosen is None:
        return None
    from verifier.keyless import keyless_bundle_verifier, keyless_legacy_attestation_verifier

    policy, trust = chosen
    return KeylessAttestationVerifiers(keyless_bundle_verifier(policy, trust, predicate_type),
                                       keyless_legacy_attestation_verifier(policy, trust))


def keyless_verifiers(
    *,
    keys_given: bool,
    identity: str | None,
    identity_regexp: str | None,
    issuer: str | None,
    issuer_regexp: str | None,
    gh_repository: str | None,
    gh_ref: str | None,
    gh_trigger: str | None,
    gh_sha: str | None,
    trusted_root: Path | None,
    staging: bool,
) -> KeylessVerifiers | None:
    """Both image-signature hooks (bundles and cosign legacy ``.sig`` layers), or None for a --key run.

    The options are checked as :func:`keyless_attestation_verifiers` checks them, and the trusted root is parsed once.
    """
    chosen = _policy_and_trust(keys_given=keys_given, identity=identity, identity_regexp=identity_regexp,
                               issuer=issuer, issuer_regexp=issuer_regexp, gh_repository=gh_repository,
                               gh_ref=gh_ref, gh_trigger=gh_trigger, gh_sha=gh_sha, trusted_root=trusted_root,
                               staging=staging)
    if chosen is None:
        return None
    from verifier.keyless import keyless_bundle_verifier, keyless_legacy_verifier

    policy, trust = chosen
    return KeylessVerifiers(keyless_bundle_verifier(policy, trust), keyless_legacy_verifier(policy, trust))


def _policy_and_trust(
    *,
    keys_given: bool,
    identity: str | None,
    identity_regexp: str | None,
    issuer: str | None,
    issuer_regexp: str | None,
    gh_repository: str | None,
    gh_ref: str | None,
    gh_trigger: str | None,
    gh_sha: str | None,
    trusted_root: Path | None,
    staging: bool,
) -> tuple[KeylessPolicy, TrustMaterial] | None:

    given: list[tuple[str, Any]] = [
        ("--certificate-identity", identity), ("--certificate-identity-regexp", identity_regexp),
        ("--certificate-oidc-issuer", issuer), ("--certificate-oidc-issuer-regexp", issuer_regexp),
        ("--certificate-github-workflow-repository", gh_repository),
        ("--certificate-github-workflow-ref", gh_ref), ("--certificate-github-workflow-trigger", gh_trigger),
        ("--certificate-github-workflow-sha", gh_sha)]
    if not keys_given:
        given += [("--trusted-root", trusted_root), ("--staging", staging or None)]
    named = [name for name, value in given if value is not None]
    if not named:
        if not keys_given:
            raise UsageError("give at least one --key PUB, or --certificate-identity and --certificate-oidc-issuer",
                             reason="no-verifier")
        return None
    if keys_given:
        raise UsageError(f"--key cannot be combined with {named[0]}: verify keys and identities in separate runs",
                         reason="no-verifier")
    if (identity is None and identity_regexp is None) or (issuer is None and issuer_regexp is None):
        raise UsageError("keyless verification needs --certificate-identity[-regexp] and "
                         "--certificate-oidc-issuer[-regexp]", reason="no-verifier")
    from verifier.keyless import load_trust
    from verifier.sigstore.bundle import KeylessPolicy

    policy = KeylessPolicy(identity=identity, issuer=issuer, identity_regexp=identity_regexp,
                           issuer_regexp=issuer_regexp, github_repository=gh_repository, github_ref=gh_ref,
                           github_trigger=gh_trigger, github_sha=gh_sha)
    return policy, load_trust(trusted_root, staging)


def key_bundle_check(keys: Mapping[str, PublicKey], *, trusted_root: Path | None, staging: bool,
                     require_tlog: bool = False, require_timestamp: bool = False,
                     not_after: datetime | None = None) -> KeyBundleCheck:
    """The ``key_check`` hook of a ``--key`` run: witnessed bundles are verified against the trusted
    root (parsed only if some bundle carries a witness or one is required)."""
    from verifier.key_witness import KeyBundleCheck, KeyWitnessPolicy

    def load() -> TrustMaterial:
        # Imported here, not above: verifier.keyless brings cryptography.x509 and the Sigstore
        # verifier (~40 ms), which a plain `verify --key` of unwitnessed signatures never needs.
        from verifier.keyless import load_trust

        return load_trust(trusted_root, staging)

    policy = KeyWitnessPolicy(require_tlog=require_tlog, require_timestamp=require_timestamp, not_after=not_after)
    return KeyBundleCheck(dict(keys), policy, load)
