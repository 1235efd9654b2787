"""Whole-process time of ``imgseal verify-bundle`` vs sigstore-python's CLI on one conformance case.

Both verify the same bundle for the same file offline with the same identity policy:

- ``imgseal verify-bundle --bundle B --certificate-identity I --certificate-oidc-issuer U FILE``
  (embedded production root, or the case's ``trusted_root.json``);
- ``python -m sigstore verify identity --offline --bundle B --cert-identity I
  --cert-oidc-issuer U FILE`` (sigstore-python 4.x; the production root from its embedded
  TUF data). sigstore's CLI takes a custom root only inside a full ClientTrustConfig, so
  cases with their own ``trusted_root.json`` are refused here: compare production cases.

Median of 10 interleaved runs each, after one warm-up run of each that must succeed; the project
is byte-compiled first and children run with bytecode caches, as after ``pip install``. Run with
``python -m bench.verify_bundle [CASE_DIR]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "data" / "sigstore-conformance"
DEFAULT_CASE = CONFORMANCE / "happy-path-v0.3"
RUNS = 10


def policy_of(bundle_path: Path) -> tuple[str, str]:
    """The identity and issuer the bundle's certificate carries (the conformance harness does the same)."""
    import base64

    from cryptography import x509

    from verifier.sigstore.certificate import certificate_identities, extension

    material = json.loads(bundle_path.read_bytes())["verificationMaterial"]
    raw = material["certificate"]["rawBytes"] if "certificate" in material else \
        material["x509CertificateChain"]["certificates"][0]["rawBytes"]
    cert = x509.load_der_x509_certificate(base64.b64decode(raw))
    issuer = extension(cert, "1.3.6.1.4.1.57264.1.1", "1.3.6.1.4.1.57264.1.8")
    identities = certificate_identities(cert)
    if issuer is None or not identities:
        raise SystemExit(f"{bundle_path}: certificate has no identity or issuer")
    return identities[0], issuer


def child_env() -> dict[str, str]:
    """Children use bytecode caches, as an installed imgseal (and sigstore) has them."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def interleaved_medians(commands: list[list[str]], runs: int = RUNS) -> list[float]:
    """One warm-up of each command (which must verify), then ``runs`` rounds running each in turn.

    Interleaving makes load from other processes on the machine hit every command alike.
    """
    env = child_env()
    subprocess.run([sys.executable, "-m", "compileall", "-q", "imgseal", "keys", "signer", "verifier"], cwd=ROOT,
                   check=True, env=env, stdout=subprocess.DEVNULL)
    for cmd in commands:
        subprocess.run(cmd, check=True, capture_output=True, env=env)
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for i, cmd in enumerate(commands):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(case: Path = DEFAULT_CASE) -> dict[str, float]:
    bundle = case / "bundle.sigstore.json"
    artifact = CONFORMANCE / "a.txt"
    trusted_root = case / "trusted_root.json"
    identity, issuer = policy_of(bundle)
    ours = [sys.executable, "-m", "imgseal", "verify-bundle", "--bundle", str(bundle), "--certificate-identity",
            identity, "--certificate-oidc-issuer", issuer, str(artifact)]
    if trusted_root.exists():
        ours += ["--trusted-root", str(trusted_root)]
    peer = [sys.executable, "-m", "sigstore", "verify", "identity", "--offline", "--bundle", str(bundle),
            "--cert-identity", identity, "--cert-oidc-issuer", issuer, str(artifact)]
    if trusted_root.exists():
        raise SystemExit(f"{case.name} has its own trusted root; sigstore's CLI needs a full trust config for it")
    t_ours, t_peer = interleaved_medians([ours, peer])
    print(f"case {case.name} ({identity}, {issuer}), median of {RUNS} interleaved whole-process runs:")
    print(f"  imgseal verify-bundle           {t_ours * 1000:8.1f} ms")
    print(f"  python -m sigstore verify identity {t_peer * 1000:5.1f} ms")
    print(f"  ratio imgseal / sigstore-python {t_ours / t_peer:8.2f} (target <= 0.5)")
    return {"imgseal_s": t_ours, "sigstore_python_s": t_peer, "ratio": t_ours / t_peer}


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CASE)
