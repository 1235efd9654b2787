"""What the gate decides for one image: :class:`Verdict`, the :class:`Plan` made before any
network, and how a rule's ``mode`` and ``on_error`` turn failures into decisions.

Its own module because the evaluator, the reports, the Kubernetes pinning and the webhook all
use it, and none of them should import another to get it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from imgseal.digest import Digest
from imgseal.errors import Error, VerificationError
from imgseal.reference import Reference
from verifier.gate.policy import (
    Rule,
)

DecisionKind = Literal["allow", "warn", "deny", "error"]


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for one image reference."""

    image: str
    decision: DecisionKind
    reason: str
    message: str
    rule: str | None = None
    reference: str | None = None
    digest: str | None = None
    cached: bool = False
    exception: str | None = None  # the policy exception that admitted it (logged by the webhook)
    undecided: bool = False  # no answer could be had (registry, deadline): on_error decided

    @property
    def admitted(self) -> bool:
        return self.decision in ("allow", "warn")


@dataclass(frozen=True)
class Plan:
    """The parsed reference and the rule that decides it (no network needed to get here)."""

    image: str
    ref: Reference | None
    rule: Rule | None
    verdict: Verdict | None  # already decided without the registry
    namespace: str | None = None  # where it would run (None: unknown)


class CheckFailed(VerificationError):
    """A requirement failed; ``check`` names which (signatures, keyless, attestation …)."""

    def __init__(self, check: str, cause: Error) -> None:
        super().__init__(f"{check}: {cause.one_line()}", reason=cause.reason)
        self.check = check


def shown(image: str, digest: Digest | None) -> str:
    """The image as written, with the digest it resolved to when that adds something."""
    return f"{image} ({digest})" if digest is not None and str(digest) not in image else image


def undecided(plan: Plan, message: str, reason: str, digest: str | None = None) -> Verdict:
    """The verdict when no answer could be had: the rule's ``on_error`` decides (deny by default)."""
    rule = plan.rule
    ref = str(plan.ref) if plan.ref else None
    if rule is not None and rule.on_error == "allow":
        return Verdict(plan.image, "warn", reason, f"{message} (admitted: rule {rule.name!r} has on_error: allow)",
                       rule.name, ref, digest, undecided=True)
    return Verdict(plan.image, "error", reason, message, rule.name if rule else None, ref, digest, undecided=True)


def apply_mode(rule: Rule | None, verdict: Verdict) -> Verdict:
    """A warn-mode rule turns a denial into a warning (audit, as Kyverno's ``Audit``)."""
    if rule is not None and rule.mode == "warn" and verdict.decision == "deny":
        return replace(verdict, decision="warn", message=f"{verdict.message} (rule {rule.name!r} is in warn mode)")
    return verdict
