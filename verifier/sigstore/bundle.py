"""Verify a Sigstore bundle (protobuf-specs ``sigstore_bundle.proto``, v0.1–v0.3) offline.

One decision path for both kinds of verification material:

* **certificate** bundles (keyless, Fulcio): time from RFC 3161 timestamps and/or the Rekor
  v1 SET → certificate chain to a Fulcio CA *at that time* → SCT against the CT log keys →
  key usage / code-signing EKU → identity policy → certificate valid at every verified time;
* **public-key** bundles (self-managed keys, which sigstore-python 4.x refuses — its issues
  #916, #1244): the signature must verify with one of the caller's keys;

then, for both: signature over the artifact digest (message signature) or over
``PAE(payloadType, payload)`` (DSSE), and every transparency-log entry checked by
:mod:`verifier.sigstore.tlog` (log key from the trusted root and inside its validity window, SET,
inclusion proof, signed checkpoint, body consistent with the bundle).

The certificate checks live in :mod:`verifier.sigstore.certificate`.

sigstore-python's ``Verifier`` is not called: it cannot verify public-key bundles, Rekor
``intoto`` entries, or a timestamp equal to a TSA's validity end (TimeRange is closed); its
building blocks are reused where they take plain inputs (SCT verification, the trusted-root
and bundle models), imported lazily.

Nothing here touches the network, and the bundle is bounded (16 MiB, JSON depth 64) before
it is parsed. Every failure is an :class:`imgseal.errors.Error`: ``InvalidInputError`` for a
bundle that does not parse, ``VerificationError`` (with ``reason`` naming the failing check)
for one that does not verify.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imgseal.digest import Digest
from imgseal.errors import InvalidInputError, KeyMaterialError, UsageError, VerificationError
from keys import verify as verify_with_key
from verifier.sigstore import protojson, tlog
from verifier.sigstore.certificate import KeylessPolicy as KeylessPolicy
from verifier.sigstore.certificate import verify_certificate
from verifier.sigstore.tlog import DsseContent, MessageContent, PublicKey, Signer
from verifier.sigstore.trust import TrustMaterial, load_trusted_root

MAX_BUNDLE_BYTES: Final = 16 << 20
MAX_JSON_DEPTH: Final = 64
MAX_TIMESTAMPS: Final = 32  # sigstore-go pkg/verify/tsa.go
MAX_TLOG_ENTRIES: Final = 32

_DIGEST_NAMES: Final = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}


# --- policies and result ---------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPolicy:
    """The public keys a public-key bundle may be signed with (any one suffices)."""

    keys: tuple[PublicKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise UsageError("a key policy needs at least one public key")
        for k in self.keys:
            if not isinstance(k, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
                raise KeyMaterialError(f"unsupported public key type {type(k).__name__}")

    @classmethod
    def from_keys(cls, keys: Iterable[PublicKey | bytes]) -> KeyPolicy:
        """Build from cryptography public keys and/or PEM (PKIX ``PUBLIC KEY``) bytes."""
        return cls(tuple(k if not isinstance(k, bytes) else load_public_key_pem(k) for k in keys))


@dataclass(frozen=True)
class Thresholds:
    """How much independent evidence a bundle must carry; None means "follow the trusted root".

    Named after sigstore-go's verifier options (``pkg/verify/signed_entity.go``):

    * ``transparency_log`` — ``WithTransparencyLog(n)``: verified log entries (distinct
      log id and index). Default: 1 when the trusted root lists a transparency log, else 0.
    * ``signed_timestamps`` — ``WithSignedTimestamps(n)``: verified RFC 3161 timestamps from
      a TSA of the root. Default: 1 for a certificate bundle when the root lists *no*
      transparency log (GitHub's Sigstore instance: Fulcio and a TSA, no Rekor), else 0.
    * ``observer_timestamps`` — ``WithObserverTimestamps(n)``: verified times of either kind
      (RFC 3161 timestamps plus Rekor v1 SET integration times). Default: 1 for a
      certificate bundle (its short-lived certificate must be judged at a time someone else
      vouched for), 0 for a public-key bundle.

    The defaults are the rule ``gh attestation verify`` applies to a custom trusted root
    (cli/cli ``pkg/cmd/attestation/verification/sigstore.go`` ``newCustomVerifier``:
    observer timestamps 1, transparency log 1 only if the root has logs). A value given
    replaces the default, so ``transparency_log=0`` accepts a bundle without a log entry
    even though the root lists logs: lowering is always explicit. Whatever the thresholds,
    every log entry the bundle does carry must verify (fail closed), a timestamp that does
    not verify is not counted (as sigstore-go skips it), and a certificate bundle always
    needs at least one verified time.
    """

    transparency_log: int | None = None
    signed_timestamps: int | None = None
    observer_timestamps: int | None = None

    def __post_init__(self) -> None:
        for name in ("transparency_log", "signed_timestamps", "observer_timestamps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise UsageError(f"the {name.replace('_', ' ')} threshold must be a whole number >= 0, not {value!r}")
            if value is not None and value > MAX_TLOG_ENTRIES:
                raise UsageError(f"the {name.replace('_', ' ')} threshold {value} is over the limit of"
                                 f" {MAX_TLOG_ENTRIES} a bundle may carry")

    def resolve(self, trust: TrustMaterial, *, certificate: bool) -> tuple[int, int, int]:
        """``(transparency_log, signed_timestamps, observer_timestamps)`` for this root and bundle kind."""
        has_logs = bool(trust.tlog_keys)
        tlog_n = self.transparency_log if self.transparency_log is not None else int(has_logs)
        signed = self.signed_timestamps if self.signed_timestamps is not None else int(certificate and not has_logs)
        observer = self.observer_timestamps if self.observer_timestamps is not None else int(certificate)
        return tlog_n, signed, max(observer, int(certificate))


def load_public_key_pem(pem: bytes) -> PublicKey:
    """A PKIX PEM public key (ECDSA, RSA or Ed25519); :class:`KeyMaterialError` otherwise."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyMaterialError(f"public key is not a PEM-encoded PKIX public key: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyMaterialError(f"unsupported public key type {type(key).__name__}")
    return key


@dataclass(frozen=True)
class VerifiedBundle:
    """What a verified bundle established. ``payload`` is set for DSSE bundles only."""

    kind: Literal["dsse", "message"]
    media_type: str
    signer: str
    payload_type: str | None = None
    payload: bytes | None = None
    certificate_identity: str | None = None
    certificate_issuer: str | None = None
    key_id: str | None = None  # sha256 hex of the signer's SubjectPublicKeyInfo (public-key bundles)
    signing_times: tuple[datetime, ...] = ()
    tlog_entries: int = 0
    signed_timestamps: int = 0  # verified RFC 3161 timestamps (the rest of signing_times are SET times)
    artifact_digest: str | None = field(default=None)

    @property
    def signing_time(self) -> datetime | None:
        """The earliest verified time (TSA or Rekor v1 SET), if any."""
        return min(self.signing_times) if self.signing_times else None


# --- entry point ----------------------------------------------------------------------------


def verify_bundle(
    bundle_bytes: bytes,
    *,
    policy: KeylessPolicy | KeyPolicy,
    artifact: bytes | None = None,
    artifact_digest: Digest | None = None,
    expect_dsse: bool | None = None,
    trusted_root: Path | TrustMaterial | None = None,
    staging: bool = False,
    require_tlog: bool = True,
    thresholds: Thresholds | None = None,
    signed_certificate_timestamps: int | None = None,
) -> VerifiedBundle:
    """Verify ``bundle_bytes`` completely, or raise.

    ``artifact`` / ``artifact_digest`` bind a message-signature bundle to its artifact (one
    is required for those). For a **DSSE** bundle the artifact is not consulted here: the
    in-toto Statement's subject is the caller's to check against the image or file digest
    (see :func:`statement_subject_matches`) — exactly as sigstore-python's ``verify_dsse``.
    ``expect_dsse`` True/False rejects the other content kind. ``trusted_root`` is a
    trusted-root file or parsed material; None means the embedded production (or
    ``staging``) root. ``thresholds`` says how many log entries and timestamps must verify
    (:class:`Thresholds`; by default the trusted root decides: a root listing logs needs a
    log entry, one listing none needs a signed timestamp for certificate bundles).
    ``require_tlog=False`` is shorthand for a public-key bundle with no log entry (cosign
    ``--tlog-upload=false``): it sets the log threshold of *public-key* bundles to 0 when
    ``thresholds`` leaves it to the root. Log entries that are present are always verified;
    a timestamp that does not verify does not count.
    ``signed_certificate_timestamps`` (sigstore-go ``WithSignedCertificateTimestamps``) is
    how many SCTs the leaf must carry: 1 (Fulcio embeds one) or 0 (then SCTs are not
    examined); None follows the trusted root like the log requirement: 1 when it lists a CT
    log, 0 for an instance with none, such as GitHub's.
    """
    if signed_certificate_timestamps not in (None, 0, 1):
        raise UsageError("signed_certificate_timestamps must be 0 or 1 (Fulcio embeds one SCT)")
    bundle = parse_bundle(load_bundle_json(bundle_bytes))
    trust = trusted_root if isinstance(trusted_root, TrustMaterial) else load_trusted_root(trusted_root,
                                                                                          staging=staging)
    require_sct = bool(trust.ct_keys) if signed_certificate_timestamps is None else signed_certificate_timestamps > 0
    return _verify(bundle, policy=policy, artifact=artifact, artifact_digest=artifact_digest,
                   expect_dsse=expect_dsse, trust=trust, require_tlog=require_tlog,
                   thresholds=thresholds or Thresholds(), require_sct=require_sct)


def load_bundle_json(data: bytes) -> dict[str, Any]:
    """Bounded JSON parse: size and nesting are checked before the parser sees the bytes."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise InvalidInputError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit",
                                reason="bundle-too-large")
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"bundle JSON nests {depth} levels deep (limit {MAX_JSON_DEPTH})",
                                reason="bundle-too-deep")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"bundle is not valid JSON: {e}", reason="bundle-malformed") from e
    if not isinstance(doc, dict):
        raise InvalidInputError("bundle is not a JSON object", reason="bundle-malformed")
    return doc


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(data: bytes) -> int:
    """Maximum nesting of arrays/objects, ignoring brackets inside strings (a linear scan)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


SUBJECT_HASHES: Final = ("sha256", "sha384", "sha512")
"""The digest algorithms an artifact is hashed with to match a statement subject or a message digest."""


def statement_subject_matches(payload: bytes, digest: Digest | Mapping[str, str]) -> bool:
    """True when an in-toto Statement ``payload`` has a subject naming the artifact.

    ``digest`` is one :class:`Digest` or the artifact's digests by algorithm (``{"sha512":
    hex, ...}``). A subject names the artifact when at least one algorithm both list agrees
    and none of them disagrees (npm provenance and many sigstore-js statements give
    ``sha512`` alone; GitHub's give ``sha256``).
    """
    have = {digest.algorithm: digest.hex} if isinstance(digest, Digest) else dict(digest)
    for subject_digests in statement_subject_digests(payload):
        shared = [alg for alg in have if isinstance(subject_digests.get(alg), str)]
        if shared and all(subject_digests[alg].lower() == have[alg] for alg in shared):
            return True
    return False


def statement_subject_digests(payload: bytes) -> list[dict[str, Any]]:
    """The ``digest`` maps of an in-toto Statement's subjects (empty when it is not one)."""
    try:
        stmt = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return []
    subjects = stmt.get("subject") if isinstance(stmt, dict) else None
    if not isinstance(subjects, list):
        return []
    return [s["digest"] for s in subjects if isinstance(s, dict) and isinstance(s.get("digest"), dict)]


def artifact_digests_needed(bundle_bytes: bytes, keys: Sequence[PublicKey] = ()) -> tuple[tuple[str, ...], bool]:
    """Which digests of the artifact checking this bundle takes, and whether the bytes are needed too.

    A DSSE bundle needs the algorithms its statement's subjects use (of
    :data:`SUBJECT_HASHES`); a message signature needs its message digest's algorithm. The
    bytes themselves are needed only where a digest cannot do: an Ed25519 signer (the leaf
    certificate's key or one of ``keys``), which has no prehashed form, or a sha384 message
    digest (:class:`Digest` carries sha256 and sha512). A bundle that does not parse asks
    for the bytes: :func:`verify_bundle` then reports the real error.
    """
    try:
        bundle = parse_bundle(load_bundle_json(bundle_bytes))
    except InvalidInputError:
        return (), True
    if bundle.dsse_envelope is None:
        ms = bundle.message_signature
        algorithm = _DIGEST_NAMES.get((ms.digest_algorithm if ms else None) or "SHA2_256", "")
        if algorithm not in ("sha256", "sha512") or any(isinstance(k, ed25519.Ed25519PublicKey)
                                                          for k in (*keys, *_leaf_key(bundle))):
            return (), True
        return (algorithm,), False
    used = {alg for d in statement_subject_digests(bundle.dsse_envelope.payload) for alg in d}
    return tuple(a for a in SUBJECT_HASHES if a in used) or ("sha256",), False


def _leaf_key(bundle: ParsedBundle) -> tuple[object, ...]:
    if not bundle.certificates:
        return ()
    try:
        return (x509.load_der_x509_certificate(bundle.certificates[0]).public_key(),)
    except (ValueError, UnsupportedAlgorithm):
        return ()


def hash_artifact(stream: BinaryIO, algorithms: Sequence[str], *, keep: bool = False,
                  chunk_size: int = 1 << 20) -> tuple[dict[str, str], bytes | None]:
    """Hash ``stream`` once, in one pass, with every one of ``algorithms``; keep the bytes if asked."""
    hashers = {a: hashlib.new(a) for a in algorithms if a in SUBJECT_HASHES}
    kept: list[bytes] | None = [] if keep else None
    while chunk := stream.read(chunk_size):
        for h in hashers.values():
            h.update(chunk)
        if kept is not None:
            kept.append(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}, (b"".join(kept) if kept is not None else None)


# --- parsing ----------------------------------------------------------------------------------
#
# The bundle is read straight from its JSON (protobuf-specs ``sigstore_bundle.proto`` in the
# proto3 JSON mapping) into the small frozen values below. Parsing it through
# sigstore-python's pydantic models cost ~0.4 s of imports on every run (pydantic,
# sigstore_models, rekor_types) for a dozen fields. The rules are the ones those models
# enforced: unknown fields refused, required fields present and typed, ``bytes`` fields
# base64, 64-bit integers non-negative, exactly one verification material and one content,
# the proof's leaf index inside its tree. Two protobuf rules they missed are followed:
# an omitted repeated field is empty, and ``bytes`` may be URL-safe or unpadded base64
# (proto3 JSON mapping, "bytes" row).


BUNDLE_MEDIA_TYPES: Final = frozenset({
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
})
_HASH_ALGORITHMS: Final = frozenset({"SHA2_256", "SHA2_384", "SHA2_512", "SHA3_256", "SHA3_384"})
# protobuf JSON readers shared with the trusted-root parser (verifier.sigstore.protojson).
_Malformed = protojson.ProtoJsonError
_fields = protojson.fields
_str = protojson.string
_list = protojson.array
_bytes = protojson.b64
_uint64 = protojson.uint64


@dataclass(frozen=True)
class TlogEntry:
    """One ``TransparencyLogEntry`` (protobuf-specs ``sigstore_rekor.proto``)."""

    log_index: int
    log_id: bytes
    kind: str
    version: str
    canonicalized_body: bytes
    integrated_time: int | None
    signed_entry_timestamp: bytes | None  # the inclusion promise (SET), Rekor v1
    proof_log_index: int | None  # None: no inclusion proof (bundle v0.1 may carry only the SET)
    proof_tree_size: int
    proof_root_hash: bytes
    proof_hashes: tuple[bytes, ...]
    checkpoint: str | None


@dataclass(frozen=True)
class MessageSignature:
    signature: bytes
    digest_algorithm: str | None  # protobuf HashAlgorithm name, e.g. SHA2_256
    digest: bytes | None


@dataclass(frozen=True)
class DsseEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


@dataclass(frozen=True)
class ParsedBundle:
    """A bundle that matches the schema; nothing in it is verified yet."""

    media_type: str
    material: Literal["publicKey", "x509CertificateChain", "certificate"]
    certificates: tuple[bytes, ...]  # DER, leaf first (empty for publicKey)
    tlog_entries: tuple[TlogEntry, ...]
    rfc3161_timestamps: tuple[bytes, ...]
    message_signature: MessageSignature | None
    dsse_envelope: DsseEnvelope | None


def parse_bundle(doc: dict[str, Any]) -> ParsedBundle:
    """Check a bundle document against the schema; :class:`InvalidInputError` (bundle-malformed) if not."""
    try:
        return _parse_bundle(doc)
    except _Malformed as e:
        raise InvalidInputError(f"bundle does not match the Sigstore bundle schema: {e}"[:300],
                                reason="bundle-malformed") from None


def _parse_bundle(doc: dict[str, Any]) -> ParsedBundle:
    top = _fields(doc, "bundle", ("mediaType", "verificationMaterial"), ("messageSignature", "dsseEnvelope"))
    media_type = _str(top["mediaType"], "mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise _Malformed(f"mediaType: unsupported bundle media type {media_type[:80]!r}")
    vm = _fields(top["verificationMaterial"], "verificationMaterial", (),
                 ("publicKey", "x509CertificateChain", "certificate", "tlogEntries", "timestampVerificationData"))
    kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in vm]
    if len(kinds) != 1:
        raise _Malformed("verificationMaterial: exactly one of publicKey, x509CertificateChain or certificate"
                         " must be set")
    material: Literal["publicKey", "x509CertificateChain", "certificate"] = kinds[0]
    certificates: list[bytes] = []
    if material == "publicKey":
        hint = _fields(vm["publicKey"], "verificationMaterial.publicKey", (), ("hint",)).get("hint")
        if hint is not None:
            _str(hint, "verificationMaterial.publicKey.hint")
    elif material == "certificate":
        cert = _fields(vm["certificate"], "verificationMaterial.certificate", ("rawBytes",))
        certificates.append(_bytes(cert["rawBytes"], "verificationMaterial.certificate.rawBytes"))
    else:
        where = "verificationMaterial.x509CertificateChain"
        chain = _fields(vm["x509CertificateChain"], where, (), ("certificates",))
        for i, item in enumerate(_list(chain.get("certificates"), f"{where}.certificates")):
            cert = _fields(item, f"{where}.certificates[{i}]", ("rawBytes",))
            certificates.append(_bytes(cert["rawBytes"], f"{where}.certificates[{i}].rawBytes"))
    # Bundle v0.1 requires only the inclusion promise (SET); v0.2 and later require the proof
    # (protobuf-specs sigstore_bundle.proto, VerificationMaterial.tlog_entries). npm still
    # serves many v0.1 bundles with a SET alone.
    proof_optional = media_type == "application/vnd.dev.sigstore.bundle+json;version=0.1"
    entries = tuple(_parse_entry(e, f"verificationMaterial.tlogEntries[{i}]", proof_optional=proof_optional)
                    for i, e in enumerate(_list(vm.get("tlogEntries"), "verificationMaterial.tlogEntries")))
    stamps: list[bytes] = []
    if "timestampVerificationData" in vm:
        where = "verificationMaterial.timestampVerificationData"
        tvd = _fields(vm["timestampVerificationData"], where, (), ("rfc3161Timestamps",))
        for i, item in enumerate(_list(tvd.get("rfc3161Timestamps"), f"{where}.rfc3161Timestamps")):
            stamp = _fields(item, f"{where}.rfc3161Timestamps[{i}]", ("signedTimestamp",))
            stamps.append(_bytes(stamp["signedTimestamp"], f"{where}.rfc3161Timestamps[{i}].signedTimestamp"))
    if ("messageSignature" in top) == ("dsseEnvelope" in top):
        raise _Malformed("bundle: exactly one of messageSignature or dsseEnvelope must be set")
    message = dsse = None
    if "messageSignature" in top:
        ms = _fields(top["messageSignature"], "messageSignature", ("signature",), ("messageDigest",))
        algorithm = digest = None
        if "messageDigest" in ms:
            md = _fields(ms["messageDigest"], "messageSignature.messageDigest", ("algorithm", "digest"))
            algorithm = _str(md["algorithm"], "messageSignature.messageDigest.algorithm")
            if algorithm not in _HASH_ALGORITHMS:
                raise _Malformed(f"messageSignature.messageDigest.algorithm: unknown algorithm {algorithm[:40]!r}")
            digest = _bytes(md["digest"], "messageSignature.messageDigest.digest")
        message = MessageSignature(_bytes(ms["signature"], "messageSignature.signature"), algorithm, digest)
    else:
        env = _fields(top["dsseEnvelope"], "dsseEnvelope", ("payload", "payloadType"), ("signatures",))
        sigs: list[bytes] = []
        for i, item in enumerate(_list(env.get("signatures"), "dsseEnvelope.signatures")):
            sig = _fields(item, f"dsseEnvelope.signatures[{i}]", ("sig",), ("keyid",))
            if "keyid" in sig:
                _str(sig["keyid"], f"dsseEnvelope.signatures[{i}].keyid")
            sigs.append(_bytes(sig["sig"], f"dsseEnvelope.signatures[{i}].sig"))
        dsse = DsseEnvelope(_str(env["payloadType"], "dsseEnvelope.payloadType"),
                            _bytes(env["payload"], "dsseEnvelope.payload"), tuple(sigs))
    return ParsedBundle(media_type, material, tuple(certificates), entries, tuple(stamps), message, dsse)


def _parse_entry(obj: Any, where: str, *, proof_optional: bool = False) -> TlogEntry:
    e = _fields(obj, where, ("logId", "kindVersion", "canonicalizedBody"),
                ("logIndex", "integratedTime", "inclusionPromise", "inclusionProof"))
    if "inclusionProof" not in e:
        if not proof_optional:
            raise _Malformed(f"{where}.inclusionProof: field required")
        if "inclusionPromise" not in e:
            raise _Malformed(f"{where}: an entry needs an inclusion proof or an inclusion promise")
    log_id = _fields(e["logId"], f"{where}.logId", ("keyId",))
    kv = _fields(e["kindVersion"], f"{where}.kindVersion", ("kind", "version"))
    set_sig = None
    if "inclusionPromise" in e:
        promise = _fields(e["inclusionPromise"], f"{where}.inclusionPromise", ("signedEntryTimestamp",))
        set_sig = _bytes(promise["signedEntryTimestamp"], f"{where}.inclusionPromise.signedEntryTimestamp")
    proof_index, tree_size, root_hash, hashes, checkpoint = _parse_proof(e.get("inclusionProof"),
                                                                         f"{where}.inclusionProof")
    return TlogEntry(
        log_index=_uint64(e.get("logIndex", "0"), f"{where}.logIndex"),  # omitted when 0 (proto3 JSON)
        log_id=_bytes(log_id["keyId"], f"{where}.logId.keyId"),
        kind=_str(kv["kind"], f"{where}.kindVersion.kind"),
        version=_str(kv["version"], f"{where}.kindVersion.version"),
        canonicalized_body=_bytes(e["canonicalizedBody"], f"{where}.canonicalizedBody"),
        integrated_time=_uint64(e["integratedTime"], f"{where}.integratedTime") if "integratedTime" in e else None,
        signed_entry_timestamp=set_sig,
        proof_log_index=proof_index,
        proof_tree_size=tree_size,
        proof_root_hash=root_hash,
        proof_hashes=hashes,
        checkpoint=checkpoint,
    )


def _parse_proof(obj: Any, pw: str) -> tuple[int | None, int, bytes, tuple[bytes, ...], str | None]:
    """An ``InclusionProof``: (leaf index, tree size, root hash, path, checkpoint); None index when absent."""
    if obj is None:
        return None, 0, b"", (), None
    proof = _fields(obj, pw, ("rootHash", "treeSize"), ("logIndex", "hashes", "checkpoint"))
    # proto3 JSON omits scalars equal to their default: sigstore-js (bundleToJSON) writes no
    # logIndex for the first leaf of a tree, so an absent index is 0, not a malformed proof.
    proof_index = _uint64(proof.get("logIndex", "0"), f"{pw}.logIndex")
    tree_size = _uint64(proof["treeSize"], f"{pw}.treeSize")
    if tree_size <= proof_index:
        raise _Malformed(f"{pw}: logIndex {proof_index} must be less than treeSize {tree_size}")
    checkpoint = None
    if "checkpoint" in proof:
        checkpoint = _str(_fields(proof["checkpoint"], f"{pw}.checkpoint", ("envelope",))["envelope"],
                          f"{pw}.checkpoint.envelope")
    hashes = tuple(_bytes(h, f"{pw}.hashes[{i}]") for i, h in enumerate(_list(proof.get("hashes"), f"{pw}.hashes")))
    return proof_index, tree_size, _bytes(proof["rootHash"], f"{pw}.rootHash"), hashes, checkpoint


def _leaf_certificate(bundle: ParsedBundle) -> x509.Certificate | None:
    if bundle.material == "publicKey":
        return None
    if bundle.material == "certificate" and bundle.media_type in (
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
            "application/vnd.dev.sigstore.bundle+json;version=0.2"):
        raise InvalidInputError("bundle v0.1/v0.2 must carry an x509CertificateChain, not a certificate",
                                reason="bundle-malformed")
    if not bundle.certificates:
        raise InvalidInputError("bundle has an empty certificate chain", reason="bundle-malformed")
    try:
        cert = x509.load_der_x509_certificate(bundle.certificates[0])
    except ValueError as e:
        raise InvalidInputError(f"bundle signing certificate does not parse: {e}", reason="bundle-malformed") from e
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise VerificationError("bundle signing certificate is a CA certificate, not a leaf",
                                    reason="certificate-chain")
    except x509.ExtensionNotFound:
        pass
    return cert


# --- the decision ---------------------------------------------------------------------------


def _verify(bundle: ParsedBundle, *, policy: KeylessPolicy | KeyPolicy, artifact: bytes | None,
            artifact_digest: Digest | None, expect_dsse: bool | None, trust: TrustMaterial,
            require_tlog: bool, thresholds: Thresholds, require_sct: bool = True) -> VerifiedBundle:
    cert = _leaf_certificate(bundle)
    if cert is None and isinstance(policy, KeylessPolicy):
        raise VerificationError("bundle is signed with a public key, but a certificate identity was required"
                                " (pass the public key)", reason="verification-material")
    if cert is not None and isinstance(policy, KeyPolicy):
        raise VerificationError("bundle is signed with a certificate, but a public key was required"
                                " (pass the certificate identity and issuer)", reason="verification-material")

    # Content: a message signature over the artifact digest, or a one-signature DSSE envelope.
    content: MessageContent | DsseContent
    if bundle.dsse_envelope is not None:
        if expect_dsse is False:
            raise VerificationError("bundle holds a DSSE envelope, a message signature was expected",
                                    reason="content-kind")
        env = bundle.dsse_envelope
        if len(env.signatures) != 1:
            raise VerificationError(f"DSSE envelope has {len(env.signatures)} signatures; exactly one is required",
                                    reason="signature")
        content = DsseContent(env.payload_type, env.payload, env.signatures[0])
    else:
        if expect_dsse is True:
            raise VerificationError("bundle holds a message signature, a DSSE envelope was expected",
                                    reason="content-kind")
        assert bundle.message_signature is not None  # the parser admits exactly one content
        content = _message_content(bundle.message_signature, artifact, artifact_digest)
    signature = content.signature

    # Who signed: the certificate's key, or the first caller key the signature verifies with.
    signer = _signer(cert, policy, content, artifact)

    # How much evidence this bundle needs (Thresholds: the trusted root decides unless told).
    if cert is None and not require_tlog and thresholds.transparency_log is None:
        thresholds = Thresholds(0, thresholds.signed_timestamps, thresholds.observer_timestamps)
    need_tlog, need_signed, need_observer = thresholds.resolve(trust, certificate=cert is not None)

    # Time: the RFC 3161 timestamps that verify against a TSA of the root (others do not count).
    times, skipped = _timestamp_times(bundle, trust, signature)
    signed_count = len(times)
    because = f"; {skipped}" if skipped else ""
    if len(times) < need_signed:
        raise VerificationError(_short_of("signed timestamp", len(times), need_signed, trust,
                                          asked=thresholds.signed_timestamps is not None) + because,
                                reason="timestamp")

    # Transparency log entries (SET times join the verified times).
    entries = bundle.tlog_entries
    if len(entries) > MAX_TLOG_ENTRIES:
        raise VerificationError(f"bundle has {len(entries)} log entries (limit {MAX_TLOG_ENTRIES})", reason="tlog")
    if len({(e.log_id, e.log_index) for e in entries}) != len(entries):
        # sigstore-go VerifyTlogEntry: a repeated entry must not count twice towards a threshold.
        raise VerificationError("bundle repeats a transparency log entry", reason="tlog")
    if len(entries) < need_tlog:
        raise VerificationError(_short_of("transparency log entr", len(entries), need_tlog, trust,
                                          asked=thresholds.transparency_log is not None),
                                reason="tlog-missing")
    for entry in entries:
        set_time = _verify_entry(entry, trust, signer, content, times)
        if set_time is not None:
            times.append(set_time)
    if len(times) < need_observer:
        raise VerificationError(_short_of("verified time", len(times), need_observer, trust,
                                          asked=(thresholds.observer_timestamps or 0) >= need_observer) +
                                " (signed timestamps and log integration times count)" + because, reason="timestamp")

    identity = issuer = None
    if cert is not None:
        assert isinstance(policy, KeylessPolicy) and times  # need_observer >= 1 for certificates
        identity, issuer = verify_certificate(cert, policy, trust, times, require_sct=require_sct)

    if cert is not None:
        described = f"{identity} (issuer {issuer})"
        kid = None
    else:
        kid = hashlib.sha256(tlog.spki_der(signer.key)).hexdigest()
        described = f"public key sha256:{kid}"
    digest_text = None
    if isinstance(content, MessageContent):
        digest_text = f"{content.digest_algorithm}:{content.digest.hex()}"
    return VerifiedBundle(
        kind="dsse" if isinstance(content, DsseContent) else "message",
        media_type=bundle.media_type,
        signer=described,
        payload_type=content.payload_type if isinstance(content, DsseContent) else None,
        payload=content.payload if isinstance(content, DsseContent) else None,
        certificate_identity=identity,
        certificate_issuer=issuer,
        key_id=kid,
        signing_times=tuple(sorted(times)),
        tlog_entries=len(entries),
        signed_timestamps=signed_count,
        artifact_digest=digest_text,
    )


def _short_of(what: str, have: int, need: int, trust: TrustMaterial, *, asked: bool) -> str:
    """A threshold's one-line failure, saying which rule set it: the caller (a threshold given,
    e.g. --tlog-threshold or --require-timestamp) or the trusted root (the default)."""
    noun = (what + ("ies" if have != 1 else "y")) if what.endswith("entr") else what + ("s" if have != 1 else "")
    if asked:
        return f"bundle has {have} {noun}, {need} required (as asked)"
    logs = "lists transparency logs" if trust.tlog_keys else "lists no transparency log"
    return f"bundle has {have} {noun}, {need} required (the trusted root {logs})"


def _message_content(ms: MessageSignature, artifact: bytes | None, artifact_digest: Digest | None) -> MessageContent:
    if artifact is None and artifact_digest is None:
        raise UsageError("a message-signature bundle needs the artifact or its digest to verify against")
    algorithm = "sha256"
    if ms.digest_algorithm is not None:
        name = ms.digest_algorithm
        algorithm = _DIGEST_NAMES.get(name, "")
        if not algorithm:
            raise VerificationError(f"unsupported message digest algorithm {name}", reason="artifact-digest")
    if artifact is not None:
        digest = hashlib.new(algorithm, artifact).digest()
        if artifact_digest is not None and artifact_digest.matches(artifact) is False:
            raise VerificationError("artifact does not match the given digest", reason="artifact-digest")
    else:
        assert artifact_digest is not None
        if artifact_digest.algorithm != algorithm:
            raise VerificationError(f"bundle signs a {algorithm} digest, but a {artifact_digest.algorithm} digest"
                                    " was given", reason="artifact-digest")
        digest = bytes.fromhex(artifact_digest.hex)
    if ms.digest is not None and ms.digest != digest:
        raise VerificationError("bundle message digest does not match the artifact", reason="artifact-digest")
    return MessageContent(ms.signature, algorithm, digest)


def _signature_ok(key: PublicKey, content: MessageContent | DsseContent, artifact: bytes | None) -> bool:
    if isinstance(key, ed25519.Ed25519PublicKey):
        # Ed25519ph (cosign's default since 2.4) or pure Ed25519 (earlier signers; see keys.material).
        # Neither can be checked from the bundle's SHA-256 digest: it needs the artifact itself.
        data = content.pae() if isinstance(content, DsseContent) else artifact
        return data is not None and verify_with_key(key, data, content.signature)
    if isinstance(content, DsseContent):
        return tlog.verify_signature(key, content.signature, content.pae())
    return tlog.verify_prehashed_signature(key, content.signature, content.digest, content.digest_algorithm)


def _signer(cert: x509.Certificate | None, policy: KeylessPolicy | KeyPolicy,
            content: MessageContent | DsseContent, artifact: bytes | None) -> Signer:
    if cert is not None:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise VerificationError("signing certificate has an unsupported key type", reason="signature")
        if not _signature_ok(key, content, artifact):
            raise VerificationError("signature does not verify with the signing certificate's key",
                                    reason="signature")
        return Signer(key, cert)
    assert isinstance(policy, KeyPolicy)
    for key in policy.keys:
        if _signature_ok(key, content, artifact):
            return Signer(key)
    raise VerificationError("signature does not verify with the given public key"
                            + ("s" if len(policy.keys) > 1 else ""), reason="signature")


def _verify_timestamps(bundle: ParsedBundle, trust: TrustMaterial, signature: bytes) -> list[datetime]:
    """Every RFC 3161 timestamp must verify (cosign's rule for its legacy annotation); their times."""
    times, skipped = _timestamp_times(bundle, trust, signature)
    if skipped is not None:
        raise VerificationError(skipped, reason="timestamp")
    return times


def _timestamp_times(bundle: ParsedBundle, trust: TrustMaterial, signature: bytes) -> tuple[list[datetime], str | None]:
    """The times of the bundle's RFC 3161 timestamps that verify against a TSA of the root,
    and why the first one that does not verify was not counted (None when all verify).

    For bundles a timestamp that does not verify is not counted, as sigstore-go
    (``pkg/verify/tsa.go`` ``VerifySignedTimestamp``) and sigstore-python skip it: the
    thresholds then decide whether enough verified time remains. Too many or repeated
    timestamps are refused outright (a repeat must not count twice).
    """
    raws = list(bundle.rfc3161_timestamps)
    if not raws:
        return [], None
    if len(raws) > MAX_TIMESTAMPS:
        raise VerificationError(f"bundle has {len(raws)} signed timestamps (limit {MAX_TIMESTAMPS})",
                                reason="timestamp")
    if len(set(raws)) != len(raws):
        raise VerificationError("bundle repeats a signed timestamp", reason="timestamp")
    if not trust.tsas:
        return [], "bundle has signed timestamps but the trusted root lists no timestamp authority"
    from rfc3161_client import VerificationError as TsaError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    times: list[datetime] = []
    skipped: str | None = None
    for raw in raws:
        try:
            response = decode_timestamp_response(raw)
        except ValueError as e:
            skipped = skipped or f"signed timestamp does not parse: {e}"
            continue
        when = _aware(response.tst_info.gen_time)
        for tsa in trust.tsas:
            if len(tsa.chain) < 2 or not tsa.valid_at(when):
                continue
            builder = VerifierBuilder().tsa_certificate(tsa.chain[0]).add_root_certificate(tsa.chain[-1])
            for mid in tsa.chain[1:-1]:
                builder = builder.add_intermediate_certificate(mid)
            try:
                builder.build().verify_message(response, signature)
            except (TsaError, ValueError):
                continue
            times.append(when)
            break
        else:
            skipped = skipped or ("signed timestamp does not verify against any trusted timestamp authority"
                                  " valid at its time")
    return times, skipped


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _verify_entry(entry: TlogEntry, trust: TrustMaterial, signer: Signer, content: MessageContent | DsseContent,
                  tsa_times: Sequence[datetime]) -> datetime | None:
    """Verify one log entry; return its SET-backed integration time (Rekor v1) if it has one."""
    log_key = trust.log_key(entry.log_id)
    if log_key is None:
        raise VerificationError("log entry was not made by a transparency log in the trusted root"
                                f" (log id {entry.log_id.hex()[:16]}…)", reason="tlog-key")
    kind, version = entry.kind, entry.version
    body = entry.canonicalized_body
    set_time: datetime | None = None
    if entry.signed_entry_timestamp is not None:
        if not entry.integrated_time:
            raise VerificationError("log entry has an inclusion promise but no integrated time", reason="tlog-set")
        tlog.verify_set(log_key, entry.signed_entry_timestamp, body=body,
                        integrated_time=entry.integrated_time, log_index=entry.log_index)
        set_time = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
    # The log key must have been valid when the entry was made (trusted root tlog validFor).
    when = [set_time] if set_time is not None else list(tsa_times)
    if not when:
        raise VerificationError("no verified time for the log entry (no SET and no signed timestamp)",
                                reason="timestamp")
    for t in when:
        if not log_key.valid_at(t):
            raise VerificationError(f"log key was not valid at {t.isoformat()} (trusted root validity window)",
                                    reason="tlog-key")
    if entry.proof_log_index is None:
        # Bundle v0.1 with the promise alone (the parser admits it for v0.1 only): the
        # verified SET is the log's signed commitment to include the entry.
        if set_time is None:
            raise VerificationError("log entry has neither an inclusion proof nor a verified promise",
                                    reason="inclusion-proof")
    else:
        if entry.checkpoint is None:
            raise VerificationError("log entry's inclusion proof has no checkpoint", reason="inclusion-proof")
        tlog.verify_inclusion_proof(body=body, index=entry.proof_log_index, tree_size=entry.proof_tree_size,
                                    proof=entry.proof_hashes, root=entry.proof_root_hash)
        tlog.verify_checkpoint(log_key, entry.checkpoint, tree_size=entry.proof_tree_size,
                               root_hash=entry.proof_root_hash)
    tlog.check_entry_body(body, kind, version, signer, content)
    return set_time
