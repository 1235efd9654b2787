"""Notary Project trust policy and trust store, in notation's own formats.

Follows notaryproject/specifications ``specs/trust-store-trust-policy.md`` and the behaviour
of notation-go ``verifier/trustpolicy`` and ``verifier/truststore``:

* policy document ``{"version": "1.0", "trustPolicies": [...]}``; each statement has ``name``,
  ``registryScopes``, ``signatureVerification {level, override}``, ``trustStores`` and
  ``trustedIdentities``;
* scope selection: an exact repository match wins, otherwise the single global (``*``) policy,
  otherwise the artifact is untrusted;
* trust store ``<dir>/x509/{ca,signingAuthority,tsa}/<name>/*.{pem,crt,cer}``, no symlinks.

Every malformed policy or store ends in one :class:`InvalidInputError` with a specific message.
Unknown keys are refused too (notation's Go decoder ignores them): a misspelt ``overide``
silently ignored would weaken verification.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from imgseal.errors import InvalidInputError, VerificationError

if TYPE_CHECKING:
    # cryptography.x509 costs ~30 ms to import; a gate run whose policy has no notation rule never needs it.
    from cryptography import x509

SUPPORTED_VERSIONS: Final = ("1.0",)
LEVELS: Final = ("strict", "permissive", "audit", "skip")
CHECKS: Final = ("integrity", "authenticity", "authenticTimestamp", "expiry", "revocation")
ACTIONS: Final = ("enforce", "log", "skip")
STORE_TYPES: Final = ("ca", "signingAuthority", "tsa")
X509_SUBJECT: Final = "x509.subject"
CERT_SUFFIXES: Final = (".pem", ".crt", ".cer")

# trust-store-trust-policy.md "Signature Verification details": the levels table.
LEVEL_ACTIONS: Final[Mapping[str, Mapping[str, str]]] = {
    "strict": dict.fromkeys(CHECKS, "enforce"),
    "permissive": {
        "integrity": "enforce",
        "authenticity": "enforce",
        "authenticTimestamp": "log",
        "expiry": "log",
        "revocation": "log",
    },
    "audit": {"integrity": "enforce", **dict.fromkeys(CHECKS[1:], "log")},
    "skip": dict.fromkeys(CHECKS, "skip"),
}

_STATEMENT_KEYS: Final = frozenset(
    {"name", "registryScopes", "signatureVerification", "trustStores", "trustedIdentities"}
)
_VERIFICATION_KEYS: Final = frozenset({"level", "override", "verifyTimestamp"})
_VERIFY_TIMESTAMP: Final = ("always", "afterCertExpiry")
_STORE_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
# notation-go trustpolicy validateRegistryScopeFormat (adapted from distribution's regexp.go).
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
)
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*)*"
)
_ATTR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")
_MANDATORY_RDNS: Final = ("C", "ST", "O")


@dataclass(frozen=True)
class X509Identity:
    """A parsed ``x509.subject:`` trusted identity: RDN attributes that must all match."""

    raw: str
    attributes: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.attributes)

    def matches(self, subject: Mapping[str, str]) -> bool:
        """True when every attribute of this identity is present with the same value."""
        return all(subject.get(k) == v for k, v in self.attributes)


@dataclass(frozen=True)
class TrustStoreRef:
    """One ``type:name`` entry of ``trustStores``."""

    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"


@dataclass(frozen=True)
class TrustPolicyStatement:
    """One validated trust policy statement."""

    name: str
    registry_scopes: tuple[str, ...]
    level: str
    overrides: tuple[tuple[str, str], ...] = ()
    trust_stores: tuple[TrustStoreRef, ...] = ()
    trusted_identities: tuple[str, ...] = ()
    x509_identities: tuple[X509Identity, ...] = ()
    verify_timestamp: str | None = None
    actions: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.actions:
            merged = dict(LEVEL_ACTIONS[self.level])
            merged.update(dict(self.overrides))
            object.__setattr__(self, "actions", tuple((c, merged[c]) for c in CHECKS))

    def action(self, check: str) -> str:
        """``enforce``, ``log`` or ``skip`` for ``check`` after applying overrides."""
        return dict(self.actions)[check]

    @property
    def trusts_any_identity(self) -> bool:
        return self.trusted_identities == ("*",)

    @property
    def is_global(self) -> bool:
        return self.registry_scopes == ("*",)


@dataclass(frozen=True)
class TrustPolicyDocument:
    """A validated trust policy document."""

    version: str
    statements: tuple[TrustPolicyStatement, ...]


# --- parsing -----------------------------------------------------------------------------


def load_trust_policy(path: Path) -> TrustPolicyDocument:
    """Read and validate a trust policy file (no symlinks, as notation-go refuses them)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise InvalidInputError(f"trust policy {str(path)!r} does not exist") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read trust policy {str(path)!r}: {exc.strerror}") from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise InvalidInputError(f"trust policy {str(path)!r} is not a regular file (symlinks are not supported)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read trust policy {str(path)!r}: {exc.strerror}") from exc
    return parse_trust_policy(data)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidInputError(f"trust policy has duplicate key {key!r}")
        out[key] = value
    return out


