"""Verify Notary Project (notation) JWS signature envelopes against a trust policy.

Pure verification logic (no registry I/O): the caller fetches the envelope blob, picks the
trust policy statement (``verifier.notation.trust_policy.select_policy``) and passes the descriptor
of the artifact it resolved. Follows notaryproject/specifications:

* ``specs/signature-envelope-jws.md`` — flattened JWS, protected/unprotected headers, ``crit``,
  the ``alg`` table and "verifier MUST match alg with the signing key".
* ``specs/signature-specification.md`` — payload, certificate requirements, signing time.
* ``specs/trust-store-trust-policy.md`` "Signature Verification" — the steps and the levels
  table: each validation is *enforced* (first failure stops and fails) or *logged*.

Order and grouping follow notation-go ``verifier/verifier.go``: integrity (always enforced,
including the certificate-chain requirements, as notation-core-go checks them while parsing),
authenticity (trust store, then trusted identity), expiry, authentic timestamp, revocation,
and finally the payload's target artifact against the expected descriptor (always enforced).

What is not done, and what happens instead:

* RFC 3161 timestamp countersignatures are not evaluated; the spec's fallback applies (every
  certificate must be valid at verification time), which is never more lenient.
* Revocation (OCSP/CRL) is not fetched. Certificates without OCSP/CRL locations count as not
  revoked (spec "Certificate Revocation Evaluation"); if any certificate names a location the
  status is *unknown*, which the spec treats as a failure, so ``enforce`` fails closed.
* Notation verification plugins are not run: a signature that needs one fails, as the spec
  requires of implementations that cannot perform the plugin's logic.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from imgseal.digest import Digest
from imgseal.errors import Error, InvalidInputError, UsageError, VerificationError
from verifier.notation.trust_policy import (
    TrustPolicyStatement,
    certificate_subject_attributes,
    load_trust_store,
)

PAYLOAD_MEDIA_TYPE: Final = "application/vnd.cncf.notary.payload.v1+json"
ENVELOPE_MEDIA_TYPE: Final = "application/jose+json"
SCHEME_X509: Final = "notary.x509"
SCHEME_SIGNING_AUTHORITY: Final = "notary.x509.signingAuthority"

H_SIGNING_SCHEME: Final = "io.cncf.notary.signingScheme"
H_SIGNING_TIME: Final = "io.cncf.notary.signingTime"
H_AUTHENTIC_SIGNING_TIME: Final = "io.cncf.notary.authenticSigningTime"
H_EXPIRY: Final = "io.cncf.notary.expiry"
H_VERIFICATION_PLUGIN: Final = "io.cncf.notary.verificationPlugin"
H_VERIFICATION_PLUGIN_MIN: Final = "io.cncf.notary.verificationPluginMinVersion"
H_SIGNING_AGENT: Final = "io.cncf.notary.signingAgent"
H_TIMESTAMP: Final = "io.cncf.notary.timestampSignature"

# RFC 7515 section 4.1 registered header names: "crit" MUST NOT list them.
_REGISTERED: Final = frozenset(
    {"alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit"}
)
_ENVELOPE_KEYS: Final = frozenset({"payload", "protected", "header", "signature"})
_TARGET_FIELDS: Final = frozenset({"mediaType", "digest", "size", "annotations", "artifactType"})

# signature-envelope-jws.md "Supported alg header values".
_ALGS: Final = {
    "PS256": ("rsa", hashes.SHA256),
    "PS384": ("rsa", hashes.SHA384),
    "PS512": ("rsa", hashes.SHA512),
    "ES256": ("ec", hashes.SHA256),
    "ES384": ("ec", hashes.SHA384),
    "ES512": ("ec", hashes.SHA512),
}
_RSA_ALG_BY_SIZE: Final = {2048: "PS256", 3072: "PS384", 4096: "PS512"}
_EC_ALG_BY_CURVE: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_COORD_BYTES: Final = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")
_FORBIDDEN_LEAF_EKUS: Final = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_WEAK_CERT_HASHES: Final = ("sha1", "md5")


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """The outcome of one validation.

    ``status`` is ``passed``, ``failed`` (enforced: verification stopped), ``failed-logged``
    (logged by the policy's level, verification continued), ``skipped`` (by policy) or
    ``not-checked`` (nothing to check; ``detail`` says why).
    """

    check: str
    action: str
    status: str
    detail: str = ""
    reason: str | None = None


@dataclass(frozen=True)
class NotationResult:
    """What a notation verification established, for the CLI to print."""

    policy: str
    level: str
    verified: bool
    skipped: bool
    checks: tuple[CheckOutcome, ...]
    signing_scheme: str | None = None
    signer_subject: str | None = None
    signing_time: datetime | None = None
    expiry: datetime | None = None
    signing_agent: str | None = None
    target_artifact: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def logged_failures(self) -> tuple[CheckOutcome, ...]:
        return tuple(c for c in self.checks if c.status == "failed-logged")


class NotationVerificationError(VerificationError):
    """A notation check failed where the policy enforces it; carries the outcomes so far."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        hint: str | None = None,
        checks: tuple[CheckOutcome, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint, reason=reason)
        self.checks = checks


class _CheckFailed(Exception):
    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.hint = hint


@dataclass
class _Run:
    policy: TrustPolicyStatement
    checks: list[CheckOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def passed(self, check: str, action: str, detail: str = "") -> None:
        self.checks.append(CheckOutcome(check, action, "passed", detail))

    def enforced_failure(self, check: str, failure: _CheckFailed) -> NoReturn:
        self.checks.append(CheckOutcome(check, "enforce", "failed", failure.message, failure.reason))
        raise NotationVerificationError(
            f"notation {check} check failed: {failure.message}",
            reason=failure.reason,
            hint=failure.hint,
            checks=tuple(self.checks),
        )

    def failed(self, check: str, action: str, failure: _CheckFailed) -> None:
        if action == "enforce":
            self.enforced_failure(check, failure)
        self.checks.append(CheckOutcome(check, action, "failed-logged", failure.message, failure.reason))
        self.notes.append(f"{check} failure logged (policy action 'log'): {failure.message}")


# --- parsed envelope ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    protected: Mapping[str, Any]
    protected_b64: str
    payload_b64: str
    payload: bytes
    signature: bytes
    chain: tuple[x509.Certificate, ...]
    signing_agent: str | None
    has_timestamp: bool
    scheme: str
    signing_time: datetime
    expiry: datetime | None


# --- entry point -------------------------------------------------------------------------


def verify_notation_envelope(
    envelope: bytes,
    *,
    expected_descriptor: Mapping[str, Any],
    policy: TrustPolicyStatement,
    trust_store_dir: Path,
    now: datetime | None = None,
) -> NotationResult:
    """Verify a JWS notation envelope for ``expected_descriptor`` under ``policy``.

    Returns a :class:`NotationResult` when no enforced check failed (logged failures are
    listed in it); raises :class:`NotationVerificationError` (a VerificationError whose
    ``reason`` names the failed check) at the first enforced failure; InvalidInputError for
    a misconfigured trust store or a malformed ``expected_descriptor``.
    """
    expected = _check_expected_descriptor(expected_descriptor)
    when = _now(now)
    run = _Run(policy)

    if policy.level == "skip":
        # trust-store-trust-policy.md "Steps" 2.1: level skip returns success without verifying.
        checks = tuple(CheckOutcome(c, "skip", "skipped", "policy level is skip") for c, _ in policy.actions)
        return NotationResult(
            policy=policy.name,
            level="skip",
            verified=False,
            skipped=True,
            checks=checks,
            notes=(f"trust policy {policy.name!r} has level 'skip': the signature was not verified",),
        )

    # 1. integrity — never overridable.
    try:
        env = _parse_and_check_integrity(envelope)
    except _CheckFailed as failure:
        run.enforced_failure("integrity", failure)
    run.passed("integrity", "enforce", f"{env.protected['alg']} signature by the leaf certificate is valid")
    if env.has_timestamp:
        run.notes.append(
            "the envelope carries an RFC 3161 timestamp countersignature, which imgseal does not evaluate;"
            " certificates are checked at verification time instead"
        )

    # 2. authenticity: chain to a trusted certificate, then trusted identity.
    action = policy.action("authenticity")
    try:
        detail = _check_trust_store(env, policy, trust_store_dir, run)
    except _CheckFailed as failure:
        run.failed("authenticity", action, failure)
    else:
        run.passed("authenticity", action, detail)
    try:
        detail = _check_trusted_identity(env.chain[0], policy)
    except _CheckFailed as failure:
        run.failed("trustedIdentity", action, failure)
    else:
        run.passed("trustedIdentity", action, detail)

    # 3. expiry
    action = policy.action("expiry")
    if env.expiry is None:
        run.checks.append(CheckOutcome("expiry", action, "not-checked", "the signature has no expiry"))
    elif when >= env.expiry:
        # "The artifact is considered expired when the current time is greater than or equal to expiry time".
        run.failed("expiry", action, _CheckFailed("notation-expiry", f"the signature expired at {_fmt(env.expiry)}"))
    else:
        run.passed("expiry", action, f"valid until {_fmt(env.expiry)}")

    # 4. authentic timestamp
    action = policy.action("authenticTimestamp")
    try:
        detail = _check_authentic_timestamp(env, when)
    except _CheckFailed as failure:
        run.failed("authenticTimestamp", action, failure)
    else:
        run.passed("authenticTimestamp", action, detail)

    # 5. revocation
    action = policy.action("revocation")
    if action == "skip":
        run.checks.append(CheckOutcome("revocation", "skip", "skipped", "revocation check skipped by policy"))
    else:
        located = _revocation_locations(env.chain)
        if not located:
            run.checks.append(
                CheckOutcome(
                    "revocation",
                    action,
                    "not-checked",
                    "no certificate names an OCSP or CRL location; per the spec none counts as revoked",
                )
            )
        else:
            run.failed(
                "revocation",
                action,
                _CheckFailed(
                    "notation-revocation",
                    f"revocation status of {', '.join(located)} cannot be determined: imgseal does not fetch"
                    " OCSP responses or CRLs",
                    hint="set signatureVerification.override.revocation to 'log' or 'skip' to accept this",
                ),
            )

    # 6. the signed descriptor must be the artifact being verified (always enforced).
    try:
        target = _parse_target(env.payload)
        _check_descriptor(target, expected)
    except _CheckFailed as failure:
        run.enforced_failure("descriptor", failure)
    run.passed("descriptor", "enforce", f"signed target {target['digest']} matches")

    return NotationResult(
        policy=policy.name,
        level=policy.level,
        verified=True,
        skipped=False,
        checks=tuple(run.checks),
        signing_scheme=env.scheme,
        signer_subject=env.chain[0].subject.rfc4514_string(),
        signing_time=env.signing_time,
        expiry=env.expiry,
        signing_agent=env.signing_agent,
        target_artifact=target,
        notes=tuple(run.notes),
    )


# --- integrity ---------------------------------------------------------------------------


def _integrity(message: str, reason: str = "notation-integrity") -> _CheckFailed:
    return _CheckFailed(reason, message)


def _strict_json(data: bytes | str, what: str) -> Any:
    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                # Two parsers could pick different values for a duplicated key (RFC 7515 section 4).
                raise _integrity(f"{what} has duplicate member {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(data, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError) as exc:
        raise _integrity(f"{what} is not valid JSON ({exc})") from exc


def _b64url_decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise _integrity(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _integrity(f"{what} is not unpadded base64url") from exc


def _parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise _integrity(f"header {name!r} must be an RFC 3339 string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise _integrity(f"header {name!r} value {value[:40]!r} is not an RFC 3339 date-time")
    text = value
    if match.group(1) is not None and len(match.group(1)) > 6:
        text = value.replace("." + match.group(1), "." + match.group(1)[:6])
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise _integrity(f"header {name!r} value {value[:40]!r} is not a valid date-time") from exc


def _parse_and_check_integrity(raw: bytes) -> _Envelope:
    if not isinstance(raw, bytes | bytearray):
        raise _integrity("envelope must be bytes")
    doc = _strict_json(bytes(raw), "envelope")
    if not isinstance(doc, dict):
        raise _integrity("envelope is not a JSON object (flattened JWS JSON serialization required)")
    if "signatures" in doc:
        raise _integrity("general JWS serialization ('signatures') is not allowed; notation requires flattened")
    # signature-envelope-jws.md "Signature Envelope": "no additional top level fields are supported".
    if set(doc) != _ENVELOPE_KEYS:
        missing = sorted(_ENVELOPE_KEYS - set(doc))
        extra = sorted(set(doc) - _ENVELOPE_KEYS)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise _integrity(f"envelope members are wrong: {'; '.join(parts)}")

    protected_b64 = doc["protected"]
    payload_b64 = doc["payload"]
    protected = _strict_json(_b64url_decode(protected_b64, "protected header"), "protected header")
    if not isinstance(protected, dict):
        raise _integrity("protected header is not a JSON object")
    payload = _b64url_decode(payload_b64, "payload")
    signature = _b64url_decode(doc["signature"], "signature")
    if not signature:
        raise _integrity("signature is empty")

    unprotected = doc["header"]
    if not isinstance(unprotected, dict):
        raise _integrity("unprotected 'header' is not a JSON object")
    overlap = sorted(set(unprotected) & set(protected))
    if overlap:
        # RFC 7515 section 7.2.1: protected and unprotected header names MUST be disjoint.
        raise _integrity(f"header parameter(s) {', '.join(overlap)} appear both protected and unprotected")

    scheme, signing_time, expiry = _check_protected(protected)
    chain = _parse_x5c(unprotected.get("x5c"))
    agent = unprotected.get(H_SIGNING_AGENT)
    if agent is not None and not isinstance(agent, str):
        raise _integrity(f"unprotected {H_SIGNING_AGENT!r} must be a string")
    timestamp = unprotected.get(H_TIMESTAMP)
    if timestamp is not None and not isinstance(timestamp, str):
        raise _integrity(f"unprotected {H_TIMESTAMP!r} must be a base64 string")

    leaf = chain[0]
    alg = protected["alg"]
    expected_alg = _alg_for_key(leaf.public_key())
    if alg != expected_alg:
        # signature-envelope-jws.md "alg": verifier MUST match alg with the signing key
        # (algorithm substitution attacks).
        raise _integrity(
            f"header alg {alg} does not match the signing certificate's key, which requires {expected_alg}",
            "notation-alg",
        )
    signing_input = f"{protected_b64}.{payload_b64}".encode("ascii")
    _verify_signature(leaf.public_key(), alg, signing_input, signature)

    # notation-core-go validates the certificate requirements while reading the envelope.
    _check_chain_requirements(chain)

    if not payload:
        raise _integrity("payload is empty")
    return _Envelope(
        protected=protected,
        protected_b64=protected_b64,
        payload_b64=payload_b64,
        payload=payload,
        signature=signature,
        chain=chain,
        signing_agent=agent,
        has_timestamp=bool(timestamp),
        scheme=scheme,
        signing_time=signing_time,
        expiry=expiry,
    )


def _check_protected(protected: Mapping[str, Any]) -> tuple[str, datetime, datetime | None]:
    alg = protected.get("alg")
    if not isinstance(alg, str):
        raise _integrity("protected header has no alg", "notation-alg")
    if alg not in _ALGS:
        # "alg MUST NOT be none or any symmetric-key algorithm".
        raise _integrity(f"unsupported alg {alg[:20]!r} (allowed: {', '.join(_ALGS)})", "notation-alg")
    cty = protected.get("cty")
    if cty != PAYLOAD_MEDIA_TYPE:
        raise _integrity(f"unsupported payload content type cty={str(cty)[:80]!r} (expected {PAYLOAD_MEDIA_TYPE})")
    scheme = protected.get(H_SIGNING_SCHEME)
    if scheme not in (SCHEME_X509, SCHEME_SIGNING_AUTHORITY):
        raise _integrity(f"unsupported signing scheme {str(scheme)[:60]!r}")
    if scheme == SCHEME_X509:
        if H_AUTHENTIC_SIGNING_TIME in protected:
            raise _integrity(f"{H_AUTHENTIC_SIGNING_TIME!r} must not be present for {SCHEME_X509}")
        if H_SIGNING_TIME not in protected:
            raise _integrity(f"{H_SIGNING_TIME!r} is required for {SCHEME_X509}")
        signing_time = _parse_time(protected[H_SIGNING_TIME], H_SIGNING_TIME)
    else:
        if H_SIGNING_TIME in protected:
            raise _integrity(f"{H_SIGNING_TIME!r} must not be present for {SCHEME_SIGNING_AUTHORITY}")
        if H_AUTHENTIC_SIGNING_TIME not in protected:
            raise _integrity(f"{H_AUTHENTIC_SIGNING_TIME!r} is required for {SCHEME_SIGNING_AUTHORITY}")
        signing_time = _parse_time(protected[H_AUTHENTIC_SIGNING_TIME], H_AUTHENTIC_SIGNING_TIME)
    expiry = _parse_time(protected[H_EXPIRY], H_EXPIRY) if H_EXPIRY in protected else None
    if expiry is not None and expiry <= signing_time:
        raise _integrity("expiry is not after the signing time")

    crit = protected.get("crit")
    if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
        raise _integrity("protected header needs a non-empty 'crit' array of strings")
    if len(set(crit)) != len(crit):
        raise _integrity("'crit' lists a header twice")
    required = {H_SIGNING_SCHEME}
    if expiry is not None:
        required.add(H_EXPIRY)
    if scheme == SCHEME_SIGNING_AUTHORITY:
        required.add(H_AUTHENTIC_SIGNING_TIME)
    missing = sorted(required - set(crit))
    if missing:
        raise _integrity(f"required header(s) not marked critical: {', '.join(missing)}")
    for name in crit:
        if name in required:
            continue
        if name in _REGISTERED:
            raise _integrity(f"'crit' must not list the registered header {name!r}")
        if name not in protected:
            # RFC 7515 section 4.1.11: every crit entry must be present.
            raise _integrity(f"header {name!r} is marked critical but not present")
        if name in (H_VERIFICATION_PLUGIN, H_VERIFICATION_PLUGIN_MIN):
            raise _integrity(
                f"the signature requires Notation verification plugin {protected.get(H_VERIFICATION_PLUGIN)!r},"
                " which imgseal cannot run"
            )
        # Spec "Extended attributes": unknown critical attributes MUST fail verification.
        raise _integrity(f"critical header {name!r} is not understood")
    return str(scheme), signing_time, expiry


def _parse_x5c(value: Any) -> tuple[x509.Certificate, ...]:
    if not isinstance(value, list) or not value:
        raise _integrity("unprotected header x5c (certificate chain) is missing or empty")
    certs: list[x509.Certificate] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _integrity(f"x5c[{index}] is not a string")
        try:
            der = base64.b64decode(item, validate=True)
            certs.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError) as exc:
            raise _integrity(f"x5c[{index}] is not a base64 DER certificate") from exc
    return tuple(certs)


def _alg_for_key(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        alg = _RSA_ALG_BY_SIZE.get(key.key_size)
        if alg is None:
            raise _integrity(f"signing certificate has an unsupported RSA key size {key.key_size}", "notation-alg")
        return alg
    if isinstance(key, ec.EllipticCurvePublicKey):
        ec_alg = _EC_ALG_BY_CURVE.get(key.curve.name)
        if ec_alg is None:
            raise _integrity(f"signing certificate has an unsupported curve {key.curve.name}", "notation-alg")
        return ec_alg
    raise _integrity(f"signing certificate has an unsupported key type {type(key).__name__}", "notation-alg")


def _verify_signature(key: Any, alg: str, data: bytes, signature: bytes) -> None:
    kind, hash_cls = _ALGS[alg]
    hash_alg = hash_cls()
    try:
        if kind == "rsa":
            assert isinstance(key, rsa.RSAPublicKey)
            key.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size),
                hash_alg,
            )
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            size = _EC_COORD_BYTES[key.curve.name]
            if len(signature) != 2 * size:
                raise _integrity(f"{alg} signature must be {2 * size} bytes, got {len(signature)}")
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_alg))
    except InvalidSignature:
        raise _integrity("the signature does not verify with the signing certificate's key") from None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _extension(cert: x509.Certificate, cls: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _check_chain_requirements(chain: tuple[x509.Certificate, ...]) -> None:
    """signature-specification.md "Certificate Requirements" (as notation-core-go x509).

    Ordered leaf → intermediates → self-signed root, no self-signed certificate before the
    root, CA certificates with critical basicConstraints cA=true (pathLenConstraint honoured)
    and critical keyUsage keyCertSign, a code-signing leaf, no SHA-1 signatures.
    """
    fail = "notation-certificate-chain"
    for index, cert in enumerate(chain):
        hash_alg = cert.signature_hash_algorithm
        if hash_alg is not None and hash_alg.name in _WEAK_CERT_HASHES:
            raise _integrity(f"certificate {_subject(cert)!r} is signed with {hash_alg.name.upper()}", fail)
        if index == len(chain) - 1:
            if not _issued_by(cert, cert):
                raise _integrity(
                    f"certificate chain must end with a self-signed root; {_subject(cert)!r} is not", fail
                )
        else:
            if _issued_by(cert, cert):
                raise _integrity(
                    f"certificate {index} ({_subject(cert)!r}) is self-signed but is not the last in the chain", fail
                )
            if not _issued_by(cert, chain[index + 1]):
                raise _integrity(
                    f"certificate {index} ({_subject(cert)!r}) is not issued by the next certificate"
                    f" ({_subject(chain[index + 1])!r}); the chain must be ordered leaf first",
                    fail,
                )
        if index == 0:
            _check_leaf(cert)
        else:
            _check_ca(cert, below=index - 1)


def _check_leaf(cert: x509.Certificate) -> None:
    fail = "notation-certificate-chain"
    name = _subject(cert)
    bc = _extension(cert, x509.BasicConstraints)
    if bc is not None and bc.value.ca:
        raise _integrity(f"signing certificate {name!r} is a CA certificate (basicConstraints cA=true)", fail)
    ku = _extension(cert, x509.KeyUsage)
    if ku is None:
        raise _integrity(f"signing certificate {name!r} has no keyUsage extension", fail)
    if not ku.critical:
        raise _integrity(f"signing certificate {name!r}: keyUsage must be critical", fail)
    usage: x509.KeyUsage = ku.value
    if not usage.digital_signature:
        raise _integrity(f"signing certificate {name!r} lacks the digitalSignature key usage", fail)
    extra = [
        label
        for label, present in (
            ("keyEncipherment", usage.key_encipherment),
            ("dataEncipherment", usage.data_encipherment),
            ("keyAgreement", usage.key_agreement),
            ("keyCertSign", usage.key_cert_sign),
            ("cRLSign", usage.crl_sign),
            ("encipherOnly", usage.key_agreement and usage.encipher_only),
            ("decipherOnly", usage.key_agreement and usage.decipher_only),
        )
        if present
    ]
    if extra:
        raise _integrity(f"signing certificate {name!r} has forbidden key usage(s) {', '.join(extra)}", fail)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        bad = [label for oid, label in _FORBIDDEN_LEAF_EKUS.items() if oid in eku.value]
        if bad:
            raise _integrity(f"signing certificate {name!r} has forbidden extended key usage(s) {', '.join(bad)}", fail)
    # Key size limits (RSA >= 2048, EC >= 256) are enforced by the alg table in _alg_for_key.


def _check_ca(cert: x509.Certificate, *, below: int) -> None:
    fail = "notation-certificate-chain"
    name = _subject(cert)
    bc = _extension(cert, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        raise _integrity(f"CA certificate {name!r} lacks basicConstraints cA=true", fail)
    if not bc.critical:
        raise _integrity(f"CA certificate {name!r}: basicConstraints must be critical", fail)
    path_length = bc.value.path_length
    if path_length is not None and path_length < below:
        raise _integrity(
            f"CA certificate {name!r} allows path length {path_length} but has {below} CA certificate(s) below it",
            fail,
        )
    ku = _extension(cert, x509.KeyUsage)
    if ku is None:
        raise _integrity(f"CA certificate {name!r} has no keyUsage extension", fail)
    if not ku.critical:
        raise _integrity(f"CA certificate {name!r}: keyUsage must be critical", fail)
    if not ku.value.key_cert_sign:
        raise _integrity(f"CA certificate {name!r} lacks the keyCertSign key usage", fail)


# --- authenticity ------------------------------------------------------------------------


def _valid_at(cert: x509.Certificate, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _check_trust_store(env: _Envelope, policy: TrustPolicyStatement, trust_store_dir: Path, run: _Run) -> str:
    store_type = "ca" if env.scheme == SCHEME_X509 else "signingAuthority"
    refs = [ref for ref in policy.trust_stores if ref.type == store_type]
    if not refs:
        raise _CheckFailed(
            "notation-authenticity",
            f"trust policy {policy.name!r} names no {store_type!r} trust store for signing scheme {env.scheme}",
        )
    if env.scheme == SCHEME_X509:
        # signature-specification.md "Other requirements": certificates MUST be valid at signing time.
        for cert in env.chain:
            if not _valid_at(cert, env.signing_time):
                raise _CheckFailed(
                    "notation-authenticity",
                    f"certificate {_subject(cert)!r} was not valid at the signing time {_fmt(env.signing_time)}",
                )
    trusted: dict[bytes, str] = {}
    for ref in refs:
        contents = load_trust_store(Path(trust_store_dir), ref)
        run.notes.extend(contents.warnings)
        for cert in contents.certificates:
            trusted.setdefault(cert.public_bytes(serialization.Encoding.DER), str(ref))
    # As notation-core-go VerifyAuthenticity: the (already validated) chain must contain a
    # certificate of the named stores.
    for cert in reversed(env.chain):
        store = trusted.get(cert.public_bytes(serialization.Encoding.DER))
        if store is not None:
            return f"chain leads to {_subject(cert)!r} in trust store {store}"
    names = ", ".join(str(r) for r in refs)
    raise _CheckFailed(
        "notation-authenticity",
        f"the certificate chain (root {_subject(env.chain[-1])!r}) does not lead to a certificate in trust store(s)"
        f" {names}",
    )


def _check_trusted_identity(leaf: x509.Certificate, policy: TrustPolicyStatement) -> str:
    if policy.trusts_any_identity:
        return "any identity is trusted ('*')"
    try:
        subject = certificate_subject_attributes(leaf)
    except Error as exc:
        raise _CheckFailed("notation-trusted-identity", exc.message) from exc
    for identity in policy.x509_identities:
        if identity.matches(subject):
            return f"subject matches {identity.raw!r}"
    raise _CheckFailed(
        "notation-trusted-identity",
        f"signing certificate subject {_subject(leaf)!r} matches none of the trusted identities of policy"
        f" {policy.name!r}",
    )


# --- authentic timestamp, revocation -----------------------------------------------------


def _check_authentic_timestamp(env: _Envelope, when: datetime) -> str:
    if env.scheme == SCHEME_SIGNING_AUTHORITY:
        for cert in env.chain:
            if not _valid_at(cert, env.signing_time):
                raise _CheckFailed(
                    "notation-authentic-timestamp",
                    f"certificate {_subject(cert)!r} was not valid at the authentic signing time"
                    f" {_fmt(env.signing_time)}",
                )
        return f"chain valid at the authentic signing time {_fmt(env.signing_time)}"
    # notary.x509 without an evaluated timestamp: every certificate must be valid now.
    for cert in env.chain:
        if not _valid_at(cert, when):
            raise _CheckFailed(
                "notation-authentic-timestamp",
                f"certificate {_subject(cert)!r} is not valid at verification time {_fmt(when)} (valid"
                f" {_fmt(cert.not_valid_before_utc)} to {_fmt(cert.not_valid_after_utc)})",
            )
    return f"no authentic timestamp; chain valid at verification time {_fmt(when)}"


def _revocation_locations(chain: tuple[x509.Certificate, ...]) -> list[str]:
    located: list[str] = []
    for cert in chain:
        aia = _extension(cert, x509.AuthorityInformationAccess)
        has_ocsp = aia is not None and any(
            d.access_method == AuthorityInformationAccessOID.OCSP for d in aia.value
        )
        has_crl = _extension(cert, x509.CRLDistributionPoints) is not None
        if has_ocsp or has_crl:
            located.append(repr(_subject(cert)))
    return located


# --- payload and descriptor --------------------------------------------------------------


def _parse_target(payload: bytes) -> dict[str, Any]:
    try:
        doc = _strict_json(payload, "payload")
        if not isinstance(doc, dict) or not isinstance(doc.get("targetArtifact"), dict):
            raise _CheckFailed("notation-descriptor", "payload has no targetArtifact object")
        return _validate_descriptor(doc["targetArtifact"], "signed targetArtifact")
    except _CheckFailed as failure:
        raise _CheckFailed("notation-descriptor", f"payload is malformed: {failure.message}") from None
    except InvalidInputError as exc:
        raise _CheckFailed("notation-descriptor", f"payload is malformed: {exc.message}") from None


def _validate_descriptor(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    unknown = sorted(set(value) - _TARGET_FIELDS)
    if unknown:
        raise InvalidInputError(f"{what} has unsupported field(s) {', '.join(unknown)}")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidInputError(f"{what} needs a non-empty string mediaType")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise InvalidInputError(f"{what} needs a string digest")
    try:
        Digest.parse(digest)
    except Error as exc:
        raise InvalidInputError(f"{what} has a bad digest: {exc.message}") from exc
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError(f"{what} needs a non-negative integer size")
    annotations = value.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise InvalidInputError(f"{what} annotations must map strings to strings")
    return dict(value)


def _check_expected_descriptor(expected: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(expected, Mapping):
        raise UsageError("expected descriptor must be a mapping")
    return _validate_descriptor(expected, "expected descriptor")


def _check_descriptor(target: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    # notation-go Verify: content.Equal (mediaType, digest, size), then the user's metadata
    # (--user-metadata) must be a subset of the signed annotations.
    for name in ("digest", "size", "mediaType"):
        if target[name] != expected[name]:
            raise _CheckFailed(
                "notation-descriptor",
                f"the signature is for a different artifact: signed {name} {target[name]!r},"
                f" expected {expected[name]!r}",
            )
    signed = target.get("annotations") or {}
    for key, value in (expected.get("annotations") or {}).items():
        if signed.get(key) != value:
            raise _CheckFailed(
                "notation-descriptor",
                f"the signed annotations do not contain {key}={value!r}",
            )


# --- helpers -----------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("verification time must be timezone-aware")
    return now.astimezone(UTC)


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
