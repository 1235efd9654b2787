"""``imgseal sign``: sign an image digest and attach the signature beside the image."""

from __future__ import annotations

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
from imgseal.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)


def sign(
    reference: Annotated[str, typer.Argument(help="REPO@sha256:… or oci-layout:PATH@sha256:… (a digest is required).")],
    key: Annotated[str | None, typer.Option("--key", help="Private key: a path or env://VAR (cosign format).")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="bundle (cosign v3: in-toto statement in a Sigstore bundle, attached as "
                          "an OCI referrer) or legacy (cosign .sig tag).")
    ] = "bundle",
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", "-a", help="key=value signed into the payload (repeatable).")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="For an index: also sign every child.")] = False,
    resolve_tag: Annotated[
        bool, typer.Option("--resolve-tag", help="Accept a tag: resolve it (with a warning) and sign its digest.")
    ] = False,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Sign the manifest digest REFERENCE names and attach the signature beside the image.

    The password comes from IMGSEAL_PASSWORD or COSIGN_PASSWORD, else a prompt.
    Exit codes: 0 signed; 2 bad usage (e.g. a tag without --resolve-tag); 3 registry; 4 key.
    """

    def run() -> None:
        from imgseal.cli._keyload import load_private_key, parse_annotations
        from signer.image import sign_with_key, targets

        if fmt not in ("bundle", "legacy"):
            raise UsageError(f"--format must be bundle or legacy, not {fmt!r}")
        if key is None:
            raise UsageError("give --key KEY (keyless signing needs --keyless)", reason="no-signer")
        annotations = parse_annotations(annotation)
        ref = parse_ref(reference, default_tag=None)
        if ref.digest is None and not resolve_tag:
            raise UsageError(
                f"{reference} names no digest: a tag can move, so imgseal signs digests",
                hint=f"run `imgseal digest {reference}` and sign REPO@sha256:…, or pass --resolve-tag",
                reason="tag-not-allowed",
            )
        private_key = load_private_key(key)
        store = store_factory(ca_file, insecure_registry).open(ref)
        from imgseal.content import fetch_manifest

        manifest = fetch_manifest(store, ref.tag or "latest", ref.digest)
        if ref.digest is None:
            err(f"imgseal: warning: resolved tag {ref.tag} to {manifest.digest}; signing the digest")
        results: list[dict[str, Any]] = []
        for subject in targets(store, manifest, recursive):
            signed = sign_with_key(store, ref.name, subject, private_key, fmt=fmt, annotations=annotations)
            results.append({"reference": ref.with_digest(subject.digest).pinned(), "format": signed.format,
                            "artifact": str(signed.artifact.digest) if signed.artifact else None})
        if output is OutputFormat.json:
            emit_json({"ok": True, "signed": results})
            return
        for r in results:
            out(r["reference"])
            err(f"signed {r['reference']} ({r['format']}{', ' + r['artifact'] if r['artifact'] else ''})")

    guarded(run, output)
