"""Sigstore trusted roots: load one (a file, or the embedded production/staging root) offline.

A trusted root (protobuf-specs ``sigstore_trustroot.proto``, media type
``application/vnd.dev.sigstore.trustedroot+json;version=0.1``) lists the Fulcio CAs, the
Rekor and CT log keys and the timestamp authorities, each with a validity window.

We never refresh it over TUF at verification time (sigstore-python #1175: a TUF round trip
on every run); ``verifier/data/`` carries the production and staging roots that
sigstore-python 4.5.1 embeds, and ``--trusted-root`` pins any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imgseal.errors import InvalidInputError
from verifier.sigstore import protojson
from verifier.sigstore.tlog import LogKey, PublicKey

MAX_TRUSTED_ROOT_BYTES: Final = 4 << 20
TRUSTED_ROOT_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


@dataclass(frozen=True)
class TimestampAuthority:
    """A TSA: its chain (leaf first, root last) and its closed validity window."""

    chain: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_until: datetime | None

    def valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when and (self.valid_until is None or when <= self.valid_until)


@dataclass(frozen=True)
class CtLogKey:
    """A certificate-transparency log key, kept as listed: it is loaded only to check an SCT."""

    raw_bytes: bytes
    key_details: str
    valid_from: datetime | None
    valid_until: datetime | None


@dataclass(frozen=True)
class TrustMaterial:
    """What verification needs from a trusted root, parsed once."""

    tlog_keys: tuple[LogKey, ...]
    fulcio_certs: tuple[x509.Certificate, ...]
    tsas: tuple[TimestampAuthority, ...]
    ct_keys: tuple[CtLogKey, ...]
    source: str

    def log_key(self, log_id: bytes) -> LogKey | None:
        for k in self.tlog_keys:
            if k.log_id == log_id:
                return k
        return None


def _load_key(raw: bytes, what: str) -> PublicKey:
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidInputError(f"trusted root: {what} public key does not parse: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise InvalidInputError(f"trusted root: {what} has an unsupported key type")
    return key


# protobuf JSON readers shared with the bundle parser (verifier.sigstore.protojson). A trusted root is
# read by the proto3 JSON rules its producers follow (protobuf-specs sigstore_trustroot.proto):
# unknown members are ignored (a newer root may add some) and every member is optional;
# what verification cannot do without is refused by name below.
_Bad = protojson.ProtoJsonError
_str = protojson.string
_list = protojson.array
_b64 = protojson.b64


def _obj(obj: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return protojson.fields(obj, where, required, optional, ignore_unknown=True)


def _time(value: Any, where: str) -> datetime:
    """An RFC 3339 timestamp with an offset (proto3 JSON Timestamp); nanoseconds are truncated."""
    import re

    text = _str(value, where)
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        raise _Bad(f"{where}: not an RFC 3339 timestamp: {text[:40]!r}")
    fraction = f".{(m.group(2) or '0')[:6]:0<6}"
    try:
        when = datetime.fromisoformat(m.group(1) + fraction + m.group(3).replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"{where}: not a valid time: {text[:40]!r}") from None
    return when.astimezone(UTC)


def _time_range(value: Any, where: str) -> tuple[datetime | None, datetime | None]:
    r = _obj(value, where, (), ("start", "end"))
    return (_time(r["start"], f"{where}.start") if "start" in r else None,
            _time(r["end"], f"{where}.end") if "end" in r else None)


def _public_key(value: Any, where: str) -> tuple[bytes | None, str, tuple[datetime | None, datetime | None] | None]:
    pk = _obj(value, where, (), ("keyDetails", "rawBytes", "validFor"))
    # An unknown or missing key type is kept as given: a CT key of a type we cannot use is
    # skipped when SCTs are checked, and a log key is loaded from its DER alone.
    details = _str(pk["keyDetails"], f"{where}.keyDetails") if "keyDetails" in pk else ""
    raw = _b64(pk["rawBytes"], f"{where}.rawBytes") if "rawBytes" in pk else None
    valid = _time_range(pk["validFor"], f"{where}.validFor") if "validFor" in pk else None
    return raw, details, valid


def _log(value: Any, where: str) -> tuple[bytes | None, str, tuple[datetime | None, datetime | None] | None,
                                          bytes | None, str]:
    t = _obj(value, where, (), ("baseUrl", "hashAlgorithm", "publicKey", "logId", "checkpointKeyId", "operator"))
    base_url = _str(t["baseUrl"], f"{where}.baseUrl") if "baseUrl" in t else ""
    if "hashAlgorithm" in t:
        _str(t["hashAlgorithm"], f"{where}.hashAlgorithm")
    raw, details, valid = _public_key(t.get("publicKey", {}), f"{where}.publicKey")
    log_id = None
    if "logId" in t:
        log_id = _b64(_obj(t["logId"], f"{where}.logId", ("keyId",))["keyId"], f"{where}.logId.keyId")
    return raw, details, valid, log_id, base_url


def _authority(value: Any, where: str, source: str) -> tuple[list[x509.Certificate], datetime | None, datetime | None]:
    ca = _obj(value, where, (), ("subject", "certChain", "validFor", "uri", "operator"))
    if "subject" in ca:
        for name, item in _obj(ca["subject"], f"{where}.subject", (), ("organization", "commonName")).items():
            _str(item, f"{where}.subject.{name}")
    chain = _obj(ca.get("certChain", {}), f"{where}.certChain", (), ("certificates",))
    raws = [_b64(_obj(c, f"{where}.certChain.certificates[{i}]", ("rawBytes",))["rawBytes"],
                 f"{where}.certChain.certificates[{i}].rawBytes")
            for i, c in enumerate(_list(chain.get("certificates"), f"{where}.certChain.certificates"))]
    if not raws:
        # Nothing to chain to: refuse rather than list an authority that can never verify.
        raise _Bad(f"{where}.certChain: no certificates")
    start, end = _time_range(ca["validFor"], f"{where}.validFor") if "validFor" in ca else (None, None)
    return _certs(raws, source), start, end


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_trusted_root(data: bytes, *, source: str = "trusted root") -> TrustMaterial:
    """Parse trusted-root JSON; raise :class:`InvalidInputError` naming what is wrong.

    Read straight from JSON: sigstore-python's pydantic models cost ~0.3 s of imports per
    run for this one document. The proto3 JSON rules apply (unknown members ignored, every
    member optional); refused are a wrong media type, malformed values, a transparency log
    without a key or log id, a log key validity window without its start, an authority without
    certificates, and a root that lists no authority and no log at all.
    """
    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise InvalidInputError(f"{source}: larger than {MAX_TRUSTED_ROOT_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{source} is not a valid trusted root: not JSON: {e}"[:250]) from e
    try:
        root = _obj(doc, "trustedRoot", ("mediaType",),
                    ("tlogs", "certificateAuthorities", "ctlogs", "timestampAuthorities"))
        media_type = _str(root["mediaType"], "mediaType")
        if media_type != TRUSTED_ROOT_MEDIA_TYPE:
            raise InvalidInputError(f"{source}: unsupported media type {media_type[:80]!r}")
        tlog_keys: list[LogKey] = []
        for i, item in enumerate(_list(root.get("tlogs"), "tlogs")):
            raw, _, valid, log_id, base_url = _log(item, f"tlogs[{i}]")
            if not raw or log_id is None:
                raise InvalidInputError(f"{source}: tlog {i} has no public key or no log id")
            # PublicKey.valid_for is optional (protobuf-specs sigstore_common.proto): absent,
            # the key is not bounded in time (as sigstore-js reads it; sigstore-go refuses
            # such a root). A TimeRange that is present must have its start: refuse one
            # without (conformance case trust-root-tlog-missing-validity-start_fail).
            if valid is not None and valid[0] is None:
                raise InvalidInputError(f"{source}: tlog {i} has a validity window without a start")
            tlog_keys.append(LogKey(log_id=log_id, key=_load_key(raw, f"tlog {i}"),
                                    valid_from=valid[0] if valid and valid[0] else _EPOCH,
                                    valid_until=valid[1] if valid else None, base_url=base_url))
        ct_keys: list[CtLogKey] = []
        for i, item in enumerate(_list(root.get("ctlogs"), "ctlogs")):
            raw, details, valid, _, _ = _log(item, f"ctlogs[{i}]")
            if raw:
                ct_keys.append(CtLogKey(raw, details, valid[0] if valid else None, valid[1] if valid else None))
        fulcio: list[x509.Certificate] = []
        for i, item in enumerate(_list(root.get("certificateAuthorities"), "certificateAuthorities")):
            fulcio.extend(_authority(item, f"certificateAuthorities[{i}]", source)[0])
        tsas = tuple(TimestampAuthority(tuple(chain), start or _EPOCH, end) for chain, start, end in (
            _authority(item, f"timestampAuthorities[{i}]", source)
            for i, item in enumerate(_list(root.get("timestampAuthorities"), "timestampAuthorities"))))
    except _Bad as e:
        raise InvalidInputError(f"{source} is not a valid trusted root: {e}"[:300]) from None
    if not fulcio and not tlog_keys and not tsas:
        raise InvalidInputError(f"{source}: lists no certificate authority, transparency log or timestamp"
                                " authority, so nothing can verify against it")
    return TrustMaterial(tuple(tlog_keys), tuple(fulcio), tsas, tuple(ct_keys), source)


def _certs(items: list[bytes], source: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for raw in items:
        try:
            out.append(x509.load_der_x509_certificate(raw))
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
    return _embedded_root(staging)


@lru_cache(maxsize=2)
def _embedded_root(staging: bool) -> TrustMaterial:
    # The embedded roots never change in a process: parse each once (the gate and the
    # webhook verify many bundles against the same root).
    name = "trusted_root.staging.json" if staging else "trusted_root.production.json"
    data = resources.files("verifier").joinpath("data", name).read_bytes()
    return parse_trusted_root(data, source=f"embedded {'staging' if staging else 'production'} trusted root")
