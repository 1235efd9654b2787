"""One check per requirement kind, each calling the verifier module that owns the format.

keys → :mod:`verifier.image`; keyless → :mod:`verifier.keyless`; attestations →
:mod:`verifier.attestation`; notation → :mod:`verifier.notation.image`; GitHub artifact
attestations → :mod:`verifier.attestation` with :mod:`verifier.github`'s hook. They are the same
code paths as ``imgseal verify`` / ``verify-attestation``, so the gate and the CLI cannot
disagree. Imports are lazy: a policy with only key rules never loads Sigstore or notation code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from imgseal import attach
from imgseal.digest import Digest
from imgseal.errors import Error, VerificationError
from imgseal.reference import Reference
from imgseal.store.base import Store
from verifier.gate.policy import (
    AttestationRequirement,
    GithubRequirement,
    KeylessSigner,
    NotationRequirement,
    PolicyKey,
    SignatureRequirement,
)


def _key_map(keys: Sequence[PolicyKey]) -> dict[str, Any]:
    return {k.name: k.key for k in keys}


def key_check(keys: Sequence[PolicyKey], req: SignatureRequirement | None, trust_loader: Callable[[], Any]) -> Any:
    """The :class:`verifier.key_witness.KeyBundleCheck` for ``keys`` under the witness demands of ``req``
    (``tlog``, ``timestamp``, ``not_after``); the trusted root is loaded only if a bundle needs it."""
    from verifier.key_witness import KeyBundleCheck, KeyWitnessPolicy

    policy = KeyWitnessPolicy() if req is None else KeyWitnessPolicy(require_tlog=req.tlog,
                                                                     require_timestamp=req.timestamp,
                                                                     not_after=req.not_after,
                                                                     not_after_text=req.not_after_text)
    return KeyBundleCheck(_key_map(keys), policy, trust_loader)


def check_signatures(store: Store, digest: Digest, attachments: list[attach.Attachment],
                      req: SignatureRequirement, trust_loader: Callable[[], Any]) -> None:
    """Signatures by ``threshold`` distinct policy keys (verifier.image, the same code as ``imgseal verify``),
    each with the witnesses ``req`` demands."""
    from verifier.image import judge, verify_key_signatures

    outcome = verify_key_signatures(store, digest, attachments, _key_map(req.keys),
                                    key_check=key_check(req.keys, req, trust_loader))
    judge(outcome, req.threshold)


def _for_any_signer(signers: Sequence[KeylessSigner], trust: Any, make: Callable[[Any, Any], Callable[..., Any]]
                    ) -> Callable[..., Any]:
    """One verification hook accepting what the hook ``make(policy, trust)`` of ANY listed signer accepts."""
    from verifier.sigstore.bundle import KeylessPolicy

    verifiers = [make(KeylessPolicy(**vars(s)), trust) for s in signers]
    return lambda *args: _any_signer(verifiers, *args)


def _keyless_verifier(signers: Sequence[KeylessSigner], trust: Any, predicate_type: str | None = None) -> Any:
    """One ``bundle_verifier`` accepting a bundle from ANY listed signer (verifier.keyless per signer)."""
    from imgseal.payloads import COSIGN_SIGN_PREDICATE
    from verifier.keyless import keyless_bundle_verifier

    return _for_any_signer(signers, trust, lambda policy, root: keyless_bundle_verifier(
        policy, root, predicate_type or COSIGN_SIGN_PREDICATE))


def _any_signer(verifiers: Sequence[Callable[..., Any]], *args: Any) -> Any:
    """The first verifier's result that accepts ``args``; else one error that lists every refusal."""
    errors: list[Error] = []
    for fn in verifiers:
        try:
            return fn(*args)
        except VerificationError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    raise VerificationError("no listed keyless signer matches: " + "; ".join(e.one_line() for e in errors),
                            reason=errors[0].reason)


def _keyless_legacy_verifier(signers: Sequence[KeylessSigner], trust: Any) -> Any:
    """One ``legacy_verifier`` accepting a cosign legacy keyless ``.sig`` layer from ANY listed signer."""
    from verifier.keyless import keyless_legacy_verifier

    return _for_any_signer(signers, trust, keyless_legacy_verifier)


