"""``imgseal verify``: the deploy gate for one image — signatures by keys or by Sigstore identities.

Key-based (``--key``) and keyless (``--certificate-identity``/``--certificate-oidc-issuer``…)
verification are exclusive, as in cosign: one run answers one question ("signed by these keys"
or "signed by this identity"). Keyless verification is offline: the embedded production root,
``--staging``, or ``--trusted-root FILE`` (refresh it with ``imgseal trust update``).
"""

from __future__ import annotations

from typing import Annotated, Any

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
    open_with_attachments,
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
    StagingOption,
    TrustedRootOption,
    keyless_verifiers,
)
from imgseal.errors import Error, UsageError


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    reference: Annotated[str, typer.Argument(help="Image reference (a tag is resolved and the digest printed).")],
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="Trusted public key: path, env://VAR or a pkcs11: URI (repeatable).")]
    = None,
    threshold: Annotated[int, typer.Option("--threshold", min=1, help="Distinct keys that must have signed.")] = 1,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", "-a", help="key=value the signed payload must carry.")
    ] = None,
    identity: IdentityOption = None,
    identity_regexp: IdentityRegexpOption = None,
    issuer: IssuerOption = None,
    issuer_regexp: IssuerRegexpOption = None,
    gh_repository: GithubRepositoryOption = None,
    gh_ref: GithubRefOption = None,
    gh_trigger: GithubTriggerOption = None,
    gh_sha: GithubShaOption = None,
    trusted_root: TrustedRootOption = None,
    staging: StagingOption = False,
    require_tlog: RequireTlogOption = False,
    require_timestamp: RequireTimestampOption = False,
    notation: Annotated[bool, typer.Option("--notation", help="Verify Notary Project signatures under a notation "
                                           "trust policy and trust store.")] = False,
    trust_policy: Annotated[str | None, typer.Option(
        "--trust-policy", help="Notation: trust policy JSON in notation's format.")] = None,
    trust_store: Annotated[str | None, typer.Option(
        "--trust-store", help="Notation: trust store directory laid out as notation's (x509/ca/NAME/*.pem).")] = None,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Verify the signatures attached to REFERENCE's digest.

    With --key: passes when signatures by at least --threshold distinct given keys verify and
    each names this exact digest. Keyless (--certificate-identity[-regexp] and
    --certificate-oidc-issuer[-regexp]): passes when a Sigstore bundle (or a cosign legacy .sig
    signature with certificate and Rekor bundle annotations) verifies offline against the
    trusted root, its certificate matches the identity policy, and its payload names this
    exact digest; --threshold then counts distinct matching identities. --key and the keyless
    options are exclusive. A key bundle's Rekor entry and RFC 3161 timestamp, when it carries
    them, are verified against the trusted root (--trusted-root or the embedded one);
    --require-tlog / --require-timestamp count only key signatures that carry them.
    With --notation: passes when a notation signature satisfies the trust
    policy that applies to the repository (levels strict/permissive/audit/skip).
    Prints a summary on stderr and the verified payloads as JSON on stdout.
    Exit codes: 0 verified; 1 not verified (reason given); 2 bad usage; 3 registry; 4 key.
    """
    state: dict[str, Any] = {}

    def run() -> None:
        from imgseal import attach
        from imgseal.cli._keyload import load_public_keys, parse_annotations
        from imgseal.content import fetch_manifest
        from verifier.image import judge, verify_key_signatures

        if notation:
            _verify_notation(state)
            return
        if trust_policy is not None or trust_store is not None:
            raise UsageError("--trust-policy and --trust-store need --notation", reason="no-verifier")
        keyless = keyless_verifiers(
            keys_given=bool(key), identity=identity, identity_regexp=identity_regexp, issuer=issuer,
            issuer_regexp=issuer_regexp, gh_repository=gh_repository, gh_ref=gh_ref, gh_trigger=gh_trigger,
            gh_sha=gh_sha, trusted_root=trusted_root, staging=staging)
        keys: dict[str, Any] = {}
        key_check = None
        if keyless is not None and (require_tlog or require_timestamp):
            raise UsageError("--require-tlog and --require-timestamp are for --key (keyless signatures always need "
                             "a log entry or timestamp)", reason="no-verifier")
        if keyless is None:
            assert key is not None
            keys = load_public_keys(key)
            if threshold > len(keys):
                raise UsageError(f"--threshold {threshold} is more than the {len(keys)} key(s) given")
            from imgseal.cli._keyless import key_bundle_check

            key_check = key_bundle_check(keys, trusted_root=trusted_root, staging=staging, require_tlog=require_tlog,
                                         require_timestamp=require_timestamp)
        wanted = parse_annotations(annotation)
        ref = parse_ref(reference)
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        pinned = ref.with_digest(manifest.digest).pinned()
        state["reference"] = pinned
        state["digest"] = str(manifest.digest)
        if ref.digest is None:
            err(f"resolved {ref} to {pinned}")
        if att_store is not store:
            err(f"reading attachments from {att_store.location}")
        attachments = attach.discover(att_store, manifest.digest)
        outcome = verify_key_signatures(att_store, manifest.digest, attachments, keys, annotations=wanted,
                                        bundle_verifier=keyless.bundle if keyless else None,
                                        legacy_verifier=keyless.legacy if keyless else None, key_check=key_check)
        state["rejected"] = [{"artifact": a, "reason": r, "message": m} for a, r, m in outcome.rejected]
        judge(outcome, threshold)
        verified = [
            {"signer": v.signer, "format": v.format, "foundVia": v.found_via, "artifact": v.artifact,
             "payload": v.payload}
            for v in outcome.verified
        ]
        if output is OutputFormat.json:
            emit_json({"ok": True, "reason": None, "reference": pinned, "digest": str(manifest.digest),
                       "signers": sorted(outcome.signers), "verified": verified, "rejected": state["rejected"]})
        else:
            emit_json([v["payload"] for v in verified])
        err(f"Verified {pinned}:")
        if keyless is not None:
            count = len(outcome.signers)
            kinds = " and ".join(sorted({"Sigstore bundles" if v.format == "bundle" else "cosign legacy signatures"
                                         for v in outcome.verified}))
            err(f"  - {kinds} by {count} matching identit{'y' if count == 1 else 'ies'} verified"
                f" (threshold {threshold}): {', '.join(sorted(outcome.signers))}")
            err("  - certificate chain, transparency log entry and signing time checked offline")
        else:
            err(f"  - signatures by {len(outcome.signers)} of {len(keys)} key(s) verified (threshold {threshold})")
            if key_check is not None and key_check.policy.requires_anything:
                err(f"  - each with {key_check.policy.describe()}, checked offline against the trusted root")
        err("  - each verified payload names this exact digest")
        if wanted:
            err("  - annotations matched")

    def _verify_notation(state: dict[str, Any]) -> None:
        from imgseal.cli._notation import verify_notation
        from imgseal.content import fetch_manifest
        from imgseal.reference import Reference

        if key or threshold != 1 or annotation:
            raise UsageError("--notation takes --trust-policy and --trust-store, not --key/--threshold/-a",
                             reason="no-verifier")
        # Flags of the other verifiers would be dropped, and one that tightens verification
        # (--require-timestamp) must never pass unchecked: refuse them.
        ignored = [flag for flag, given in (
            ("--require-tlog", require_tlog), ("--require-timestamp", require_timestamp),
            ("--trusted-root", trusted_root is not None), ("--staging", staging),
            ("--certificate-identity", identity is not None),
            ("--certificate-identity-regexp", identity_regexp is not None),
            ("--certificate-oidc-issuer", issuer is not None),
            ("--certificate-oidc-issuer-regexp", issuer_regexp is not None),
            ("--certificate-github-workflow-*", any(v is not None for v in (gh_repository, gh_ref, gh_trigger,
                                                                             gh_sha)))) if given]
        if ignored:
            raise UsageError(f"{', '.join(ignored)}: not for --notation, which verifies under its trust policy "
                             "and trust store only", reason="no-verifier")
        ref = parse_ref(reference)
        if not isinstance(ref, Reference):
            raise UsageError("--notation verifies registry references: trust policies scope by registry/repository")
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        pinned = ref.with_digest(manifest.digest).pinned()
        state.update(reference=pinned, digest=str(manifest.digest))
        if ref.digest is None:
            err(f"resolved {ref} to {pinned}")
        result = verify_notation(att_store, manifest, ref.name, trust_policy=trust_policy, trust_store=trust_store)
        if output is OutputFormat.json:
            emit_json({"ok": True, "reason": None, "reference": pinned, "digest": str(manifest.digest), **result})
        else:
            emit_json(result["verified"])
        err(f"Verified {pinned} (notation, trust policy {result['policy']!r}, level {result['level']}):")
        for item in result["verified"][:1]:
            for check in item["checks"]:
                err(f"  - {check['check']}: {check['status']} ({check['action']})")
        if result["level"] == "skip":
            err("  - the trust policy's level is skip: nothing was verified")

    try:
        run()
    except Error as e:
        fail(e, output, state)
