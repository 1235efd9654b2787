"""Sign time with a PKCS#11 key (SoftHSM v2) against the same key as a file, same run.

For an ECDSA P-256 and an RSA 3072 key made by openssl and imported into a fresh SoftHSM token:

1. **Signature** — :func:`keys.sign` over a 1 KiB payload, :data:`SIGNATURES` times each,
   interleaved: the token key (``CKM_ECDSA`` / ``CKM_RSA_PKCS`` through python-pkcs11) and the
   same key loaded from its PEM (cryptography/OpenSSL). Median per signature.
2. **Whole command** — ``imgseal sign oci-layout:…@sha256:… --key K`` as a user runs it,
   :data:`RUNS` interleaved rounds: the ``pkcs11:`` URI (load module, log in, find the key,
   sign), the plain PKCS#8 PEM, and the cosign-encrypted key file (its scrypt KDF is slow on
   purpose). Median wall time.

Skipped cleanly (one line, exit 0) without softhsm2. Run with ``python -m bench.pkcs11``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNATURES = 200
RUNS = 7
KINDS = ("ecdsa-p256", "rsa-3072")


def _sign_latencies(uri: str, pem: Path, env: dict[str, str]) -> tuple[float, float]:
    """Median seconds per signature, token then file (a child process: SOFTHSM2_CONF is read at load)."""
    probe = f"""
import statistics, sys, time
from imgseal.cli._keyload import load_private_key
from keys import import_private_pem, sign
token = load_private_key({uri!r})
file_key = import_private_pem(open({str(pem)!r}, "rb").read(), None)
payload = bytes(1024)
t, f = [], []
for _ in range({SIGNATURES}):
    for key, out in ((token, t), (file_key, f)):
        start = time.perf_counter()
        sign(key, payload)
        out.append(time.perf_counter() - start)
print(statistics.median(t), statistics.median(f))
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True, timeout=300)
    token, file = proc.stdout.split()
    return float(token), float(file)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    from tests.integration.softhsm import make_token, openssl_key, softhsm_missing_reason

    reason = softhsm_missing_reason()
    if reason is not None:
        print(f"pkcs11 sign: skipped ({reason})")
        return
    from keys import encrypt_private_key, import_private_pem
    from tests.integration.images import layout_image

    with tempfile.TemporaryDirectory(prefix="imgseal-bench-pkcs11-") as tmp:
        root = Path(tmp)
        token = make_token(root / "hsm")
        desc = layout_image(root / "layout", content=b"bench pkcs11")
        ref = f"oci-layout:{root / 'layout'}@{desc.digest}"
        env = {**os.environ, **token.env(), "IMGSEAL_PASSWORD": "bench"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        imgseal = [sys.executable, "-m", "imgseal", "sign", ref, "--key"]
        for i, kind in enumerate(KINDS, start=1):
            pem, _ = openssl_key(root, kind, kind)
            token.import_pem(pem, kind, bytes([i]))
            uri = token.uri(kind)
            cosign_key = root / f"{kind}.key"
            cosign_key.write_bytes(encrypt_private_key(import_private_pem(pem.read_bytes(), None), b"bench"))
            per_token, per_file = _sign_latencies(uri, pem, env)
            print(f"pkcs11 sign ({kind}, softhsm2): one signature token {per_token * 1e3:.2f} ms, "
                  f"file {per_file * 1e3:.2f} ms, ratio {per_token / per_file:.1f}x (median of {SIGNATURES})")
            commands = {"pkcs11": [*imgseal, uri], "pem": [*imgseal, str(pem)],
                        "cosign.key": [*imgseal, str(cosign_key)]}
            for cmd in commands.values():
                subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT, timeout=120)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(RUNS):
                for name, cmd in commands.items():
                    times[name].append(_timed(cmd, env))
            med = {name: statistics.median(ts) for name, ts in times.items()}
            print(f"pkcs11 sign ({kind}): imgseal sign whole process pkcs11: {med['pkcs11']:.3f}s, "
                  f"same key as PEM file {med['pem']:.3f}s, as cosign.key {med['cosign.key']:.3f}s "
                  f"(median of {RUNS}, oci-layout)")


if __name__ == "__main__":
    main()