def _keyless_legacy_attestation_verifier(signers: Sequence[KeylessSigner], trust: Any) -> Any:
    """One ``legacy_verifier`` accepting a cosign keyless ``.att`` layer from ANY listed signer."""
    from verifier.keyless import keyless_legacy_attestation_verifier

    return _for_any_signer(signers, trust, keyless_legacy_attestation_verifier)


def check_keyless(store: Store, digest: Digest, attachments: list[attach.Attachment],
                   signers: Sequence[KeylessSigner], trust: Any) -> None:
    """A Sigstore certificate bundle (or cosign legacy keyless layer) from any listed identity."""
    from verifier.image import judge, verify_key_signatures

    outcome = verify_key_signatures(store, digest, attachments, {}, bundle_verifier=_keyless_verifier(signers, trust),
                                    legacy_verifier=_keyless_legacy_verifier(signers, trust))
    judge(outcome, 1)


def check_attestation(store: Store, digest: Digest, attachments: list[attach.Attachment],
                       req: AttestationRequirement, keys: Sequence[PolicyKey], signers: Sequence[KeylessSigner],
                       trust: Any, key_witness: Any = None) -> None:
    """An attestation of the type, signed by a rule signer, passing the SLSA and where checks (verifier.attestation).

    ``key_witness`` (a :func:`key_check`) judges witnessed key bundles, and carries the signature
    rule's ``tlog``/``timestamp``/``not_after`` when the attestation borrows ``signatures.keys``."""
    from verifier.attestation import SlsaExpectations, verify_attestations

    bundle_verifier = _keyless_verifier(signers, trust, req.predicate_type) if signers else None
    legacy_verifier = _keyless_legacy_attestation_verifier(signers, trust) if signers else None
    verify_attestations(store, digest, attachments, predicate_type=req.predicate_type, keys=_key_map(keys),
                        slsa_checks=SlsaExpectations(**req.slsa_checks), where=req.where,
                        bundle_verifier=bundle_verifier, legacy_verifier=legacy_verifier, key_check=key_witness)


def check_notation(store: Store, ref: Reference, digest: Digest, attachments: list[attach.Attachment],
                    req: NotationRequirement, *, image_store: Store | None = None) -> None:
    """A notation signature under the rule's trust policy and store (verifier.notation.image, as ``verify --notation``).

    The trust policy statement is selected by ``ref.name`` (``registry/repository``), exactly
    the scope notation matches; the signed descriptor must equal this manifest's digest, size
    and media type, so the manifest is fetched (by digest, checked; memoised per run) — from
    ``image_store`` when the attachments live in another repository than the image.
    """
    from verifier.notation.image import verify_notation_signatures

    manifest = (image_store or store).get_manifest(digest)
    outcome = verify_notation_signatures(store, manifest, attachments, repository=ref.name,
                                         trust_policy=req.document, trust_store=req.trust_store)
    if outcome.level == "skip":
        # A rule that requires notation must not be satisfied by a statement that checks nothing.
        raise VerificationError(f"the notation trust policy statement {outcome.policy!r} that applies to {ref.name} "
                                "has level skip: nothing is verified", reason="notation-skip")


def check_github(store: Store, digest: Digest, attachments: list[attach.Attachment], req: GithubRequirement,
                 trust: Any) -> None:
    """A GitHub artifact attestation meeting gh's criteria (the code of ``verify-attestation --github-*``).

    ``trust`` is a :class:`verifier.github.GithubTrust`. Bundle referrers only: actions/attest
    writes no cosign legacy layers, so those are not offered to the GitHub hook.
    """
    from verifier.attestation import verify_attestations
    from verifier.github import github_bundle_verifier

    bundles = [a for a in attachments if a.found_via not in (attach.VIA_LEGACY_SIG, attach.VIA_LEGACY_ATT)]
    verify_attestations(store, digest, bundles, predicate_type=req.policy.predicate_type, keys={},
                        bundle_verifier=github_bundle_verifier(req.policy, trust))
