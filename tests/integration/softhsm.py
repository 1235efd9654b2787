"""A throwaway SoftHSM v2 token (Debian ``softhsm2``) for PKCS#11 tests and benchmarks.

Each token lives in its own directory with its own ``softhsm2.conf``: ``SOFTHSM2_CONF`` points
the module there, so nothing touches the machine's tokens and parallel runs do not meet.
Keys made *outside* imgseal go in with ``softhsm2-util --import`` (PKCS#8 PEM from openssl);
``pkcs11-tool`` (OpenSC) lists what is on the token, as an independent look at it.

``make system-deps`` (run by ``make test``) installs both packages; without them the PKCS#11
tests are skipped with that instruction, never silently passed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

MODULE_CANDIDATES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)
USER_PIN = "246810"
SO_PIN = "13579246"


def softhsm_module() -> Path | None:
    return next((p for p in MODULE_CANDIDATES if p.is_file()), None)


def softhsm_missing_reason() -> str | None:
    if softhsm_module() is None or shutil.which("softhsm2-util") is None:
        return "SoftHSM v2 not installed: run `make system-deps` (apt-get install softhsm2 opensc)"
    return None


def require_softhsm() -> None:
    reason = softhsm_missing_reason()
    if reason is not None:
        pytest.skip(reason)


@dataclass(frozen=True)
class SoftHsmToken:
    """One initialised token: its label, PIN, module and the environment that selects it."""

    directory: Path
    label: str
    module: Path
    pin: str = USER_PIN

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    def env(self, *, pin: bool = True) -> dict[str, str]:
        """``SOFTHSM2_CONF`` (and the PIN, unless ``pin=False``) for a process that uses the token."""
        out = {"SOFTHSM2_CONF": str(self.conf)}
        if pin:
            out["IMGSEAL_PKCS11_PIN"] = self.pin
        return out

    def uri(self, label: str, *, key_id: bytes | None = None, module: bool = True) -> str:
        path = f"pkcs11:token={quote(self.label, safe='')};object={quote(label, safe='')}"
        if key_id is not None:
            path += ";id=" + "".join(f"%{b:02x}" for b in key_id)
        return path + (f"?module-path={self.module}" if module else "")

    def _run(self, *argv: str) -> str:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, **self.env(pin=False)})
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def import_pem(self, pkcs8_pem: Path, label: str, key_id: bytes) -> None:
        """Put a key pair made elsewhere (a PKCS#8 PEM private key) on the token."""
        self._run("softhsm2-util", "--import", str(pkcs8_pem), "--token", self.label, "--label", label,
                  "--id", key_id.hex(), "--pin", self.pin)

    def list_objects(self) -> str:
        """``pkcs11-tool -O`` as the user: OpenSC's view of the objects on the token."""
        return self._run("pkcs11-tool", "--module", str(self.module), "--token-label", self.label, "--login",
                         "--pin", self.pin, "-O")


def make_token(directory: Path, label: str = "imgseal-test") -> SoftHsmToken:
    """Initialise a fresh token in ``directory`` (a new softhsm2.conf and token store)."""
    module = softhsm_module()
    assert module is not None, softhsm_missing_reason()
    store = directory / "tokens"
    store.mkdir(parents=True, exist_ok=True)
    (directory / "softhsm2.conf").write_text(
        f"directories.tokendir = {store}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n")
    token = SoftHsmToken(directory, label, module)
    token._run("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN)
    return token


def openssl_key(directory: Path, name: str, kind: str) -> tuple[Path, Path]:
    """A PKCS#8 private key and its PKIX public PEM made by openssl (not by imgseal)."""
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    if kind.startswith("ecdsa-"):
        curve = {"ecdsa-p256": "P-256", "ecdsa-p384": "P-384", "ecdsa-p521": "P-521"}[kind]
        algorithm = ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"]
    elif kind.startswith("rsa-"):
        algorithm = ["-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{kind.removeprefix('rsa-')}"]
    else:
        algorithm = ["-algorithm", kind.upper()]
    subprocess.run(["openssl", "genpkey", *algorithm, "-out", str(private)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   capture_output=True)
    return private, public
