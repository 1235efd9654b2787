"""Verifying the attestations attached to an image digest (``imgseal verify-attestation``, policy gates).

For each candidate of the wanted predicate type, in this order (REFERENCE.md §6):

1. select by the unsigned hint — the bundle manifest annotation
   ``dev.sigstore.bundle.predicateType``, or a legacy ``.att`` layer's ``predicateType``
   annotation — so attestations of other types are never downloaded;
2. fetch the blob by digest (bytes checked) under a size bound;
3. verify the DSSE signature: a key bundle (public-key hint, no tlog entries) or a bare
   legacy envelope with the trusted keys (:func:`imgseal.dsse.verify_envelope`, every key on
   every signature, keyid ignored); any other bundle through ``bundle_verifier`` (keyless);
4. check the signed statement: payloadType in-toto, ``predicateType`` equal to the wanted
   type (the annotation was only a hint), a subject naming this exact digest;
5. the SLSA expectations (:func:`verifier.attestation_checks.check_slsa`) and the
   ``--where`` conditions.

An image passes when at least one attestation passes every step: anyone who can push can
attach junk, so a failing candidate is reported, never allowed to veto a good one (cosign
and slsa-verifier behave the same). When none passes, the error names the most telling
reason: a policy failure of a trusted statement before a digest mismatch before a bad
signature.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgseal import attach
from imgseal.digest import Digest
from imgseal.dsse import ENVELOPE_MEDIA_TYPE, MAX_ENVELOPE_BYTES, Envelope, verify_envelope
from imgseal.errors import Error, InvalidInputError, VerificationError
from imgseal.intoto import Statement
from imgseal.manifest import Descriptor
from imgseal.payloads import (
    BUNDLE_MEDIA_TYPES,
    BUNDLE_PREDICATE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    BundleSummary,
    summarise_bundle,
)
from imgseal.store.base import Store
from keys import PublicKey
from verifier.attestation_checks import ProvenanceFacts, WhereCondition, check_slsa, check_where
from verifier.image import check_bundle_statement, key_verifiers
from verifier.key_witness import KeyBundleCheck
from verifier.sigstore.bundle import KeylessPolicy, verify_bundle
from verifier.sigstore.trust import TrustMaterial, load_trusted_root, parse_trusted_root

#: Layer annotation of cosign's legacy ``.att`` layers.
LEGACY_PREDICATE_ANNOTATION = "predicateType"

#: Size bounds. A DSSE payload is at most :data:`MAX_ENVELOPE_BYTES`; its JSON envelope is
#: base64 (4/3) plus signatures, and a bundle wraps that with a little more.
MAX_LEGACY_BLOB_BYTES = MAX_ENVELOPE_BYTES
MAX_BUNDLE_BLOB_BYTES = MAX_ENVELOPE_BYTES * 4 // 3 + (1 << 20)

BundleVerifier = Callable[[BundleSummary, Digest], tuple[str, Statement]]
"""Verifies a bundle that is not a plain key bundle (certificate, tlog entries) and returns
``(signer identity, signed statement)``. The keyless hook; the same shape as
:func:`verifier.image.verify_key_signatures` takes. This module re-checks the statement's
payload type, predicate type and subject itself, so the hook need only prove the signature."""

LegacyAttestationVerifier = Callable[[Envelope, Mapping[str, str]], str]
"""Verifies a keyless cosign ``.att`` layer (its envelope and layer annotations: certificate,
Rekor bundle, timestamp) and returns the signer identity. The statement is checked here."""

#: When nothing verified, the reason reported first: what the trusted signer said is wrong
#: beats an artifact for another image beats a bad or foreign signature.
REASON_PRIORITY = (
    "slsa-builder-id", "slsa-source-uri", "slsa-source-branch", "slsa-source-tag", "slsa-build-type",
    "slsa-subject", "slsa-malformed", "slsa-predicate-type", "where-condition",
    # GitHub artifact attestations (verifier.github): a verified certificate's claims failed.
    "github-owner", "github-repo", "github-signer", "github-issuer", "github-runner", "github-source-ref",
    "github-source-digest", "github-signer-digest",
    "payload-digest-mismatch", "predicate-type", "payload-type", "invalid-statement",
    "invalid-dsse-envelope", "key-retired", "tlog-missing", "timestamp", "no-matching-signature",
    "github-trust-domain", "github-bundle-version", "keyless",
)


@dataclass(frozen=True)
class SlsaExpectations:
    """slsa-verifier-like expectations; ``None`` fields are not checked."""

    builder_id: str | None = None
    source_uri: str | None = None
    source_branch: str | None = None
    source_tag: str | None = None
    build_type: str | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.builder_id, self.source_uri, self.source_branch,
                                           self.source_tag, self.build_type))


@dataclass(frozen=True)
class VerifiedAttestation:
    """One attestation that passed every check."""

    signer: str
    found_via: str
    format: str  # "bundle" | "legacy"
    artifact: str
    statement: Statement
    provenance: ProvenanceFacts | None = None


@dataclass(frozen=True)
class RejectedAttestation:
    artifact: str
    reason: str
    message: str


@dataclass
class AttestationOutcome:
    """Every candidate examined for one digest and what each came to."""

    digest: Digest
    predicate_type: str
    verified: list[VerifiedAttestation] = field(default_factory=list)
    rejected: list[RejectedAttestation] = field(default_factory=list)

    @property
    def examined(self) -> int:
        return len(self.verified) + len(self.rejected)


def verify_attestations(
    store: Store,
    digest: Digest,
    attachments: Sequence[attach.Attachment],
    *,
    predicate_type: str,
    keys: Mapping[str, PublicKey],
    slsa_checks: SlsaExpectations | None = None,
    where: Sequence[WhereCondition] = (),
    bundle_verifier: BundleVerifier | None = None,
    legacy_verifier: LegacyAttestationVerifier | None = None,
    key_check: KeyBundleCheck | None = None,
) -> list[VerifiedAttestation]:
    """The attestations of ``predicate_type`` (a URI) that verify for ``digest``; raises when none does.

    Raises :class:`VerificationError` with reason ``no-attestations`` when nothing of that
    type is attached, else the most telling rejection reason (see :data:`REASON_PRIORITY`).
    """
    outcome = examine_attestations(store, digest, attachments, predicate_type=predicate_type, keys=keys,
                                   slsa_checks=slsa_checks, where=where, bundle_verifier=bundle_verifier,
                                   legacy_verifier=legacy_verifier, key_check=key_check)
    judge(outcome)
    return outcome.verified


def examine_attestations(
    store: Store,
    digest: Digest,
    attachments: Sequence[attach.Attachment],
    *,
    predicate_type: str,
    keys: Mapping[str, PublicKey],
    slsa_checks: SlsaExpectations | None = None,
    where: Sequence[WhereCondition] = (),
    bundle_verifier: BundleVerifier | None = None,
    legacy_verifier: LegacyAttestationVerifier | None = None,
    key_check: KeyBundleCheck | None = None,
) -> AttestationOutcome:
    """Like :func:`verify_attestations` but returns every verdict instead of raising.

    ``key_check`` (:mod:`verifier.key_witness`) judges witnessed key bundles and, when it
    requires a proven time, every key attestation (legacy key layers then never count)."""
    verifiers = key_verifiers(keys)
    outcome = AttestationOutcome(digest, predicate_type)
    expectations = slsa_checks if slsa_checks is not None and slsa_checks.any() else None

    def check(artifact: str, found_via: str, fmt: str, signer: str, statement: Statement) -> None:
        facts = None
        if expectations is not None:
            facts = check_slsa(statement, builder_id=expectations.builder_id, source_uri=expectations.source_uri,
                               source_branch=expectations.source_branch, source_tag=expectations.source_tag,
                               build_type=expectations.build_type, image_digest=digest)
        check_where(statement, where)
        outcome.verified.append(VerifiedAttestation(signer, found_via, fmt, artifact, statement, facts))

    for att in attachments:
        if att.found_via == attach.VIA_LEGACY_ATT:
            for layer in att.manifest.layers:
                if (layer.media_type != ENVELOPE_MEDIA_TYPE
                        or layer.annotations.get(LEGACY_PREDICATE_ANNOTATION) != predicate_type):
                    continue
                artifact = f"{att.tag or att.digest}#{layer.digest}"
                try:
                    envelope = Envelope.from_json(store.get_blob(layer, max_bytes=MAX_LEGACY_BLOB_BYTES))
                    if CERTIFICATE_ANNOTATION in layer.annotations:
                        # cosign 2.x `attest --keyless`: certificate and Rekor entry in the annotations.
                        if legacy_verifier is None:
                            raise VerificationError("keyless attestation needs certificate/transparency-log "
                                                    "verification, not a key", reason="keyless")
                        signer = legacy_verifier(envelope, layer.annotations)
                    else:
                        signer = _verify_with_keys(envelope, verifiers)
                        if key_check is not None and key_check.legacy_needed(layer.annotations):
                            from verifier.sigstore.tlog import DsseContent

                            if len(envelope.signatures) != 1:
                                raise VerificationError("a witnessed attestation envelope must have one signature",
                                                        reason="signature-malformed")
                            key_check.check_legacy(signer, DsseContent(envelope.payload_type, envelope.payload,
                                                                       envelope.signatures[0].sig), layer.annotations)
                    statement = check_bundle_statement(envelope, digest, predicate_type)
                    check(artifact, att.found_via, "legacy", signer, statement)
                except Error as e:
                    outcome.rejected.append(RejectedAttestation(artifact, e.reason, e.one_line()))
            continue
        if att.artifact_type not in BUNDLE_MEDIA_TYPES:
            continue
        if att.manifest.annotations.get(BUNDLE_PREDICATE_ANNOTATION) != predicate_type:
            continue
        for layer in att.manifest.layers:
            if layer.media_type not in BUNDLE_MEDIA_TYPES:
                continue
            artifact = str(att.digest)
            try:
                signer, statement = _verify_bundle(store, layer, digest, predicate_type, verifiers, bundle_verifier,
                                                   key_check)
                check(artifact, att.found_via, "bundle", signer, statement)
            except Error as e:
                outcome.rejected.append(RejectedAttestation(artifact, e.reason, e.one_line()))
    return outcome


def judge(outcome: AttestationOutcome) -> None:
    """Raise :class:`VerificationError` unless some attestation verified."""
    if outcome.verified:
        return
    if not outcome.rejected:
        raise VerificationError(f"no attestations of type {outcome.predicate_type} are attached to "
                                f"{outcome.digest}", reason="no-attestations")
    for reason in REASON_PRIORITY:
        for r in outcome.rejected:
            if r.reason == reason:
                raise VerificationError(r.message, reason=reason)
    first = outcome.rejected[0]
    raise VerificationError(first.message, reason=first.reason)


def _verify_bundle(store: Store, layer: Descriptor, digest: Digest, predicate_type: str,
                   verifiers: Mapping[str, Callable[[bytes, bytes], bool]],
                   bundle_verifier: BundleVerifier | None,
                   key_check: KeyBundleCheck | None = None) -> tuple[str, Statement]:
    summary = summarise_bundle(store.get_blob(layer, max_bytes=MAX_BUNDLE_BLOB_BYTES),
                               max_bytes=MAX_BUNDLE_BLOB_BYTES)
    if summary.content != "dsse" or summary.envelope is None:
        raise VerificationError("bundle holds a message signature, not a DSSE attestation", reason="payload-type")
    if summary.material == "publicKey" and key_check is not None and key_check.needed(summary):
        signer, verified_envelope = key_check(summary)
        return signer, check_bundle_statement(verified_envelope, digest, predicate_type)
    if summary.material == "publicKey" and not summary.witnessed:
        signer = _verify_with_keys(summary.envelope, verifiers)
        return signer, check_bundle_statement(summary.envelope, digest, predicate_type)
    if bundle_verifier is None:
        raise VerificationError("attestation bundle needs certificate/transparency-log verification, not a key",
                                reason="keyless")
    signer, _ = bundle_verifier(summary, digest)
    # The statement is read again from the envelope whose signature the hook verified, and
    # checked here, so a hook that skips a check cannot widen what passes.
    return signer, check_bundle_statement(summary.envelope, digest, predicate_type)


def _verify_with_keys(envelope: Envelope, verifiers: Mapping[str, Callable[[bytes, bytes], bool]]) -> str:
    if not verifiers:
        raise VerificationError("no key given to verify a key-signed attestation", reason="no-matching-signature")
    try:
        accepted = verify_envelope(envelope, verifiers)
    except VerificationError as e:
        raise VerificationError("attestation signature does not verify with any given key",
                                reason="no-matching-signature") from e
    return sorted(accepted)[0]


# --- keyless ownership (``imgseal attest --keyless --replace``) ---------------------------------


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a verified Sigstore certificate names: its SAN and its OIDC issuer."""

    identity: str
    issuer: str


