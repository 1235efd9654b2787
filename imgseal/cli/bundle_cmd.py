"""``imgseal verify-bundle``: the Sigstore client conformance verification command.

Protocol (sigstore/sigstore-conformance ``docs/cli_protocol.md``)::

    verify-bundle [--staging] --bundle F
        (--certificate-identity I --certificate-oidc-issuer U | --key PEM)
        [--trusted-root F] FILE_OR_sha256:DIGEST

plus imgseal's own ``--tlog-threshold`` / ``--signed-timestamp-threshold`` /
``--observer-timestamp-threshold`` / ``--sct-threshold`` (sigstore-go's ``WithTransparencyLog`` /
``WithSignedTimestamps`` / ``WithObserverTimestamps`` / ``WithSignedCertificateTimestamps``;
by default the trusted root decides,
see :class:`verifier.sigstore.bundle.Thresholds` and docs/keyless.md).

Exit 0 when the bundle verifies; 1 when it does not; 2 for unusable input (malformed
bundle, missing file, bad options); a one-line reason on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgseal.cli._common import OutputFormat, emit_json, guarded, out

if TYPE_CHECKING:
    from verifier.sigstore.bundle import Thresholds


def register(app: typer.Typer) -> None:
    @app.command("verify-bundle")
    def verify_bundle_cmd(
        artifact: Annotated[str, typer.Argument(metavar="FILE_OR_sha256:DIGEST",
                                                help="The signed file, or its digest as sha256:<hex>"
                                                " or sha512:<hex>.")],
        bundle: Annotated[Path, typer.Option("--bundle", help="Sigstore bundle (JSON) to verify.")],
        identity: Annotated[str | None, typer.Option("--certificate-identity",
                                                     help="Expected signer identity.")] = None,
        identity_regexp: Annotated[str | None, typer.Option("--certificate-identity-regexp",
                                                            help="Regexp the identity must fully match.")] = None,
        issuer: Annotated[str | None, typer.Option("--certificate-oidc-issuer", help="Expected OIDC issuer.")] = None,
        issuer_regexp: Annotated[str | None, typer.Option("--certificate-oidc-issuer-regexp",
                                                          help="Regexp the OIDC issuer must fully match.")] = None,
        key: Annotated[Path | None, typer.Option("--key", help="PEM public key (self-managed key bundles).")] = None,
        trusted_root: Annotated[Path | None, typer.Option("--trusted-root",
                                                          help="Sigstore trusted root JSON.")] = None,
        staging: Annotated[bool, typer.Option("--staging", help="Use the embedded Sigstore staging root.")] = False,
        tlog_threshold: Annotated[int | None, typer.Option(
            "--tlog-threshold", min=0, metavar="N",
            help="Transparency-log entries that must verify (default: 1 if the trusted root lists a log, else 0)."
        )] = None,
        signed_timestamp_threshold: Annotated[int | None, typer.Option(
            "--signed-timestamp-threshold", min=0, metavar="N",
            help="RFC 3161 timestamps that must verify (default: 1 for certificates if the root lists no log, else 0)."
        )] = None,
        sct_threshold: Annotated[int | None, typer.Option(
            "--sct-threshold", min=0, max=1, metavar="N",
            help="Signed certificate timestamps the certificate must carry (default: 1 if the root lists a CT log,"
                 " else 0)."
        )] = None,
        observer_timestamp_threshold: Annotated[int | None, typer.Option(
            "--observer-timestamp-threshold", min=1, metavar="N",
            help="Verified times of either kind, RFC 3161 or log SET (default 1 for certificates, 0 for keys)."
        )] = None,
        output: Annotated[OutputFormat, typer.Option("--output", "-o", help="text or json.")] = OutputFormat.text,
    ) -> None:
        """Verify a Sigstore bundle for a file or digest, offline (Sigstore conformance protocol)."""

        def run() -> None:
            from verifier.sigstore.bundle import Thresholds

            thresholds = Thresholds(tlog_threshold, signed_timestamp_threshold, observer_timestamp_threshold)
            result = _run(artifact, bundle, identity, identity_regexp, issuer, issuer_regexp, key,
                          trusted_root, staging, thresholds, sct_threshold)
            if output is OutputFormat.json:
                emit_json(result)
            else:
                out(f"verified: {result['signer']}")

        guarded(run, output)


def _read(path: Path, what: str) -> bytes:
    from imgseal.errors import InvalidInputError

    try:
        return path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"cannot read {what} {path}: {e.strerror or e}") from e


def _run(artifact: str, bundle: Path, identity: str | None, identity_regexp: str | None, issuer: str | None,
         issuer_regexp: str | None, key: Path | None, trusted_root: Path | None,
         staging: bool, thresholds: Thresholds, sct_threshold: int | None = None) -> dict[str, object]:
    from imgseal.digest import Digest
    from imgseal.errors import InvalidInputError, UsageError, VerificationError
    from verifier.sigstore.bundle import (
        KeylessPolicy,
        KeyPolicy,
        artifact_digests_needed,
        hash_artifact,
        load_public_key_pem,
        statement_subject_matches,
        verify_bundle,
    )

    keyless = any(v is not None for v in (identity, identity_regexp, issuer, issuer_regexp))
    if key is not None and keyless:
        raise UsageError("give either --key or --certificate-identity/--certificate-oidc-issuer, not both")
    if trusted_root is not None and staging:
        raise UsageError("give either --trusted-root or --staging, not both")
    policy: KeylessPolicy | KeyPolicy
    if key is not None:
        policy = KeyPolicy((load_public_key_pem(_read(key, "public key")),))
    elif keyless:
        policy = KeylessPolicy(identity=identity, issuer=issuer, identity_regexp=identity_regexp,
                               issuer_regexp=issuer_regexp)
    else:
        raise UsageError("give --key, or --certificate-identity and --certificate-oidc-issuer")

    raw = _read(bundle, "bundle")
    data: bytes | None = None
    given: Digest | None = None
    if artifact.startswith(("sha256:", "sha512:")):
        given = Digest.parse(artifact)
        digests = {given.algorithm: given.hex}
    else:
        # One streaming pass over the file with every algorithm the bundle names
        # (sha512-only npm subjects, sha384 message digests); bytes kept only when needed.
        algorithms, keep = artifact_digests_needed(raw, policy.keys if isinstance(policy, KeyPolicy) else ())
        try:
            with Path(artifact).open("rb") as stream:
                digests, data = hash_artifact(stream, algorithms, keep=keep)
        except OSError as e:
            raise InvalidInputError(f"cannot read artifact {artifact}: {e.strerror or e}") from e
        if data is None and len(digests) == 1 and algorithms[0] in ("sha256", "sha512"):
            # A message signature is then checked from the digest alone (prehashed).
            given = Digest.parse(f"{algorithms[0]}:{digests[algorithms[0]]}")
    result = verify_bundle(raw, policy=policy, artifact=data, artifact_digest=given,
                           trusted_root=trusted_root, staging=staging, thresholds=thresholds,
                           signed_certificate_timestamps=sct_threshold)
    if result.kind == "dsse":
        # verify_bundle leaves the statement subject to its caller: here the subject is the file.
        if result.payload is None or not statement_subject_matches(result.payload, digests):
            named = ", ".join(f"{a}:{h}" for a, h in digests.items())
            raise VerificationError(f"the attestation's subjects do not include {named}", reason="subject")
    return {
        "ok": True,
        "kind": result.kind,
        "signer": result.signer,
        "payloadType": result.payload_type,
        "signingTime": result.signing_time.isoformat() if result.signing_time else None,
        "tlogEntries": result.tlog_entries,
        "signedTimestamps": result.signed_timestamps,
    }
