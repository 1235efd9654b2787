"""Start and stop the offline keyless Sigstore rig (tests/sigstore_rig) from Python.

The rig is Sigstore's own mock Fulcio, CT log, Rekor v1 and RFC 3161 TSA (npm
``@sigstore/mock``) served by ``server.mjs`` on 127.0.0.1, plus ``verify.mjs``, a
sigstore-js verifier used as an independent cross-check. See tests/sigstore_rig/README.md.

Typical use::

    rig = start_rig(tmp_path)
    token = rig.mint_token("alice@example.com")
    ctx = SigningContext.from_trust_config(rig.client_trust_config())
    with ctx.signer(IdentityToken(token)) as signer:
        bundle = signer.sign_artifact(b"...")
    rig.stop()

The rig is skipped (never silently passed) only when its Node packages are not
installed: ``make node-deps`` (run by ``make test`` and CI) installs them.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig

RIG_DIR = Path(__file__).resolve().parents[1] / "sigstore_rig"
SERVER_SCRIPT = RIG_DIR / "server.mjs"
VERIFY_SCRIPT = RIG_DIR / "verify.mjs"
NODE_MODULES = RIG_DIR / "node_modules"

#: Issuer put in minted tokens unless the caller names another. Any string works: the
#: mock Fulcio copies ``iss`` into the certificate's issuer extensions unchecked.
DEFAULT_ISSUER = "https://oidc.rig.imgseal.test"

#: Lifetime of the certificates the mock Fulcio issues (hard-coded in @sigstore/mock,
#: like real Fulcio's 10 minutes). Clock offsets larger than this produce expiry.
CERT_LIFETIME_S = 600

_START_TIMEOUT_S = 20.0


def rig_missing_reason() -> str | None:
    """Why the rig cannot run here, or None. Only missing Node packages count."""
    if not (NODE_MODULES / "@sigstore" / "mock").is_dir():
        return f"Sigstore rig not installed: run `make node-deps` (npm ci in {RIG_DIR.relative_to(RIG_DIR.parents[1])})"
    return None


def require_rig() -> None:
    """Skip the calling test with a clear message if the rig's Node packages are absent.

    With the packages present a missing ``node`` binary is an error, not a skip: CI
    installs both, and a silently skipped keyless suite would hide regressions.
    """
    reason = rig_missing_reason()
    if reason is not None:
        pytest.skip(reason)


def _node() -> str:
    node = os.environ.get("NODE") or shutil.which("node")
    if not node:
        raise RuntimeError("node is not on PATH but tests/sigstore_rig/node_modules exists; install Node >= 20")
    return node


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigstoreRig:
    """A running rig: its base URL, the trust files it wrote, and its process."""

    url: str
    trust_config_path: Path
    trusted_root_path: Path
    signing_config_path: Path
    tsa: bool
    log_path: Path
    process: subprocess.Popen[bytes]

    def mint_token(
        self,
        identity_email_or_sub: str,
        issuer: str = DEFAULT_ISSUER,
        expired: bool = False,
        *,
        audience: str = "sigstore",
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """An unsigned OIDC identity token (``alg: none``) the mock Fulcio accepts.

        An identity containing ``@`` is put in ``email`` (and ``sub``), so the
        certificate's SAN is that email, as Fulcio does for email issuers; otherwise
        it is the ``sub``. ``expired=True`` gives a token that expired an hour ago
        (sigstore-python's ``IdentityToken`` refuses it; the rig's Fulcio answers 401).
        """
        now = int(time.time())
        iat, exp = (now - 7200, now - 3600) if expired else (now, now + 600)
        claims: dict[str, Any] = {"iss": issuer, "sub": identity_email_or_sub, "aud": audience, "iat": iat, "exp": exp}
        if "@" in identity_email_or_sub:
            claims["email"] = identity_email_or_sub
            claims["email_verified"] = True
        claims.update(extra_claims or {})
        return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."

    def client_trust_config(self) -> ClientTrustConfig:
        """The rig's ``ClientTrustConfig`` (trusted root + signing config) for sigstore-python."""
        from sigstore.models import ClientTrustConfig

        return ClientTrustConfig.from_json(self.trust_config_path.read_text())

    def log(self) -> str:
        """What the server wrote to stderr so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SigstoreRig:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_rig(
    workdir: Path,
    *,
    tsa: bool = True,
    fulcio_clock_offset: int = 0,
    rekor_clock_offset: int = 0,
    tsa_clock_offset: int = 0,
    issuer_org: str | None = None,
    rekor: bool = True,
    ctlog: bool = True,
    timeout: float = _START_TIMEOUT_S,
) -> SigstoreRig:
    """Start ``server.mjs`` on a free loopback port and wait until it is ready.

    Trust files go to ``workdir`` (``trust_config.json``, ``trusted_root.json``,
    ``signing_config.json``); the server's stderr to ``workdir/server.log``. Clock
    offsets (seconds) shift each mock service's notion of now, e.g.
    ``rekor_clock_offset=2 * CERT_LIFETIME_S`` makes every log entry postdate its
    certificate's expiry. ``issuer_org`` names the CA's organisation (gh picks the trust
    domain by it: ``sigstore.dev``, ``GitHub, Inc.``); ``rekor=False`` / ``ctlog=False`` leave
    out the transparency log / CT log (GitHub's instance has neither). Raises RuntimeError
    if the server does not come up.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    trust_config_path = workdir / "trust_config.json"
    log_path = workdir / "server.log"
    argv = [_node(), str(SERVER_SCRIPT), "--trust-config", str(trust_config_path), "--port", "0"]
    if not tsa:
        argv.append("--no-tsa")
    if issuer_org is not None:
        argv += ["--issuer-org", issuer_org]
    if not rekor:
        argv.append("--no-rekor")
    if not ctlog:
        argv.append("--no-ctlog")
    for flag, value in (
        ("--fulcio-clock-offset", fulcio_clock_offset),
        ("--rekor-clock-offset", rekor_clock_offset),
        ("--tsa-clock-offset", tsa_clock_offset),
    ):
        if value:
            argv += [flag, str(value)]

    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=RIG_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    try:
        ready = json.loads(line)
        rig = SigstoreRig(
            url=ready["url"],
            trust_config_path=Path(ready["trust_config"]),
            trusted_root_path=Path(ready["trusted_root"]),
            signing_config_path=Path(ready["signing_config"]),
            tsa=bool(ready["tsa"]),
            log_path=log_path,
            process=process,
        )
    except (ValueError, KeyError, TypeError) as exc:
        process.kill()
        process.wait(timeout=5)
        raise RuntimeError(
            f"Sigstore rig did not start (exit {process.returncode}): "
            f"{log_path.read_text(errors='replace').strip() or line!r}"
        ) from exc
    return rig


def make_rig_fixture(
    name: str = "sigstore_rig", scope: str = "session", **start_kwargs: Any
) -> Callable[..., Iterator[SigstoreRig]]:
    """Build a pytest fixture (no conftest needed) that yields a running rig.

    Assign the result to a module-level name in a test module or conftest::

        sigstore_rig = make_rig_fixture()                       # session scope
        expired_rig = make_rig_fixture("expired_rig", scope="module",
                                       rekor_clock_offset=2 * CERT_LIFETIME_S)
    """

    @pytest.fixture(scope=scope, name=name)  # type: ignore[call-overload, untyped-decorator]
    def _rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreRig]:
        require_rig()
        rig = start_rig(tmp_path_factory.mktemp(name), **start_kwargs)
        try:
            yield rig
        finally:
            rig.stop()

    return _rig  # type: ignore[no-any-return]


