"""The notation branches of ``imgseal sign --notation`` and ``imgseal verify --notation``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgseal.errors import UsageError

if TYPE_CHECKING:
    from imgseal.manifest import Descriptor, Manifest
    from imgseal.store.base import Store


def sign_notation(store: Store, subjects: list[Descriptor], *, key: str, cert: str | None, expiry: str | None,
                  annotations: dict[str, str]) -> list[Descriptor]:
    """Sign each subject with an X.509 key and chain as notation does; return the signature manifests."""
    from imgseal.cli._password import read_password
    from keys import pem_is_encrypted, read_key_ref
    from signer.notation import load_signing_material, parse_duration, sign_image_notation

    if cert is None:
        raise UsageError("--notation needs --cert CHAIN.pem (leaf first) beside --key KEY.pem", reason="no-cert")
    key_pem = read_key_ref(key)
    password = read_password(confirm=False) if pem_is_encrypted(key_pem) else None
    chain = Path(cert)
    if not chain.is_file():
        raise UsageError(f"--cert {cert}: no such file")
    signer = load_signing_material(key_pem, chain.read_bytes(), password=password)
    lifetime = parse_duration(expiry) if expiry else None
    return [sign_image_notation(store, s, signer, expiry=lifetime, annotations=annotations) for s in subjects]


def verify_notation(store: Store, manifest: Manifest, repository: str, *, trust_policy: str | None,
                    trust_store: str | None) -> dict[str, Any]:
    """Verify notation signatures on ``manifest``; raise unless the trust policy is satisfied."""
    from imgseal import attach
    from verifier.notation.image import verify_notation_signatures
    from verifier.notation.trust_policy import load_trust_policy

    if trust_policy is None or trust_store is None:
        raise UsageError("--notation needs --trust-policy FILE and --trust-store DIR", reason="no-trust-policy")
    policy = load_trust_policy(Path(trust_policy))
    outcome = verify_notation_signatures(store, manifest, attach.discover(store, manifest.digest),
                                         repository=repository, trust_policy=policy, trust_store=Path(trust_store))
    return {
        "policy": outcome.policy,
        "level": outcome.level,
        "verified": [
            {
                "signer": r.signer_subject,
                "signingTime": r.signing_time.isoformat() if r.signing_time else None,
                "checks": [{"check": c.check, "action": c.action, "status": c.status, "detail": c.detail}
                           for c in r.checks],
                "notes": list(r.notes),
            }
            for r in outcome.results
        ],
        "rejected": [{"artifact": a, "reason": r, "message": m} for a, r, m in outcome.rejected],
    }
