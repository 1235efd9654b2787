"""``imgseal attest``, ``imgseal provenance`` and ``imgseal verify-attestation``.

Options are parsed here; the work is in :mod:`signer.attest`, :mod:`signer.provenance` and
:mod:`verifier.attestation`, which the policy gate calls too. Keyless attestations use the
same hooks as ``imgseal sign --keyless`` / ``imgseal verify`` (:mod:`signer.keyless`,
:mod:`verifier.keyless`); this module is the composition root that joins them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from imgseal.cli._common import (
    AttachmentsRepoOption,
    CaFileOption,
    InsecureOption,
    OutputFormat,
    OutputOption,
    ReferrersModeOption,
    emit_json,
    err,
    fail,
    guarded,
    open_with_attachments,
    out,
    parse_ref,
    store_factory,
)
from imgseal.cli._keyless import (
    GithubRefOption,
    GithubRepositoryOption,
    GithubShaOption,
    GithubTriggerOption,
    IdentityOption,
    IdentityRegexpOption,
    IssuerOption,
    IssuerRegexpOption,
    RequireTimestampOption,
    RequireTlogOption,
    TrustedRootOption,
    keyless_attestation_verifiers,
)
from imgseal.cli._witness import RekorUrlOption, TimestampServerOption, TlogUploadOption
from imgseal.errors import Error, InvalidInputError, UsageError

if TYPE_CHECKING:
    from imgseal.manifest import Descriptor
    from imgseal.reference import LayoutReference, Reference
    from imgseal.store.base import Store
    from signer.attest import Attestation
    from signer.witness import Witness

TYPE_HELP = ("Predicate type: slsaprovenance1, slsaprovenance02, spdxjson, cyclonedx, vuln, openvex, custom, "
             "or any predicate-type URI.")
KeyOption = Annotated[str | None, typer.Option(
        "--key", help="Private key: a path or env://VAR (cosign format), or a PKCS#11 URI "
        "'pkcs11:token=NAME;object=LABEL?module-path=/path/lib.so' (PIN from IMGSEAL_PKCS11_PIN or a prompt).")]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="bundle (Sigstore bundle attached as an OCI referrer) or legacy "
                             "(cosign .att tag). Default: bundle, and with --key legacy where the registry "
                             "refuses OCI 1.1 artifact manifests (a notice says so).")
]
ReplaceOption = Annotated[
    bool, typer.Option("--replace", help="Remove earlier attestations of this type signed by this key or, with "
                       "--keyless, this certificate identity and issuer (after attaching the new one).")
]
KeylessOption = Annotated[bool, typer.Option("--keyless", help="Sign with a Sigstore identity (Fulcio certificate, "
                                             "Rekor entry) instead of a key.")]
IdentityTokenOption = Annotated[str | None, typer.Option(
    "--identity-token", help="Keyless: OIDC identity token, or @FILE holding it (else SIGSTORE_ID_TOKEN, "
    "ambient CI credentials, or the browser flow in a terminal).")]
StagingOption = Annotated[bool, typer.Option("--staging", help="Keyless: use the Sigstore staging instance.")]
TrustConfigOption = Annotated[Path | None, typer.Option(
    "--trust-config", dir_okay=False, help="Sigstore ClientTrustConfig JSON (trusted root + signing config) of a "
    "private instance; nothing contacts TUF. With --key it supplies the Rekor and TSA URLs.")]


@dataclass(frozen=True)
class SignerChoice:
    """How to sign: ``key`` (a key reference) or keyless (an instance and token source)."""

    key: str | None = None
    keyless: bool = False
    identity_token: str | None = None
    staging: bool = False
    trust_config: Path | None = None
    tlog_upload: bool = False
    rekor_url: str | None = None
    timestamp_server: str | None = None

    def witness(self) -> Witness | None:
        """What to witness a --key bundle with (:func:`imgseal.cli._witness.resolve_witness`)."""
        from imgseal.cli._witness import resolve_witness

        return resolve_witness(tlog_upload=self.tlog_upload, rekor_url=self.rekor_url,
                               timestamp_server=self.timestamp_server, trust_config=self.trust_config)

    def check(self, fmt: str | None, *, needed: bool = True, what: str = "the attestation") -> None:
        if self.key is not None and self.keyless:
            raise UsageError("give either --key or --keyless, not both", reason="no-signer")
        if not self.keyless and (self.identity_token is not None or self.staging):
            raise UsageError("--identity-token and --staging need --keyless", reason="no-signer")
        witnessing = self.tlog_upload or self.rekor_url is not None or self.timestamp_server is not None
        if self.keyless and witnessing:
            raise UsageError("--tlog-upload, --rekor-url and --timestamp-server witness --key signatures (keyless "
                             "signing always logs, and timestamps when the instance has a TSA)", reason="no-signer")
        if self.key is None and not self.keyless and (witnessing or self.trust_config is not None):
            raise UsageError("--trust-config, --tlog-upload and --timestamp-server need --key or --keyless",
                             reason="no-signer")
        if needed and self.key is None and not self.keyless:
            raise UsageError(f"give --key KEY or --keyless to sign {what}", reason="no-signer")
        if self.keyless and fmt == "legacy":
            raise UsageError("keyless attestations are Sigstore bundles only (--format bundle); cosign's legacy "
                             ".att format is supported with --key", reason="format")


def register(app: typer.Typer) -> None:
    app.command("attest")(attest)
    app.command("provenance")(provenance)
    app.command("verify-attestation")(verify_attestation)


def attest(
    reference: Annotated[str, typer.Argument(help="REPO@sha256:… or oci-layout:PATH@sha256:… (a digest is required).")],
    predicate: Annotated[Path, typer.Option("--predicate", help="Predicate JSON file (one object).", dir_okay=False)],
    type_: Annotated[str, typer.Option("--type", help=TYPE_HELP)] = "custom",
    key: KeyOption = None,
    keyless: KeylessOption = False,
    identity_token: IdentityTokenOption = None,
    staging: StagingOption = False,
    trust_config: TrustConfigOption = None,
    tlog_upload: TlogUploadOption = False,
    rekor_url: RekorUrlOption = None,
    timestamp_server: TimestampServerOption = None,
    fmt: FormatOption = None,
    replace: ReplaceOption = False,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Sign an in-toto statement about REFERENCE's digest and attach it beside the image.

    With --key the password comes from IMGSEAL_PASSWORD or COSIGN_PASSWORD, else a prompt; a
    pkcs11: URI signs on the token (PIN from IMGSEAL_PKCS11_PIN or a prompt). --tlog-upload and
    --timestamp-server witness a --key bundle with a Rekor entry and an RFC 3161 timestamp.
    With --keyless the statement is signed for an OIDC identity (Fulcio certificate, Rekor
    entry) as `imgseal sign --keyless` does; its bundle must stay under 16 MiB (checked before
    signing). Exit codes: 0 attached; 2 bad usage or predicate file; 3 registry or Sigstore
    service; 4 key.
    """

    def run() -> None:
        from imgseal.intoto import resolve_predicate_type
        from signer.attest import read_predicate

        predicate_type = resolve_predicate_type(type_)
        _check_format(fmt)
        choice = SignerChoice(key, keyless, identity_token, staging, trust_config, tlog_upload, rekor_url,
                              timestamp_server)
        choice.check(fmt)
        ref = _digest_ref(reference, "attest")
        data = read_predicate(predicate)
        result = _attest(ref, data, predicate_type, choice, fmt or "auto", replace, ca_file, insecure_registry,
                         attachments_repo, referrers_mode)
        _report_attestation(ref, result, output)

    guarded(run, output)


