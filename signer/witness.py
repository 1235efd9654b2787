"""Witnesses for key signatures: a Rekor v1 log entry and an RFC 3161 timestamp in the bundle.

A key signature alone says nothing about *when* it was made, so a key can never be retired
safely: every signature it ever made stays as good as a new one. cosign therefore logs key
signatures in Rekor (``--tlog-upload``, on by default) and can add a TSA timestamp
(``--timestamp-server-url``); verifiers then decide by that proven time (policy-controller
#1874, Ratify #2753). imgseal does the same for its bundles (and, in cosign's annotations, for
legacy ``.sig`` layers as ``hashedrekord`` entries and ``.att`` layers as ``dsse`` entries):

* The DSSE envelope is logged as a Rekor ``dsse`` v0.0.1 entry with the signer's public key as
  verifier, as cosign v3 does through sigstore-go (``pkg/sign/transparency.go``: the envelope's
  JSON as ``proposedContent.envelope``, the PEM key in ``verifiers``).
* The TSA timestamps the signature bytes (sigstore-go ``pkg/sign/timestamping.go``: the
  message imprint is SHA-256 of the signature), with a nonce, asking for the TSA certificate.

What comes back is checked before it goes into a bundle: the log's canonical body must be the
entry for *this* envelope and key (signature, verifier, payload hash), and must come with an
inclusion proof and a signed entry timestamp; the timestamp response must be granted, echo the
nonce and imprint this signature. The full cryptographic verification (SET, inclusion proof,
checkpoint, TSA chain against a trusted root) is the verifier's, which runs it on every bundle.

Failures are :class:`imgseal.errors.UndecidableError` (exit 3): the service is unreachable or
answered something unusable; nothing has been attached yet when that happens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from imgseal.dsse import Envelope
from imgseal.errors import NetworkError, UndecidableError, UsageError

MAX_RESPONSE_BYTES: Final = 4 << 20
TIMESTAMP_QUERY: Final = "application/timestamp-query"
TIMESTAMP_REPLY: Final = "application/timestamp-reply"


@dataclass(frozen=True)
class Witness:
    """Where to log and timestamp key signatures (``None`` = not wanted)."""

    rekor_url: str | None = None
    tsa_url: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        for what, url in (("Rekor", self.rekor_url), ("timestamp server", self.tsa_url)):
            if url is not None and not url.startswith(("https://", "http://")):
                raise UsageError(f"{what} URL must be http(s)://…, not {url[:80]!r}", reason="bad-url")

    @property
    def wanted(self) -> bool:
        return self.rekor_url is not None or self.tsa_url is not None


@dataclass(frozen=True)
class Witnessed:
    """Bundle material: Rekor entries in protobuf-JSON form and DER RFC 3161 responses."""

    tlog_entries: tuple[dict[str, Any], ...] = ()
    rfc3161_timestamps: tuple[bytes, ...] = ()


def witness_envelope(witness: Witness, envelope: Envelope, public_pem: bytes) -> Witnessed:
    """Timestamp and/or log ``envelope`` (one signature) as ``witness`` asks."""
    if len(envelope.signatures) != 1:
        raise UsageError("only a one-signature envelope can be witnessed", reason="signature")
    signature = envelope.signatures[0].sig
    stamps: tuple[bytes, ...] = ()
    entries: tuple[dict[str, Any], ...] = ()
    if witness.tsa_url is not None:
        stamps = (request_timestamp(witness.tsa_url, signature, timeout=witness.timeout),)
    if witness.rekor_url is not None:
        entries = (log_dsse(witness.rekor_url, envelope, public_pem, timeout=witness.timeout),)
    return Witnessed(entries, stamps)


def witness_message(witness: Witness, signature: bytes, hash_name: str, digest: bytes, public_pem: bytes) -> Witnessed:
    """Timestamp and/or log a plain signature over a payload with digest ``digest`` (cosign's legacy
    ``.sig``: a Rekor ``hashedrekord`` 0.0.1 entry, the hash being the one the key signs with)."""
    stamps: tuple[bytes, ...] = ()
    entries: tuple[dict[str, Any], ...] = ()
    if witness.tsa_url is not None:
        stamps = (request_timestamp(witness.tsa_url, signature, timeout=witness.timeout),)
    if witness.rekor_url is not None:
        entries = (log_hashedrekord(witness.rekor_url, signature, hash_name, digest, public_pem,
                                    timeout=witness.timeout),)
    return Witnessed(entries, stamps)


def legacy_annotations(witnessed: Witnessed) -> dict[str, str]:
    """cosign's layer annotations for the witnesses of a legacy ``.sig`` / ``.att`` layer
    (``pkg/oci/static``: ``dev.sigstore.cosign/bundle`` is ``bundle.RekorBundle`` — SET and entry,
    fields in Go's struct order — and ``dev.sigstore.cosign/rfc3161timestamp``)."""
    from imgseal.payloads import REKOR_BUNDLE_ANNOTATION
    from signer.keyless import RFC3161_ANNOTATION

    out: dict[str, str] = {}
    if witnessed.tlog_entries:
        entry = witnessed.tlog_entries[0]
        rekor_bundle = {
            "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
            "Payload": {
                "body": entry["canonicalizedBody"],
                "integratedTime": int(entry["integratedTime"]),
                "logIndex": int(entry["logIndex"]),
                "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
            },
        }
        out[REKOR_BUNDLE_ANNOTATION] = json.dumps(rekor_bundle, separators=(",", ":"))
    if witnessed.rfc3161_timestamps:
        stamp = base64.b64encode(witnessed.rfc3161_timestamps[0]).decode()
        out[RFC3161_ANNOTATION] = json.dumps({"SignedRFC3161Timestamp": stamp}, separators=(",", ":"))
    return out


# --- Rekor v1 ----------------------------------------------------------------------------------


def hashedrekord_proposed_entry(signature: bytes, hash_name: str, digest: bytes, public_pem: bytes) -> dict[str, Any]:
    """Rekor ``hashedrekord`` v0.0.1 proposed entry (rekor ``pkg/types/hashedrekord/v0.0.1``)."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": hash_name, "value": digest.hex()}},
            "signature": {"content": base64.b64encode(signature).decode(),
                          "publicKey": {"content": base64.b64encode(public_pem).decode()}},
        },
    }


def log_hashedrekord(rekor_url: str, signature: bytes, hash_name: str, digest: bytes, public_pem: bytes, *,
                     timeout: float = 30.0) -> dict[str, Any]:
    """Log a plain signature; the bundle ``TransparencyLogEntry`` (protobuf JSON) for it."""
    proposed = hashedrekord_proposed_entry(signature, hash_name, digest, public_pem)
    entry = _single_entry(_post_json(rekor_url.rstrip("/") + "/api/v1/log/entries", proposed, timeout=timeout))
    body = _b64(entry.get("body"), "body")
    try:
        doc = json.loads(body)
        kind, version, spec = doc["kind"], doc["apiVersion"], doc["spec"]
        logged_hash, logged_sig = spec["data"]["hash"], spec["signature"]["content"]
    except (ValueError, KeyError, TypeError) as e:
        raise UndecidableError("Rekor returned an entry body imgseal cannot read", reason="rekor") from e
    if (kind, version) != ("hashedrekord", "0.0.1") or logged_hash != {"algorithm": hash_name, "value": digest.hex()} \
            or logged_sig != base64.b64encode(signature).decode():
        raise UndecidableError("Rekor logged another entry than the signature proposed", reason="rekor")
    return tlog_entry_json(entry, body, kind="hashedrekord", version="0.0.1")


def dsse_proposed_entry(envelope: Envelope, public_pem: bytes) -> dict[str, Any]:
    """Rekor ``dsse`` v0.0.1 proposed entry (rekor ``pkg/types/dsse/v0.0.1``, ``proposedContent``)."""
    envelope_json = json.dumps(envelope.to_dict(), separators=(",", ":"))
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"proposedContent": {"envelope": envelope_json,
                                     "verifiers": [base64.b64encode(public_pem).decode()]}},
    }


def log_dsse(rekor_url: str, envelope: Envelope, public_pem: bytes, *, timeout: float = 30.0) -> dict[str, Any]:
    """Log ``envelope``; the bundle ``TransparencyLogEntry`` (protobuf JSON) for it."""
    proposed = dsse_proposed_entry(envelope, public_pem)
    answer = _post_json(rekor_url.rstrip("/") + "/api/v1/log/entries", proposed, timeout=timeout)
    entry = _single_entry(answer)
    body = _b64(entry.get("body"), "body")
    _check_logged_dsse(body, envelope)
    return tlog_entry_json(entry, body, kind="dsse", version="0.0.1")


def _check_logged_dsse(body: bytes, envelope: Envelope) -> None:
    try:
        doc = json.loads(body)
        spec = doc["spec"]
        kind, version = doc["kind"], doc["apiVersion"]
        payload_hash = spec["payloadHash"]
        logged = spec["signatures"]
    except (ValueError, KeyError, TypeError) as e:
        raise UndecidableError("Rekor returned an entry body imgseal cannot read", reason="rekor") from e
    if (kind, version) != ("dsse", "0.0.1"):
        raise UndecidableError(f"Rekor logged a {kind} {version} entry, not the dsse 0.0.1 proposed", reason="rekor")
    if payload_hash != {"algorithm": "sha256", "value": hashlib.sha256(envelope.payload).hexdigest()}:
        raise UndecidableError("Rekor logged another payload than the one signed", reason="rekor")
    sig = base64.b64encode(envelope.signatures[0].sig).decode()
    if not isinstance(logged, list) or [s.get("signature") for s in logged if isinstance(s, dict)] != [sig]:
        raise UndecidableError("Rekor logged another signature than the one made", reason="rekor")


def _single_entry(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict) or len(answer) != 1:
        raise UndecidableError("Rekor's answer is not one log entry", reason="rekor")
    entry = next(iter(answer.values()))
    if not isinstance(entry, dict):
        raise UndecidableError("Rekor's answer is not one log entry", reason="rekor")
    return entry


def tlog_entry_json(entry: dict[str, Any], body: bytes, *, kind: str, version: str) -> dict[str, Any]:
    """A Rekor v1 ``LogEntry`` (REST JSON) as the bundle's ``TransparencyLogEntry`` (protobuf JSON:
    int64 as strings, bytes as base64), as sigstore-go's ``tle.GenerateTransparencyLogEntry`` does."""
    try:
        verification = entry["verification"]
        proof = verification["inclusionProof"]
        set_bytes = _b64(verification["signedEntryTimestamp"], "signedEntryTimestamp")
        hashes = [base64.b64encode(bytes.fromhex(h)).decode() for h in proof["hashes"]]
        converted = {
            "logIndex": str(int(entry["logIndex"])),
            "logId": {"keyId": base64.b64encode(bytes.fromhex(entry["logID"])).decode()},
            "kindVersion": {"kind": kind, "version": version},
            "integratedTime": str(int(entry["integratedTime"])),
            "inclusionPromise": {"signedEntryTimestamp": base64.b64encode(set_bytes).decode()},
            "inclusionProof": {
                "logIndex": str(int(proof["logIndex"])),
                "rootHash": base64.b64encode(bytes.fromhex(proof["rootHash"])).decode(),
                "treeSize": str(int(proof["treeSize"])),
                "hashes": hashes,
                "checkpoint": {"envelope": str(proof["checkpoint"])},
            },
            "canonicalizedBody": base64.b64encode(body).decode(),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise UndecidableError("Rekor's entry lacks an inclusion proof or signed entry timestamp", reason="rekor",
                               hint="the log must be Rekor v1 (POST /api/v1/log/entries)") from e
    return converted


# --- RFC 3161 ----------------------------------------------------------------------------------


def request_timestamp(tsa_url: str, signature: bytes, *, timeout: float = 30.0) -> bytes:
    """A DER ``TimeStampResp`` over SHA-256(``signature``), checked for status, nonce and imprint."""
    from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder, decode_timestamp_response

    request = (TimestampRequestBuilder().data(signature).hash_algorithm(HashAlgorithm.SHA256).nonce(nonce=True)
               .cert_request(cert_request=True).build())
    raw = _post(tsa_url, request.as_bytes(), content_type=TIMESTAMP_QUERY, timeout=timeout)
    try:
        response = decode_timestamp_response(raw)
    except ValueError as e:
        raise UndecidableError(f"the timestamp server's answer is not a TimeStampResp: {e}", reason="tsa") from e
    if response.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise UndecidableError(f"the timestamp server refused the request (status {response.status})", reason="tsa")
    info = response.tst_info
    if info.nonce != request.nonce:
        raise UndecidableError("the timestamp answer does not echo our nonce", reason="tsa")
    if info.message_imprint.message != hashlib.sha256(signature).digest():
        raise UndecidableError("the timestamp is over other data than this signature", reason="tsa")
    return raw


# --- HTTP --------------------------------------------------------------------------------------


def _post_json(url: str, doc: Any, *, timeout: float) -> Any:
    raw = _post(url, json.dumps(doc).encode(), content_type="application/json", timeout=timeout)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise UndecidableError(f"{_host(url)} answered with something other than JSON", reason="rekor") from e


def _post(url: str, data: bytes, *, content_type: str, timeout: float) -> bytes:
    import requests

    try:
        with requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=timeout,
                           stream=True, allow_redirects=False) as resp:
            body = resp.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            status = resp.status_code
    except (requests.ConnectionError, requests.Timeout) as e:
        raise NetworkError(f"cannot reach {_host(url)}: {type(e).__name__}", reason="network-error") from e
    except requests.RequestException as e:
        raise UndecidableError(f"request to {_host(url)} failed: {e}", reason="witness") from e
    if len(body) > MAX_RESPONSE_BYTES:
        raise UndecidableError(f"{_host(url)} answered with more than {MAX_RESPONSE_BYTES} bytes", reason="witness")
    if status not in (200, 201):
        detail = body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
        raise UndecidableError(f"{_host(url)} answered HTTP {status}{': ' + detail if detail else ''}",
                               reason="witness")
    return bytes(body)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url[:80]


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise UndecidableError(f"Rekor's entry has no {what}", reason="rekor")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise UndecidableError(f"Rekor's entry {what} is not base64", reason="rekor") from e
