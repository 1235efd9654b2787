"""``imgseal tree`` (what is attached to a digest) and ``imgseal copy`` (an image with its attachments)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from imgseal.cli._common import (
    AttachmentsRepoOption,
    CaFileOption,
    InsecureOption,
    OutputFormat,
    OutputOption,
    ReferrersModeOption,
    emit_json,
    err,
    guarded,
    open_with_attachments,
    out,
    parse_ref,
    store_factory,
)
from imgseal.errors import ArtifactManifestRefusedError, UsageError


def register(app: typer.Typer) -> None:
    app.command("tree")(tree)
    app.command("copy")(copy)


def tree(
    reference: Annotated[str, typer.Argument(help="Image reference.")],
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """List everything attached to REFERENCE's digest: signatures, attestations, and how each was found.

    Sources the registry would not let us read (a denied tag listing, a referrers tag that
    the registry resolves to the image itself) are named as notes.
    """

    def run() -> None:
        from imgseal import attach
        from imgseal.content import fetch_manifest

        ref = parse_ref(reference)
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        items: list[dict[str, Any]] = []
        found = attach.find_attachments(att_store, manifest.digest)
        for att in found.attachments:
            items.append({
                "digest": str(att.digest),
                "artifactType": att.artifact_type,
                "kind": "signature" if attach.is_signature(att) else "attestation",
                "predicateType": att.manifest.annotations.get("dev.sigstore.bundle.predicateType"),
                "foundVia": att.found_via,
                "layers": len(att.manifest.layers),
            })
        pinned = ref.with_digest(manifest.digest).pinned()
        if output is OutputFormat.json:
            emit_json({"reference": pinned, "attachmentsRepository": att_store.location, "attachments": items,
                       "notes": found.notes})
            return
        out(pinned)
        if att_store is not store:
            out(f"  (attachments in {att_store.location})")
        if not items:
            out("  (nothing attached)")
        for note in found.notes:
            out(f"  note: {note}")
        for it in items:
            extra = f" {it['predicateType']}" if it["predicateType"] else ""
            out(f"  └─ {it['kind']}: {it['digest']} [{it['artifactType']}{extra}] via {it['foundVia']}"
                f"{' (' + str(it['layers']) + ' signatures)' if it['layers'] > 1 else ''}")

    guarded(run, output)


def copy(
    source: Annotated[str, typer.Argument(help="Source image reference (registry or oci-layout:).")],
    destination: Annotated[str, typer.Argument(help="Destination reference (registry or oci-layout:PATH[:TAG]).")],
    only: Annotated[
        str, typer.Option("--only", help="Which attachments to carry: sig, att, sig,att, or none.")
    ] = "sig,att",
    attachments_repo: Annotated[str | None, typer.Option(
        "--attachments-repo", metavar="REPO",
        help="Read the source's signatures and attestations from REPO (as cosign's COSIGN_REPOSITORY; also "
             "IMGSEAL_ATTACHMENTS_REPO, COSIGN_REPOSITORY); they are written beside the destination image.")] = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Copy an image with its signatures and attestations; every digest is preserved exactly.

    For an index, the children's attachments are copied too. The copy can then be verified
    with no network (for example an OCI layout carried into an air-gapped site).
    """

    def run() -> None:
        from imgseal import attach
        from imgseal.content import fetch_manifest
        from imgseal.image import copy_manifest
        from imgseal.manifest import ImageIndex

        kinds = {k.strip() for k in only.split(",") if k.strip()}
        if not kinds <= {"sig", "att", "none"}:
            raise UsageError(f"--only takes sig, att or none, not {only!r}")
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        src_ref = parse_ref(source)
        dst_ref = parse_ref(destination, default_tag=None)
        src, src_attachments = open_with_attachments(factory, src_ref, attachments_repo)
        dst = factory.open(dst_ref, create=True)
        manifest = fetch_manifest(src, src_ref.tag, src_ref.digest)
        tag = dst_ref.tag or src_ref.tag
        if dst_ref.digest is not None and dst_ref.digest != manifest.digest:
            raise UsageError(f"destination names digest {dst_ref.digest} but the source is {manifest.digest}")
        copy_manifest(src, dst, manifest, tag=tag)
        subjects = [manifest.descriptor()]
        if isinstance(manifest, ImageIndex):
            subjects += list(manifest.manifests)
        copied = 0
        refused: list[ArtifactManifestRefusedError] = []
        for subject in subjects:
            if "none" in kinds:
                break
            for att in attach.discover(src_attachments, subject.digest):
                kind = "sig" if attach.is_signature(att) else "att"
                if kind in kinds:
                    try:
                        attach.copy_attachment(src_attachments, dst, subject, att)
                    except ArtifactManifestRefusedError as e:
                        # The legacy .sig/.att still fit such a registry: copy them, then say what did not.
                        refused.append(e)
                        continue
                    copied += 1
        if refused:
            # A bundle cannot become a legacy signature without signing again.
            first = refused[0]
            raise ArtifactManifestRefusedError(
                f"copied the image and {copied} attachment(s), but not {len(refused)} OCI 1.1 artifact(s): "
                f"{first.summary}", reason="artifact-manifest-refused",
                hint=f"{dst_ref.name} holds cosign's legacy .sig/.att only: copy with --only none, or keep the "
                     "legacy attachments copied here, and sign there with --format legacy")
        pinned = dst_ref.with_digest(manifest.digest).pinned()
        if output is OutputFormat.json:
            emit_json({"ok": True, "reference": pinned, "attachments": copied})
            return
        out(pinned)
        err(f"copied {manifest.digest} with {copied} attachment(s) to {dst_ref.name}")

    guarded(run, output)
