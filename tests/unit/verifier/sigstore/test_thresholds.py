"""The transparency-log requirement follows the trusted root; thresholds lower or raise it explicitly.

GitHub's own Sigstore instance (private repositories) has a Fulcio and a TSA but no log, and
its trusted root lists no ``tlogs``. The cases below are real staging bundles from the
conformance suite (``rekor2-happy-path``: message signature; ``rekor2-dsse-happy-path``:
DSSE, SLSA provenance), each with a Fulcio certificate, one RFC 3161 timestamp from the
staging TSA and one Rekor v2 entry. Removing the entry and the root's ``tlogs`` gives exactly
the shape of a GitHub-instance bundle with its root: certificate + signed timestamp, no log.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgseal.cli.main import app
from imgseal.digest import Digest
from imgseal.errors import UsageError, VerificationError
from imgseal.payloads import summarise_bundle
from tests.datadir import DATA as DATA_DIR
from verifier.keyless import keyless_bundle_verifier
from verifier.sigstore.bundle import KeylessPolicy, Thresholds, verify_bundle
from verifier.sigstore.trust import parse_trusted_root

DATA = DATA_DIR / "sigstore-conformance"
ARTIFACT = (DATA / "a.txt").read_bytes()
POLICY = KeylessPolicy(
    identity=("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
              ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"),
    issuer="https://token.actions.githubusercontent.com")
SLSA_V1 = "https://slsa.dev/provenance/v1"


def _load(case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    bundle: dict[str, Any] = json.loads((DATA / case / "bundle.sigstore.json").read_bytes())
    root: dict[str, Any] = json.loads((DATA / case / "trusted_root.json").read_bytes())
    return bundle, root


def _without_log(bundle: dict[str, Any]) -> bytes:
    bundle["verificationMaterial"]["tlogEntries"] = []
    return json.dumps(bundle).encode()


def _root(root: dict[str, Any], *, logs: bool) -> Any:
    if not logs:
        root = {**root, "tlogs": []}
    return parse_trusted_root(json.dumps(root).encode())


def _reason(bundle: bytes, trust: Any, **kw: Any) -> str:
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, policy=POLICY, artifact=ARTIFACT, trusted_root=trust, **kw)
    return info.value.reason


def test_root_without_logs_needs_a_signed_timestamp_instead() -> None:
    bundle, root = _load("rekor2-happy-path")
    no_log = _without_log(bundle)
    result = verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=_root(root, logs=False))
    assert result.tlog_entries == 0 and len(result.signing_times) == 1 and result.signed_timestamps == 1
    # The same bundle without its timestamp has no evidence left: refused.
    bundle["verificationMaterial"]["timestampVerificationData"] = {"rfc3161Timestamps": []}
    assert _reason(json.dumps(bundle).encode(), _root(root, logs=False)) == "timestamp"


def test_root_with_logs_still_needs_a_log_entry_unless_lowered() -> None:
    bundle, root = _load("rekor2-happy-path")
    no_log = _without_log(bundle)
    trust = _root(root, logs=True)
    assert _reason(no_log, trust) == "tlog-missing"
    result = verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=trust,
                           thresholds=Thresholds(transparency_log=0))
    assert result.tlog_entries == 0
    # The untouched bundle meets the default of one entry, and not a raised threshold of two.
    original = (DATA / "rekor2-happy-path" / "bundle.sigstore.json").read_bytes()
    assert verify_bundle(original, policy=POLICY, artifact=ARTIFACT, trusted_root=trust).tlog_entries == 1
    assert _reason(original, trust, thresholds=Thresholds(transparency_log=2)) == "tlog-missing"


@pytest.mark.parametrize("thresholds", [Thresholds(signed_timestamps=2), Thresholds(observer_timestamps=2)],
                         ids=["signed-2", "observer-2"])
def test_raised_timestamp_thresholds_are_enforced(thresholds: Thresholds) -> None:
    bundle, root = _load("rekor2-happy-path")
    original = json.dumps(bundle).encode()
    assert _reason(original, _root(root, logs=True), thresholds=thresholds) == "timestamp"


def test_lowering_observer_timestamps_never_drops_the_certificate_time() -> None:
    bundle, root = _load("rekor2-happy-path")
    bundle["verificationMaterial"]["timestampVerificationData"] = {"rfc3161Timestamps": []}
    # A Rekor v2 entry has no SET time: with no TSA either, nothing dates the certificate.
    assert _reason(json.dumps(bundle).encode(), _root(root, logs=True),
                   thresholds=Thresholds(observer_timestamps=0, signed_timestamps=0)) == "timestamp"


def test_a_present_log_entry_is_verified_even_when_none_is_required() -> None:
    bundle, root = _load("rekor2-happy-path")
    # The root lists no log, so the entry cannot be checked: fail closed rather than ignore it.
    assert _reason(json.dumps(bundle).encode(), _root(root, logs=False)) == "tlog-key"


def test_repeated_log_entry_is_refused() -> None:
    bundle, root = _load("rekor2-happy-path")
    entries = bundle["verificationMaterial"]["tlogEntries"]
    entries.append(entries[0])
    assert _reason(json.dumps(bundle).encode(), _root(root, logs=True),
                   thresholds=Thresholds(transparency_log=2)) == "tlog"


@pytest.mark.parametrize("bad", [-1, True, 33, "1"])
def test_threshold_values_are_checked(bad: Any) -> None:
    with pytest.raises(UsageError):
        Thresholds(transparency_log=bad)


def test_keyless_image_path_accepts_a_github_instance_shaped_bundle() -> None:
    bundle, root = _load("rekor2-dsse-happy-path")
    summary = summarise_bundle(_without_log(bundle))
    digest = Digest.parse("sha256:" + hashlib.sha256(ARTIFACT).hexdigest())
    # GitHub's instance: Fulcio and a TSA, no Rekor and no CT log.
    github_like = parse_trusted_root(json.dumps({**root, "tlogs": [], "ctlogs": []}).encode())
    verify = keyless_bundle_verifier(POLICY, github_like, SLSA_V1)
    signer, statement = verify(summary, digest)
    assert signer.startswith(POLICY.identity or "") and statement.predicate_type == SLSA_V1
    # The same bundle against the root that lists logs needs its entry, unless lowered.
    with pytest.raises(VerificationError) as info:
        keyless_bundle_verifier(POLICY, _root(root, logs=True), SLSA_V1)(summary, digest)
    assert info.value.reason == "tlog-missing"
    lowered = keyless_bundle_verifier(POLICY, _root(root, logs=True), SLSA_V1, Thresholds(transparency_log=0))
    assert lowered(summary, digest)[0] == signer
    with pytest.raises(VerificationError) as info:
        verify(summary, Digest.of(b"another artifact"))
    assert info.value.reason == "payload-digest-mismatch"


def test_a_failed_threshold_says_whether_the_root_or_the_caller_set_it() -> None:
    bundle, root = _load("rekor2-happy-path")
    no_log = _without_log(bundle)
    trust = _root(root, logs=True)
    with pytest.raises(VerificationError) as by_root:
        verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=trust)
    assert "1 required (the trusted root lists transparency logs)" in by_root.value.message
    # Asked for (--tlog-threshold, --require-timestamp): the root's contents are not the reason.
    with pytest.raises(VerificationError) as asked:
        verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=_root(root, logs=False),
                      thresholds=Thresholds(transparency_log=2))
    assert asked.value.message == "bundle has 0 transparency log entries, 2 required (as asked)"
    with pytest.raises(VerificationError) as stamps:
        verify_bundle(json.dumps(bundle).encode(), policy=POLICY, artifact=ARTIFACT, trusted_root=trust,
                      thresholds=Thresholds(signed_timestamps=2))
    assert "1 signed timestamp, 2 required (as asked)" in stamps.value.message


def test_cli_threshold_flags(tmp_path: Path) -> None:
    bundle, root = _load("rekor2-happy-path")
    (tmp_path / "b.json").write_bytes(_without_log(bundle))
    (tmp_path / "root.json").write_text(json.dumps(root))
    (tmp_path / "a.txt").write_bytes(ARTIFACT)
    base = ["verify-bundle", "--bundle", str(tmp_path / "b.json"), "--trusted-root", str(tmp_path / "root.json"),
            "--certificate-identity", POLICY.identity or "", "--certificate-oidc-issuer", POLICY.issuer or ""]
    runner = CliRunner()
    refused = runner.invoke(app, [*base, str(tmp_path / "a.txt")])
    assert refused.exit_code == 1 and "transparency log entries, 1 required" in refused.stderr, refused.stderr
    lowered = runner.invoke(app, [*base, "--tlog-threshold", "0", "-o", "json", str(tmp_path / "a.txt")])
    assert lowered.exit_code == 0, lowered.stderr
    assert json.loads(lowered.stdout) | {"signer": None, "signingTime": None} == {
        "ok": True, "kind": "message", "signer": None, "payloadType": None, "signingTime": None,
        "tlogEntries": 0, "signedTimestamps": 1}
    raised = runner.invoke(app, [*base, "--tlog-threshold", "0", "--signed-timestamp-threshold", "2",
                                 str(tmp_path / "a.txt")])
    assert raised.exit_code == 1 and "signed timestamp" in raised.stderr
    bad = runner.invoke(app, [*base, "--observer-timestamp-threshold", "0", str(tmp_path / "a.txt")])
    assert bad.exit_code == 2
    # GitHub's shape: no Rekor, no CT log. The root decides both; --sct-threshold 1 asks anyway.
    (tmp_path / "github.json").write_text(json.dumps({**root, "tlogs": [], "ctlogs": []}))
    github = [*base[:4], str(tmp_path / "github.json"), *base[5:]]
    assert runner.invoke(app, [*github, str(tmp_path / "a.txt")]).exit_code == 0
    asked = runner.invoke(app, [*github, "--sct-threshold", "1", str(tmp_path / "a.txt")])
    assert asked.exit_code == 1 and "SCT" in asked.stderr, asked.stderr


def test_sct_requirement_follows_the_root_too() -> None:
    """GitHub's instance has no CT log either: a root without ctlogs does not ask for an SCT."""
    bundle, root = _load("rekor2-happy-path")
    no_log = _without_log(bundle)
    github_like = parse_trusted_root(json.dumps({**root, "tlogs": [], "ctlogs": []}).encode())
    assert verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=github_like).tlog_entries == 0
    # Asked for explicitly, the SCT must verify against a CT log of the root: there is none.
    assert _reason(no_log, github_like, signed_certificate_timestamps=1) == "sct"
    # A root that lists CT logs still checks the SCT, unless lowered explicitly.
    other_ct = {**root, "tlogs": [], "ctlogs": [root["tlogs"][0]]}  # a log key that did not sign this SCT
    trust = parse_trusted_root(json.dumps(other_ct).encode())
    assert _reason(no_log, trust) == "sct"
    assert verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=trust,
                         signed_certificate_timestamps=0).tlog_entries == 0
    with pytest.raises(UsageError):
        verify_bundle(no_log, policy=POLICY, artifact=ARTIFACT, trusted_root=trust, signed_certificate_timestamps=2)
