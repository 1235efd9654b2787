"""The admission webhook under load, beside the code it replaces, in the same run.

On a loopback docker-registry: five signed images (tag references, so every request
resolves five tags) and 100 more for a cold burst. Each webhook runs as a user runs it
(``python -m imgseal webhook serve``, its own process, TLS), first the code of ``--baseline``
(default ``main``: its tree from ``git archive``, so the figures beside ours come from the
same machine at the same time), then this tree:

- serial: one connection, warm 5-image Pods, p50 (the issue's 6.3 ms);
- 32 concurrent connections of warm 5-image Pods: requests/s and p99 (targets >= 400/s and
  p99 < 50 ms per replica; the issue measured ~205/s and 228 ms);
- cold: one review of 100 distinct never-verified images, decided within the 8 s deadline;
- the webhook process's CPU time per request in the 32-connection run (from /proc), which
  the machine's other load changes far less than latency.

The load comes from another process (raw HTTP/1.1 keep-alive over TLS on asyncio, so the
client costs little of the two cores). The machine's load average is printed with the
figures: the cores are shared.

``python -m bench.webhook [--baseline REF|none] [--seconds S]``; part of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# --- the load generator (runs in its own process) --------------------------------------------


async def _one_connection(port: int, context: ssl.SSLContext, request: bytes, until: float,
                          latencies: list[float], count: int | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    done = 0
    try:
        while (count is None and time.perf_counter() < until) or (count is not None and done < count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200") or b'"allowed":true' not in body:
                raise RuntimeError(f"unexpected answer: {head[:40]!r} {body[:300]!r}")
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        writer.close()


def load(port: int, ca: str, body: bytes, concurrency: int, seconds: float, count: int | None = None
         ) -> dict[str, float]:
    """POST ``body`` to /validate on ``concurrency`` keep-alive connections; latency figures in ms."""
    context = ssl.create_default_context(cafile=ca)
    request = (f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []

    async def main() -> float:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(_one_connection(port, context, request, until, latencies, count)
                               for _ in range(concurrency)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    ordered = sorted(latencies)
    return {"requests": len(ordered), "rps": len(ordered) / elapsed, "p50": statistics.median(ordered) * 1000,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000}


# --- the rig ---------------------------------------------------------------------------------


def review(images: list[str], uid: str) -> bytes:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench", "namespace": "default"},
           "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "namespace": "default", "operation": "CREATE", "object": obj,
                                   "dryRun": False}}).encode()


def start_webhook(source: Path, tmp: Path, port: int, env: dict[str, str], extra: tuple[str, ...] = ()
                  ) -> subprocess.Popen[bytes]:
    """``python -m imgseal webhook serve`` with the packages of ``source`` first on the path."""
    args = [sys.executable, "-m", "imgseal", "webhook", "serve", "--policy", str(tmp / "policy.yaml"),
            "--tls-cert", str(tmp / "tls.crt"), "--tls-key", str(tmp / "tls.key"), "--host", "127.0.0.1",
            "--port", str(port), *extra]
    proc = subprocess.Popen(args, cwd=source, env={**env, "PYTHONPATH": str(source)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(tmp / "tls.crt"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            import urllib.request

            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"webhook from {source} exited with {proc.returncode}") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("webhook did not start")


def measure(label: str, source: Path, tmp: Path, warm: list[str], cold: list[str], seconds: float,
            env: dict[str, str], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    from tests.integration.webhook_server import free_port

    port = free_port()
    proc = start_webhook(source, tmp, port, env, extra)
    ca = str(tmp / "tls.crt")
    try:
        cold_s, cold_ok = one_review(port, ca, review(cold, "cold"))
        with ProcessPoolExecutor(1) as client:
            body = review(warm, "warm")
            client.submit(load, port, ca, body, 4, 0, 25).result()  # warm: cache filled, connections pooled
            serial = client.submit(load, port, ca, body, 1, 0, 300).result()
            cpu_before = process_cpu(proc.pid)
            concurrent = client.submit(load, port, ca, body, 32, seconds).result()
            cpu_ms = (process_cpu(proc.pid) - cpu_before) * 1000 / max(1, concurrent["requests"])
    finally:
        proc.terminate()
        proc.wait(10)
    result = {"label": label, "cold100_s": cold_s, "cold100_admitted": cold_ok, "serial_p50_ms": serial["p50"],
              "rps32": concurrent["rps"], "p50_32_ms": concurrent["p50"], "p99_32_ms": concurrent["p99"],
              "cpu_ms_per_request": cpu_ms, "load": os.getloadavg()[0]}
    decided = "admitted" if cold_ok else "DENIED"
    print(f"{label:>22}: cold 100 images {cold_s:5.2f} s ({decided}) | serial p50 {serial['p50']:5.1f} ms | "
          f"32 concurrent: {concurrent['rps']:5.0f} req/s, p50 {concurrent['p50']:5.1f} ms, "
          f"p99 {concurrent['p99']:6.1f} ms, {cpu_ms:.2f} ms CPU/request | load average {result['load']:.1f}",
          flush=True)
    return result


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used: a figure the machine's other load does not inflate much."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_review(port: int, ca: str, body: bytes) -> tuple[float, bool]:
    """One request on a fresh connection: seconds to the answer, and whether it admitted."""
    import urllib.request

    context = ssl.create_default_context(cafile=ca)
    request = urllib.request.Request(f"https://127.0.0.1:{port}/validate", data=body,
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, context=context, timeout=30) as resp:
        answer = json.loads(resp.read())
    return time.perf_counter() - started, bool(answer["response"]["allowed"])


def baseline_tree(ref: str, into: Path) -> Path:
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git ref to measure beside this tree ('none': skip)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 32-connection run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from keys import generate, public_pem
    from signer.image import sign_with_key
    from tests.integration.images import push_image
    from tests.integration.kube_api_double import throwaway_cert
    from tests.integration.registry_rig import start_registry

    with tempfile.TemporaryDirectory(prefix="imgseal-bench-webhook-") as tmp_name:
        tmp = Path(tmp_name)
        with start_registry(tmp / "registry") as registry:
            host = registry.host
            key = generate("ecdsa-p256")
            (tmp / "team.pub").write_bytes(public_pem(key))
            factory = StoreFactory()

            def prepare(name: str) -> str:
                repo = f"bench/{name}"
                desc = push_image(host, repo, content=name.encode())
                sign_with_key(factory.open(parse_reference(f"{host}/{repo}@{desc.digest}")), f"{host}/{repo}",
                              desc, key)
                return f"{host}/{repo}:v1"

            # (label, git ref or None for this tree, extra options)
            runs: list[tuple[str, str | None, tuple[str, ...]]] = []
            if args.baseline != "none":
                known = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", args.baseline],
                                       capture_output=True, check=False).returncode == 0
                if known:
                    runs.append((f"baseline ({args.baseline})", args.baseline, ()))
                else:
                    print(f"webhook: baseline {args.baseline!r} is not a git ref here: measured without it")
            runs.append(("this tree, --tag-ttl 0", None, ("--tag-ttl", "0")))
            runs.append(("this tree", None, ()))
            with ThreadPoolExecutor(16) as pool:
                warm = list(pool.map(prepare, [f"app{i}" for i in range(5)]))
                colds = [list(pool.map(prepare, [f"cold{r}-{i:03d}" for i in range(100)])) for r in range(len(runs))]
            (tmp / "policy.yaml").write_text(f'version: 1\ndefault: deny\nrules:\n  - name: bench\n'
                                             f'    match: ["{host}/bench/*"]\n'
                                             "    require:\n      signatures: {keys: [team.pub]}\n")
            throwaway_cert(tmp, "tls")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSEAL_", "KUBERNETES_"))}
            env["DOCKER_CONFIG"] = str(tmp / "no-docker-config")
            print(f"webhook: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before the run", flush=True)
            results = []
            for (label, ref, extra), cold in zip(runs, colds, strict=True):
                source = baseline_tree(ref, tmp / "baseline") if ref else ROOT
                results.append(measure(label, source, tmp, warm, cold, args.seconds, env, extra))
                if ref:
                    shutil.rmtree(tmp / "baseline")
            ours = results[-1]
            print(f"targets: 32 concurrent >= 400 req/s ({ours['rps32']:.0f}), p99 < 50 ms ({ours['p99_32_ms']:.1f}), "
                  f"cold 100 images < 8 s ({ours['cold100_s']:.2f})")


if __name__ == "__main__":
    main()
