"""Verifying notation signatures attached to an image, under a notation trust policy and store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgseal import attach
from imgseal.errors import Error, VerificationError
from imgseal.manifest import Manifest
from imgseal.store.base import Store
from verifier.notation.envelope import ENVELOPE_MEDIA_TYPE, NotationResult, verify_notation_envelope
from verifier.notation.trust_policy import TrustPolicyDocument, select_policy

MAX_ENVELOPE_BYTES = 4 << 20


@dataclass
class NotationOutcome:
    policy: str
    level: str
    results: list[NotationResult] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    examined: int = 0


def is_notation(att: attach.Attachment) -> bool:
    # Current form: artifactType; the older form put the type in config.mediaType.
    return att.artifact_type == attach.NOTATION_SIGNATURE or att.manifest.config.media_type == attach.NOTATION_SIGNATURE


def verify_notation_signatures(
    store: Store,
    manifest: Manifest,
    attachments: list[attach.Attachment],
    *,
    repository: str,
    trust_policy: TrustPolicyDocument,
    trust_store: Path,
) -> NotationOutcome:
    """Verify every notation signature on ``manifest``; raise unless one verifies (or the level is skip).

    The signed payload's descriptor must equal the manifest's digest, size and media type.
    """
    policy = select_policy(trust_policy, repository)
    outcome = NotationOutcome(policy.name, policy.level)
    expected = {"mediaType": manifest.media_type, "digest": str(manifest.digest), "size": len(manifest.raw)}
    for att in attachments:
        if not is_notation(att):
            continue
        for layer in att.manifest.layers:
            if layer.media_type != ENVELOPE_MEDIA_TYPE:
                continue
            outcome.examined += 1
            try:
                envelope = store.get_blob(layer, max_bytes=MAX_ENVELOPE_BYTES)
                result = verify_notation_envelope(envelope, expected_descriptor=expected, policy=policy,
                                                  trust_store_dir=trust_store)
                outcome.results.append(result)
            except Error as e:
                outcome.rejected.append((str(att.digest), e.reason, e.one_line()))
    if policy.level == "skip":
        return outcome
    if any(r.verified for r in outcome.results):
        return outcome
    if outcome.examined == 0:
        raise VerificationError(f"no notation signatures found for {manifest.digest}", reason="no-signatures")
    _, reason, message = outcome.rejected[0] if outcome.rejected else ("", "notation-failed", "no signature verified")
    raise VerificationError(message, reason=reason)
