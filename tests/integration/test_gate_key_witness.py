"""``imgseal gate`` with a retired key: ``signatures: {keys, tlog, not_after}`` against the rig's Rekor.

The key ``team`` was retired an hour ago. Its signature logged by a Rekor whose clock runs two
hours slow is proven older than the retirement and admitted; the same key's signature logged now
is denied (key-retired), and a signature with no log entry is denied whether the rule requires
the entry (tlog-missing) or only the retirement (no proven time: key-retired).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.images import push_image
from tests.integration.sigstore_rig import SigstoreRig
from tests.integration.test_gate_requirements import gate
from tests.integration.test_key_witness import early_rig  # noqa: F401 - module fixture
from tests.integration.test_sign_verify import ENV, make_key

pytestmark = [pytest.mark.registry, pytest.mark.sigstore]


def test_retired_key_admits_only_proven_earlier_signatures(registry, cli, sigstore_rig: SigstoreRig,
                                                           early_rig: SigstoreRig,  # noqa: F811
                                                           tmp_path: Path) -> None:
    host = registry.host
    priv, _, _ = make_key(tmp_path, "team")
    images = {}
    for name, rig in (("early", early_rig), ("late", sigstore_rig), ("bare", None), ("bare2", None)):
        desc = push_image(host, f"kw/{name}", content=f"kw {name}".encode())
        witness = ("--tlog-upload", "--trust-config", str(rig.trust_config_path)) if rig else ()
        r = cli("sign", f"{host}/kw/{name}@{desc.digest}", "--key", str(priv), *witness, env=ENV)
        assert r.code == 0, r.stderr
        images[name] = f"{host}/kw/{name}:v1"
    retired = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = f"""\
version: 1
rules:
  - name: r
    match: ["{host}/kw/early"]
    trusted_root: {early_rig.trusted_root_path}
    require:
      signatures: {{keys: [team.pub], tlog: true, not_after: "{retired}"}}
  - name: r2
    match: ["{host}/kw/late", "{host}/kw/bare"]
    trusted_root: {sigstore_rig.trusted_root_path}
    require:
      signatures: {{keys: [team.pub], tlog: true, not_after: "{retired}"}}
  - name: r3
    match: ["{host}/kw/bare2"]
    require:
      signatures: {{keys: [team.pub], not_after: "{retired}"}}
"""
    results = gate(cli, tmp_path, policy, *images.values())
    assert results[images["early"]]["decision"] == "allow", results[images["early"]]
    for name, reason in (("late", "key-retired"), ("bare", "tlog-missing"), ("bare2", "key-retired")):
        denied = results[images[name]]
        assert denied["decision"] == "deny" and denied["reason"] == reason, (name, denied)
        assert "signatures:" in denied["message"], denied["message"]
