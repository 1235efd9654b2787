"""Keyless signing of image digests through Sigstore (Fulcio certificate, Rekor entry, TSA timestamps).

What gets signed is exactly what key-based signing signs (:func:`signer.image.statement_for`):
the in-toto Statement v1 that ``cosign sign`` v3 writes — subject = the manifest digest,
predicate type ``https://sigstore.dev/cosign/sign/v1`` — as a DSSE envelope inside a Sigstore
bundle v0.3, attached as an OCI referrer (:func:`signer.image.attach_bundle`). Only the
verification material differs: a short-lived Fulcio certificate for an OIDC identity, a Rekor
entry and (when the instance has a TSA) RFC 3161 timestamps.

sigstore-python does the protocol work (``SigningContext.from_trust_config``,
``Signer.sign_dsse``). It is imported lazily so ``imgseal sign --key`` never pays for it, and
every exception it can raise is turned into an :class:`imgseal.errors.Error` here:
network trouble and service failures are undecidable (exit 3), a token the client or Fulcio
refuses is a usage error (exit 2).

With ``fmt="legacy"`` the cosign legacy format is written instead (REFERENCE.md §4): the
simple-signing payload is signed as a plain message (``Signer.sign_artifact``: a hashedrekord
entry in Rekor v1) and appended as a layer to the ``sha256-<hex>.sig`` image, with the layer
annotations cosign writes (``pkg/oci/static/options.go``, ``pkg/cosign/bundle``): signature,
leaf certificate, chain, the Rekor bundle (SET + entry) and, with a TSA, the RFC 3161 timestamp.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from imgseal import attach
from imgseal.errors import Error, InvalidInputError, NetworkError, UndecidableError, UsageError
from imgseal.manifest import Descriptor
from imgseal.payloads import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    simple_signing_payload,
)
from imgseal.store.base import Store
from signer.image import SignedArtifact, attach_bundle, bundle_or_legacy, statement_for

#: Environment variable for an identity token (the name sigstore-python and cosign's
#: ``SIGSTORE_ID_TOKEN`` use).
TOKEN_ENV: Final = "SIGSTORE_ID_TOKEN"  # noqa: S105 - a variable name, not a secret
#: cosign ``static.RFC3161TimestampAnnotationKey`` (not in imgseal.payloads: only legacy keyless uses it).
RFC3161_ANNOTATION: Final = "dev.sigstore.cosign/rfc3161timestamp"
MAX_TOKEN_FILE_BYTES: Final = 64 << 10

T = TypeVar("T")


@dataclass(frozen=True)
class Instance:
    """Which Sigstore instance to sign with: a ClientTrustConfig file, staging, or production."""

    trust_config: Path | None = None
    staging: bool = False

    def __post_init__(self) -> None:
        if self.trust_config is not None and self.staging:
            raise UsageError("give either --trust-config or --staging, not both")

    @property
    def name(self) -> str:
        if self.trust_config is not None:
            return f"trust config {self.trust_config}"
        return "staging" if self.staging else "production"


@dataclass(frozen=True)
class TokenSource:
    """Where the identity token came from (for the log line; never the token itself)."""

    token: str
    origin: str  # "option", "file", "environment", "ambient", "browser"


def load_trust_config(instance: Instance) -> Any:
    """The instance's sigstore ``ClientTrustConfig``.

    A ``--trust-config`` file is read as is and nothing contacts TUF; production and staging
    come from their TUF repositories (a network round trip, which signing needs anyway).
    """
    from sigstore.models import ClientTrustConfig

    if instance.trust_config is not None:
        try:
            text = instance.trust_config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"cannot read --trust-config {instance.trust_config}: {e}") from e
        try:
            return ClientTrustConfig.from_json(text)
        except (ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
            first = " ".join(str(e).split())[:200]
            raise InvalidInputError(f"--trust-config {instance.trust_config} is not a Sigstore ClientTrustConfig: "
                                    f"{first}", reason="trust-config") from e
    factory = ClientTrustConfig.staging if instance.staging else ClientTrustConfig.production
    return sigstore_call(factory, f"fetching the {instance.name} trust configuration (TUF)")


def read_token_argument(value: str) -> TokenSource:
    """``--identity-token TOKEN`` or ``--identity-token @FILE`` (the file holds the raw JWT)."""
    if not value.startswith("@"):
        return TokenSource(value.strip(), "option")
    path = Path(value[1:])
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read identity token file {path}: {e.strerror or e}", reason="identity-token") from e
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise UsageError(f"identity token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes",
                         reason="identity-token")
    try:
        return TokenSource(data.decode("ascii").strip(), "file")
    except UnicodeDecodeError as e:
        raise UsageError(f"identity token file {path} is not a JWT (non-ASCII bytes)", reason="identity-token") from e


def find_identity_token(explicit: str | None, trust_config: Any, *, interactive: bool,
                        environ: Mapping[str, str] | None = None) -> TokenSource:
    """The identity token, from the first source that has one.

    Order (sigstore-python's and cosign's): ``--identity-token``, ``$SIGSTORE_ID_TOKEN``,
    ambient CI credentials (``detect_credential``: GitHub Actions, GitLab, Buildkite, …),
    then the browser flow against the instance's OIDC provider — only when ``interactive``
    (stdin is a terminal), because a CI job waiting on a browser never finishes.
    """
    env = os.environ if environ is None else environ
    if explicit is not None:
        source = read_token_argument(explicit)
    elif env.get(TOKEN_ENV, "").strip():
        source = TokenSource(env[TOKEN_ENV].strip(), "environment")
    else:
        from sigstore.oidc import detect_credential

        ambient = sigstore_call(detect_credential, "detecting ambient CI credentials")
        if ambient:
            source = TokenSource(str(ambient), "ambient")
        elif interactive:
            source = TokenSource(_browser_token(trust_config), "browser")
        else:
            raise UsageError(
                "no identity token: give --identity-token TOKEN|@FILE or set SIGSTORE_ID_TOKEN",
                hint="in CI grant an OIDC token (GitHub Actions: permissions: id-token: write); "
                     "run in a terminal for the browser flow",
                reason="identity-token",
            )
    if not source.token:
        raise UsageError(f"the identity token from the {source.origin} is empty", reason="identity-token")
    return source


def _browser_token(trust_config: Any) -> str:
    from sigstore.oidc import Issuer

    def fetch() -> str:
        issuer = Issuer(trust_config.signing_config.get_oidc_url())
        return str(issuer.identity_token())

    return sigstore_call(fetch, "the interactive OIDC flow")


@contextmanager
def keyless_signer(trust_config: Any, token: TokenSource) -> Iterator[Any]:
    """A sigstore ``Signer``: one ephemeral key and one Fulcio certificate for every target.

    The certificate is requested here, so token problems surface before anything is attached.
    """
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext

    identity = sigstore_call(lambda: IdentityToken(token.token), f"reading the identity token ({token.origin})")
    context = sigstore_call(lambda: SigningContext.from_trust_config(trust_config), "reading the signing config")
    manager = context.signer(identity, cache=True)
    signer = sigstore_call(manager.__enter__, "requesting a signing certificate from Fulcio")
    try:
        yield signer
    finally:
        manager.__exit__(None, None, None)


def keyless_dsse_bundle(signer: Any, statement: bytes) -> bytes:
    """Sign ``statement`` (in-toto JSON bytes) as DSSE; the bundle v0.3 JSON bytes."""
    from sigstore.dsse import Statement

    wrapped = sigstore_call(lambda: Statement(statement), "building the in-toto statement")
    bundle = sigstore_call(lambda: signer.sign_dsse(wrapped), "signing (Fulcio, Rekor, timestamp authority)")
    return str(bundle.to_json()).encode()


def sign_keyless(
    store: Store,
    name: str,
    subject: Descriptor,
    signer: Any,
    *,
    fmt: str = "auto",
    annotations: Mapping[str, str] | None = None,
    ca_certs: Sequence[Any] = (),
) -> SignedArtifact:
    """Sign one manifest digest keylessly and attach the signature beside the image.

    ``fmt="bundle"`` attaches a Sigstore bundle as a referrer; ``fmt="legacy"`` appends a
    cosign ``.sig`` layer (:func:`legacy_layer`), whose chain annotation is built from
    ``ca_certs`` (the trusted root's Fulcio certificates) when the bundle carries no chain.
    ``fmt="auto"`` falls back to the legacy layer where the registry refuses the referrer
    (:func:`signer.image.bundle_or_legacy`); that signs a second time, so the transparency
    log holds an entry for the bundle that could not be stored, too.
    """

    def legacy() -> SignedArtifact:
        payload = simple_signing_payload(name, subject.digest, annotations)
        bundle = sigstore_call(lambda: signer.sign_artifact(payload), "signing (Fulcio, Rekor, timestamp authority)")
        layer = legacy_layer(payload, str(bundle.to_json()).encode(), ca_certs)
        attach.attach_legacy(store, subject.digest, suffix="sig", layer=layer)
        return SignedArtifact(subject, None, "legacy")

    def bundle() -> SignedArtifact:
        predicate: dict[str, Any] = {"annotations": dict(annotations)} if annotations else {}
        raw = keyless_dsse_bundle(signer, statement_for(name, subject, COSIGN_SIGN_PREDICATE, predicate))
        return SignedArtifact(subject, attach_bundle(store, subject, raw, COSIGN_SIGN_PREDICATE), "bundle")

    return bundle_or_legacy(fmt, bundle, legacy, legacy_tag=".sig")


def fulcio_ca_certs(trust_config: Any) -> list[Any]:
    """Every CA certificate of the instance's trusted root (cryptography ``x509.Certificate``)."""
    return list(sigstore_call(lambda: trust_config.trusted_root.get_fulcio_certs(), "reading the trusted root"))


def legacy_layer(payload: bytes, bundle_json: bytes, ca_certs: Sequence[Any] = ()) -> attach.Layer:
    """The cosign ``.sig`` layer for ``payload`` from a message-signature Sigstore bundle over it.

    The annotations are cosign's (``pkg/oci/static/options.go``):

    - ``dev.cosignproject.cosign/signature``: base64 of the signature over the payload bytes;
    - ``dev.sigstore.cosign/certificate``: the leaf certificate, PEM;
    - ``dev.sigstore.cosign/chain``: intermediates then root, PEM, concatenated;
    - ``dev.sigstore.cosign/bundle``: ``bundle.RekorBundle`` marshalled by Go's encoding/json
      (``{"SignedEntryTimestamp": b64, "Payload": {"body": b64, "integratedTime": n,
      "logIndex": n, "logID": hex}}``, fields in struct order);
    - ``dev.sigstore.cosign/rfc3161timestamp``: ``{"SignedRFC3161Timestamp": b64}``, when the
      instance has a TSA (cosign timestamps the raw signature bytes, as the bundle's TSA does).

    The Rekor bundle needs the entry's SET (a Rekor v1 inclusion promise): an instance that
    gives none (Rekor v2) cannot produce this format, which cosign verifies from the SET alone.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        doc = json.loads(bundle_json)
        material = doc["verificationMaterial"]
        signature = _b64(doc["messageSignature"]["signature"])
        if "certificate" in material:
            ders = [_b64(material["certificate"]["rawBytes"])]
        else:
            ders = [_b64(c["rawBytes"]) for c in material["x509CertificateChain"]["certificates"]]
        entries = material.get("tlogEntries") or []
        stamps = (material.get("timestampVerificationData") or {}).get("rfc3161Timestamps") or []
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise UndecidableError(f"Sigstore returned a bundle imgseal cannot read: {e}", reason="sigstore") from e
    if len(entries) != 1 or not (entries[0].get("inclusionPromise") or {}).get("signedEntryTimestamp"):
        raise UndecidableError("the legacy .sig format needs a Rekor v1 entry with a signed entry timestamp (SET); "
                               "this instance gave none", hint="sign with --format bundle", reason="rekor")
    entry = entries[0]
    try:
        rekor_bundle = {
            "SignedEntryTimestamp": base64.b64encode(_b64(entry["inclusionPromise"]["signedEntryTimestamp"])).decode(),
            "Payload": {
                "body": base64.b64encode(_b64(entry["canonicalizedBody"])).decode(),
                "integratedTime": int(entry["integratedTime"]),
                "logIndex": int(entry["logIndex"]),
                "logID": _b64(entry["logId"]["keyId"]).hex(),
            },
        }
        leaf = x509.load_der_x509_certificate(ders[0])
        chain = [x509.load_der_x509_certificate(d) for d in ders[1:]] or issuing_chain(leaf, ca_certs)
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise UndecidableError(f"Sigstore returned a bundle imgseal cannot read: {e}", reason="sigstore") from e
    annotations = {
        SIGNATURE_ANNOTATION: base64.b64encode(signature).decode(),
        CERTIFICATE_ANNOTATION: leaf.public_bytes(Encoding.PEM).decode(),
        CHAIN_ANNOTATION: "".join(c.public_bytes(Encoding.PEM).decode() for c in chain),
        REKOR_BUNDLE_ANNOTATION: json.dumps(rekor_bundle, separators=(",", ":")),
    }
    if stamps:
        stamp = _b64(stamps[0]["signedTimestamp"])
        annotations[RFC3161_ANNOTATION] = json.dumps({"SignedRFC3161Timestamp": base64.b64encode(stamp).decode()},
                                                     separators=(",", ":"))
    return attach.Layer(payload, attach.SIMPLESIGNING, annotations)


def issuing_chain(leaf: Any, ca_certs: Sequence[Any]) -> list[Any]:
    """The CA certificates from ``leaf``'s issuer up to a self-signed root, found in ``ca_certs``.

    Each link is chosen by subject *and* signature (``verify_directly_issued_by``), so a
    trusted root that lists several Fulcio CAs (rotations) yields the one that issued the leaf.
    An empty list when no issuer is found: the chain annotation is informational, verifiers
    build the path to their own trusted root.
    """
    chain: list[Any] = []
    current = leaf
    while len(chain) < 8:
        parent = next((c for c in ca_certs if c.subject == current.issuer and _issued_by(current, c)), None)
        if parent is None or parent in chain:
            break
        chain.append(parent)
        if parent.subject == parent.issuer:
            break
        current = parent
    return chain


def _issued_by(cert: Any, issuer: Any) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - InvalidSignature, a key-type mismatch…: all mean "not this issuer"
        return False
    return True


def _b64(value: Any) -> bytes:
    """proto3 JSON bytes: standard or URL-safe base64."""
    if not isinstance(value, str):
        raise TypeError("expected a base64 string")
    text = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def sigstore_call(fn: Callable[[], T], doing: str) -> T:
    """Run one sigstore-python step; map whatever it raises to an imgseal error.

    - connection failures, timeouts, TUF download failures → :class:`NetworkError` (exit 3);
    - a token the client refuses (malformed, expired, wrong audience) or Fulcio answers
      401/403 for → :class:`UsageError` (exit 2, reason ``identity-token``);
    - any other service error (5xx, a malformed answer, an SCT that does not verify, a
      certificate that expired before use) → :class:`UndecidableError` (exit 3).
    """
    import requests
    from sigstore._internal.fulcio.client import ExpiredCertificate, FulcioClientError
    from sigstore._internal.rekor import RekorClientError
    from sigstore.errors import Error as SigstoreError
    from sigstore.errors import NetworkError as SigstoreNetworkError
    from sigstore.errors import TUFError
    from sigstore.oidc import ExpiredIdentity, IdentityError, IssuerError

    try:
        return fn()
    except Error:
        raise
    except (requests.ConnectionError, requests.Timeout, SigstoreNetworkError) as e:
        raise NetworkError(f"{doing}: network failure: {_cause(e)}", reason="network-error") from e
    except TUFError as e:
        raise NetworkError(f"{doing}: {e.message} ({_cause(e)})", reason="tuf",
                           hint="run `imgseal trust update` when online, or pass --trust-config FILE") from e
    except (IdentityError, ExpiredIdentity) as e:
        raise UsageError(f"identity token refused: {_cause(e) or 'expired'}", reason="identity-token") from e
    except FulcioClientError as e:
        status = _http_status(e)
        if status in (401, 403):
            raise UsageError(f"Fulcio refused the identity token (HTTP {status}): {_cause(e)}",
                             reason="identity-token") from e
        raise UndecidableError(f"{doing}: Fulcio failed: {_cause(e)}", reason="fulcio") from e
    except ExpiredCertificate as e:
        raise UndecidableError(f"{doing}: Fulcio issued a certificate that has already expired "
                               "(clock skew?)", reason="fulcio") from e
    except RekorClientError as e:
        raise UndecidableError(f"{doing}: Rekor failed: {_cause(e)}", reason="rekor") from e
    except IssuerError as e:
        raise UndecidableError(f"{doing}: OIDC provider failed: {_cause(e)}", reason="oidc") from e
    except requests.RequestException as e:
        raise UndecidableError(f"{doing}: {_cause(e)}", reason="sigstore-service") from e
    except SigstoreError as e:
        raise UndecidableError(f"{doing}: {_cause(e)}", reason="sigstore") from e


def _http_status(e: BaseException) -> int | None:
    cause = e.__cause__
    response = getattr(cause, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _cause(e: BaseException) -> str:
    parts: list[str] = []
    seen: BaseException | None = e
    while seen is not None and len(parts) < 3:
        text = " ".join(str(seen).split())
        if text and text not in parts:
            parts.append(text)
        seen = seen.__cause__
    return ": ".join(parts)[:300] or type(e).__name__
