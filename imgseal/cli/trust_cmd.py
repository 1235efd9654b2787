"""``imgseal trust update``: refresh a Sigstore trusted root over TUF, for offline verification.

Verification never contacts TUF (sigstore-python #1175: a TUF round trip on every run); it
uses the embedded root or ``--trusted-root FILE``. This command is the one place that goes
online: sigstore-python's TUF client (python-tuf ngclient, bootstrapped from the root.json
sigstore-python embeds) walks the production or staging repository, and the verified
``trusted_root.json`` target is checked with our own parser and written out. Point
``imgseal verify --trusted-root`` at the result.

``--github`` walks GitHub's TUF repository instead (``https://tuf-repo.github.com``, as ``gh``
does: cli/cli ``pkg/cmd/attestation/verification/tuf.go``), bootstrapped from the root.json
``gh`` embeds (verifier/data/github_tuf_root.json), and prints its ``trusted_root.json`` target
as one JSON line, the form ``gh attestation trusted-root`` prints and ``verify-attestation
--trusted-root`` reads. ``--tuf-url`` / ``--tuf-root`` name another repository and its root
(a mirror, a test repository); they go together, as in ``gh attestation trusted-root``.

Exit codes: 0 written; 2 unusable output path or options; 3 the TUF repository could not be
reached or did not verify.
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
        github: Annotated[bool, typer.Option("--github", help="Fetch GitHub's Sigstore trusted root (artifact "
                                             "attestations of private repositories) from GitHub's TUF repository, "
                                             "as one JSON line.")] = False,
        tuf_url: Annotated[str | None, typer.Option("--tuf-url", help="With --github: another TUF repository "
                                                    "(metadata at URL/, targets at URL/targets/).")] = None,
        tuf_root: Annotated[Path | None, typer.Option("--tuf-root", dir_okay=False, help="With --tuf-url: the "
                                                      "trusted root.json of that repository.")] = None,
        trust_domain: Annotated[str | None, typer.Option("--trust-domain", help="With --github: a GHE.com "
                                                         "tenant's trust domain (target NAME.trusted_root.json).")]
        = None,
        output_file: Annotated[Path | None, typer.Option(
            "--output", dir_okay=False, help="Write the trusted root here (default: stdout).")] = None,
    ) -> None:
        """Fetch the current Sigstore trusted root through TUF and write it (stdout by default).

        --github fetches GitHub's instead (GitHub's TUF repository, bootstrapped from the root
        gh embeds). This is the only command that goes online for trust material.
        """

        def run() -> None:
            from imgseal.errors import UsageError

            if (tuf_url is None) != (tuf_root is None):
                raise UsageError("--tuf-url and --tuf-root go together")
            if tuf_url is not None and not github:
                raise UsageError("--tuf-url and --tuf-root apply with --github")
            if github and staging:
                raise UsageError("give --github or --staging, not both")
            if trust_domain is not None and not github:
                raise UsageError("--trust-domain applies with --github")
            if github:
                data, source = refresh_github_trusted_root(tuf_url, tuf_root, trust_domain)
            else:
                data, source = refresh_trusted_root(staging)
            if output_file is None:
                out(data.decode())
                return
            _write_atomically(output_file, data)
            err(f"wrote the {source} trusted root to {output_file}")
            if github:
                err(f"verify offline with: imgseal verify-attestation IMAGE --trusted-root {output_file} "
                    "--github-owner ORG (add the public-good root as another line for public repositories)")
            else:
                err(f"verify offline with: imgseal verify IMAGE --trusted-root {output_file} --certificate-identity "
                    "… --certificate-oidc-issuer …")

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


GITHUB_TUF_URL = "https://tuf-repo.github.com"
GITHUB_TRUSTED_ROOT_TARGET = "trusted_root.json"


def refresh_github_trusted_root(url: str | None, root_file: Path | None,
                                trust_domain: str | None = None) -> tuple[bytes, str]:
    """GitHub's trusted root through TUF (python-tuf ngclient), as one compact JSON line.

    ``trust_domain`` selects a GHE.com tenant's root, the target ``NAME.trusted_root.json``
    (gh ``verification/sigstore.go`` newGitHubVerifier; gh asks GitHub's API for the name).

    A fresh metadata directory each run, bootstrapped from the embedded (or given) root:
    every newer root version is fetched and verified on the way, and the timestamp,
    snapshot and targets metadata must be unexpired and signed by their roles' keys.
    """
    import json
    import re
    import tempfile
    from importlib import resources

    from imgseal.errors import InvalidInputError, NetworkError
    from verifier.sigstore.trust import parse_trusted_root

    base = (url or GITHUB_TUF_URL).rstrip("/")
    target = GITHUB_TRUSTED_ROOT_TARGET
    if trust_domain is not None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", trust_domain):
            raise InvalidInputError(f"--trust-domain must be a tenant trust-domain name, not {trust_domain[:80]!r}",
                                    reason="tuf")
        target = f"{trust_domain}.{GITHUB_TRUSTED_ROOT_TARGET}"
    if not base.startswith(("https://", "http://")):
        raise InvalidInputError(f"--tuf-url must be an http(s) URL, not {base[:80]!r}", reason="tuf")
    if root_file is not None:
        try:
            bootstrap = root_file.read_bytes()
        except OSError as e:
            raise InvalidInputError(f"cannot read --tuf-root {root_file}: {e.strerror or e}", reason="tuf") from e
    else:
        bootstrap = resources.files("verifier").joinpath("data", "github_tuf_root.json").read_bytes()
    from tuf.api import exceptions as tuf_errors
    from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]  # re-exported, not in __all__
    from tuf.ngclient.updater import Updater

    try:
        Metadata[Root].from_bytes(bootstrap)
    except (ValueError, KeyError, TypeError, tuf_errors.RepositoryError) as e:
        raise InvalidInputError(f"TUF root {root_file or 'embedded'} is not TUF root metadata: {e}"[:250],
                                reason="tuf") from e
    with tempfile.TemporaryDirectory(prefix="imgseal-tuf-") as work:
        try:
            updater = Updater(metadata_dir=work, metadata_base_url=f"{base}/", target_dir=work,
                              target_base_url=f"{base}/targets/", bootstrap=bootstrap)
            updater.refresh()
            info = updater.get_targetinfo(target)
            if info is None:
                raise tuf_errors.RepositoryError(f"the repository has no target {target}")
            data = Path(updater.download_target(info)).read_bytes()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError, ValueError) as e:
            detail = " ".join(str(e).split())[:200]
            raise NetworkError(f"cannot refresh GitHub's trusted root from {base}: {detail or type(e).__name__}",
                               hint="offline? verification keeps working with --trusted-root FILE",
                               reason="tuf") from e
    parse_trusted_root(data, source=f"GitHub trusted root from {base}")
    # One line: the form gh attestation trusted-root prints (JSON lines, a root per line).
    return json.dumps(json.loads(data), separators=(",", ":")).encode(), f"GitHub ({base})"


def _write_atomically(path: Path, data: bytes) -> None:
    from imgseal.errors import InvalidInputError

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {path}: {e.strerror or e}") from e