def parse_trust_policy(data: bytes | str) -> TrustPolicyDocument:
    """Parse and validate a trust policy document (trust-store-trust-policy.md rules)."""
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"trust policy is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError("trust policy must be a JSON object")
    unknown = sorted(set(doc) - {"version", "trustPolicies"})
    if unknown:
        raise InvalidInputError(f"trust policy has unknown key(s): {', '.join(unknown)}")
    version = doc.get("version")
    if version is None or version == "":
        raise InvalidInputError("trust policy has no version; it must be \"1.0\"")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidInputError(f"trust policy uses unsupported version {version!r} (supported: \"1.0\")")
    raw_statements = doc.get("trustPolicies")
    if not isinstance(raw_statements, list) or not raw_statements:
        raise InvalidInputError("trust policy must have a non-empty trustPolicies array")
    statements = tuple(_parse_statement(raw, index) for index, raw in enumerate(raw_statements))

    names: set[str] = set()
    scope_owner: dict[str, str] = {}
    for statement in statements:
        if statement.name in names:
            raise InvalidInputError(
                f"multiple trust policy statements use the name {statement.name!r}; names must be unique"
            )
        names.add(statement.name)
        for scope in statement.registry_scopes:
            if scope in scope_owner:
                what = "the global scope '*'" if scope == "*" else f"registry scope {scope!r}"
                raise InvalidInputError(
                    f"{what} is used by both trust policy statements {scope_owner[scope]!r} and"
                    f" {statement.name!r}; a scope may belong to one statement only"
                )
            scope_owner[scope] = statement.name
    return TrustPolicyDocument(version=version, statements=statements)


def _string_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{what} must be an array of strings")
    return tuple(value)


def _parse_statement(raw: Any, index: int) -> TrustPolicyStatement:
    if not isinstance(raw, dict):
        raise InvalidInputError(f"trust policy statement #{index + 1} must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(
            f"trust policy statement #{index + 1} is missing a name; every statement requires a name"
        )
    label = f"trust policy statement {name!r}"
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise InvalidInputError(f"{label} has unknown key(s): {', '.join(unknown)}")

    level, overrides, verify_timestamp = _parse_signature_verification(raw.get("signatureVerification"), label)
    scopes = _parse_scopes(raw.get("registryScopes"), label)
    if level == "skip" and scopes == ("*",):
        # trust-store-trust-policy.md: "skip cannot be used with a global scope (*)".
        raise InvalidInputError(
            f"{label} uses level 'skip' with the global scope '*'; skip needs fully qualified repositories"
        )

    stores_raw = raw.get("trustStores")
    identities_raw = raw.get("trustedIdentities")
    if level == "skip":
        if stores_raw or identities_raw:
            raise InvalidInputError(
                f"{label} is set to skip signature verification but has trust stores and/or trusted"
                " identities; remove them"
            )
        return TrustPolicyStatement(name=name, registry_scopes=scopes, level=level)

    if not stores_raw or not identities_raw:
        raise InvalidInputError(
            f"{label} is missing trustStores or trustedIdentities; both must be specified"
        )
    stores = _parse_trust_stores(_string_list(stores_raw, f"{label} trustStores"), label)
    identities = _string_list(identities_raw, f"{label} trustedIdentities")
    x509_identities = _parse_identities(identities, label)
    return TrustPolicyStatement(
        name=name,
        registry_scopes=scopes,
        level=level,
        overrides=overrides,
        trust_stores=stores,
        trusted_identities=identities,
        x509_identities=x509_identities,
        verify_timestamp=verify_timestamp,
    )


