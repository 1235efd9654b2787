"""``imgseal keys generate|import|public``: files, modes, passwords, exit codes and exact stderr."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

import keys
from imgseal.cli import _password, keys_cmd
from keys.pem import pem_decode
from tests.datadir import DATA as DATA_DIR
from tests.datadir import REPO as REPO_DIR

DATA = DATA_DIR / "keys"
WRONG_LINE = "imgseal: error: wrong password or corrupted key file\n"
REPO = REPO_DIR


def _app() -> typer.Typer:
    # The keys group on its own root, so these tests do not depend on the other command modules.
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    keys_cmd.register(app)
    return app


APP = _app()


# Tests that check the files the CLI writes at cosign's default scrypt strength (N=2**16); the others
# run with N=2**15 to keep the suite fast (KDF strength is tested in test_keys.py).
DEFAULT_KDF_TESTS = frozenset({"test_generate_default"})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    for name in ("IMGSEAL_PASSWORD", "COSIGN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    if request.node.name not in DEFAULT_KDF_TESTS:
        monkeypatch.setattr(keys, "encrypt_private_key",
                            functools.partial(keys.encrypt_private_key, scrypt_n=32768))
    yield


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(APP, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _write_key(path: Path, password: bytes, kind: str = "ecdsa-p256") -> keys.PrivateKey:
    key = keys.generate(kind)
    path.write_bytes(keys.encrypt_private_key(key, password, scrypt_n=32768))
    return key


# --- generate -------------------------------------------------------------------------------------


def test_generate_default(tmp_path: Path) -> None:
    code, stdout, stderr = run("keys", "generate", env={"IMGSEAL_PASSWORD": "pw"})
    assert (code, stderr) == (0, "")
    assert stdout == "Private key written to cosign.key\nPublic key written to cosign.pub\n"
    private_pem = (tmp_path / "cosign.key").read_bytes()
    assert private_pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert stat.S_IMODE((tmp_path / "cosign.key").stat().st_mode) == 0o600
    key = keys.decrypt_private_key(private_pem, b"pw")
    assert keys.key_type_name(key) == "ecdsa-p256"
    block = pem_decode(private_pem)
    assert block is not None and json.loads(block[1])["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert (tmp_path / "cosign.pub").read_bytes() == keys.public_pem(key)


def test_generate_type_prefix_and_json(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    code, stdout, _ = run("keys", "generate", "--type", "ed25519", "--output-prefix", "out/release",
                          "-o", "json", env={"COSIGN_PASSWORD": ""})
    assert code == 0
    result = json.loads(stdout)
    key = keys.decrypt_private_key((tmp_path / "out/release.key").read_bytes(), b"")
    assert result == {"ok": True, "private_key": "out/release.key", "public_key": "out/release.pub",
                      "key_type": "ed25519", "key_id": keys.key_id(key)}


def test_generate_refuses_overwrite_then_force(tmp_path: Path) -> None:
    (tmp_path / "cosign.key").write_bytes(b"keep me")
    code, stdout, stderr = run("keys", "generate", env={"IMGSEAL_PASSWORD": "pw"})
    assert code == 2 and stdout == ""
    assert stderr == ("imgseal: error: refusing to overwrite existing file cosign.key"
                      " (hint: use --force to overwrite)\n")
    assert (tmp_path / "cosign.key").read_bytes() == b"keep me"
    assert not (tmp_path / "cosign.pub").exists()
    code, _, _ = run("keys", "generate", "--force", env={"IMGSEAL_PASSWORD": "pw"})
    assert code == 0
    assert keys.decrypt_private_key((tmp_path / "cosign.key").read_bytes(), b"pw")


def test_generate_unknown_type_is_usage_error() -> None:
    code, _, stderr = run("keys", "generate", "--type", "dsa", env={"IMGSEAL_PASSWORD": "pw"})
    assert code == 2 and "dsa" in stderr


# --- passwords ------------------------------------------------------------------------------------------


def test_no_password_and_no_terminal_is_usage_error(tmp_path: Path) -> None:
    code, stdout, stderr = run("keys", "generate")
    assert code == 2 and stdout == ""
    assert stderr.startswith("imgseal: error: no password for the private key: set IMGSEAL_PASSWORD")
    assert stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_imgseal_password_wins_over_cosign_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "cosign")
    assert _password.read_password(confirm=True) == b"cosign"
    monkeypatch.setenv("IMGSEAL_PASSWORD", "imgseal")
    assert _password.read_password(confirm=True) == b"imgseal"
    monkeypatch.setenv("IMGSEAL_PASSWORD", "")
    assert _password.read_password(confirm=False) == b""  # set-but-empty is the empty password


def test_prompt_on_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["typed", "typed", "one", "two"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(_password, "_stdin_is_tty", lambda: True)
    monkeypatch.setattr(_password.getpass, "getpass", fake_getpass)
    assert _password.read_password(confirm=True) == b"typed"
    assert len(prompts) == 2
    with pytest.raises(_password.UsageError, match="do not match"):
        _password.read_password(confirm=True)


def test_generate_with_prompted_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["pässwörd", "pässwörd"])
    monkeypatch.setattr(_password, "_stdin_is_tty", lambda: True)
    monkeypatch.setattr(_password.getpass, "getpass", lambda prompt="": next(answers))
    code, _, _ = run("keys", "generate", "-t", "ecdsa-p384")
    assert code == 0
    key = keys.decrypt_private_key((tmp_path / "cosign.key").read_bytes(), "pässwörd".encode())
    assert keys.key_type_name(key) == "ecdsa-p384"


# --- public -------------------------------------------------------------------------------------------------


def test_public_prints_pem(tmp_path: Path) -> None:
    key = _write_key(tmp_path / "a.key", b"pw", "ed25519")
    code, stdout, stderr = run("keys", "public", "a.key", env={"IMGSEAL_PASSWORD": "pw"})
    assert (code, stderr) == (0, "")
    assert stdout.encode() == keys.public_pem(key)


def test_public_wrong_password_exit_4_one_line(tmp_path: Path) -> None:
    _write_key(tmp_path / "a.key", b"pw")
    code, stdout, stderr = run("keys", "public", "a.key", env={"IMGSEAL_PASSWORD": "nope"})
    assert code == 4
    assert stdout == ""
    assert stderr == WRONG_LINE


def test_public_from_env_ref_and_real_cosign_file(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = (DATA / "cosign" / "sigstore.key").read_bytes()
    monkeypatch.setenv("MY_SIGNING_KEY", pem.decode())
    code, stdout, _ = run("keys", "public", "env://MY_SIGNING_KEY", "-o", "json",
                          env={"COSIGN_PASSWORD": "hello"})
    assert code == 0
    result = json.loads(stdout)
    expected = keys.decrypt_private_key(pem, b"hello")
    assert result["public_key"].encode() == keys.public_pem(expected)
    assert result["key_type"] == "ecdsa-p256" and result["key_id"] == keys.key_id(expected)


def test_public_rejects_non_key_before_asking_for_password(tmp_path: Path) -> None:
    key = keys.generate("ecdsa-p256")
    (tmp_path / "a.pub").write_bytes(keys.public_pem(key))
    # No password is available: reaching the prompt would be exit 2, so exit 4 proves the order.
    code, _, stderr = run("keys", "public", "a.pub")
    assert code == 4
    assert stderr.startswith("imgseal: error: not a cosign private key: PEM type 'PUBLIC KEY'")


def test_public_missing_file_and_var() -> None:
    code, _, stderr = run("keys", "public", "missing.key", env={"IMGSEAL_PASSWORD": "pw"})
    assert code == 4 and stderr == "imgseal: error: key file not found: missing.key\n"
    code, _, stderr = run("keys", "public", "env://IMGSEAL_TEST_NO_SUCH_VAR", env={"IMGSEAL_PASSWORD": "pw"})
    assert code == 4 and "IMGSEAL_TEST_NO_SUCH_VAR" in stderr


# --- import -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("validecp256.pem", "ecdsa-p256"),    # SEC1
    ("validrsa.pem", "rsa-2048"),          # PKCS#1
    ("ed25519.pem", "ed25519"),            # PKCS#8
])
def test_import_fixtures(tmp_path: Path, name: str, kind: str) -> None:
    source = DATA / "cosign" / name
    code, stdout, _ = run("keys", "import", str(source), "--output-prefix", "imported",
                          env={"IMGSEAL_PASSWORD": "new"})
    assert code == 0 and "imported.key" in stdout
    original = keys.import_private_pem(source.read_bytes(), None)
    key = keys.decrypt_private_key((tmp_path / "imported.key").read_bytes(), b"new")
    assert keys.key_type_name(key) == kind
    assert (tmp_path / "imported.pub").read_bytes() == keys.public_pem(original)
    assert stat.S_IMODE((tmp_path / "imported.key").stat().st_mode) == 0o600


def test_import_encrypted_pkcs8_uses_the_same_password(tmp_path: Path) -> None:
    key = keys.generate("ecdsa-p256")
    (tmp_path / "src.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    code, _, _ = run("keys", "import", "src.pem", env={"IMGSEAL_PASSWORD": "pw"})
    assert code == 0
    assert keys.public_pem(keys.decrypt_private_key((tmp_path / "cosign.key").read_bytes(), b"pw")) == \
        keys.public_pem(key)
    code, _, stderr = run("keys", "import", "src.pem", "--force", env={"IMGSEAL_PASSWORD": "other"})
    assert code == 4 and stderr == WRONG_LINE


def test_import_weak_key_refused_before_password(tmp_path: Path) -> None:
    code, _, stderr = run("keys", "import", str(DATA / "cosign" / "invalidecp224.pem"))
    assert code == 4 and "secp224r1 is not allowed" in stderr
    assert list(tmp_path.iterdir()) == []


def test_import_refuses_overwrite(tmp_path: Path) -> None:
    (tmp_path / "cosign.pub").write_bytes(b"x")
    code, _, stderr = run("keys", "import", str(DATA / "cosign" / "ed25519.pem"), env={"IMGSEAL_PASSWORD": "p"})
    assert code == 2 and "cosign.pub" in stderr
    assert not (tmp_path / "cosign.key").exists()


# --- through the installed entry point -------------------------------------------------------------------


def test_entry_point_wrong_password(tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import imgseal.cli.main"], capture_output=True, cwd=REPO)
    if probe.returncode != 0:
        pytest.skip("imgseal.cli.main does not import yet (another command module is missing)")
    _write_key(tmp_path / "a.key", b"pw")
    env = {**os.environ, "IMGSEAL_PASSWORD": "bad"}
    proc = subprocess.run([sys.executable, "-m", "imgseal.cli.main", "keys", "public", str(tmp_path / "a.key")],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "", WRONG_LINE)
