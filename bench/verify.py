"""Whole-process wall time of ``imgseal verify --key`` for one signed image on a loopback registry.

Starts Debian's ``docker-registry`` on 127.0.0.1, pushes one small image, signs its digest
with an ECDSA P-256 key (cosign v3 bundle format, attached through the tag-schema
fallback since distribution 2.8 has no referrers API), then times, as a user runs it::

    python -m imgseal verify HOST/bench/app@sha256:… --key team.pub

Each round runs, interleaved so load from other processes hits all of them alike:

- ``imgseal verify --key`` (must exit 0: a verify that fails is no benchmark);
- ``python -c "import imgseal.cli.main"`` (CLI start-up);
- ``python -c pass`` (the interpreter alone: the floor no change to imgseal can lower).

Reports medians of :data:`RUNS` rounds after one warm-up. Targets: verify < 0.35 s, import
< 0.15 s. The project's ``.py`` files are byte-compiled first and the children run with
bytecode writing allowed, as after ``pip install``. Run with ``python -m bench.verify``.
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
RUNS = 20
VERIFY_TARGET_S = 0.35
IMPORT_TARGET_S = 0.15


def child_env() -> dict[str, str]:
    """The environment for measured children: bytecode caches used, as an installed imgseal has them."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_project() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "imgseal", "keys", "signer", "verifier"],
                   cwd=ROOT, check=True, env=child_env(), stdout=subprocess.DEVNULL)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def interleaved(commands: dict[str, list[str]], runs: int = RUNS) -> dict[str, list[float]]:
    """One warm-up of each command (which must succeed), then ``runs`` rounds of each in turn."""
    env = child_env()
    for cmd in commands.values():
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env))
    return times


def main(runs: int = RUNS) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from keys import generate, public_pem
    from signer.image import sign_with_key
    from tests.integration.images import push_image
    from tests.integration.registry_rig import start_registry

    compile_project()
    with tempfile.TemporaryDirectory(prefix="imgseal-bench-verify-") as tmp_name:
        tmp = Path(tmp_name)
        with start_registry(tmp / "registry") as registry:
            key = generate("ecdsa-p256")
            pub = tmp / "team.pub"
            pub.write_bytes(public_pem(key))
            desc = push_image(registry.host, "bench/app", content=b"bench verify")
            ref = parse_reference(f"{registry.host}/bench/app@{desc.digest}")
            sign_with_key(StoreFactory().open(ref), f"{registry.host}/bench/app", desc, key)
            py = sys.executable
            times = interleaved({
                "verify": [py, "-m", "imgseal", "verify", f"{registry.host}/bench/app@{desc.digest}",
                           "--key", str(pub)],
                "import": [py, "-c", "import imgseal.cli.main"],
                "python": [py, "-c", "pass"],
            }, runs)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"imgseal verify --key, one signed image on a loopback registry, median of {runs} interleaved runs:")
    print(f"  imgseal verify --key             {med['verify'] * 1000:7.1f} ms  (target < {VERIFY_TARGET_S * 1000:.0f})")
    print(f"  python -c 'import imgseal.cli.main' {med['import'] * 1000:4.1f} ms  "
          f"(target < {IMPORT_TARGET_S * 1000:.0f})")
    print(f"  python -c pass (interpreter floor) {med['python'] * 1000:5.1f} ms")
    print(f"  verify above the floor             {(med['verify'] - med['python']) * 1000:5.1f} ms")
    return {"verify_s": med["verify"], "import_s": med["import"], "python_s": med["python"]}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