def _parse_signature_verification(raw: Any, label: str) -> tuple[str, tuple[tuple[str, str], ...], str | None]:
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{label} needs a signatureVerification object with a level")
    unknown = sorted(set(raw) - _VERIFICATION_KEYS)
    if unknown:
        raise InvalidInputError(f"{label} signatureVerification has unknown key(s): {', '.join(unknown)}")
    level = raw.get("level")
    if level is None or level == "":
        raise InvalidInputError(f"{label} has an empty or missing signature verification level")
    if level not in LEVELS:
        raise InvalidInputError(
            f"{label} has invalid signature verification level {level!r} (use strict, permissive, audit or skip)"
        )
    override = raw.get("override")
    pairs: list[tuple[str, str]] = []
    if override is not None:
        if not isinstance(override, dict):
            raise InvalidInputError(f"{label} signatureVerification override must be an object")
        if override and level == "skip":
            raise InvalidInputError(f"{label}: level 'skip' cannot be customised with override")
        for check, action in override.items():
            if check not in CHECKS:
                raise InvalidInputError(
                    f"{label} overrides unknown verification type {check!r}"
                    f" (supported: {', '.join(CHECKS[1:])})"
                )
            if action not in ACTIONS:
                raise InvalidInputError(
                    f"{label} uses unknown verification action {action!r} for {check!r}"
                    " (supported: enforce, log, skip)"
                )
            if check == "integrity":
                raise InvalidInputError(f"{label}: 'integrity' verification cannot be overridden")
            if action == "skip" and check != "revocation":
                raise InvalidInputError(f"{label}: {check!r} verification cannot be skipped")
            pairs.append((check, action))
    verify_timestamp = raw.get("verifyTimestamp")
    if verify_timestamp is not None and verify_timestamp not in _VERIFY_TIMESTAMP:
        raise InvalidInputError(
            f"{label} has invalid verifyTimestamp {verify_timestamp!r} (use always or afterCertExpiry)"
        )
    return level, tuple(sorted(pairs)), verify_timestamp


def validate_repository(scope: str) -> None:
    """Check a fully qualified ``host[:port]/path`` repository (notation-go's scope format)."""
    if not isinstance(scope, str):
        raise InvalidInputError("repository must be a string")
    if "*" in scope:
        raise InvalidInputError(
            f"registry scope {scope!r} with a wildcard is not valid; use '*' alone or a fully qualified repository"
        )
    domain, slash, repository = scope.partition("/")
    if not slash or not _DOMAIN.fullmatch(domain) or not _REPOSITORY.fullmatch(repository):
        raise InvalidInputError(
            f"registry scope {scope[:120]!r} is not valid: use a fully qualified repository without scheme,"
            " tag or digest, e.g. registry.example.com/team/app"
        )


def _parse_scopes(raw: Any, label: str) -> tuple[str, ...]:
    scopes = _string_list(raw if raw is not None else [], f"{label} registryScopes")
    if not scopes:
        raise InvalidInputError(f"{label} has zero registry scopes; it needs at least one")
    if "*" in scopes and len(scopes) > 1:
        raise InvalidInputError(
            f"{label} uses the global scope '*' together with other scopes; '*' must be alone"
        )
    if len(set(scopes)) != len(scopes):
        raise InvalidInputError(f"{label} lists a registry scope twice")
    for scope in scopes:
        if scope != "*":
            validate_repository(scope)
    return scopes


