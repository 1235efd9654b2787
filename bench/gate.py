"""``imgseal gate`` over 200 distinct signed images on a loopback docker-registry: cold and warm.

Builds 200 small images in one repository each, signs each with one key (cosign v3 bundle
format, pushed in parallel), writes one manifest of 100 Deployments with two containers
each (tag references, so even a warm run must resolve every tag), then runs the gate as a
user would (``python -m imgseal gate``, a fresh process each time):

- cold: empty success cache: resolve, discover and verify every image (targets < 10 s);
- warm: the cache from the cold run: resolve tags only (target < 1 s).

Run with ``python -m bench.gate`` (needs ``docker-registry``); ``IMGSEAL_BENCH_IMAGES`` sets
the count. Not part of the test suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from keys import generate, public_pem
    from signer.image import sign_with_key
    from tests.integration.images import push_image
    from tests.integration.registry_rig import start_registry

    count = int(os.environ.get("IMGSEAL_BENCH_IMAGES", "200"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with start_registry(tmp / "registry") as registry:
            host = registry.host
            key = generate("ecdsa-p256")
            (tmp / "team.pub").write_bytes(public_pem(key))
            factory = StoreFactory()

            def prepare(i: int) -> str:
                repo = f"bench/app{i:03d}"
                desc = push_image(host, repo, content=f"image {i}".encode())
                ref = parse_reference(f"{host}/{repo}@{desc.digest}")
                sign_with_key(factory.open(ref), f"{host}/{repo}", desc, key)
                return f"{host}/{repo}:v1"

            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                images = list(pool.map(prepare, range(count)))
            print(f"prepared {count} signed images in {time.perf_counter() - started:.1f} s")
            docs = []
            for i in range(0, count, 2):
                containers = "".join(f"        - name: c{j}\n          image: {img}\n"
                                     for j, img in enumerate(images[i:i + 2]))
                docs.append(f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  template:\n"
                            f"    spec:\n      containers:\n{containers}")
            manifest = tmp / "deploy.yaml"
            manifest.write_text("---\n".join(docs))
            (tmp / "policy.yaml").write_text(f'version: 1\nrules:\n  - name: bench\n    match: ["{host}/bench/*"]\n'
                                             "    require:\n      signatures: {keys: [team.pub]}\n")
            cmd = [sys.executable, "-m", "imgseal", "gate", "--policy", str(tmp / "policy.yaml"), str(manifest),
                   "--cache-dir", str(tmp / "cache"), "-o", "json", "--workers", "16"]
            results = {}
            for label in ("cold", "warm"):
                started = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                results[label] = time.perf_counter() - started
                if proc.returncode != 0:
                    raise SystemExit(f"gate {label} run failed ({proc.returncode}): {proc.stderr[-2000:]}")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import imgseal.cli.main"], check=True)
            startup = time.perf_counter() - start
    print(f"gate over {count} distinct images (one process each, incl. ~{startup:.2f} s interpreter+import):")
    print(f"  cold: {results['cold']:.2f} s (target < 10 s)")
    print(f"  warm: {results['warm']:.2f} s (target < 1 s)")


if __name__ == "__main__":
    main()
