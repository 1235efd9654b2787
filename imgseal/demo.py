"""``make demo``: the main job end to end on an embedded default, with no registry and no network.

Builds a small OCI image layout in a temp dir with imgseal's own writer, prints its
digest, checks it deeply, generates a key pair, signs the digest, verifies the signature
as a deploy gate, attaches signed SLSA provenance and verifies it, then shows that a
tampered layer and a signature from another key are both caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(*args: str, env: dict[str, str], expect: int = 0) -> str:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"\n$ imgseal {shown}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "imgseal", *args], env=env, capture_output=True, text=True,
                          check=False)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != expect:
        print(f"demo: expected exit {expect}, got {proc.returncode}", file=sys.stderr)
        sys.exit(1)
    print(f"(exit {proc.returncode})")
    return proc.stdout


def main() -> None:
    from imgseal.image import build_image
    from imgseal.store.layout import LayoutStore

    with tempfile.TemporaryDirectory(prefix="imgseal-demo-") as tmp:
        root = Path(tmp)
        layout = root / "image"
        store = LayoutStore(layout, create=True)
        desc = build_image(store, [{"app/hello.txt": b"hello from imgseal\n"}, {"etc/app.conf": b"mode=prod\n"}],
                           tag="1.0.0")
        print(f"built an OCI image layout at {layout} (tag 1.0.0)")
        env = {**os.environ, "IMGSEAL_PASSWORD": "demo-password"}
        ref = f"oci-layout:{layout}:1.0.0"
        pinned = _run("digest", ref, "--deep", env=env).splitlines()[0]
        _run("keys", "generate", "--output-prefix", str(root / "team"), env=env)
        _run("keys", "generate", "--output-prefix", str(root / "other"), env=env)
        _run("sign", pinned, "--key", str(root / "team.key"), "-a", "stage=prod", env=env)
        _run("verify", ref, "--key", str(root / "team.pub"), "-a", "stage=prod", "-o", "json", env=env)
        commit = "0123456789abcdef0123456789abcdef01234567"
        _run("provenance", pinned, "--ci", "generic", "--builder-id", "https://ci.example.com/builder@v1",
             "--source-uri", "git+https://git.example.com/team/app@refs/heads/main",
             "--source-digest", f"gitCommit:{commit}", "--attest", "--key", str(root / "team.key"),
             "--output", str(root / "provenance.json"), env=env)
        _run("verify-attestation", ref, "--type", "slsaprovenance1", "--key", str(root / "team.pub"),
             "--builder-id", "https://ci.example.com/builder", "--source-uri", "git.example.com/team/app",
             "--source-branch", "main", "-o", "json", env=env)
        _run("tree", pinned, env=env)
        print("\n# a signature by a key we do not trust is refused:")
        _run("verify", ref, "--key", str(root / "other.pub"), env=env, expect=1)
        print("\n# a tampered layer is caught by the deep check:")
        layer = store.get_manifest(desc.digest).layers[0]  # type: ignore[union-attr]
        blob = store.blob_path(layer.digest)
        blob.chmod(0o644)
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.write_bytes(bytes(data))
        _run("digest", pinned, "--deep", env=env, expect=1)
        print("\ndemo finished: digest pinned, signed, verified, provenance attested and checked; tampering and "
              "untrusted keys refused.")


if __name__ == "__main__":
    main()
