"""Key signatures judged by *when* they were made: Rekor entries and RFC 3161 timestamps in key bundles.

A key bundle (``verificationMaterial.publicKey``) may carry a Rekor entry and TSA timestamps
(``imgseal sign --key … --tlog-upload --timestamp-server``, cosign's defaults). Whenever it
does, or whenever the caller requires them, the whole bundle goes through
:func:`verifier.sigstore.bundle.verify_bundle` with a :class:`~verifier.sigstore.bundle.KeyPolicy`:
signature by one of the given keys, every timestamp against a trusted TSA, every log entry's
SET, inclusion proof, checkpoint and body (it must log *this* signature by *this* key). Present
material is never skipped: a tampered entry fails the bundle even when no entry was required.

What the policy adds (policy-controller #1874, Ratify #2753 decide by the same times):

* ``require_tlog``: at least one verified log entry; ``require_timestamp``: at least one
  verified RFC 3161 timestamp.
* ``not_after``: the key was retired then. A signature counts only if a *proven* time — the
  log's integrated time (SET) or a TSA's genTime, the earliest of them — is before it. A
  signature with no proven time never counts for a retired key: its claimed time is the
  signer's word, which is what retiring the key stops trusting.

Legacy ``.sig`` / ``.att`` key layers carry their witnesses in cosign's annotations: the Rekor
bundle (an entry with its SET, no inclusion proof — checked as cosign checks it offline) and the
RFC 3161 timestamp; :meth:`KeyBundleCheck.check_legacy` judges them by the same rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from imgseal.dsse import Envelope
from imgseal.errors import VerificationError
from imgseal.payloads import REKOR_BUNDLE_ANNOTATION, BundleSummary
from keys import PublicKey

if TYPE_CHECKING:
    from verifier.sigstore.tlog import DsseContent, MessageContent
    from verifier.sigstore.trust import TrustMaterial


@dataclass(frozen=True)
class KeyWitnessPolicy:
    """What a key signature must prove about its time."""

    require_tlog: bool = False
    require_timestamp: bool = False
    not_after: datetime | None = None
    not_after_text: str | None = None  # as the policy wrote it, for messages (a date means its end)

    def __post_init__(self) -> None:
        if self.not_after is not None and self.not_after.tzinfo is None:
            object.__setattr__(self, "not_after", self.not_after.replace(tzinfo=UTC))

    @property
    def requires_anything(self) -> bool:
        return self.require_tlog or self.require_timestamp or self.not_after is not None

    def describe(self) -> str:
        parts = []
        if self.require_tlog:
            parts.append("a transparency log entry")
        if self.require_timestamp:
            parts.append("an RFC 3161 timestamp")
        if self.not_after is not None:
            parts.append(f"a proven signing time before {self.not_after.isoformat()}")
        return " and ".join(parts)


@dataclass
class KeyBundleCheck:
    """The hook :mod:`verifier.image` and :mod:`verifier.attestation` call for key bundles.

    ``trust`` is loaded on first use only, so a run whose bundles carry no witnesses never
    parses a trusted root (``verify --key`` start-up stays as it was).
    """

    keys: Mapping[str, PublicKey]
    policy: KeyWitnessPolicy = field(default_factory=KeyWitnessPolicy)
    trust_loader: Callable[[], TrustMaterial] | None = None
    _trust: TrustMaterial | None = None

    def needed(self, summary: BundleSummary) -> bool:
        """True when ``summary`` must be judged here rather than by its signature alone."""
        return summary.witnessed or self.policy.requires_anything

    def legacy_needed(self, annotations: Mapping[str, str]) -> bool:
        """True when a legacy key layer must be judged here: it carries cosign's Rekor bundle or
        timestamp annotation, or the policy requires a proven time."""
        from verifier.keyless import RFC3161_ANNOTATION

        return (REKOR_BUNDLE_ANNOTATION in annotations or RFC3161_ANNOTATION in annotations
                or self.policy.requires_anything)

    def check_legacy(self, signer: str, content: MessageContent | DsseContent,
                     annotations: Mapping[str, str]) -> None:
        """Judge the witnesses of a legacy layer whose signature ``signer`` (a name of :attr:`keys`)
        already verified: cosign's ``dev.sigstore.cosign/bundle`` (a Rekor v1 entry with its SET,
        checked as cosign checks it offline — legacy layers carry no inclusion proof) and
        ``dev.sigstore.cosign/rfc3161timestamp`` (over the signature bytes)."""
        from verifier.keyless import parse_rekor_bundle_annotation, parse_rfc3161_annotation, verify_rekor_bundle_entry
        from verifier.sigstore.bundle import ParsedBundle, _verify_timestamps
        from verifier.sigstore.tlog import Signer

        entry = parse_rekor_bundle_annotation(annotations)
        stamp = parse_rfc3161_annotation(annotations)
        if entry is None and self.policy.require_tlog:
            raise VerificationError("legacy signature has no Rekor bundle annotation (--require-tlog)",
                                    reason="tlog-missing")
        if stamp is None and self.policy.require_timestamp:
            raise VerificationError("legacy signature has no RFC 3161 timestamp annotation (--require-timestamp)",
                                    reason="timestamp")
        times: list[datetime] = []
        if stamp is not None:
            times += _verify_timestamps(ParsedBundle("legacy", "publicKey", (), (), (stamp,), None, None),
                                        self.trust(), content.signature)
        if entry is not None:
            times.append(verify_rekor_bundle_entry(entry, self.trust(), Signer(self.keys[signer]), content))
        self._check_not_after(min(times) if times else None)

    def trust(self) -> TrustMaterial:
        if self._trust is None:
            if self.trust_loader is None:
                from verifier.sigstore.trust import load_trusted_root

                self._trust = load_trusted_root(None)
            else:
                self._trust = self.trust_loader()
        return self._trust

    def __call__(self, summary: BundleSummary) -> tuple[str, Envelope]:
        """Verify a key bundle completely; ``(signer name, the envelope as verified)``.

        The statement's subject and predicate type are the caller's to check on that envelope.
        """
        from verifier.sigstore.bundle import KeyPolicy, Thresholds, verify_bundle

        if not self.keys:
            raise VerificationError("no key given to verify a key-signed bundle", reason="no-matching-signature")
        # Entries the bundle carries are verified whatever the thresholds; these say how many must be there.
        thresholds = Thresholds(transparency_log=1 if self.policy.require_tlog else 0,
                                signed_timestamps=1 if self.policy.require_timestamp else 0)
        result = verify_bundle(summary.raw, policy=KeyPolicy(tuple(self.keys.values())), expect_dsse=True,
                               trusted_root=self.trust(), require_tlog=self.policy.require_tlog,
                               thresholds=thresholds)
        self._check_not_after(result.signing_time)
        if result.payload is None or result.payload_type is None:
            raise VerificationError("verified bundle carries no DSSE payload", reason="payload-type")
        signer = self._name_of(result.key_id)
        return signer, Envelope(payload_type=result.payload_type, payload=result.payload, signatures=())

    def _check_not_after(self, proven: datetime | None) -> None:
        not_after = self.policy.not_after
        if not_after is None:
            return
        if proven is None:
            raise VerificationError(f"the key was retired at {not_after.isoformat()}{self._as_written()} and this "
                                    "signature has no proven signing time (log entry or RFC 3161 timestamp)",
                                    reason="key-retired")
        if proven >= not_after:
            raise VerificationError(f"signed at {proven.isoformat()} (proven), at or after the key's retirement "
                                    f"{not_after.isoformat()}{self._as_written()}", reason="key-retired")

    def _as_written(self) -> str:
        text = self.policy.not_after_text
        if text is None or self.policy.not_after is None or text == self.policy.not_after.isoformat():
            return ""
        # A plain date (YYYY-MM-DD) retires the key at the end of that day, UTC (docs/policy.md).
        return f" (not_after {text}: the end of that day, UTC)" if len(text) == 10 else f" (not_after {text})"

    def _name_of(self, key_id: str | None) -> str:
        for name, key in self.keys.items():
            der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            if hashlib.sha256(der).hexdigest() == key_id:
                return name
        raise VerificationError("bundle verified with a key that was not given", reason="no-matching-signature")