def provenance(
    reference: Annotated[str, typer.Argument(help="REPO@sha256:… the provenance is about (a digest is required).")],
    attest_: Annotated[bool, typer.Option("--attest", help="Sign the provenance (--key or --keyless) and attach "
                                          "it.")] = False,
    key: KeyOption = None,
    keyless: KeylessOption = False,
    identity_token: IdentityTokenOption = None,
    staging: StagingOption = False,
    trust_config: TrustConfigOption = None,
    tlog_upload: TlogUploadOption = False,
    rekor_url: RekorUrlOption = None,
    timestamp_server: TimestampServerOption = None,
    output_file: Annotated[
        Path | None, typer.Option("--output-file", "--output", help="Write the predicate here (atomically) "
                                  "instead of stdout.", dir_okay=False)
    ] = None,
    ci: Annotated[str, typer.Option("--ci", help="auto (detect from the environment), github, gitlab, generic.")]
    = "auto",
    builder_id: Annotated[str | None, typer.Option("--builder-id", help="Builder id (overrides the CI's).")] = None,
    source_uri: Annotated[str | None, typer.Option("--source-uri", help="Source URI (generic builds).")] = None,
    source_digest: Annotated[
        str | None, typer.Option("--source-digest", help="Source digest, e.g. gitCommit:<hex> (generic builds).")
    ] = None,
    build_type: Annotated[str | None, typer.Option("--build-type", help="buildType URI (generic builds).")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="k=v external parameter (generic builds; repeatable).")
    ] = None,
    started_on: Annotated[str | None, typer.Option("--started-on", help="RFC 3339 build start time (UTC).")] = None,
    fmt: FormatOption = None,
    replace: ReplaceOption = False,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
) -> None:
    """Generate SLSA v1 provenance for REFERENCE from the CI environment (GitHub Actions, GitLab CI) or options.

    Prints the predicate (or writes --output); with --attest also signs and attaches it.
    Exit codes: 0 done; 2 bad usage or a missing CI variable; 3 registry; 4 key.
    """

    def run() -> None:
        from signer.attest import MAX_PREDICATE_BYTES
        from signer.provenance import PREDICATE_TYPE, CiKind, GenericBuild, generate_provenance, load_github_event

        if ci not in ("auto", "github", "gitlab", "generic"):
            raise UsageError(f"--ci must be auto, github, gitlab or generic, not {ci!r}")
        _check_format(fmt)
        choice = SignerChoice(key, keyless, identity_token, staging, trust_config)
        if not attest_ and (key is not None or keyless or replace):
            raise UsageError("--key, --keyless and --replace only apply with --attest")
        choice.check(fmt, needed=attest_, what="the provenance (--attest)")
        ref = _digest_ref(reference, "provenance")
        env = dict(os.environ)
        kind: CiKind | None = None if ci == "auto" else cast("CiKind", ci)
        generic = None
        if any(v is not None for v in (source_uri, source_digest, build_type, param)):
            missing = [n for n, v in (("--builder-id", builder_id), ("--source-uri", source_uri),
                                      ("--source-digest", source_digest)) if not v]
            if missing:
                raise UsageError(f"generic provenance needs {', '.join(missing)}", reason="provenance-options")
            assert builder_id is not None and source_uri is not None and source_digest is not None
            params = _parse_params(param)
            generic = GenericBuild(builder_id, source_uri, source_digest, params=params, started_on=started_on,
                                   **({"build_type": build_type} if build_type else {}))
            kind = kind or "generic"
        event = None
        if env.get("GITHUB_EVENT_NAME") in ("workflow_dispatch", "release") and kind in (None, "github"):
            event = load_github_event(env)
        predicate = generate_provenance(env, ci=kind, generic=generic, event=event, builder_id=builder_id,
                                        started_on=started_on)
        import json

        text = json.dumps(predicate, indent=2) + "\n"
        if len(text) > MAX_PREDICATE_BYTES:
            raise InvalidInputError("generated provenance is too large to sign", reason="predicate-too-large")
        if output_file is not None:
            _write_atomically(output_file, text.encode())
            err(f"wrote SLSA v1 provenance to {output_file}")
        else:
            out(text.rstrip("\n"))
        if attest_:
            result = _attest(ref, predicate, PREDICATE_TYPE, choice, fmt or "auto", replace, ca_file,
                             insecure_registry, attachments_repo, referrers_mode)
            _report_attestation(ref, result, OutputFormat.text)

    guarded(run)


