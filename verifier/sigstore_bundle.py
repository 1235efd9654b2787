"""Verify a Sigstore bundle (protobuf-specs ``sigstore_bundle.proto``, v0.1–v0.3) offline.

One decision path for both kinds of verification material:

* **certificate** bundles (keyless, Fulcio): time from RFC 3161 timestamps and/or the Rekor
  v1 SET → certificate chain to a Fulcio CA *at that time* → SCT against the CT log keys →
  key usage / code-signing EKU → identity policy → certificate valid at every verified time;
* **public-key** bundles (self-managed keys, which sigstore-python 4.x refuses — its issues
  #916, #1244): the signature must verify with one of the caller's keys;

then, for both: signature over the artifact digest (message signature) or over
``PAE(payloadType, payload)`` (DSSE), and every transparency-log entry checked by
:mod:`verifier.tlog` (log key from the trusted root and inside its validity window, SET,
inclusion proof, signed checkpoint, body consistent with the bundle).

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from imgseal.digest import Digest
from imgseal.errors import InvalidInputError, KeyMaterialError, UsageError, VerificationError
from verifier import tlog
from verifier.sigstore_trust import TrustMaterial, load_trusted_root
from verifier.tlog import DsseContent, MessageContent, PublicKey, Signer

MAX_BUNDLE_BYTES: Final = 16 << 20
MAX_JSON_DEPTH: Final = 64
MAX_TIMESTAMPS: Final = 32  # sigstore-go pkg/verify/tsa.go
MAX_TLOG_ENTRIES: Final = 32

_OID_ISSUER_V1: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OID_OTHERNAME_SAN: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
# Fulcio OID extensions (fulcio docs/oid-info.md): (deprecated raw-string v1, DER UTF8String v2).
_GITHUB_CLAIMS: Final = {
    "trigger": ("1.3.6.1.4.1.57264.1.2", "1.3.6.1.4.1.57264.1.20"),
    "sha": ("1.3.6.1.4.1.57264.1.3", "1.3.6.1.4.1.57264.1.13"),
    "repository": ("1.3.6.1.4.1.57264.1.5", "1.3.6.1.4.1.57264.1.12"),
    "ref": ("1.3.6.1.4.1.57264.1.6", "1.3.6.1.4.1.57264.1.14"),
}
_DIGEST_NAMES: Final = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}


# --- policies and result ---------------------------------------------------------------------


@dataclass(frozen=True)
class KeylessPolicy:
    """Who must have signed a certificate bundle.

    Exactly one of ``identity`` / ``identity_regexp`` (matched against the certificate's
    SAN: email, URI or Sigstore other-name) and one of ``issuer`` / ``issuer_regexp``
    (Fulcio OID 1.3.6.1.4.1.57264.1.8, else 1.1). Regexps must match the whole value.
    The optional GitHub claims compare exactly with the Fulcio extensions: ``github_repository``
    (``owner/repo``), ``github_ref`` (``refs/heads/main``), ``github_trigger`` (``push``),
    ``github_sha`` (commit).
    """

    identity: str | None = None
    issuer: str | None = None
    identity_regexp: str | None = None
    issuer_regexp: str | None = None
    github_repository: str | None = None
    github_ref: str | None = None
    github_trigger: str | None = None
    github_sha: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise UsageError("give exactly one of certificate identity or certificate identity regexp")
        if (self.issuer is None) == (self.issuer_regexp is None):
            raise UsageError("give exactly one of certificate OIDC issuer or certificate OIDC issuer regexp")
        for what, rx in (("identity", self.identity_regexp), ("issuer", self.issuer_regexp)):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as e:
                    raise UsageError(f"invalid certificate {what} regexp {rx[:60]!r}: {e}") from e


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
) -> VerifiedBundle:
    """Verify ``bundle_bytes`` completely, or raise.

    ``artifact`` / ``artifact_digest`` bind a message-signature bundle to its artifact (one
    is required for those). For a **DSSE** bundle the artifact is not consulted here: the
    in-toto Statement's subject is the caller's to check against the image or file digest
    (see :func:`statement_subject_matches`) — exactly as sigstore-python's ``verify_dsse``.
    ``expect_dsse`` True/False rejects the other content kind. ``trusted_root`` is a
    trusted-root file or parsed material; None means the embedded production (or
    ``staging``) root. ``require_tlog=False`` accepts a public-key bundle with no
    transparency-log entry (cosign ``--tlog-upload=false``); entries that are present are
    always verified, and certificate bundles always need one.
    """
    doc = load_bundle_json(bundle_bytes)
    bundle = _parse_model(doc)
    trust = trusted_root if isinstance(trusted_root, TrustMaterial) else load_trusted_root(trusted_root,
                                                                                          staging=staging)
    return _verify(bundle, policy=policy, artifact=artifact, artifact_digest=artifact_digest,
                   expect_dsse=expect_dsse, trust=trust, require_tlog=require_tlog)


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


def statement_subject_matches(payload: bytes, digest: Digest) -> bool:
    """True when an in-toto Statement ``payload`` has a subject with ``digest``."""
    try:
        stmt = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return False
    subjects = stmt.get("subject") if isinstance(stmt, dict) else None
    if not isinstance(subjects, list):
        return False
    return any(isinstance(s, dict) and isinstance(s.get("digest"), dict)
               and s["digest"].get(digest.algorithm) == digest.hex for s in subjects)


# --- parsing ----------------------------------------------------------------------------------


def _parse_model(doc: dict[str, Any]) -> Any:
    from pydantic import ValidationError
    from sigstore_models.bundle.v1 import Bundle as _Bundle

    vm = doc.get("verificationMaterial")
    if isinstance(vm, dict) and "tlogEntries" not in vm:
        # proto3 JSON omits empty repeated fields: a bundle without log entries has no key.
        vm["tlogEntries"] = []
    try:
        bundle = _Bundle.from_json(json.dumps(doc))
    except (ValidationError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines()[1:3]]
        raise InvalidInputError(f"bundle does not match the Sigstore bundle schema: {' '.join(lines)[:200]}",
                                reason="bundle-malformed") from e
    return bundle


def _leaf_certificate(bundle: Any) -> x509.Certificate | None:
    vm = bundle.verification_material
    raw: bytes | None = None
    if vm.certificate is not None:
        if bundle.media_type in ("application/vnd.dev.sigstore.bundle+json;version=0.1",
                                 "application/vnd.dev.sigstore.bundle+json;version=0.2"):
            raise InvalidInputError("bundle v0.1/v0.2 must carry an x509CertificateChain, not a certificate",
                                    reason="bundle-malformed")
        raw = vm.certificate.raw_bytes
    elif vm.x509_certificate_chain is not None:
        if not vm.x509_certificate_chain.certificates:
            raise InvalidInputError("bundle has an empty certificate chain", reason="bundle-malformed")
        raw = vm.x509_certificate_chain.certificates[0].raw_bytes
    if raw is None:
        return None
    try:
        cert = x509.load_der_x509_certificate(raw)
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


def _verify(bundle: Any, *, policy: KeylessPolicy | KeyPolicy, artifact: bytes | None,
            artifact_digest: Digest | None, expect_dsse: bool | None, trust: TrustMaterial,
            require_tlog: bool) -> VerifiedBundle:
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
        content = DsseContent(env.payload_type, env.payload, env.signatures[0].sig)
    else:
        if expect_dsse is True:
            raise VerificationError("bundle holds a message signature, a DSSE envelope was expected",
                                    reason="content-kind")
        content = _message_content(bundle.message_signature, artifact, artifact_digest)
    signature = content.signature

    # Who signed: the certificate's key, or the first caller key the signature verifies with.
    signer = _signer(cert, policy, content, artifact)

    # Time: every RFC 3161 timestamp must verify against a trusted TSA.
    times = _verify_timestamps(bundle, trust, signature)

    # Transparency log entries (SET times join the verified times).
    entries = bundle.verification_material.tlog_entries
    if len(entries) > MAX_TLOG_ENTRIES:
        raise VerificationError(f"bundle has {len(entries)} log entries (limit {MAX_TLOG_ENTRIES})", reason="tlog")
    if not entries and (require_tlog or cert is not None):
        raise VerificationError("bundle has no transparency log entry", reason="tlog-missing")
    for entry in entries:
        set_time = _verify_entry(entry, trust, signer, content, times)
        if set_time is not None:
            times.append(set_time)

    identity = issuer = None
    if cert is not None:
        if not times:
            raise VerificationError("no verified signing time (no signed timestamp and no SET)", reason="timestamp")
        assert isinstance(policy, KeylessPolicy)
        identity, issuer = _verify_certificate(cert, policy, trust, times)

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
        artifact_digest=digest_text,
    )


def _message_content(ms: Any, artifact: bytes | None, artifact_digest: Digest | None) -> MessageContent:
    if artifact is None and artifact_digest is None:
        raise UsageError("a message-signature bundle needs the artifact or its digest to verify against")
    algorithm = "sha256"
    if ms.message_digest is not None:
        name = getattr(ms.message_digest.algorithm, "value", ms.message_digest.algorithm)
        algorithm = _DIGEST_NAMES.get(str(name), "")
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
    if ms.message_digest is not None and ms.message_digest.digest != digest:
        raise VerificationError("bundle message digest does not match the artifact", reason="artifact-digest")
    return MessageContent(ms.signature, algorithm, digest)


def _signature_ok(key: PublicKey, content: MessageContent | DsseContent, artifact: bytes | None) -> bool:
    if isinstance(content, DsseContent):
        return tlog.verify_signature(key, content.signature, content.pae())
    if isinstance(key, ed25519.Ed25519PublicKey):
        # Ed25519 has no prehash form: it can only be checked over the artifact itself.
        return artifact is not None and tlog.verify_signature(key, content.signature, artifact)
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


def _verify_timestamps(bundle: Any, trust: TrustMaterial, signature: bytes) -> list[datetime]:
    tvd = bundle.verification_material.timestamp_verification_data
    stamps = list(tvd.rfc3161_timestamps) if tvd is not None else []
    if not stamps:
        return []
    if len(stamps) > MAX_TIMESTAMPS:
        raise VerificationError(f"bundle has {len(stamps)} signed timestamps (limit {MAX_TIMESTAMPS})",
                                reason="timestamp")
    raws = [s.signed_timestamp for s in stamps]
    if len(set(raws)) != len(raws):
        raise VerificationError("bundle repeats a signed timestamp", reason="timestamp")
    if not trust.tsas:
        raise VerificationError("bundle has signed timestamps but the trusted root lists no timestamp authority",
                                reason="timestamp")
    from rfc3161_client import VerificationError as TsaError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    times: list[datetime] = []
    for raw in raws:
        try:
            response = decode_timestamp_response(raw)
        except ValueError as e:
            raise VerificationError(f"signed timestamp does not parse: {e}", reason="timestamp") from e
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
            raise VerificationError("signed timestamp does not verify against any trusted timestamp authority"
                                    " valid at its time", reason="timestamp")
    return times


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _verify_entry(entry: Any, trust: TrustMaterial, signer: Signer, content: MessageContent | DsseContent,
                  tsa_times: Sequence[datetime]) -> datetime | None:
    """Verify one log entry; return its SET-backed integration time (Rekor v1) if it has one."""
    log_key = trust.log_key(entry.log_id.key_id)
    if log_key is None:
        raise VerificationError("log entry was not made by a transparency log in the trusted root"
                                f" (log id {entry.log_id.key_id.hex()[:16]}…)", reason="tlog-key")
    kind, version = entry.kind_version.kind, entry.kind_version.version
    body = entry.canonicalized_body
    set_time: datetime | None = None
    if entry.inclusion_promise is not None:
        if not entry.integrated_time:
            raise VerificationError("log entry has an inclusion promise but no integrated time", reason="tlog-set")
        tlog.verify_set(log_key, entry.inclusion_promise.signed_entry_timestamp, body=body,
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
    proof = entry.inclusion_proof
    if proof.checkpoint is None:
        raise VerificationError("log entry's inclusion proof has no checkpoint", reason="inclusion-proof")
    tlog.verify_inclusion_proof(body=body, index=proof.log_index, tree_size=proof.tree_size,
                                proof=proof.hashes, root=proof.root_hash)
    tlog.verify_checkpoint(log_key, proof.checkpoint.envelope, tree_size=proof.tree_size, root_hash=proof.root_hash)
    tlog.check_entry_body(body, kind, version, signer, content)
    return set_time


# --- certificates ---------------------------------------------------------------------------


def _verify_certificate(cert: x509.Certificate, policy: KeylessPolicy, trust: TrustMaterial,
                        times: Sequence[datetime]) -> tuple[str, str]:
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
    from cryptography.x509.verification import VerificationError as X509Error

    if not trust.fulcio_certs:
        raise VerificationError("trusted root lists no certificate authority", reason="certificate-chain")
    # Fulcio leaves carry the code-signing EKU, not client/server auth: relax only the EKU
    # rule of the WebPKI profiles (as sigstore-python does), then check EKU ourselves.
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage,
                                                                     Criticality.NON_CRITICAL, None)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.ExtendedKeyUsage,
                                                                     Criticality.NON_CRITICAL, None)
    chain: list[x509.Certificate] = []
    for t in times:
        verifier = (PolicyBuilder().store(Store(list(trust.fulcio_certs))).time(t)
                    .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
        try:
            chain = verifier.verify(cert, []).chain[1:]
        except (X509Error, x509.UnsupportedGeneralNameType, ValueError) as e:
            raise VerificationError(f"certificate does not chain to a trusted CA at {t.isoformat()}: {e}",
                                    reason="certificate-chain") from e
        if not cert.not_valid_before_utc <= t <= cert.not_valid_after_utc:
            raise VerificationError(f"certificate was not valid at signing time {t.isoformat()}",
                                    reason="certificate-validity")

    from sigstore._internal.sct import verify_sct
    from sigstore.errors import Error as SigstoreError

    try:
        verify_sct(cert, chain, trust.ct_keyring())
    except (SigstoreError, ValueError, x509.ExtensionNotFound) as e:
        raise VerificationError(f"certificate's SCT does not verify: {e}", reason="sct") from e

    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise VerificationError(f"certificate lacks key usage extensions: {e}", reason="certificate-usage") from e
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise VerificationError("certificate is not for code signing (KeyUsage/EKU)", reason="certificate-usage")

    return _check_policy(cert, policy)


def _der_utf8(raw: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0c) — Fulcio's v2 extension values."""
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    length, offset = raw[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or len(raw) < 2 + n:
            return None
        length, offset = int.from_bytes(raw[2 : 2 + n], "big"), 2 + n
    if offset + length != len(raw):
        return None
    try:
        return raw[offset:].decode()
    except UnicodeDecodeError:
        return None


def _extension(cert: x509.Certificate, v1_oid: str, v2_oid: str) -> str | None:
    exts = {e.oid.dotted_string: e.value for e in cert.extensions}
    v2 = exts.get(v2_oid)
    if isinstance(v2, x509.UnrecognizedExtension):
        return _der_utf8(v2.value)
    v1 = exts.get(v1_oid)
    if isinstance(v1, x509.UnrecognizedExtension):
        try:
            return v1.value.decode()
        except UnicodeDecodeError:
            return None
    return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """The SAN values a Sigstore identity can match: emails, URIs, Sigstore other-names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values: list[str] = list(san.get_values_for_type(x509.RFC822Name))
    values += san.get_values_for_type(x509.UniformResourceIdentifier)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _OID_OTHERNAME_SAN and (text := _der_utf8(other.value)) is not None:
            values.append(text)
    return values


def _check_policy(cert: x509.Certificate, policy: KeylessPolicy) -> tuple[str, str]:
    issuer = _extension(cert, _OID_ISSUER_V1.dotted_string, _OID_ISSUER_V2.dotted_string)
    if issuer is None:
        raise VerificationError("certificate has no OIDC issuer extension", reason="certificate-issuer")
    if not (issuer == policy.issuer if policy.issuer is not None
            else re.fullmatch(policy.issuer_regexp or "", issuer)):
        raise VerificationError(f"certificate OIDC issuer {issuer!r} does not match the policy",
                                reason="certificate-issuer")
    identities = certificate_identities(cert)
    matched = [i for i in identities if (i == policy.identity if policy.identity is not None
                                        else re.fullmatch(policy.identity_regexp or "", i))]
    if not matched:
        raise VerificationError(f"certificate identity {', '.join(identities)[:200] or '(none)'} does not match"
                                " the policy", reason="certificate-identity")
    for claim, want in (("repository", policy.github_repository), ("ref", policy.github_ref),
                        ("trigger", policy.github_trigger), ("sha", policy.github_sha)):
        if want is None:
            continue
        got = _extension(cert, *_GITHUB_CLAIMS[claim])
        if claim == "repository" and got is not None:
            got = got.removeprefix("https://github.com/")
        if got != want:
            raise VerificationError(f"certificate GitHub workflow {claim} {got!r} is not {want!r}",
                                    reason="certificate-claims")
    return matched[0], issuer
