"""Sigstore client conformance vectors (sigstore/sigstore-conformance), run through the real CLI.

Each directory under tests/data/sigstore-conformance is one case: ``bundle.sigstore.json``,
optional ``artifact`` (default ``a.txt``), ``identity``/``issuer`` (defaults below),
``key.pub`` (verify with the key instead of an identity) and ``trusted_root.json``
(default: the embedded production root). A name ending in ``_fail`` must not verify.
Every case also runs against the artifact's ``sha256:`` digest instead of the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgseal.cli.main import app
from tests.datadir import DATA as DATA_DIR

ROOT = DATA_DIR / "sigstore-conformance"
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
CASES = sorted(p for p in ROOT.iterdir() if p.is_dir())


def _args(case: Path, *, by_digest: bool) -> list[str]:
    artifact = case / "artifact" if (case / "artifact").exists() else ROOT / "a.txt"
    args = ["verify-bundle", "--bundle", str(case / "bundle.sigstore.json")]
    if (case / "key.pub").exists():
        args += ["--key", str(case / "key.pub")]
    else:
        identity = (case / "identity").read_text().strip() if (case / "identity").exists() else DEFAULT_IDENTITY
        issuer = (case / "issuer").read_text().strip() if (case / "issuer").exists() else DEFAULT_ISSUER
        args += ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer]
    if (case / "trusted_root.json").exists():
        args += ["--trusted-root", str(case / "trusted_root.json")]
    target = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest() if by_digest else str(artifact)
    return [*args, target]


def test_all_vectors_present() -> None:
    # 55 cases copied from /work/shared/testdata/sigstore-conformance;
    # 2 carry key.pub (managed-key-no-key_fail has none).
    assert len(CASES) == 55
    assert sum((c / "key.pub").exists() for c in CASES) == 2


@pytest.mark.parametrize("by_digest", [False, True], ids=["file", "digest"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_case(case: Path, by_digest: bool) -> None:
    result = CliRunner().invoke(app, _args(case, by_digest=by_digest))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    stderr = result.stderr.strip()
    if case.name.endswith("_fail"):
        assert result.exit_code in (1, 2), (result.exit_code, stderr)
        # One line, naming the reason; never a traceback.
        assert stderr.startswith("imgseal: error: ") and "\n" not in stderr, stderr
    else:
        assert result.exit_code == 0, stderr
        assert result.stdout.startswith("verified: ")