def _parse_trust_stores(values: tuple[str, ...], label: str) -> tuple[TrustStoreRef, ...]:
    refs: list[TrustStoreRef] = []
    for value in values:
        store_type, colon, name = value.partition(":")
        if not colon:
            raise InvalidInputError(
                f"{label} has malformed trust store {value!r}; the format is <type>:<name>"
            )
        if store_type not in STORE_TYPES:
            raise InvalidInputError(
                f"{label} uses unsupported trust store type {store_type!r} in {value!r}"
                " (supported: ca, signingAuthority, tsa)"
            )
        if not _STORE_NAME.fullmatch(name):
            raise InvalidInputError(
                f"{label} uses invalid trust store name {name!r} in {value!r}; names match [a-zA-Z0-9_.-]+"
            )
        ref = TrustStoreRef(store_type, name)
        if ref not in refs:
            refs.append(ref)
    if not any(ref.type in ("ca", "signingAuthority") for ref in refs):
        raise InvalidInputError(f"{label} lists no ca or signingAuthority trust store to verify signers against")
    return tuple(refs)


def _parse_identities(identities: tuple[str, ...], label: str) -> tuple[X509Identity, ...]:
    if "*" in identities:
        if len(identities) > 1:
            raise InvalidInputError(
                f"{label} uses the wildcard trusted identity '*' together with other values; '*' must be alone"
            )
        return ()
    parsed: list[X509Identity] = []
    for identity in identities:
        if not identity:
            raise InvalidInputError(f"{label} has an empty trusted identity")
        prefix, colon, value = identity.partition(":")
        if not colon:
            raise InvalidInputError(f"{label} has trusted identity {identity!r} without the 'x509.subject:' prefix")
        if prefix.strip() != X509_SUBJECT:
            # notation hands other prefixes to verification plugins; imgseal runs none.
            raise InvalidInputError(
                f"{label} has trusted identity type {prefix!r}; only 'x509.subject' is supported"
            )
        if not value.strip():
            raise InvalidInputError(f"{label} has trusted identity {identity!r} without a value")
        try:
            attrs = parse_distinguished_name(value)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{label} trusted identity {identity!r}: {exc.message}") from exc
        parsed.append(X509Identity(raw=identity, attributes=tuple(attrs.items())))
    # trust-store-trust-policy.md: identities MUST NOT overlap (one a subset of another).
    for i, first in enumerate(parsed):
        for j, second in enumerate(parsed):
            if i != j and second.matches(first.as_dict()):
                raise InvalidInputError(
                    f"{label} has overlapping trusted identities {first.raw!r} and {second.raw!r}"
                )
    return tuple(parsed)


# --- distinguished names -----------------------------------------------------------------

_SPECIAL = set(',+"\\<>;=# ')


def parse_distinguished_name(text: str, *, require_mandatory: bool = True) -> dict[str, str]:
    """Parse an RFC 4514 DN into ``{TYPE: value}`` with notation's extra rules.

    ``,`` and ``;`` separate RDNs; ``\\`` escapes a special character or two hex digits.
    Multi-valued RDNs (``+``), ``#``-hex values and duplicate attribute types are refused
    (notation-go internal/pkix). With ``require_mandatory`` the DN must contain C, ST and O
    (trust-store-trust-policy.md "Trusted Identities Constraints"). Attribute types are
    compared upper-case (they are case-insensitive in LDAP); values exactly.
    """
    rdns = _split_rdns(text)
    result: dict[str, str] = {}
    for rdn in rdns:
        attr_type, value = rdn
        key = attr_type.upper() if attr_type[0].isalpha() else attr_type
        if key in result:
            raise InvalidInputError(f"distinguished name has duplicate attribute {attr_type!r}")
        result[key] = value
    if require_mandatory:
        missing = [m for m in _MANDATORY_RDNS if not result.get(m)]
        if missing:
            raise InvalidInputError(
                f"distinguished name must contain C, ST and O; missing {', '.join(missing)}"
            )
    return result


