"""``signatures: {keys, tlog, timestamp, not_after}`` in the policy file: parsed exactly, errors with lines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from keys import generate, public_pem
from tests.unit.verifier.gate.test_policy import issues, write
from verifier.gate.policy import describe_rule
from verifier.gate.policy_file import load_policy


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "team.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    return tmp_path

RULE = """\
version: 1
rules:
  - name: r
    match: ["registry.example.com/team/**"]
    require:
      signatures:
        keys: [keys/team.pub]
{extra}
"""


def test_witness_fields_load(policy_dir: Path) -> None:
    extra = "        tlog: true\n        timestamp: true\n        not_after: 2026-06-30"
    policy = load_policy(write(policy_dir, RULE.format(extra=extra)))
    sigs = policy.rules[0].require.signatures
    assert sigs is not None and sigs.tlog and sigs.timestamp
    # A plain date retires the keys at the end of that day (UTC), as exceptions' `until` holds through it.
    assert sigs.not_after == dt.datetime(2026, 7, 1, tzinfo=dt.UTC) and sigs.not_after_text == "2026-06-30"
    assert "proven made before the keys' retirement (not_after 2026-06-30)" in "\n".join(describe_rule(policy.rules[0]))


def test_witness_fields_default_off_and_change_the_fingerprint(policy_dir: Path) -> None:
    plain = load_policy(write(policy_dir, RULE.format(extra=""))).rules[0]
    assert plain.require.signatures is not None and not plain.require.signatures.tlog
    assert plain.require.signatures.not_after is None
    for extra in ("        tlog: true", "        timestamp: true", "        not_after: 2026-01-01T00:00:00Z"):
        witnessed = load_policy(write(policy_dir, RULE.format(extra=extra))).rules[0]
        assert witnessed.fingerprint != plain.fingerprint, extra


def test_witness_field_errors(policy_dir: Path) -> None:
    found = issues(policy_dir, RULE.format(extra="        tlog: yes please\n        not_after: soon"))
    messages = " | ".join(m for _, m in found)
    assert "signatures.tlog" in messages and "not_after 'soon'" in messages, found
    found = issues(policy_dir, RULE.format(extra="        not_after: 2026-01-01 10:00"))
    assert any("give a time zone" in m and "not_after" in m for _, m in found), found


def test_a_retired_key_is_reported_with_the_date_as_written(policy_dir: Path) -> None:
    # not_after: 2026-06-30 retires the key at the end of that day: 2026-07-01T00:00Z. Reporting
    # only the instant reads like an off-by-one; the date as written goes beside it.
    from imgseal.errors import VerificationError
    from verifier.gate.requirements import key_check

    path = write(policy_dir, """\
        version: 1
        rules:
          - name: r
            match: ["a.io/**"]
            require:
              signatures: {keys: [keys/team.pub], not_after: 2026-06-30}
        """)
    rule = load_policy(path).rules[0]
    assert rule.require is not None and rule.require.signatures is not None
    check = key_check(rule.require.signatures.keys, rule.require.signatures, lambda: None)
    with pytest.raises(VerificationError) as info:
        check._check_not_after(dt.datetime(2026, 7, 1, 9, tzinfo=dt.UTC))
    assert info.value.message == ("signed at 2026-07-01T09:00:00+00:00 (proven), at or after the key's retirement "
                                  "2026-07-01T00:00:00+00:00 (not_after 2026-06-30: the end of that day, UTC)")
    check._check_not_after(dt.datetime(2026, 6, 30, 23, 59, tzinfo=dt.UTC))  # that whole day still counts
