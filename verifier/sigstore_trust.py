"""Sigstore trusted roots: load one (a file, or the embedded production/staging root) offline.

A trusted root (protobuf-specs ``sigstore_trustroot.proto``, media type
``application/vnd.dev.sigstore.trustedroot+json;version=0.1``) lists the Fulcio CAs, the
Rekor and CT log keys and the timestamp authorities, each with a validity window.

We never refresh it over TUF at verification time (sigstore-python #1175: a TUF round trip
on every run); ``verifier/data/`` carries the production and staging roots that
sigstore-python 4.5.1 embeds, and ``--trusted-root`` pins any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imgseal.errors import InvalidInputError
from verifier.tlog import LogKey, PublicKey

MAX_TRUSTED_ROOT_BYTES: Final = 4 << 20


@dataclass(frozen=True)
class TimestampAuthority:
    """A TSA: its chain (leaf first, root last) and its closed validity window."""

    chain: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_until: datetime | None

    def valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when and (self.valid_until is None or when <= self.valid_until)


@dataclass(frozen=True)
class TrustMaterial:
    """What verification needs from a trusted root, parsed once."""

    tlog_keys: tuple[LogKey, ...]
    fulcio_certs: tuple[x509.Certificate, ...]
    tsas: tuple[TimestampAuthority, ...]
    inner: Any  # sigstore_models TrustedRoot: kept for the CT keyring (SCT verification)
    source: str

    def log_key(self, log_id: bytes) -> LogKey | None:
        for k in self.tlog_keys:
            if k.log_id == log_id:
                return k
        return None

    def ct_keyring(self) -> Any:
        """sigstore-python's CT keyring for ``verify_sct`` (imported lazily)."""
        from sigstore._internal.trust import KeyringPurpose
        from sigstore.models import TrustedRoot

        return TrustedRoot(self.inner).ct_keyring(KeyringPurpose.VERIFY)


def _load_key(raw: bytes, what: str) -> PublicKey:
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidInputError(f"trusted root: {what} public key does not parse: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise InvalidInputError(f"trusted root: {what} has an unsupported key type")
    return key


def parse_trusted_root(data: bytes, *, source: str = "trusted root") -> TrustMaterial:
    """Parse trusted-root JSON; raise :class:`InvalidInputError` naming what is wrong."""
    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise InvalidInputError(f"{source}: larger than {MAX_TRUSTED_ROOT_BYTES} bytes")
    from pydantic import ValidationError
    from sigstore_models.trustroot.v1 import TrustedRoot as _TrustedRoot

    try:
        inner = _TrustedRoot.from_json(data)
    except (ValidationError, ValueError) as e:
        first = str(e).splitlines()
        raise InvalidInputError(f"{source} is not a valid trusted root: {' '.join(first[:3])[:200]}") from e
    if inner.media_type != "application/vnd.dev.sigstore.trustedroot+json;version=0.1":
        raise InvalidInputError(f"{source}: unsupported media type {inner.media_type!r}")
    tlog_keys: list[LogKey] = []
    for i, tlog in enumerate(inner.tlogs):
        pk = tlog.public_key
        if not pk.raw_bytes or pk.valid_for is None:
            # A key without a validity start cannot be bounded in time: refuse it
            # (conformance case trust-root-tlog-missing-validity-start_fail).
            raise InvalidInputError(f"{source}: tlog {i} has no public key or no validity window")
        tlog_keys.append(LogKey(log_id=tlog.log_id.key_id, key=_load_key(pk.raw_bytes, f"tlog {i}"),
                                valid_from=pk.valid_for.start, valid_until=pk.valid_for.end,
                                base_url=tlog.base_url))
    fulcio: list[x509.Certificate] = []
    for ca in inner.certificate_authorities:
        fulcio.extend(_certs(ca.cert_chain.certificates, source))
    tsas = tuple(
        TimestampAuthority(tuple(_certs(t.cert_chain.certificates, source)), t.valid_for.start, t.valid_for.end)
        for t in inner.timestamp_authorities
    )
    return TrustMaterial(tuple(tlog_keys), tuple(fulcio), tsas, inner, source)


def _certs(items: Any, source: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for c in items:
        try:
            out.append(x509.load_der_x509_certificate(c.raw_bytes))
        except ValueError as e:
            raise InvalidInputError(f"{source}: a certificate does not parse: {e}") from e
    return out


def load_trusted_root(path: Path | None = None, *, staging: bool = False) -> TrustMaterial:
    """Load ``path``, else the embedded staging or production root. Never touches the network."""
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InvalidInputError(f"cannot read trusted root {path}: {e.strerror or e}") from e
        return parse_trusted_root(data, source=f"trusted root {path}")
    name = "trusted_root.staging.json" if staging else "trusted_root.production.json"
    data = resources.files("verifier").joinpath("data", name).read_bytes()
    return parse_trusted_root(data, source=f"embedded {'staging' if staging else 'production'} trusted root")