def _split_rdns(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    if not text.strip():
        raise InvalidInputError("distinguished name is empty")
    while i < n:
        # attribute type
        eq = text.find("=", i)
        if eq < 0:
            raise InvalidInputError(f"distinguished name component {text[i:].strip()!r} has no '='")
        attr_type = text[i:eq].strip()
        if not _ATTR_TYPE.fullmatch(attr_type):
            raise InvalidInputError(f"distinguished name has invalid attribute type {attr_type!r}")
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == "#":
            raise InvalidInputError(f"distinguished name value for {attr_type!r} uses unsupported #hex form")
        buf = bytearray()
        trailing_plain_spaces = 0
        while i < n and text[i] not in ",;+":
            ch = text[i]
            if ch == "\\":
                if i + 1 >= n:
                    raise InvalidInputError("distinguished name ends with a lone backslash")
                nxt = text[i + 1]
                if nxt in _SPECIAL:
                    buf += nxt.encode()
                    i += 2
                elif re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 1 : i + 3]):
                    buf.append(int(text[i + 1 : i + 3], 16))
                    i += 3
                else:
                    raise InvalidInputError(f"distinguished name has an invalid escape '\\{nxt}'")
                trailing_plain_spaces = 0
                continue
            if ch == '"':
                raise InvalidInputError("distinguished name has an unescaped '\"'")
            buf += ch.encode()
            trailing_plain_spaces = trailing_plain_spaces + 1 if ch == " " else 0
            i += 1
        if trailing_plain_spaces:
            del buf[-trailing_plain_spaces:]
        try:
            value = buf.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"distinguished name value for {attr_type!r} is not UTF-8") from exc
        if not value:
            raise InvalidInputError(f"distinguished name attribute {attr_type!r} has an empty value")
        out.append((attr_type, value))
        if i < n:
            if text[i] == "+":
                raise InvalidInputError("distinguished name has a multi-valued RDN ('+'), which is not supported")
            i += 1  # separator
            if not text[i:].strip():
                raise InvalidInputError("distinguished name ends with a separator")
    return out


# Short names Go's pkix.Name.String() uses (notation parses that string); cryptography's
# rfc4514_attribute_name lacks the last two.
_EXTRA_SHORT_NAMES: Final = {"2.5.4.5": "SERIALNUMBER", "2.5.4.17": "POSTALCODE"}


def certificate_subject_attributes(cert: x509.Certificate) -> dict[str, str]:
    """The leaf subject as ``{TYPE: value}``; InvalidInputError for multi-valued or repeated RDNs.

    notation-go parses ``Subject.String()`` with the same rules as a trusted identity, so a
    subject with two OUs or a ``+`` RDN cannot match any identity; we refuse it the same way.
    """
    out: dict[str, str] = {}
    for rdn in cert.subject.rdns:
        attrs = list(rdn)
        if len(attrs) > 1:
            raise InvalidInputError("certificate subject has a multi-valued RDN, which trusted identities cannot match")
        attr = attrs[0]
        name = _EXTRA_SHORT_NAMES.get(attr.oid.dotted_string) or attr.rfc4514_attribute_name
        key = name.upper() if name[0].isalpha() else name
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
        if key in out:
            raise InvalidInputError(f"certificate subject repeats attribute {name!r}")
        out[key] = value
    return out


# --- scope selection ---------------------------------------------------------------------