GithubOwnerOption = Annotated[str | None, typer.Option(
    "--github-owner", help="GitHub artifact attestation: the organisation or user that owns the source repository "
    "(gh attestation verify --owner); the signer workflow must be one of its repositories'.")]
GithubRepoOption = Annotated[str | None, typer.Option(
    "--github-repo", help="GitHub artifact attestation: the source repository OWNER/REPO (gh --repo).")]
SignerRepoOption = Annotated[str | None, typer.Option(
    "--signer-repo", help="GitHub: the repository OWNER/REPO of the reusable workflow that signed.")]
SignerWorkflowOption = Annotated[str | None, typer.Option(
    "--signer-workflow", help="GitHub: the workflow that signed, [HOST/]OWNER/REPO/.github/workflows/F.yml[@REF]; "
    "a literal path matched whole (any ref unless @REF is given), never a regexp.")]
SourceRefOption = Annotated[str | None, typer.Option(
    "--source-ref", help="GitHub: the source ref built, e.g. refs/heads/main or refs/tags/v1.2.0.")]
SourceDigestOption = Annotated[str | None, typer.Option(
    "--source-digest", help="GitHub: the source commit built (hex).")]
SignerDigestOption = Annotated[str | None, typer.Option(
    "--signer-digest", help="GitHub: the commit of the signer workflow (hex).")]
