"""Keyless verification of image signatures: Sigstore bundles checked against an identity policy.

:func:`keyless_bundle_verifier` builds the ``bundle_verifier`` hook of
:func:`verifier.image.verify_key_signatures`. For each certificate bundle attached to the
image it runs :func:`verifier.sigstore_bundle.verify_bundle` (our own offline verifier: time
from TSA/SET, chain to Fulcio, SCT, EKU, identity and issuer, inclusion proof, checkpoint,
SET, signature, log body) with a DSSE envelope required, and then does what
``verify_dsse`` leaves to its caller (REFERENCE.md §5): the in-toto statement must name this
exact image digest and be a ``cosign sign`` v1 statement. A bundle copied from image A onto
image B therefore never counts for B.

Nothing here touches the network: the trusted root is the embedded production root, the
embedded staging root, or a file (``--trusted-root``), parsed once per command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imgseal.digest import Digest
from imgseal.dsse import Envelope
from imgseal.errors import UsageError, VerificationError
from imgseal.intoto import Statement
from imgseal.payloads import COSIGN_SIGN_PREDICATE, BundleSummary
from verifier.image import check_bundle_statement
from verifier.sigstore_bundle import KeylessPolicy, verify_bundle
from verifier.sigstore_trust import TrustMaterial, load_trusted_root

BundleVerifier = Callable[[BundleSummary, Digest], tuple[str, Statement]]


def load_trust(trusted_root: Path | None, staging: bool) -> TrustMaterial:
    """The trusted root to verify with: a file, else the embedded staging or production root."""
    if trusted_root is not None and staging:
        raise UsageError("give either --trusted-root or --staging, not both")
    return load_trusted_root(trusted_root, staging=staging)


def keyless_bundle_verifier(policy: KeylessPolicy, trust: TrustMaterial,
                            predicate_type: str = COSIGN_SIGN_PREDICATE) -> BundleVerifier:
    """A ``bundle_verifier`` for :func:`verifier.image.verify_key_signatures`.

    It returns ``(signer, statement)`` where ``signer`` names the certificate identity and
    issuer, or raises :class:`VerificationError` whose ``reason`` names the failing check
    (``certificate-identity``, ``certificate-issuer``, ``certificate-validity``,
    ``inclusion-proof``, ``payload-digest-mismatch``, …).
    """

    def verify(summary: BundleSummary, digest: Digest) -> tuple[str, Statement]:
        if summary.material == "publicKey":
            raise VerificationError("bundle is signed with a public key, not a certificate (verify it with --key)",
                                    reason="verification-material")
        result = verify_bundle(summary.raw, policy=policy, expect_dsse=True, trusted_root=trust)
        if result.payload is None or result.payload_type is None:
            raise VerificationError("verified bundle carries no DSSE payload", reason="payload-type")
        # Judge the payload the signature was verified over, not a second parse of the bundle.
        envelope = Envelope(payload_type=result.payload_type, payload=result.payload, signatures=())
        statement = check_bundle_statement(envelope, digest, predicate_type)
        return result.signer, statement

    return verify
