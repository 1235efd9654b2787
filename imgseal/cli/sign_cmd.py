"""``imgseal sign``: sign an image digest and attach the signature beside the image."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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
from imgseal.cli._witness import RekorUrlOption, TimestampServerOption, TlogUploadOption
from imgseal.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)


def sign(
    reference: Annotated[str, typer.Argument(help="REPO@sha256:… or oci-layout:PATH@sha256:… (a digest is required).")],
    key: Annotated[str | None, typer.Option(
        "--key", help="Private key: a path or env://VAR (cosign format), or a PKCS#11 URI "
        "'pkcs11:token=NAME;object=LABEL?module-path=/path/lib.so' (PIN from IMGSEAL_PKCS11_PIN or a prompt).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="bundle (cosign v3: in-toto statement in a Sigstore bundle, "
                                 "attached as an OCI referrer) or legacy (cosign .sig tag). Default: bundle, and "
                                 "legacy where the registry refuses OCI 1.1 artifact manifests (a notice says so).")
    ] = None,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", "-a", help="key=value signed into the payload (repeatable).")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="For an index: also sign every child.")] = False,
    resolve_tag: Annotated[
        bool, typer.Option("--resolve-tag", help="Accept a tag: resolve it (with a warning) and sign its digest.")
    ] = False,
    keyless: Annotated[bool, typer.Option("--keyless", help="Sign with a Sigstore identity (Fulcio certificate, "
                                          "Rekor entry) instead of a key.")] = False,
    identity_token: Annotated[str | None, typer.Option(
        "--identity-token", help="Keyless: OIDC identity token, or @FILE holding it (else SIGSTORE_ID_TOKEN, "
        "ambient CI credentials, or the browser flow in a terminal).")] = None,
    staging: Annotated[bool, typer.Option("--staging", help="Keyless: use the Sigstore staging instance.")] = False,
    trust_config: Annotated[Path | None, typer.Option(
        "--trust-config", dir_okay=False, help="Sigstore ClientTrustConfig JSON (trusted root + signing config) of a "
        "private instance; nothing contacts TUF. With --key it supplies the Rekor and TSA URLs.")] = None,
    tlog_upload: TlogUploadOption = False,
    rekor_url: RekorUrlOption = None,
    timestamp_server: TimestampServerOption = None,
    notation: Annotated[bool, typer.Option("--notation", help="Sign as the Notary Project does: a JWS envelope "
                                           "with an X.509 chain (--key KEY.pem --cert CHAIN.pem).")] = False,
    cert: Annotated[str | None, typer.Option("--cert", help="Notation: PEM certificate chain, leaf first.")] = None,
    expiry: Annotated[str | None, typer.Option("--expiry", help="Notation: signature lifetime such as 30d, 12h.")]
    = None,
    attachments_repo: AttachmentsRepoOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Sign the manifest digest REFERENCE names and attach the signature beside the image.

    With --key the password comes from IMGSEAL_PASSWORD or COSIGN_PASSWORD, else a prompt; a
    pkcs11: URI signs on the token (PIN from IMGSEAL_PKCS11_PIN or a prompt). --tlog-upload logs a
    --key bundle in Rekor (entry and inclusion proof in the bundle) and --timestamp-server adds an
    RFC 3161 timestamp, so verifiers can prove when it was signed.
    With --keyless the signature is a Sigstore bundle for an OIDC identity (production by
    default; --staging or --trust-config FILE for other instances); with --format legacy it is
    cosign's .sig layer carrying the certificate, chain, Rekor bundle and timestamp annotations.
    With --notation the key is a PEM private key (RSA 2048-4096 or ECDSA P-256/384/521) and
    --cert its chain; the leaf needs digitalSignature and the codeSigning EKU.
    Exit codes: 0 signed; 2 bad usage (e.g. a tag without --resolve-tag, a refused identity
    token); 3 registry or Sigstore service unreachable, or the registry refuses the format
    asked for (the message names the option that works there); 4 key.
    """

    def run() -> None:
        from imgseal.cli._keyload import load_private_key, parse_annotations
        from signer.image import sign_with_key, targets

        if fmt is not None and fmt not in ("bundle", "legacy"):
            raise UsageError(f"--format must be bundle or legacy, not {fmt!r}")
        chosen = fmt or "auto"
        if key is not None and keyless:
            raise UsageError("give either --key or --keyless, not both", reason="no-signer")
        if key is None and not keyless:
            raise UsageError("give --key KEY (keyless signing needs --keyless)", reason="no-signer")
        if notation and (keyless or key is None or fmt is not None):
            raise UsageError("--notation signs with --key KEY.pem --cert CHAIN.pem (not --keyless or --format)",
                             reason="no-signer")
        if not notation and (cert is not None or expiry is not None):
            raise UsageError("--cert and --expiry need --notation", reason="no-signer")
        if not keyless and (identity_token is not None or staging):
            raise UsageError("--identity-token and --staging need --keyless", reason="no-signer")
        witnessing = tlog_upload or rekor_url is not None or timestamp_server is not None
        if (keyless or notation) and witnessing:
            raise UsageError("--tlog-upload, --rekor-url and --timestamp-server witness --key signatures (keyless "
                             "signing always logs, and timestamps when the instance has a TSA)", reason="no-signer")
        if notation and trust_config is not None:
            raise UsageError("--trust-config is for --keyless or --key", reason="no-signer")
        witness = None
        if not keyless and not notation:
            from imgseal.cli._witness import resolve_witness

            witness = resolve_witness(tlog_upload=tlog_upload, rekor_url=rekor_url,
                                      timestamp_server=timestamp_server, trust_config=trust_config)
        annotations = parse_annotations(annotation)
        ref = parse_ref(reference, default_tag=None)
        if ref.digest is None and not resolve_tag:
            raise UsageError(
                f"{reference} names no digest: a tag can move, so imgseal signs digests",
                hint=f"run `imgseal digest {reference}` and sign REPO@sha256:…, or pass --resolve-tag",
                reason="tag-not-allowed",
            )
        factory = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        store, att_store = open_with_attachments(factory, ref, attachments_repo)
        from imgseal.content import fetch_manifest

        results: list[dict[str, Any]] = []
        if keyless:
            from signer.keyless import (
                Instance,
                find_identity_token,
                fulcio_ca_certs,
                keyless_signer,
                load_trust_config,
                sign_keyless,
            )

            instance = Instance(trust_config=trust_config, staging=staging)
            # Resolve the image first: a bad reference should not cost a certificate.
            manifest = fetch_manifest(store, ref.tag or "latest", ref.digest)
            if ref.digest is None:
                err(f"imgseal: warning: resolved tag {ref.tag} to {manifest.digest}; signing the digest")
            subjects = targets(store, manifest, recursive)
            tc = load_trust_config(instance)
            token = find_identity_token(identity_token, tc, interactive=sys.stdin.isatty())
            # The legacy chain annotation comes from the instance's trusted root (bundles carry the leaf only).
            ca_certs = fulcio_ca_certs(tc) if chosen != "bundle" else []
            with keyless_signer(tc, token) as signer:
                for subject in subjects:
                    signed = sign_keyless(att_store, ref.name, subject, signer, fmt=chosen, annotations=annotations,
                                          ca_certs=ca_certs)
                    results.append({"reference": ref.with_digest(subject.digest).pinned(), "format": signed.format,
                                    "artifact": str(signed.artifact.digest) if signed.artifact else None,
                                    "instance": instance.name})
        elif notation:
            from imgseal.cli._notation import sign_notation

            assert key is not None
            manifest = fetch_manifest(store, ref.tag or "latest", ref.digest)
            if ref.digest is None:
                err(f"imgseal: warning: resolved tag {ref.tag} to {manifest.digest}; signing the digest")
            subjects = targets(store, manifest, recursive)
            signatures = sign_notation(att_store, subjects, key=key, cert=cert, expiry=expiry, annotations=annotations)
            for subject, artifact in zip(subjects, signatures, strict=True):
                results.append({"reference": ref.with_digest(subject.digest).pinned(), "format": "notation",
                                "artifact": str(artifact.digest)})
        else:
            assert key is not None
            private_key = load_private_key(key)
            manifest = fetch_manifest(store, ref.tag or "latest", ref.digest)
            if ref.digest is None:
                err(f"imgseal: warning: resolved tag {ref.tag} to {manifest.digest}; signing the digest")
            for subject in targets(store, manifest, recursive):
                signed = sign_with_key(att_store, ref.name, subject, private_key, fmt=chosen, annotations=annotations,
                                       witness=witness)
                results.append({"reference": ref.with_digest(subject.digest).pinned(), "format": signed.format,
                                "artifact": str(signed.artifact.digest) if signed.artifact else None})
        if output is OutputFormat.json:
            emit_json({"ok": True, "signed": results, "attachments": att_store.location})
            return
        if att_store is not store:
            err(f"signatures stored in {att_store.location}")
        for r in results:
            out(r["reference"])
            err(f"signed {r['reference']} ({r['format']}{', ' + r['artifact'] if r['artifact'] else ''})")

    guarded(run, output)
