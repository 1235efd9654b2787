"""Start-up cost guards: what the CLI imports before it does any work, and the lazy command table.

``imgseal verify --key`` and ``imgseal --help`` must not pay for libraries they do not use
(DESIGN.md: "sigstore is imported lazily, so `imgseal verify --key` starts fast"). Each
check runs a fresh interpreter and reads ``sys.modules`` at the end, since an import done
once by another test in this process would hide a regression here.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main

from imgseal.cli import main
from tests.datadir import REPO as REPO_DIR

REPO = REPO_DIR
HEAVY = ("sigstore", "sigstore_models", "pydantic", "requests", "urllib3", "rich", "rfc3161_client")

# Runs argv through the CLI and prints, as JSON, every top-level package loaded by then.
PROBE = """
import json, sys
from imgseal.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after(*argv: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout.splitlines()[-1]))
    return modules | {name.split(".")[0] for name in modules}  # every module, and every top-level package


def test_import_loads_no_heavy_library() -> None:
    proc = subprocess.run([sys.executable, "-c", "import json, sys, imgseal.cli.main; "
                           "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # Nor any command module, nor the verifier/signer/keys packages: those load per command.
    assert not loaded & {"keys", "signer", "verifier", "cryptography"}, sorted(loaded)


@pytest.mark.parametrize("argv", [("--help",), ("verify", "--help"), ("verify-bundle", "--help")])
def test_help_loads_no_heavy_library(argv: tuple[str, ...]) -> None:
    loaded = loaded_after(*argv)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_root_help_lists_every_command_without_importing_them() -> None:
    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom imgseal.cli.main import app\n"
                           "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
                           "print(sorted(m for m in sys.modules if m.endswith('_cmd')))"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    help_text, loaded = proc.stdout.rsplit("\n", 2)[0], proc.stdout.splitlines()[-1]
    assert loaded == "[]"
    for name in main.COMMANDS:
        assert f"\n  {name} " in help_text, name


def test_verify_key_path_never_imports_sigstore(tmp_path: Path) -> None:
    # A key that loads, and a layout reference that does not exist: the command goes as far
    # as opening the store and fails there (exit 2/3), having loaded the whole --key path.
    from keys import generate, public_pem

    pub = tmp_path / "k.pub"
    pub.write_bytes(public_pem(generate("ecdsa-p256")))
    loaded = loaded_after("verify", f"oci-layout:{tmp_path / 'missing'}:v1", "--key", str(pub))
    assert "cryptography" in loaded and "keys" in loaded  # the probe did reach the key path
    assert not loaded & {"sigstore", "sigstore_models", "pydantic", "rich", "rfc3161_client"}, sorted(loaded)
    # Nor our own Sigstore verifier and X.509 (~40 ms): only a signature carrying a log entry or
    # timestamp, or --require-tlog / --require-timestamp, needs them.
    ours = {"cryptography.x509", "verifier.keyless", "verifier.sigstore.bundle", "verifier.sigstore.trust"}
    assert not loaded & ours, sorted(loaded & ours)


def _registered(module: str) -> dict[str, str]:
    sub = typer.Typer()
    sub.callback()(lambda: None)
    importlib.import_module(f"imgseal.cli.{module}").register(sub)
    group = typer.main.get_group(sub)
    return {name: cmd.get_short_help_str(10_000) for name, cmd in group.commands.items()}


def _command_modules() -> list[str]:
    return sorted(p.stem for p in (REPO / "imgseal" / "cli").glob("*_cmd.py"))


@pytest.mark.parametrize("module", _command_modules())
def test_command_table_matches_module(module: str) -> None:
    """main.COMMANDS names exactly the commands each module registers, with their one-line help."""
    registered = _registered(module)
    table = {name: short for name, (mod, short) in main.COMMANDS.items() if mod == module}
    assert registered == table


def test_command_table_names_only_existing_modules() -> None:
    assert {mod for mod, _ in main.COMMANDS.values()} <= set(_command_modules())


def test_lazy_group_loads_a_command_on_demand_and_suggests_from_all() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(main.app, ["verify-bundel"])
    assert result.exit_code == 2
    assert "Did you mean 'verify-bundle'" in result.output
    result = CliRunner().invoke(main.app, ["digest", "--help"])
    assert result.exit_code == 0 and "REFERENCE" in result.output


def test_policy_without_notation_rules_never_imports_x509(tmp_path: Path) -> None:
    """``gate``/``webhook`` load the policy on every run; x509 (~30 ms) is for notation rules only."""
    from keys import generate, public_pem

    (tmp_path / "team.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: 1\nrules:\n  - name: team\n    match: ["registry.example/team/*"]\n'
                      "    require:\n      signatures: {keys: [team.pub]}\n")
    probe = PROBE.replace("{name.split('.')[0] for name in sys.modules}", "set(sys.modules)")
    probe = probe.replace('{name.split(".")[0] for name in sys.modules}', "set(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe, "policy", "check", str(policy)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert "verifier.gate.policy" in loaded and "keys" in loaded  # the probe did load and check the policy
    assert "cryptography.x509" not in loaded and "verifier.notation.trust_policy" not in loaded
