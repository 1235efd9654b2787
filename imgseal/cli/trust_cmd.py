"""``imgseal trust update``: refresh a Sigstore trusted root over TUF, for offline verification.

Verification never contacts TUF (sigstore-python #1175: a TUF round trip on every run); it
uses the embedded root or ``--trusted-root FILE``. This command is the one place that goes
online: sigstore-python's TUF client (python-tuf ngclient, bootstrapped from the root.json
sigstore-python embeds) walks the production or staging repository, and the verified
``trusted_root.json`` target is checked with our own parser and written out. Point
``imgseal verify --trusted-root`` at the result.

Exit codes: 0 written; 2 unusable output path; 3 the TUF repository could not be reached or
did not verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgseal.cli._common import err, guarded, out


def register(app: typer.Typer) -> None:
    trust = typer.Typer(help="Manage Sigstore trusted roots (offline verification material).", no_args_is_help=True)

    @trust.command("update")
    def update(
        staging: Annotated[bool, typer.Option("--staging", help="Refresh the Sigstore staging root.")] = False,
        output_file: Annotated[Path | None, typer.Option(
            "--output", dir_okay=False, help="Write the trusted root here (default: stdout).")] = None,
    ) -> None:
        """Fetch the current Sigstore trusted root through TUF and write it (stdout by default)."""

        def run() -> None:
            data, source = refresh_trusted_root(staging)
            if output_file is None:
                out(data.decode())
                return
            _write_atomically(output_file, data)
            err(f"wrote the {source} trusted root to {output_file}")
            err(f"verify offline with: imgseal verify IMAGE --trusted-root {output_file} --certificate-identity … "
                "--certificate-oidc-issuer …")

        guarded(run)

    app.add_typer(trust, name="trust")


def refresh_trusted_root(staging: bool) -> tuple[bytes, str]:
    """The trusted root JSON from the production (or staging) TUF repository, and its name.

    Raises :class:`imgseal.errors.NetworkError` (exit 3) when the repository cannot be
    reached or its metadata does not verify.
    """
    from imgseal.errors import NetworkError
    from verifier.sigstore.trust import parse_trusted_root

    name = "staging" if staging else "production"
    try:
        from sigstore._internal.tuf import DEFAULT_TUF_URL, STAGING_TUF_URL, TrustUpdater
        from sigstore.errors import Error as SigstoreError

        url = STAGING_TUF_URL if staging else DEFAULT_TUF_URL
        path = Path(TrustUpdater(url, offline=False).get_trusted_root_path())
        data = path.read_bytes()
    except (SigstoreError, OSError) as e:
        cause = e.__cause__ or e.__context__
        detail = " ".join(str(cause or e).split())[:200]
        raise NetworkError(f"cannot refresh the {name} trusted root from {url}: {detail or type(e).__name__}",
                           hint="offline? verification keeps working with the embedded root or --trusted-root FILE",
                           reason="tuf") from e
    # The TUF client verified the bytes; parse them with the verifier's own parser so a
    # root we could not use is refused now, not at the next verification.
    parse_trusted_root(data, source=f"{name} trusted root from TUF")
    return data, name


def _write_atomically(path: Path, data: bytes) -> None:
    from imgseal.errors import InvalidInputError

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {path}: {e.strerror or e}") from e
