"""``attachments_repo:`` in policy rules (Kyverno's ``repository:``): parsed, checked with lines, fingerprinted."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from keys import generate, public_pem
from verifier.gate.policy import describe_rule
from verifier.gate.policy_file import PolicyError, load_policy

RULES = """\
version: 1
rules:
  - name: ours
    match: ["registry.example.com/team/**"]
    attachments_repo: {repo}
    require:
      signatures:
        keys: [team.pub]
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "team.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    return tmp_path


def _load(directory: Path, text: str) -> object:
    path = directory / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return load_policy(path)


def test_attachments_repo_is_read_normalised_and_part_of_the_fingerprint(policy_dir: Path) -> None:
    rule = _load(policy_dir, RULES.format(repo="sigs.example.com/team/signatures")).rules[0]
    assert rule.attachments_repo.name == "sigs.example.com/team/signatures"
    assert any("sigs.example.com/team/signatures" in line for line in describe_rule(rule))
    # docker's defaults apply, as for COSIGN_REPOSITORY.
    hub = _load(policy_dir, RULES.format(repo="signatures")).rules[0]
    assert hub.attachments_repo.name == "docker.io/library/signatures"
    # Reading attachments elsewhere changes what is verified: the cache key must change too.
    plain = _load(policy_dir, RULES.replace("    attachments_repo: {repo}\n", "")).rules[0]
    assert plain.attachments_repo is None
    assert len({rule.fingerprint, hub.fingerprint, plain.fingerprint}) == 3


@pytest.mark.parametrize(("value", "needle"), [
    ("sigs.example.com/team/signatures:v1", "names a tag or digest"),
    ('"oci-layout:/tmp/x"', "OCI layout"),
    ('""', "non-empty string"),
    ("[a, b]", "non-empty string"),
])
def test_bad_values_are_errors_with_their_line(policy_dir: Path, value: str, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        _load(policy_dir, RULES.format(repo=value))
    assert [(i.line, needle in i.message) for i in info.value.issues] == [(5, True)]


def test_only_rules_that_verify_read_it(policy_dir: Path) -> None:
    text = """\
    version: 1
    rules:
      - name: vendor
        match: ["docker.io/library/*"]
        attachments_repo: sigs.example.com/x
        allow: true
    """
    with pytest.raises(PolicyError) as info:
        _load(policy_dir, text)
    assert [(i.line, "only read by rules with 'require'" in i.message) for i in info.value.issues] == [(5, True)]
