"""``make bench``: imgseal against peers, same machine, same run.

1. ``imgseal digest --deep`` over an OCI layout holding a large random layer vs
   ``sha256sum`` on the same blob file (throughput ratio; target >= 0.9).
2. ``imgseal digest --deep`` of the same image from a loopback docker-registry vs
   ``skopeo copy docker://… dir:…`` (wall-time ratio; target <= 1.0).
3. ``imgseal verify --key`` whole-process wall time on a loopback registry (median of 20;
   target < 0.35 s) and ``python -c "import imgseal.cli.main"`` (target < 0.15 s):
   :mod:`bench.verify`.
4. ``imgseal verify-bundle`` vs ``python -m sigstore verify identity --offline`` on one
   conformance bundle (whole-process ratio; target <= 0.5): :mod:`bench.verify_bundle`.
5. ``imgseal gate`` over 200 distinct signed images, cold and warm: :mod:`bench.gate`.
6. Sign time with a PKCS#11 key (SoftHSM v2) against the same key as a file: :mod:`bench.pkcs11`
   (skipped without softhsm2).
7. The admission webhook, warm 5-image Pods serial and at 32 concurrent, and a cold burst of
   100 images, beside ``main``'s webhook in the same run: :mod:`bench.webhook`.
8. ``imgseal verify-attestation --github-repo`` on one GitHub-style attestation (whole
   process; target < 0.3 s) beside sigstore-python doing gh's checks on the same bundle:
   :mod:`bench.github_attestation`.
Also :mod:`bench.naive_race`: what a cosign-style referrers-index read-modify-write loses.

``IMGSEAL_BENCH_MIB`` sets the layer size (default 1024).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgseal.digest import Digest
from imgseal.manifest import OCI_CONFIG, Descriptor, build_manifest
from imgseal.store.layout import LayoutStore


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def make_layout(root: Path, mib: int) -> tuple[LayoutStore, Path, Digest]:
    store = LayoutStore(root / "layout", create=True)
    blob = root / "layer.bin"
    with blob.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    with blob.open("rb") as f:
        digest, size = Digest.of_stream(f)
    store.put_blob_file(blob, digest, size)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    config_desc = Descriptor(OCI_CONFIG, store.put_blob(config), len(config))
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar", digest, size)
    raw = build_manifest(config=config_desc, layers=[layer])
    store.put_manifest(raw, "application/vnd.oci.image.manifest.v1+json", tag="big")
    return store, store.blob_path(digest), digest


def main() -> None:
    mib = int(os.environ.get("IMGSEAL_BENCH_MIB", "1024"))
    imgseal = [sys.executable, "-m", "imgseal"]
    with tempfile.TemporaryDirectory(prefix="imgseal-bench-") as tmp:
        root = Path(tmp)
        store, blob, _ = make_layout(root, mib)
        ref = f"oci-layout:{store.root}:big"
        subprocess.run(["cat", str(blob)], check=True, stdout=subprocess.DEVNULL)  # warm the page cache
        ours = min(timed([*imgseal, "digest", ref, "--deep"]) for _ in range(3))
        peer = min(timed(["sha256sum", str(blob)]) for _ in range(3))
        print(f"digest --deep (layout, {mib} MiB): imgseal {ours:.2f}s, sha256sum {peer:.2f}s, "
              f"throughput ratio {peer / ours:.2f} (target >= 0.9)")
        if shutil.which("docker-registry") and shutil.which("skopeo"):
            from imgseal.image import copy_manifest
            from imgseal.reference import parse_reference
            from imgseal.store import StoreFactory
            from tests.integration.registry_rig import start_registry

            with start_registry(root / "registry") as reg:
                dst = StoreFactory().open(parse_reference(f"{reg.host}/bench/big:big"))
                copy_manifest(store, dst, store.get_manifest("big"), tag="big")
                ours = min(timed([*imgseal, "digest", f"{reg.host}/bench/big:big", "--deep"]) for _ in range(3))
                runs = []
                for i in range(3):
                    runs.append(timed(["skopeo", "copy", "--src-tls-verify=false", f"docker://{reg.host}/bench/big:big",
                                       f"dir:{root}/skopeo{i}"]))
                    shutil.rmtree(root / f"skopeo{i}")
                peer = min(runs)
                print(f"digest --deep (registry): imgseal {ours:.2f}s, skopeo copy {peer:.2f}s, "
                      f"wall-time ratio {ours / peer:.2f} (target <= 1.0)")
        from bench import naive_race

        naive_race.main()
    from bench import pkcs11, verify, verify_bundle

    pkcs11.main()  # 6. PKCS#11 token key vs the same key as a file (signature and whole command)
    verify_bundle.main()  # 4. verify-bundle vs sigstore-python's CLI (ratio; target <= 0.5)
    if shutil.which("docker-registry"):
        verify.main()  # 3. verify --key and CLI import time, interleaved with the interpreter floor
        from bench import gate

        gate.main()  # 5. gate over 200 distinct signed images, cold and warm (targets < 10 s, < 1 s)
        from bench import webhook

        webhook.main([])  # 7. webhook: >= 400 req/s and p99 < 50 ms at 32 concurrent; cold 100 images < 8 s
        from bench import github_attestation

        github_attestation.main()  # 8. GitHub artifact attestation vs sigstore-python + gh's checks


if __name__ == "__main__":
    main()
