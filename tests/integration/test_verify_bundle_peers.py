"""Our bundle verifier and sigstore-python's, side by side on the Sigstore conformance vectors.

For every certificate (keyless) case in tests/data/sigstore-conformance both verifiers judge the
same bundle, artifact, identity and trusted root in-process (the production root is the one both
embed). Both must agree with the case's expected verdict, except where sigstore-python is known
to be wrong or unable; those cases are listed with the reason, and the test fails if the list
goes stale (a divergence disappears or a new one appears). Public-key cases are sigstore-js's
to cross-check (sigstore-python cannot verify them: its #916, #1244; see test_keyless.py).

Timing is not measured here: bench/verify_bundle.py compares whole-process times.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imgseal.digest import Digest
from imgseal.errors import Error
from verifier.sigstore.bundle import KeylessPolicy, statement_subject_matches, verify_bundle

ROOT = Path(__file__).resolve().parents[1] / "data" / "sigstore-conformance"
PRODUCTION_ROOT = Path(__file__).resolve().parents[2] / "verifier" / "data" / "trusted_root.production.json"
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
CASES = sorted(p for p in ROOT.iterdir() if p.is_dir() and not (p / "key.pub").exists()
               and p.name != "managed-key-no-key_fail")

#: Cases where sigstore-python 4.5.1's verdict differs from the expected one, and why.
SIGSTORE_PYTHON_DIVERGES = {
    # TimeRange is closed in the trust-root spec; sigstore-python treats the end as exclusive.
    "trust-root-tsa-validity-end-inclusive": "rejects a timestamp equal to the TSA's validity end",
    # Rekor ``intoto`` v0.0.2 entries (cosign's legacy attestations) are valid log entries.
    "intoto-with-custom-trust-root": "'Integrated time only supported for dsse/hashedrekord 0.0.1 types'",
}


def _inputs(case: Path) -> tuple[bytes, Path, bytes, str, str]:
    artifact = (case / "artifact") if (case / "artifact").exists() else ROOT / "a.txt"
    root = case / "trusted_root.json" if (case / "trusted_root.json").exists() else PRODUCTION_ROOT
    identity = (case / "identity").read_text().strip() if (case / "identity").exists() else DEFAULT_IDENTITY
    issuer = (case / "issuer").read_text().strip() if (case / "issuer").exists() else DEFAULT_ISSUER
    return (case / "bundle.sigstore.json").read_bytes(), root, artifact.read_bytes(), identity, issuer


def ours(case: Path) -> tuple[bool, str]:
    bundle, root, artifact, identity, issuer = _inputs(case)
    try:
        result = verify_bundle(bundle, policy=KeylessPolicy(identity=identity, issuer=issuer), artifact=artifact,
                               trusted_root=root)
    except Error as e:
        return False, e.reason
    if result.kind == "dsse" and not statement_subject_matches(result.payload or b"", Digest.of(artifact)):
        return False, "subject"
    return True, "ok"


def sigstore_python(case: Path) -> tuple[bool, str]:
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy

    bundle_bytes, root, artifact, identity, issuer = _inputs(case)
    try:
        bundle = Bundle.from_json(bundle_bytes)
        verifier = Verifier(trusted_root=TrustedRoot.from_file(str(root)))
        identity_policy = policy.Identity(identity=identity, issuer=issuer)
        if "dsseEnvelope" in json.loads(bundle_bytes):
            _, payload = verifier.verify_dsse(bundle, identity_policy)
            # verify_dsse leaves the subject to its caller (REFERENCE.md §5).
            subjects = json.loads(payload).get("subject", [])
            want = hashlib.sha256(artifact).hexdigest()
            if not any(s.get("digest", {}).get("sha256") == want for s in subjects):
                return False, "subject"
        else:
            verifier.verify_artifact(artifact, bundle, identity_policy)
    except Exception as e:  # any refusal counts as "does not verify"
        return False, type(e).__name__
    return True, "ok"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_verifiers_judge_the_case(case: Path) -> None:
    expected = not case.name.endswith("_fail")
    ok, why = ours(case)
    assert ok == expected, f"imgseal: {why}"
    peer_ok, peer_why = sigstore_python(case)
    if case.name in SIGSTORE_PYTHON_DIVERGES:
        assert peer_ok != expected, f"sigstore-python now agrees on {case.name}: drop it from the list"
    else:
        assert peer_ok == expected, f"sigstore-python: {peer_why}"


def test_bench_extracts_the_policy_from_the_certificate() -> None:
    from bench.verify_bundle import policy_of

    assert policy_of(ROOT / "happy-path-v0.3" / "bundle.sigstore.json") == (DEFAULT_IDENTITY, DEFAULT_ISSUER)
