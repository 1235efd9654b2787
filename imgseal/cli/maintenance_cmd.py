"""``imgseal repair`` (rebuild the fallback index) and ``imgseal clean`` (remove what is attached)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

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
from imgseal.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from imgseal.maintenance import CleanPlan, Outcome, RepairReport

CLEAN_TYPES = ("signature", "attestation", "all")


def register(app: typer.Typer) -> None:
    app.command("repair")(repair)
    app.command("clean")(clean)


def repair(
    reference: Annotated[str, typer.Argument(help="Image reference (a tag is resolved to its digest).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would change; write nothing.")] = False,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Rebuild the sha256-<hex> fallback index of REFERENCE's digest from what can be found.

    Reads the index's entries and imgseal's attachment tags (sha256-<hex>.<artifact>.att),
    fetches each artifact manifest by digest, fills in each entry's artifactType and
    annotations from it (cosign 3.0.x wrote entries without them), adds artifacts found only
    by their tag and drops entries whose manifest is gone or names another image. Prints
    every change. Exit codes: 0 repaired (or nothing to do); 2 bad usage; 3 registry.
    """

    def run() -> None:
        from imgseal.content import fetch_manifest
        from imgseal.maintenance import repair_index

        ref = parse_ref(reference)
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        report = repair_index(att_store, manifest.digest, dry_run=dry_run)
        _print_repair(ref.with_digest(manifest.digest).pinned(), att_store.location, report, dry_run, output)

    guarded(run, output)


def _print_repair(pinned: str, location: str, report: RepairReport, dry_run: bool, output: OutputFormat) -> None:
    changes = [{"action": c.action, "digest": c.digest, "detail": c.detail} for c in report.changes]
    if output is OutputFormat.json:
        emit_json({"ok": True, "reference": pinned, "index": f"{location}:{report.tag}", "dryRun": dry_run,
                   "indexFound": report.index_found, "written": report.written, "entries": report.entries,
                   "changes": changes, "notes": report.notes})
        return
    out(pinned)
    for note in report.notes:
        err(f"imgseal: note: {note}")
    for c in changes:
        out(f"  {c['action']:<4} {c['digest']}: {c['detail']}")
    if not changes and not report.index_found:
        err(f"{location} has no fallback index {report.tag} and no attachment tags for it; nothing to change")
    elif not changes:
        err(f"{location}:{report.tag} is complete ({report.entries} entr{'y' if report.entries == 1 else 'ies'}); "
            "nothing to change")
    elif dry_run:
        err(f"dry run: {len(changes)} change(s) to {location}:{report.tag} not written")
    else:
        err(f"rewrote {location}:{report.tag} with {report.entries} entr{'y' if report.entries == 1 else 'ies'} "
            f"({len(changes)} change(s))")


def clean(
    reference: Annotated[str, typer.Argument(help="Image reference (a tag is resolved to its digest).")],
    type_: Annotated[str, typer.Option("--type", help="What to remove: signature, attestation or all.")] = "all",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (needed when stdin is not a "
                                      "terminal).")] = False,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Remove what is attached to REFERENCE's digest: signatures, attestations, or all of it.

    Looks in every place attachments live: the referrers API, the sha256-<hex> fallback
    index, imgseal's attachment tags and cosign's legacy .sig/.att tags. Deletes only
    artifacts whose subject is this digest (legacy tags are named after it). Without --yes it
    asks on a terminal and refuses elsewhere. Reports whatever the registry would not delete.
    Exit codes: 0 removed (or nothing attached); 2 bad usage or not confirmed; 3 registry
    (including deletes the registry refused).
    """

    def run() -> None:
        from imgseal.content import fetch_manifest
        from imgseal.maintenance import KIND_ATTESTATION, KIND_OTHER, KIND_SIGNATURE, execute_clean, plan_clean

        if type_ not in CLEAN_TYPES:
            raise UsageError(f"--type takes signature, attestation or all, not {type_!r}")
        kinds = {"signature": {KIND_SIGNATURE}, "attestation": {KIND_ATTESTATION},
                 "all": {KIND_SIGNATURE, KIND_ATTESTATION, KIND_OTHER}}[type_]
        ref = parse_ref(reference)
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        pinned = ref.with_digest(manifest.digest).pinned()
        plan = plan_clean(att_store, manifest.digest, kinds)
        if dry_run or not plan.targets:
            _print_clean(pinned, plan, [], dry_run=dry_run, output=output, every_kind=type_ == "all")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"refusing to delete {len(plan.targets)} artifact(s) from {att_store.location} "
                                 "without confirmation", hint="pass --yes, or --dry-run to list them",
                                 reason="not-confirmed")
            _print_plan_to_stderr(plan)
            if not typer.confirm(f"Delete {len(plan.targets)} artifact(s) attached to {pinned} from "
                                 f"{att_store.location}?", default=False, err=True):
                raise UsageError("not confirmed: nothing was deleted", reason="not-confirmed")
        outcomes = execute_clean(att_store, plan)
        refused = [o for o in outcomes if not o.removed]
        error = RegistryError(f"{att_store.location} refused {len(refused)} of {len(outcomes)} deletion(s): "
                              f"{refused[0].detail}", reason="delete-refused") if refused else None
        _print_clean(pinned, plan, outcomes, dry_run=False, output=output, error=error)
        if error is not None:
            err(f"imgseal: error: {error.one_line()}")
            raise typer.Exit(error.exit_code)

    guarded(run, output)


def _target_dict(t: Any) -> dict[str, Any]:
    return {"digest": str(t.digest), "kind": t.kind, "foundVia": list(t.found_via), "tag": t.tag,
            "artifactType": t.artifact_type}


def _print_plan_to_stderr(plan: CleanPlan) -> None:
    for t in plan.targets:
        err(f"  {t.kind}: {t.digest} [{t.artifact_type}] via {', '.join(t.found_via)}")


def _print_clean(pinned: str, plan: CleanPlan, outcomes: list[Outcome], *, dry_run: bool,
                 output: OutputFormat, error: RegistryError | None = None, every_kind: bool = True) -> None:
    if output is OutputFormat.json:
        result: dict[str, Any] = {"ok": error is None, "reference": pinned, "dryRun": dry_run, "notes": plan.notes}
        if error is not None:
            result.update(reason=error.reason, error=error.one_line())
        if dry_run:
            result["wouldRemove"] = [_target_dict(t) for t in plan.targets]
        else:
            result["removed"] = [_target_dict(o.target) | {"detail": o.detail} for o in outcomes if o.removed]
            result["refused"] = [_target_dict(o.target) | {"detail": o.detail} for o in outcomes if not o.removed]
        emit_json(result)
        return
    out(pinned)
    for note in plan.notes:
        err(f"imgseal: note: {note}")
    if not plan.targets:
        out("  (nothing attached)" if every_kind else "  (nothing attached of that type)")
        return
    if dry_run:
        for t in plan.targets:
            out(f"  would remove {t.kind}: {t.digest} [{t.artifact_type}] via {', '.join(t.found_via)}")
        return
    for o in outcomes:
        what = "index" if o.target.kind == "index" else o.target.kind
        if o.removed:
            out(f"  removed {what}: {o.target.digest}{' (' + o.detail + ')' if o.detail else ''}")
        else:
            out(f"  NOT removed {what}: {o.target.digest}: {o.detail}")
