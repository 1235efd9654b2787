"""What every command shares: error-to-exit-code mapping and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from imgseal.errors import Error, UsageError

if TYPE_CHECKING:
    from imgseal.reference import LayoutReference, Reference
    from imgseal.store import StoreFactory
    from imgseal.store.base import Store

T = TypeVar("T")


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def err(message: str) -> None:
    """One line on stderr."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def out(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def fail(error: Error, output: OutputFormat = OutputFormat.text, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report ``error`` as one line (or a JSON object) and exit with its code."""
    err(f"imgseal: error: {error.one_line()}")
    if output is OutputFormat.json:
        result: dict[str, Any] = {"ok": False, "reason": error.reason, "error": error.one_line()}
        if extra:
            result.update(extra)
        emit_json(result)
    raise typer.Exit(error.exit_code)


def guarded(fn: Callable[[], T], output: OutputFormat = OutputFormat.text) -> T:
    """Run ``fn``; turn every imgseal :class:`Error` into its exit code, never a traceback."""
    try:
        return fn()
    except Error as e:
        fail(e, output)
    except KeyboardInterrupt:
        err("imgseal: interrupted")
        raise typer.Exit(130) from None


# -- options shared by commands that talk to registries -----------------------------------

CaFileOption = Annotated[
    Path | None,
    typer.Option("--ca-file", help="PEM file of CA certificates to trust for registry TLS.", dir_okay=False),
]
InsecureOption = Annotated[
    list[str] | None,
    typer.Option(
        "--insecure-registry",
        help="Registry host allowed over plain HTTP or unverified TLS (repeatable; also IMGSEAL_INSECURE_REGISTRIES).",
    ),
]
OutputOption = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]
AttachmentsRepoOption = Annotated[
    str | None,
    typer.Option(
        "--attachments-repo", metavar="REPO",
        help="Keep signatures and attestations in REPO (registry/path, any registry) instead of beside the image, "
             "as cosign's COSIGN_REPOSITORY does (also read from IMGSEAL_ATTACHMENTS_REPO, then COSIGN_REPOSITORY).",
    ),
]
ReferrersModeOption = Annotated[
    str | None,
    typer.Option(
        "--referrers-mode", metavar="auto|api|tag",
        help="Where attachments are read and written: auto (the OCI referrers API where the registry has one, "
             "else the sha256-<hex> tag schema), api (the API or fail), tag (the tag schema, never asking for the "
             "API). Also IMGSEAL_REFERRERS_MODE; default auto.",
    ),
]


def store_factory(ca_file: Path | None, insecure: list[str] | None, *,
                  referrers_mode: str | None = None) -> StoreFactory:
    """A :class:`StoreFactory` for one command run."""
    from imgseal.store import StoreFactory
    from imgseal.store.registry import REFERRERS_MODES, RegistryOptions, insecure_from_env, referrers_mode_from_env

    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"--ca-file {ca_file}: no such file")
    mode = referrers_mode.strip().lower() if referrers_mode is not None else referrers_mode_from_env()
    if mode not in REFERRERS_MODES:
        source = "--referrers-mode" if referrers_mode is not None else "IMGSEAL_REFERRERS_MODE"
        raise UsageError(f"{source} must be auto, api or tag, not {mode!r}", reason="usage")
    hosts = insecure_from_env() | frozenset(insecure or [])
    return StoreFactory(RegistryOptions(ca_file=ca_file, insecure_registries=hosts, referrers_mode=mode))


def open_with_attachments(factory: StoreFactory, ref: Reference | LayoutReference,
                          attachments_repo: str | None) -> tuple[Store, Store]:
    """The image's store and the store its attachments live in (the same one unless --attachments-repo)."""
    from imgseal.attachments_repo import attachment_store, attachments_repository
    from imgseal.reference import LayoutReference

    # a bad value is a usage error before any network; the environment never moves a layout's attachments
    repository = attachments_repository(attachments_repo, environment=not isinstance(ref, LayoutReference))
    image_store = factory.open(ref)
    return image_store, attachment_store(factory, image_store, repository)


def parse_ref(text: str, *, default_tag: str | None = "latest") -> Reference | LayoutReference:
    from imgseal.reference import parse_reference

    return parse_reference(text, default_tag=default_tag)
