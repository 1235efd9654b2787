"""The ``imgseal`` typer application: registers each command group's module."""

from __future__ import annotations

import os
import sys

import typer

from imgseal import __version__

app = typer.Typer(
    name="imgseal",
    help=(
        "Make deployments trust digests, not tags: fetch and check image digests, sign them,"
        " attach signatures and attestations beside the image, and verify them as a deploy gate.\n\n"
        "Exit codes: 0 ok/verified; 1 verification failed or denied; 2 bad usage or input;"
        " 3 could not decide (registry, network, auth); 4 key material problem."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgseal {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Log registry traffic (credentials redacted) to stderr."),
) -> None:
    if debug:
        os.environ["IMGSEAL_DEBUG"] = "1"
        import logging

        logging.basicConfig(level=logging.DEBUG, format="imgseal: debug: %(message)s", stream=sys.stderr)


def _register() -> None:
    # Each module adds its commands; modules import their heavy dependencies lazily.
    import importlib

    for name in ("digest_cmd", "sign_cmd", "verify_cmd", "attach_cmd", "attest_cmd", "keys_cmd", "bundle_cmd",
                 "gate_cmd",
                 "notation_cmd", "trust_cmd"):
        try:
            module = importlib.import_module(f"imgseal.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"imgseal.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def run() -> None:
    """Console-script entry point: never lets a traceback reach the user."""
    try:
        app()
    except SystemExit:
        raise
    except BaseException as e:  # last line of defence: fail closed, no traceback
        if os.environ.get("IMGSEAL_DEBUG"):
            raise
        sys.stderr.write(f"imgseal: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}\n")
        sys.exit(3)


if __name__ == "__main__":
    run()