@dataclass(frozen=True)
class NodeVerifyResult:
    """Outcome of verify.mjs: ``ok`` iff exit 0; ``message`` is its one-line reason."""

    ok: bool
    returncode: int
    message: str


def node_verify(
    bundle: Path,
    trusted_root: Path,
    *,
    identity: str | None = None,
    issuer: str | None = None,
    key: Path | None = None,
    artifact: Path | None = None,
    digest: str | None = None,
    tlog_threshold: int | None = None,
    ctlog_threshold: int | None = None,
    timestamp_threshold: int | None = None,
    timeout: float = 30.0,
) -> NodeVerifyResult:
    """Verify ``bundle`` with sigstore-js (verify.mjs); see its header for the checks.

    Give ``identity`` + ``issuer`` (certificate bundles) or ``key`` (public-key
    bundles), and ``artifact`` (a file) or ``digest`` (``sha256:<hex>``). Thresholds
    default to 1 in verify.mjs; pass 0 for bundles without tlog entries/timestamps.
    """
    argv = [_node(), str(VERIFY_SCRIPT), "--bundle", str(bundle), "--trusted-root", str(trusted_root)]
    options: tuple[tuple[str, object | None], ...] = (
        ("--identity", identity),
        ("--issuer", issuer),
        ("--key", key),
        ("--artifact", artifact),
        ("--digest", digest),
        ("--tlog-threshold", tlog_threshold),
        ("--ctlog-threshold", ctlog_threshold),
        ("--timestamp-threshold", timestamp_threshold),
    )
    for flag, value in options:
        if value is not None:
            argv += [flag, str(value)]
    proc = subprocess.run(argv, cwd=RIG_DIR, capture_output=True, text=True, timeout=timeout, check=False)
    message = proc.stdout.strip() or proc.stderr.strip()
    return NodeVerifyResult(ok=proc.returncode == 0, returncode=proc.returncode, message=message)