DenySelfHostedOption = Annotated[bool, typer.Option(
    "--deny-self-hosted-runners", help="GitHub: refuse attestations made on self-hosted runners.")]
CertOidcIssuerOption = Annotated[str | None, typer.Option(
    "--cert-oidc-issuer", help="GitHub: the OIDC issuer (default https://token.actions.githubusercontent.com; "
    "GHE.com tenants https://token.actions.TENANT.ghe.com).")]


def verify_attestation(
    reference: Annotated[str, typer.Argument(help="Image reference (a tag is resolved and the digest printed).")],
    type_: Annotated[str | None, typer.Option("--type", help=TYPE_HELP + " Default: custom, or slsaprovenance1 "
                                              "with --github-owner/--github-repo.")] = None,
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="Trusted public key: path, env://VAR or a pkcs11: URI (repeatable).")]
    = None,
    builder_id: Annotated[str | None, typer.Option("--builder-id", help="SLSA: expected builder id "
                                                   "(unversioned matches any version).")] = None,
    source_uri: Annotated[str | None, typer.Option("--source-uri", help="SLSA: expected source repository, "
                                                   "e.g. github.com/org/repo.")] = None,
    source_branch: Annotated[str | None, typer.Option("--source-branch", help="SLSA: expected source branch.")]
    = None,
    source_tag: Annotated[str | None, typer.Option("--source-tag", help="SLSA: expected source tag.")] = None,
    build_type: Annotated[str | None, typer.Option("--build-type", help="SLSA: expected buildType URI.")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="PATH==VALUE or PATH!=VALUE over the statement (repeatable).")
    ] = None,
    identity: IdentityOption = None,
    identity_regexp: IdentityRegexpOption = None,
    issuer: IssuerOption = None,
    issuer_regexp: IssuerRegexpOption = None,
    gh_repository: GithubRepositoryOption = None,
    gh_ref: GithubRefOption = None,
    gh_trigger: GithubTriggerOption = None,
    gh_sha: GithubShaOption = None,
    github_owner: GithubOwnerOption = None,
    github_repo: GithubRepoOption = None,
    signer_repo: SignerRepoOption = None,
    signer_workflow: SignerWorkflowOption = None,
    source_ref: SourceRefOption = None,
    source_digest: SourceDigestOption = None,
    signer_digest: SignerDigestOption = None,
    deny_self_hosted_runners: DenySelfHostedOption = False,
    cert_oidc_issuer: CertOidcIssuerOption = None,
    trusted_root: TrustedRootOption = None,
    staging: StagingOption = False,
    require_tlog: RequireTlogOption = False,
    require_timestamp: RequireTimestampOption = False,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Verify the attestations of --type attached to REFERENCE's digest.

    Passes when at least one attestation of that type is signed by a given key (or, keyless,
    by a Sigstore certificate matching --certificate-identity[-regexp] and
    --certificate-oidc-issuer[-regexp], verified offline against the trusted root), is a
    signed in-toto statement about this exact digest and of this exact type, and meets every
    SLSA expectation and --where condition. --key and the keyless options are exclusive.
    Witnessed key bundles are verified against the trusted root; --require-tlog /
    --require-timestamp count only key attestations that carry a log entry / timestamp.
    Both Sigstore bundle referrers and cosign's legacy .att layers (key or keyless) are read.
    GitHub artifact attestations (actions/attest, gh attestation verify): give --github-owner
    ORG or --github-repo OWNER/REPO, optionally --signer-repo/--signer-workflow, --source-ref,
    --source-digest, --signer-digest, --deny-self-hosted-runners, --cert-oidc-issuer. The
    predicate type defaults to https://slsa.dev/provenance/v1; the trust domain follows the
    certificate's issuer (Sigstore public good: SCT, log entry and a verified time; GitHub's
    instance: a signed timestamp, no log). There --certificate-identity[-regexp] act as gh's
    --cert-identity[-regex] (the regexp matches the whole SAN). --trusted-root takes one root or JSON lines of
    roots (`gh attestation trusted-root`; GitHub's root via `imgseal trust update --github`).
    Prints the verified statements as JSON on stdout and a summary on stderr. Exit codes:
    0 verified; 1 not verified (reason given); 2 bad usage; 3 registry; 4 key.
    """
    state: dict[str, Any] = {}
    github_given = [name for name, value in (
        ("--github-owner", github_owner), ("--github-repo", github_repo), ("--signer-repo", signer_repo),
        ("--signer-workflow", signer_workflow), ("--source-ref", source_ref), ("--source-digest", source_digest),
        ("--signer-digest", signer_digest), ("--deny-self-hosted-runners", deny_self_hosted_runners or None),
        ("--cert-oidc-issuer", cert_oidc_issuer)) if value is not None]
    if github_given:
        from imgseal.cli._github import GithubOptions, verify_github_attestation

        # --certificate-identity[-regexp] act as gh's --cert-identity[-regex] here.
        opts = GithubOptions(github_owner, github_repo, signer_repo, signer_workflow, source_ref, source_digest,
                             signer_digest, deny_self_hosted_runners, cert_oidc_issuer, trusted_root,
                             identity, identity_regexp)
        others = [name for name, value in (
            ("--key", key), ("--certificate-oidc-issuer", issuer), ("--certificate-oidc-issuer-regexp", issuer_regexp),
            ("--certificate-github-workflow-repository", gh_repository), ("--certificate-github-workflow-ref", gh_ref),
            ("--certificate-github-workflow-trigger", gh_trigger), ("--certificate-github-workflow-sha", gh_sha),
            ("--staging", staging or None)) if value]
        verify_github_attestation(reference, type_, opts, github_given, others, builder_id=builder_id,
                                  source_uri=source_uri, source_branch=source_branch, source_tag=source_tag,
                                  build_type=build_type, where=where, ca_file=ca_file,
                                  insecure_registry=insecure_registry, attachments_repo=attachments_repo,
                                  output=output)
        return

    def run() -> None:
        from imgseal import attach
        from imgseal.cli._keyload import load_public_keys
        from imgseal.content import fetch_manifest
        from imgseal.intoto import SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1, resolve_predicate_type
        from verifier.attestation import SlsaExpectations, examine_attestations, judge
        from verifier.attestation_checks import normalize_git_uri, parse_where

        predicate_type = resolve_predicate_type(type_ or "custom")
        keyless = keyless_attestation_verifiers(
            keys_given=bool(key), identity=identity, identity_regexp=identity_regexp, issuer=issuer,
            issuer_regexp=issuer_regexp, gh_repository=gh_repository, gh_ref=gh_ref, gh_trigger=gh_trigger,
            gh_sha=gh_sha, trusted_root=trusted_root, staging=staging, predicate_type=predicate_type)
        slsa = SlsaExpectations(builder_id, source_uri, source_branch, source_tag, build_type)
        if slsa.any() and predicate_type not in (SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02):
            raise UsageError("--builder-id/--source-*/--build-type check SLSA provenance: use --type "
                             "slsaprovenance1 or slsaprovenance02", reason="slsa-options")
        if source_branch is not None and source_tag is not None:
            raise UsageError("give --source-branch or --source-tag, not both")
        if source_uri is not None:
            normalize_git_uri(source_uri)  # a malformed expectation is a usage error before any network
        conditions = [parse_where(w) for w in where or []]
        if keyless is not None and (require_tlog or require_timestamp):
            raise UsageError("--require-tlog and --require-timestamp are for --key (keyless signatures always need "
                             "a log entry or timestamp)", reason="no-verifier")
        keys = load_public_keys(key) if key else {}
        key_check = None
        if keys:
            from imgseal.cli._keyless import key_bundle_check

            key_check = key_bundle_check(keys, trusted_root=trusted_root, staging=staging, require_tlog=require_tlog,
                                         require_timestamp=require_timestamp)
        ref = parse_ref(reference)
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        pinned = ref.with_digest(manifest.digest).pinned()
        state.update(reference=pinned, digest=str(manifest.digest), predicateType=predicate_type)
        if ref.digest is None:
            err(f"resolved {ref} to {pinned}")
        if att_store is not store:
            err(f"reading attachments from {att_store.location}")
        attachments = attach.discover(att_store, manifest.digest)
        outcome = examine_attestations(att_store, manifest.digest, attachments, predicate_type=predicate_type,
                                       keys=keys, slsa_checks=slsa, where=conditions,
                                       bundle_verifier=keyless.bundle if keyless else None,
                                       legacy_verifier=keyless.legacy if keyless else None, key_check=key_check)
        state["verified"] = []
        state["rejected"] = [{"artifact": r.artifact, "reason": r.reason, "message": r.message}
                             for r in outcome.rejected]
        judge(outcome)
        verified = [{"signer": v.signer, "format": v.format, "foundVia": v.found_via, "artifact": v.artifact,
                     "statement": v.statement.to_dict()} for v in outcome.verified]
        if output is OutputFormat.json:
            emit_json({"ok": True, "reason": None, "reference": pinned, "digest": str(manifest.digest),
                       "predicateType": predicate_type, "verified": verified, "rejected": state["rejected"]})
        else:
            emit_json([v["statement"] for v in verified])
        err(f"Verified {pinned}:")
        err(f"  - {len(verified)} attestation(s) of type {predicate_type} signed by "
            f"{', '.join(sorted({v.signer for v in outcome.verified}))}")
        err("  - each is a signed in-toto statement about this exact digest")
        if slsa.any():
            err("  - SLSA provenance expectations met")
        if conditions:
            err(f"  - {len(conditions)} --where condition(s) met")
        if outcome.rejected:
            err(f"  ({len(outcome.rejected)} other attestation(s) of this type rejected; -o json lists them)")

    try:
        run()
    except Error as e:
        state.setdefault("verified", [])
        state.setdefault("rejected", [])
        fail(e, output, state)


# -- shared ------------------------------------------------------------------------------


def _check_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in ("bundle", "legacy"):
        raise UsageError(f"--format must be bundle or legacy, not {fmt!r}")


def _digest_ref(reference: str, command: str) -> Reference | LayoutReference:
    ref = parse_ref(reference, default_tag=None)
    if ref.digest is None:
        raise UsageError(
            f"{reference} names no digest: a tag can move, so imgseal {command} needs REPO@sha256:…",
            hint=f"run `imgseal digest {reference}` first",
            reason="tag-not-allowed",
        )
    return ref


def _attest(ref: Reference | LayoutReference, predicate: dict[str, Any], predicate_type: str, choice: SignerChoice,
            fmt: str, replace: bool, ca_file: Path | None, insecure: list[str] | None,
            attachments_repo: str | None, referrers_mode: str | None) -> Attestation:
    from imgseal.content import fetch_manifest

    factory = store_factory(ca_file, insecure, referrers_mode=referrers_mode)
    store, att_store = open_with_attachments(factory, ref, attachments_repo)
    if choice.keyless:
        return _attest_keyless(store, att_store, ref, predicate, predicate_type, choice, replace)
    from imgseal.cli._keyload import load_private_key
    from keys import public_key_of
    from signer.attest import attest, key_bundle_signer, signed_by_key

    assert choice.key is not None
    witness = choice.witness()
    private_key = load_private_key(choice.key)
    subject: Descriptor = fetch_manifest(store, ref.tag, ref.digest).descriptor()
    return attest(att_store, ref.name, subject, predicate_type, predicate,
                  signer=key_bundle_signer(private_key, witness), key=private_key, witness=witness,
                  fmt=fmt,
                  replace=signed_by_key(public_key_of(private_key)) if replace else None)


def _attest_keyless(store: Store, att_store: Store, ref: Reference | LayoutReference, predicate: dict[str, Any],
                    predicate_type: str, choice: SignerChoice, replace: bool) -> Attestation:
    """Keyless: the same flow as ``imgseal sign --keyless``, with :func:`signer.attest.attest` doing the rest.

    ``--replace`` removes only earlier bundles that verify completely (offline, against the
    signing instance's trusted root) for the **same certificate SAN and issuer** as the new
    attestation. That identity is read from the new bundle itself, verified before it is
    attached: if it cannot be verified (e.g. the embedded production root is older than the
    instance's), the command fails before attaching anything rather than replace nothing.
    """
    from imgseal.content import fetch_manifest
    from imgseal.intoto import image_statement
    from imgseal.payloads import MAX_BUNDLE_BYTES
    from signer.attest import BundleOwnership, attest, check_bundle_fits
    from signer.keyless import Instance, find_identity_token, keyless_dsse_bundle, keyless_signer, load_trust_config

    instance = Instance(trust_config=choice.trust_config, staging=choice.staging)
    # Resolve the image and size the statement first: neither a bad reference nor an
    # oversize predicate should cost a certificate or a transparency-log entry.
    subject: Descriptor = fetch_manifest(store, ref.tag, ref.digest).descriptor()
    check_bundle_fits(len(image_statement(ref.name, subject.digest, predicate_type, predicate).to_bytes()),
                      MAX_BUNDLE_BYTES)
    owner = _KeylessOwner(choice.trust_config, choice.staging) if replace else None
    tc = load_trust_config(instance)
    token = find_identity_token(choice.identity_token, tc, interactive=sys.stdin.isatty())
    with keyless_signer(tc, token) as signer:

        def sign(payload: bytes) -> bytes:
            bundle = keyless_dsse_bundle(signer, payload)
            if owner is not None:
                owner.learn(bundle)
            return bundle

        return attest(att_store, ref.name, subject, predicate_type, predicate, signer=sign, fmt="bundle",
                      replace=BundleOwnership(owner.check) if owner is not None else None,
                      bundle_limit=MAX_BUNDLE_BYTES)


class _KeylessOwner:
    """Learns the identity of the new keyless bundle, then recognises earlier bundles of that identity."""

    def __init__(self, trust_config: Path | None, staging: bool) -> None:
        from verifier.attestation import signing_instance_trust

        self.trust = signing_instance_trust(trust_config, staging)
        self._check: Any = None

    def learn(self, bundle: bytes) -> None:
        from verifier.attestation import bundle_identity, signed_by_identity

        try:
            identity = bundle_identity(bundle, self.trust)
        except Error as e:
            raise UsageError(f"--replace: the new attestation does not verify offline against the trusted root, so "
                             f"its identity cannot be matched ({e.one_line()}); nothing was attached",
                             hint="attest without --replace, or sign with --trust-config FILE of the instance",
                             reason="replace-identity") from e
        err(f"replacing earlier attestations by {identity.identity} (issuer {identity.issuer})")
        self._check = signed_by_identity(identity, self.trust)

    def check(self, bundle: bytes) -> bool:
        # Called only after learn() (attest removes after attaching the new bundle); before
        # that nothing is ours.
        return bool(self._check(bundle)) if self._check is not None else False


def _report_attestation(ref: Reference | LayoutReference, result: Attestation, output: OutputFormat) -> None:
    pinned = ref.with_digest(result.subject.digest).pinned()
    if output is OutputFormat.json:
        emit_json({"ok": True, "reference": pinned, "predicateType": result.predicate_type, "format": result.format,
                   "artifact": result.artifact, "replaced": list(result.replaced)})
        return
    err(f"attested {pinned} ({result.predicate_type}, {result.format}, {result.artifact})")
    for item in result.replaced:
        err(f"  replaced {item}")


def _parse_params(items: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"invalid --param {item[:80]!r}: expected k=v", reason="provenance-options")
        if k in params:
            raise UsageError(f"--param {k!r} given twice", reason="provenance-options")
        params[k] = v
    return params


def _write_atomically(path: Path, data: bytes) -> None:
    # Write beside the target and rename: a reader (or a crash) never sees half a predicate.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {path}: {e.strerror or e}", reason="bad-output") from e
