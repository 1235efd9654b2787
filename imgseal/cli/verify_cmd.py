"""``imgseal verify``: the deploy gate for one image — signatures by keys (and identities)."""

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
    fail,
    parse_ref,
    store_factory,
)
from imgseal.errors import Error, UsageError


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    reference: Annotated[str, typer.Argument(help="Image reference (a tag is resolved and the digest printed).")],
    key: Annotated[list[str] | None, typer.Option("--key", help="Trusted public key: path or env://VAR (repeatable).")]
    = None,
    threshold: Annotated[int, typer.Option("--threshold", min=1, help="Distinct keys that must have signed.")] = 1,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", "-a", help="key=value the signed payload must carry.")
    ] = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Verify the signatures attached to REFERENCE's digest.

    Passes when signatures by at least --threshold distinct given keys verify and each names
    this exact digest. Prints a summary on stderr and the verified payloads as JSON on stdout.
    Exit codes: 0 verified; 1 not verified (reason given); 2 bad usage; 3 registry; 4 key.
    """
    state: dict[str, Any] = {}

    def run() -> None:
        from imgseal import attach
        from imgseal.cli._keyload import load_public_keys, parse_annotations
        from imgseal.content import fetch_manifest
        from verifier.image import judge, verify_key_signatures

        if not key:
            raise UsageError("give at least one --key PUB", reason="no-verifier")
        keys = load_public_keys(key)
        if threshold > len(keys):
            raise UsageError(f"--threshold {threshold} is more than the {len(keys)} key(s) given")
        wanted = parse_annotations(annotation)
        ref = parse_ref(reference)
        store = store_factory(ca_file, insecure_registry).open(ref)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        pinned = ref.with_digest(manifest.digest).pinned()
        state["reference"] = pinned
        state["digest"] = str(manifest.digest)
        if ref.digest is None:
            err(f"resolved {ref} to {pinned}")
        attachments = attach.discover(store, manifest.digest)
        outcome = verify_key_signatures(store, manifest.digest, attachments, keys, annotations=wanted)
        state["rejected"] = [{"artifact": a, "reason": r, "message": m} for a, r, m in outcome.rejected]
        judge(outcome, threshold)
        verified = [
            {"signer": v.signer, "format": v.format, "foundVia": v.found_via, "artifact": v.artifact,
             "payload": v.payload}
            for v in outcome.verified
        ]
        if output is OutputFormat.json:
            emit_json({"ok": True, "reason": None, "reference": pinned, "digest": str(manifest.digest),
                       "signers": sorted(outcome.signers), "verified": verified, "rejected": state["rejected"]})
        else:
            emit_json([v["payload"] for v in verified])
        err(f"Verified {pinned}:")
        err(f"  - signatures by {len(outcome.signers)} of {len(keys)} key(s) verified (threshold {threshold})")
        err("  - each verified payload names this exact digest")
        if wanted:
            err("  - annotations matched")

    try:
        run()
    except Error as e:
        fail(e, output, state)
