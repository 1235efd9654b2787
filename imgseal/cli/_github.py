"""``imgseal verify-attestation --github-owner|--github-repo``: GitHub artifact attestations, offline.

The checks are :mod:`verifier.github` (gh attestation verify's criteria); this module reads
the options, finds the attachments and reports. Like every verify-attestation run, an
attestation counts only when its bundle verifies, its claims meet the policy and its
statement names this exact digest; junk attached beside it is reported, never decisive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgseal.cli._common import OutputFormat, emit_json, err, fail, open_with_attachments, parse_ref, store_factory
from imgseal.errors import Error, UsageError


@dataclass(frozen=True)
class GithubOptions:
    owner: str | None
    repo: str | None
    signer_repo: str | None
    signer_workflow: str | None
    source_ref: str | None
    source_digest: str | None
    signer_digest: str | None
    deny_self_hosted_runners: bool
    oidc_issuer: str | None
    trusted_root: Path | None
    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None


_OPTION_NAMES = {
    "owner": "--github-owner", "repo": "--github-repo", "signer_repo": "--signer-repo",
    "signer_workflow": "--signer-workflow", "source_ref": "--source-ref", "source_digest": "--source-digest",
    "signer_digest": "--signer-digest", "oidc_issuer": "--cert-oidc-issuer",
    "certificate_identity": "--certificate-identity", "certificate_identity_regexp": "--certificate-identity-regexp",
}


def verify_github_attestation(reference: str, type_: str | None, opts: GithubOptions, given: list[str],
                              others: list[str], *, builder_id: str | None, source_uri: str | None,
                              source_branch: str | None, source_tag: str | None, build_type: str | None,
                              where: list[str] | None, ca_file: Path | None, insecure_registry: list[str] | None,
                              attachments_repo: str | None, output: OutputFormat) -> None:
    state: dict[str, Any] = {}
    try:
        _run(reference, type_, opts, given, others, state, builder_id=builder_id, source_uri=source_uri,
             source_branch=source_branch, source_tag=source_tag, build_type=build_type, where=where,
             ca_file=ca_file, insecure_registry=insecure_registry, attachments_repo=attachments_repo,
             output=output)
    except Error as e:
        state.setdefault("verified", [])
        state.setdefault("rejected", [])
        fail(e, output, state)


def _run(reference: str, type_: str | None, opts: GithubOptions, given: list[str], others: list[str],
         state: dict[str, Any], *, builder_id: str | None, source_uri: str | None, source_branch: str | None,
         source_tag: str | None, build_type: str | None, where: list[str] | None, ca_file: Path | None,
         insecure_registry: list[str] | None, attachments_repo: str | None, output: OutputFormat) -> None:
    from imgseal import attach
    from imgseal.content import fetch_manifest
    from imgseal.intoto import resolve_predicate_type
    from verifier.attestation import SlsaExpectations, examine_attestations, judge
    from verifier.attestation_checks import normalize_git_uri, parse_where
    from verifier.github import GithubPolicy, GithubVerified, github_bundle_verifier, load_github_trust

    if others:
        raise UsageError(f"{given[0]} (a GitHub artifact attestation) cannot be combined with {others[0]}: the "
                         "identity comes from --github-owner/--github-repo and the signer options",
                         reason="github-options")
    if opts.owner is None and opts.repo is None:
        raise UsageError(f"{given[0]} needs --github-owner ORG or --github-repo OWNER/REPO", reason="github-options")
    policy = GithubPolicy.create(
        owner=opts.owner, repo=opts.repo, signer_repo=opts.signer_repo, signer_workflow=opts.signer_workflow,
        source_ref=opts.source_ref, source_digest=opts.source_digest, signer_digest=opts.signer_digest,
        deny_self_hosted_runners=opts.deny_self_hosted_runners, oidc_issuer=opts.oidc_issuer,
        predicate_type=resolve_predicate_type(type_) if type_ is not None else None,
        certificate_identity=opts.certificate_identity, certificate_identity_regexp=opts.certificate_identity_regexp,
        names=lambda name: _OPTION_NAMES.get(name, name))
    slsa = SlsaExpectations(builder_id, source_uri, source_branch, source_tag, build_type)
    if source_branch is not None and source_tag is not None:
        raise UsageError("give --source-branch or --source-tag, not both")
    if source_uri is not None:
        normalize_git_uri(source_uri)
    conditions = [parse_where(w) for w in where or []]
    trust = load_github_trust(opts.trusted_root)
    ref = parse_ref(reference)
    store, att_store = open_with_attachments(store_factory(ca_file, insecure_registry), ref, attachments_repo)
    manifest = fetch_manifest(store, ref.tag, ref.digest)
    pinned = ref.with_digest(manifest.digest).pinned()
    state.update(reference=pinned, digest=str(manifest.digest), predicateType=policy.predicate_type)
    if ref.digest is None:
        err(f"resolved {ref} to {pinned}")
    if att_store is not store:
        err(f"reading attachments from {att_store.location}")
    passed: list[GithubVerified] = []
    # actions/attest writes bundle referrers only: cosign's legacy .sig/.att tags are not read.
    found = attach.discover(att_store, manifest.digest, include_legacy=False)
    outcome = examine_attestations(att_store, manifest.digest, found,
                                   predicate_type=policy.predicate_type, keys={}, slsa_checks=slsa,
                                   where=conditions, bundle_verifier=github_bundle_verifier(policy, trust, passed))
    state["verified"] = []
    state["rejected"] = [{"artifact": r.artifact, "reason": r.reason, "message": r.message} for r in outcome.rejected]
    judge(outcome)
    # ``passed`` holds, in examination order, every bundle whose signature and claims passed;
    # the outcome then applied the SLSA and --where checks. Pair each kept attestation with
    # the first unpaired bundle of the same (equal) statement.
    results: list[GithubVerified] = []
    for v in outcome.verified:
        index = next(i for i, g in enumerate(passed) if g.statement == v.statement)
        results.append(passed.pop(index))
    verified = [{"foundVia": v.found_via, "artifact": v.artifact, "trustDomain": g.domain,
                 "certificate": g.claims.to_dict(), "statement": v.statement.to_dict()}
                for v, g in zip(outcome.verified, results, strict=True)]
    if output is OutputFormat.json:
        emit_json({"ok": True, "reason": None, "reference": pinned, "digest": str(manifest.digest),
                   "predicateType": policy.predicate_type, "policy": policy.describe(), "verified": verified,
                   "rejected": state["rejected"]})
    else:
        emit_json([v["statement"] for v in verified])
    err(f"Verified {pinned}: {len(verified)} GitHub artifact attestation(s) of type {policy.predicate_type}")
    for line in policy.describe():
        err(f"  - {line}")
    for g in results:
        err(f"  attested by {g.claims.build_signer_uri or g.bundle.certificate_identity} "
            f"({g.domain} trust domain)")
    if outcome.rejected:
        err(f"  ({len(outcome.rejected)} other attestation(s) of this type rejected; -o json lists them)")
