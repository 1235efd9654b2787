"""The witness options of ``sign --key`` / ``attest --key``: ``--tlog-upload``, ``--rekor-url``,
``--timestamp-server``, and the Rekor and TSA URLs of a ClientTrustConfig's signing config."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from imgseal.errors import InvalidInputError, UsageError

if TYPE_CHECKING:
    from signer.witness import Witness

#: cosign's default Rekor (``options.DefaultRekorURL``), used by --tlog-upload without another.
PUBLIC_GOOD_REKOR: Final = "https://rekor.sigstore.dev"
MAX_TRUST_CONFIG_BYTES: Final = 4 << 20

TlogUploadOption = Annotated[bool, typer.Option(
    "--tlog-upload", help="With --key: log the signature in Rekor and put the entry, with its inclusion proof, in "
    "the bundle (legacy: cosign's layer annotation); the Rekor of --rekor-url, else of --trust-config's signing "
    "config, else rekor.sigstore.dev.")]
RekorUrlOption = Annotated[str | None, typer.Option(
    "--rekor-url", help="With --key --tlog-upload: the Rekor v1 instance to log in.")]
TimestampServerOption = Annotated[str | None, typer.Option(
    "--timestamp-server", metavar="URL", help="With --key: add an RFC 3161 timestamp of the signature from this "
    "TSA (with --trust-config, its signing config's TSA is used unless this names another).")]


def resolve_witness(*, tlog_upload: bool, rekor_url: str | None, timestamp_server: str | None,
                    trust_config: Path | None) -> Witness | None:
    """The :class:`signer.witness.Witness` the options ask for, or ``None`` for a bare key signature."""
    if rekor_url is not None and not tlog_upload:
        raise UsageError("--rekor-url needs --tlog-upload", reason="no-signer")
    if not tlog_upload and timestamp_server is None and trust_config is None:
        return None
    from signer.witness import Witness

    # As cosign with --signing-config: the config's Rekor (when logging) and its TSA (when it lists one).
    config = _signing_config(trust_config) if trust_config is not None else None
    rekor = None
    if tlog_upload:
        rekor = rekor_url or (config and _first_url(config, "rekorTlogUrls", major=1)) or PUBLIC_GOOD_REKOR
    tsa = timestamp_server or (config and _first_url(config, "tsaUrls")) or None
    if rekor is None and tsa is None:
        raise UsageError(f"--trust-config {trust_config} lists no timestamp authority; with --key it only supplies "
                         "the Rekor (--tlog-upload) and TSA URLs", reason="no-signer")
    return Witness(rekor_url=rekor, tsa_url=tsa)


def _signing_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TRUST_CONFIG_BYTES + 1)
        doc = json.loads(raw)
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read --trust-config {path}: {e}", reason="trust-config") from e
    config = doc.get("signingConfig") if isinstance(doc, dict) else None
    if len(raw) > MAX_TRUST_CONFIG_BYTES or not isinstance(config, dict):
        raise InvalidInputError(f"--trust-config {path} is not a ClientTrustConfig with a signingConfig",
                                reason="trust-config")
    return config


def _first_url(config: dict[str, Any], field: str, major: int | None = None) -> str | None:
    """The first service of ``field`` valid now (signing config v0.2 ``Service``: url, majorApiVersion,
    validFor); Rekor must be major version 1 here, the REST API this client speaks."""
    now = datetime.now(UTC)
    for service in config.get(field) or []:
        if not isinstance(service, dict) or not isinstance(service.get("url"), str):
            continue
        if major is not None and service.get("majorApiVersion", 1) != major:
            continue
        valid = service.get("validFor") or {}
        if not _within(valid, now):
            continue
        return str(service["url"])
    return None


def _within(valid: Any, now: datetime) -> bool:
    if not isinstance(valid, dict):
        return True
    for bound, later in (("start", False), ("end", True)):
        text = valid.get(bound)
        if not isinstance(text, str):
            continue
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return False
        if (now > when) if later else (now < when):
            return False
    return True