def select_policy(policy_doc: TrustPolicyDocument, repository: str) -> TrustPolicyStatement:
    """The statement that applies to ``repository`` (``host/path``, no tag or digest).

    trust-store-trust-policy.md "Selecting a trust policy based on artifact URI": an exact
    scope match wins; otherwise the global ``*`` statement; otherwise verification fails.
    Scopes are never expanded (``registry`` does not mean ``docker.io/library/registry``).
    """
    validate_repository(repository)
    global_statement: TrustPolicyStatement | None = None
    for statement in policy_doc.statements:
        if repository in statement.registry_scopes:
            return statement
        if statement.is_global:
            global_statement = statement
    if global_statement is not None:
        return global_statement
    raise VerificationError(
        f"no trust policy statement applies to {repository!r}: no exact registry scope and no global '*' scope",
        hint="add the repository to a statement's registryScopes",
        reason="notation-no-policy",
    )


# --- trust store -------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustStoreContents:
    """Certificates of one named store, plus notes about ignored entries."""

    ref: TrustStoreRef
    certificates: tuple[x509.Certificate, ...]
    warnings: tuple[str, ...] = ()


def load_trust_store(trust_store_dir: Path, ref: TrustStoreRef) -> TrustStoreContents:
    """Load ``<dir>/x509/<type>/<name>/`` certificates.

    trust-store-trust-policy.md "Trust Store": files ending .pem, .crt or .cer holding PEM or
    DER certificates; symlinks MUST be refused; sub-directories are ignored with a warning.
    As notation-go's validateCerts, every certificate must be a CA or self-signed, and a store
    without certificates is an error.
    """
    if ref.type not in STORE_TYPES or not _STORE_NAME.fullmatch(ref.name):
        raise InvalidInputError(f"invalid trust store reference {str(ref)!r}")
    base = Path(trust_store_dir)
    path = base / "x509" / ref.type / ref.name
    for part in (base / "x509", base / "x509" / ref.type, path):
        try:
            info = part.lstat()
        except FileNotFoundError:
            raise InvalidInputError(f"trust store {str(ref)!r}: {str(part)!r} does not exist") from None
        except OSError as exc:
            raise InvalidInputError(f"trust store {str(ref)!r}: cannot read {str(part)!r}: {exc.strerror}") from exc
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise InvalidInputError(
                f"trust store {str(ref)!r}: {str(part)!r} is not a regular directory (symlinks are not supported)"
            )
    certs: list[x509.Certificate] = []
    warnings: list[str] = []
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        raise InvalidInputError(f"trust store {str(ref)!r}: cannot list {str(path)!r}: {exc.strerror}") from exc
    for entry in entries:
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise InvalidInputError(f"trust store {str(ref)!r}: {entry.name!r} is a symlink, which is not supported")
        if stat.S_ISDIR(info.st_mode):
            warnings.append(f"trust store {ref}: sub-directory {entry.name!r} is ignored")
            continue
        if entry.suffix.lower() not in CERT_SUFFIXES:
            warnings.append(f"trust store {ref}: {entry.name!r} is not a .pem, .crt or .cer file and is ignored")
            continue
        loaded = _read_certificates(entry, ref)
        for cert in loaded:
            if not _is_ca(cert) and not _is_self_signed(cert):
                raise InvalidInputError(
                    f"trust store {str(ref)!r}: certificate {cert.subject.rfc4514_string()!r} in {entry.name!r}"
                    " is neither a CA nor a self-signed certificate"
                )
        certs.extend(loaded)
    if not certs:
        raise InvalidInputError(f"trust store {str(ref)!r} ({str(path)!r}) holds no certificates")
    return TrustStoreContents(ref=ref, certificates=tuple(certs), warnings=tuple(warnings))


def _read_certificates(path: Path, ref: TrustStoreRef) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"trust store {str(ref)!r}: cannot read {path.name!r}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InvalidInputError(
            f"trust store {str(ref)!r}: {path.name!r} does not hold a PEM or DER certificate ({exc})"
        ) from exc
    if not certs:
        raise InvalidInputError(f"trust store {str(ref)!r}: {path.name!r} holds no certificate")
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _is_self_signed(cert: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
