"""The ``imgseal`` typer application: a root group that imports each command's module on first use."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from difflib import get_close_matches
from typing import Any, Final

import typer
import typer.main
from typer import _click as click
from typer.core import TyperGroup
from typer.exceptions import Abort

from imgseal import __version__

# Every command, the module that registers it, and its one-line help. ``imgseal --help`` lists
# commands from this table, and a command's module is imported only when that command runs
# (or prints its own help): importing all ten modules and their typer signatures at every
# start cost ~15 ms, and the modules' heavy libraries are lazy already. The table is checked
# against what each module registers (tests/unit/test_startup.py).
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "attest": ("attest_cmd", "Sign an in-toto statement about REFERENCE's digest and attach it beside the image."),
    "clean": ("maintenance_cmd", "Remove what is attached to REFERENCE's digest: signatures, attestations, or all"
                                 " of it."),
    "copy": ("attach_cmd", "Copy an image with its signatures and attestations; every digest is preserved exactly."),
    "digest": ("digest_cmd", "Print the pinned reference REPO@sha256:… for REFERENCE (a tag or a digest)."),
    "gate": ("gate_cmd", "Verify every image in Kubernetes manifests against a policy, each distinct image once."),
    "keys": ("keys_cmd", "Generate, import and export cosign-compatible key pairs."),
    "policy": ("gate_cmd", "Check and explain deploy-gate policy files."),
    "provenance": ("attest_cmd", "Generate SLSA v1 provenance for REFERENCE from the CI environment (GitHub Actions,"
                                 " GitLab CI) or options."),
    "registry": ("registry_cmd", "Find out what a registry supports (referrers API, tag listing, deletes)."),
    "repair": ("maintenance_cmd", "Rebuild the sha256-<hex> fallback index of REFERENCE's digest from what can be"
                                  " found."),
    "sign": ("sign_cmd", "Sign the manifest digest REFERENCE names and attach the signature beside the image."),
    "tree": ("attach_cmd", "List everything attached to REFERENCE's digest: signatures, attestations, and how each"
                           " was found."),
    "trust": ("trust_cmd", "Manage Sigstore trusted roots (offline verification material)."),
    "verify": ("verify_cmd", "Verify the signatures attached to REFERENCE's digest."),
    "verify-attestation": ("attest_cmd", "Verify the attestations of --type attached to REFERENCE's digest."),
    "verify-bundle": ("bundle_cmd", "Verify a Sigstore bundle for a file or digest, offline (Sigstore conformance"
                                    " protocol)."),
    "webhook": ("gate_cmd", "Kubernetes admission webhook."),
}
"""Command name -> (module under ``imgseal.cli``, one-line help)."""


def load_commands(module: str) -> dict[str, click.Command]:
    """Import ``imgseal.cli.<module>`` and build the click commands its ``register`` adds."""
    import importlib

    sub = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)
    # A callback makes typer build a group even for a module that registers one command,
    # so every command is found by name in ``commands``.
    sub.callback()(lambda: None)
    importlib.import_module(f"imgseal.cli.{module}").register(sub)
    group = typer.main.get_group(sub)
    return dict(group.commands)


class LazyGroup(TyperGroup):
    """The root group: lists commands from :data:`COMMANDS`, imports a module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            for name, command in load_commands(COMMANDS[cmd_name][0]).items():
                self.commands.setdefault(name, command)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                rows.append((name, click.utils.make_default_short_help(COMMANDS[name][1], limit)))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        """Click's main, with its usage errors as one line: ``imgseal: error: … (see 'CMD --help')``, exit 2.

        Click prints a usage error as three lines (usage, hint, a blank, ``Error: …``); every
        other error of imgseal is one ``imgseal: error:`` line (README, "Exit codes"), and
        scripts that read stderr should not need to know which layer refused the input.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "imgseal"
            message = " ".join(e.format_message().split())
            sys.stderr.write(f"imgseal: error: {message.rstrip('.')} (see '{where} --help')\n")
            sys.exit(e.exit_code)
        except click.exceptions.ClickException as e:
            sys.stderr.write(f"imgseal: error: {' '.join(e.format_message().split())}\n")
            sys.exit(e.exit_code)
        except Abort:
            sys.stderr.write("imgseal: aborted\n")
            sys.exit(1)
        # Without standalone mode click returns an explicit Exit's code, or the callback's value.
        sys.exit(result if isinstance(result, int) else 0)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return self._click_resolve_command(ctx, args)
        except click.exceptions.UsageError as e:
            # TyperGroup suggests from the commands loaded so far; suggest from all of them.
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches:
                e.message = f"{e.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


app = typer.Typer(
    name="imgseal",
    cls=LazyGroup,
    # Plain click help and usage errors: rich's formatter costs ~60 ms of imports on every
    # ``--help`` and every usage error, for colour only.
    rich_markup_mode=None,
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
