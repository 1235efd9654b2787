"""``imgseal registry probe``: what a registry supports (referrers API, tag listing, auth, deletes)."""

from __future__ import annotations

from typing import Annotated

import typer

from imgseal.cli._common import (
    CaFileOption,
    InsecureOption,
    OutputFormat,
    OutputOption,
    emit_json,
    guarded,
    out,
    parse_ref,
    store_factory,
)
from imgseal.errors import UsageError


def register(app: typer.Typer) -> None:
    registry_app = typer.Typer(help="Find out what a registry supports (referrers API, tag listing, deletes).",
                               no_args_is_help=True)
    registry_app.command("probe")(probe)
    app.add_typer(registry_app, name="registry")


def probe(
    reference: Annotated[str, typer.Argument(help="An image in the registry and repository to probe (tag or digest).")],
    write_test: Annotated[bool, typer.Option(
        "--write-test", help="Also push and delete one throwaway artifact (with a subject naming REFERENCE) in "
        "REFERENCE's repository, to learn subject_manifests, delete and oci_subject_header.")] = False,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Report what REFERENCE's registry supports, as it answers for REFERENCE's repository.

    Read-only unless --write-test. referrers_api is true only for a real index from the
    referrers endpoint (never for an OCI-Subject header alone); tag_list whether tags can be
    listed; auth the /v2/ challenge (none, basic, bearer); subject_manifests, delete and
    oci_subject_header are null unless --write-test (a throwaway the registry would not
    delete is named in a note). Exit codes: 0 probed; 2 bad usage; 3 registry unreachable,
    REFERENCE not found, or access denied.
    """

    def run() -> None:
        from imgseal.content import fetch_manifest
        from imgseal.probe import probe as run_probe
        from imgseal.reference import Reference
        from imgseal.store.registry import RegistryStore

        ref = parse_ref(reference)
        if not isinstance(ref, Reference):
            raise UsageError("registry probe takes a registry reference, not an OCI layout")
        store = store_factory(ca_file, insecure_registry).open(ref)
        assert isinstance(store, RegistryStore)
        manifest = fetch_manifest(store, ref.tag, ref.digest)
        result = run_probe(store, ref.registry, manifest.descriptor(), ref.with_digest(manifest.digest).pinned(),
                           write_test=write_test)
        if output is OutputFormat.json:
            emit_json(result.to_dict())
            return
        data = result.to_dict()
        width = max(len(k) for k in data)
        for key, value in data.items():
            if key == "notes":
                continue
            shown = "null (not tested; --write-test)" if value is None and key in (
                "subject_manifests", "delete", "oci_subject_header") else value
            if isinstance(shown, bool):
                shown = "yes" if shown else "no"
            out(f"{key:<{width}}  {shown if shown is not None else 'null'}")
        for note in result.notes:
            out(f"note: {note}")

    guarded(run, output)