def bundle_identity(bundle: bytes, trust: TrustMaterial) -> CertificateIdentity:
    """Verify a certificate bundle completely (offline) and return the identity it proves.

    Any identity is accepted here (the regexps match everything); what matters is that the
    chain, log entry and signing time verify, so the identity returned is one Fulcio certified.
    Raises :class:`VerificationError` (or the verifier's own errors) when it does not verify.
    """
    result = verify_bundle(bundle, policy=KeylessPolicy(identity_regexp=".*", issuer_regexp=".*"),
                           expect_dsse=True, trusted_root=trust)
    if result.certificate_identity is None or result.certificate_issuer is None:
        raise VerificationError("the bundle is not signed with a certificate naming an identity and issuer",
                                reason="verification-material")
    return CertificateIdentity(result.certificate_identity, result.certificate_issuer)


def signed_by_identity(identity: CertificateIdentity, trust: TrustMaterial) -> Callable[[bytes], bool]:
    """A bundle check: true when a bundle verifies completely for exactly this SAN and issuer.

    Used to decide which earlier keyless attestations are "ours" for ``--replace``: an
    attestation signed by anyone else, or one that does not verify against ``trust``, is
    never removed.
    """
    policy = KeylessPolicy(identity=identity.identity, issuer=identity.issuer)

    def check(bundle: bytes) -> bool:
        try:
            verify_bundle(bundle, policy=policy, expect_dsse=True, trusted_root=trust)
        except Error:
            return False
        return True

    return check


def trust_from_client_config(path: Path) -> TrustMaterial:
    """The trusted root inside a Sigstore ClientTrustConfig file (its ``trustedRoot`` member)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read --trust-config {path}: {e}", reason="trust-config") from e
    root = doc.get("trustedRoot") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise InvalidInputError(f"--trust-config {path} has no trustedRoot object", reason="trust-config")
    return parse_trusted_root(json.dumps(root).encode(), source=f"trusted root in {path}")


def signing_instance_trust(trust_config: Path | None, staging: bool) -> TrustMaterial:
    """The trusted root matching the instance a keyless signature was made with.

    A ``--trust-config`` file carries its own root; production and staging use the embedded
    roots (offline).
    """
    if trust_config is not None:
        return trust_from_client_config(trust_config)
    return load_trusted_root(None, staging=staging)
