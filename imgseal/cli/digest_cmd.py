"""``imgseal digest``: resolve a reference to its manifest digest, optionally checking every blob."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from imgseal.cli._common import (
    CaFileOption,
    InsecureOption,
    OutputFormat,
    OutputOption,
    emit_json,
    err,
    guarded,
    out,
    parse_ref,
    store_factory,
)


def register(app: typer.Typer) -> None:
    app.command("digest")(digest)


def digest(
    reference: Annotated[
        str, typer.Argument(help="Image reference: REPO[:TAG][@DIGEST] or oci-layout:PATH[:TAG|@DIGEST].")
    ],
    deep: Annotated[bool, typer.Option("--deep", help="Also fetch and check the config and every layer.")] = False,
    platform: Annotated[
        str | None, typer.Option("--platform", help="With --deep on an index: check only os/arch[/variant].")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=32, help="Parallel blob downloads.")] = 4,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Print the pinned reference REPO@sha256:… for REFERENCE (a tag or a digest).

    When REFERENCE carries a digest, the fetched manifest must hash to it (exit 1
    otherwise). Exit codes: 0 ok, 1 digest mismatch, 2 bad reference, 3 registry/network/auth.
    """

    def run() -> None:
        from imgseal.content import fetch_manifest
        from imgseal.manifest import ImageIndex, Platform

        ref = parse_ref(reference)
        wanted = Platform.parse(platform) if platform else None
        store = store_factory(ca_file, insecure_registry).open(ref)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        pinned = ref.with_digest(manifest.digest).pinned()
        result: dict[str, Any] = {
            "reference": pinned,
            "digest": str(manifest.digest),
            "mediaType": manifest.media_type,
            "size": len(manifest.raw),
        }
        if isinstance(manifest, ImageIndex):
            result["manifests"] = [
                {"digest": str(c.digest), "mediaType": c.media_type, "size": c.size,
                 "platform": str(c.platform) if c.platform else None}
                for c in manifest.manifests
            ]
        if deep:
            deep_result = _run_deep(store, manifest, wanted, workers)
            result["verified"] = {
                "manifests": 1 + len(deep_result.manifests),
                "blobs": len(deep_result.blobs),
                "bytes": deep_result.total_bytes,
            }
        if output is OutputFormat.json:
            emit_json(result)
            return
        out(pinned)
        for child in result.get("manifests", []):
            out(f"  {child['platform'] or 'unknown'}\t{child['digest']}")
        if deep:
            v = result["verified"]
            err(f"verified {v['manifests']} manifest(s) and {v['blobs']} blob(s), {v['bytes']} bytes")

    guarded(run, output)


def _run_deep(store: Any, manifest: Any, platform: Any, workers: int) -> Any:
    from imgseal.content import verify_deep

    if not sys.stderr.isatty():
        return verify_deep(store, manifest, platform=platform, workers=workers)
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True) as progress:
        task = progress.add_task("checking blobs", total=None)
        total = 0

        def started(desc: Any) -> None:
            nonlocal total
            total += desc.size
            progress.update(task, total=total)

        return verify_deep(store, manifest, platform=platform, workers=workers,
                           on_progress=lambda _d, n: progress.advance(task, n), on_blob_start=started)
