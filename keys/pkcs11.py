"""Keys that never leave a PKCS#11 token: signing, public-key export and key generation on the token.

Library: ``python-pkcs11`` rather than PyKCS11. It maps every ``CKR_*`` return value to its own
exception class (``PinIncorrect``, ``PinLocked``, ``NoSuchKey``…), which is what one-line
errors with the right exit code need; it ships typed stubs (mypy ``--strict`` stays honest);
and its object API (``token.open``, ``session.get_key``) is small. PyKCS11 returns bare ``CKR``
numbers and is untyped. Both are binary wheels on PyPI; the module is imported only when a
``pkcs11:`` key is used, so ``verify --key`` start-up does not grow.

The signature scheme is the key file's, byte for byte (:func:`keys.material.sign`), so no
verifier can tell a token signature from a file one:

* ECDSA: the digest (SHA-256 for P-256, SHA-384 for P-384, SHA-512 for P-521) is computed here
  and signed with ``CKM_ECDSA``, the mechanism every token has (cloud modules such as Google's
  ``kmsp11`` offer no hashing ECDSA mechanisms). PKCS#11 returns ``r || s`` (v2.40 §2.3.1);
  it is re-encoded as the ASN.1 DER ``ECDSA-Sig-Value`` that Go's ``ecdsa.SignASN1`` writes.
* RSA: PKCS#1 v1.5 with SHA-256, as cosign signs: the DigestInfo (RFC 8017 §9.2) is built here
  and signed with ``CKM_RSA_PKCS``, again the mechanism every RSA token has.

The token key is a subclass of cryptography's private-key interfaces, so everything that signs
with a key file (``sign``, ``attest``, ``provenance --attest``) signs with it unchanged; asking
it for its private bytes is a :class:`KeyMaterialError`.

Errors (module missing, token or object not found, wrong or locked PIN, a key type imgseal cannot
use) are :class:`KeyMaterialError` (exit 4), one line, never containing the PIN.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from imgseal.errors import Error, KeyMaterialError, UsageError
from keys.material import PublicKey, validate_key
from keys.pkcs11_uri import MODULE_ENV, PIN_ENV, Pkcs11Uri

#: Key types ``generate_on_token`` makes (those of :data:`keys.GENERATE_KEY_TYPES` a token can hold
#: and imgseal can sign with; Ed25519 needs CKM_EDDSA with a prehash that tokens do not offer).
TOKEN_KEY_TYPES: Final[tuple[str, ...]] = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-3072", "rsa-4096")

_CURVE_BY_OID: Final[dict[str, type[ec.EllipticCurve]]] = {
    "1.2.840.10045.3.1.7": ec.SECP256R1,
    "1.3.132.0.34": ec.SECP384R1,
    "1.3.132.0.35": ec.SECP521R1,
}
_CURVE_NAMES: Final = {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1", "ecdsa-p521": "secp521r1"}
_OID_BY_KIND: Final = {"ecdsa-p256": "1.2.840.10045.3.1.7", "ecdsa-p384": "1.3.132.0.34", "ecdsa-p521": "1.3.132.0.35"}
# DER prefix of DigestInfo for SHA-256 (RFC 8017 §9.2, note 1).
_SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")

PinSource = Callable[[], str]


# --- the library ---------------------------------------------------------------------------


def module_path(uri: Pkcs11Uri, environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The module to load: ``module-path=`` in the URI, else ``$IMGSEAL_PKCS11_MODULE``."""
    env = os.environ if environ is None else environ
    path = uri.module_path or env.get(MODULE_ENV, "").strip()
    if not path:
        raise KeyMaterialError(f"no PKCS#11 module: add ?module-path=/path/to/module.so to the URI or set {MODULE_ENV}",
                               reason="pkcs11-module")
    return path


def _load_library(path: str) -> Any:
    if not os.path.isfile(path):
        raise KeyMaterialError(f"PKCS#11 module not found: {path}", reason="pkcs11-module")
    try:
        import pkcs11
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise KeyMaterialError("PKCS#11 support needs the python-pkcs11 package", reason="pkcs11-module") from e
    try:
        return pkcs11.lib(path)
    except Exception as e:
        raise KeyMaterialError(f"cannot load PKCS#11 module {path}: {_short(e) or type(e).__name__}",
                               reason="pkcs11-module") from e


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def _token_matches(token: Any, uri: Pkcs11Uri) -> bool:
    checks = ((uri.token, "label"), (uri.manufacturer, "manufacturer_id"), (uri.model, "model"))
    for wanted, attr in checks:
        if wanted is not None and str(getattr(token, attr)).rstrip() != wanted:
            return False
    if uri.serial is not None:
        serial = token.serial.decode("ascii", "replace") if isinstance(token.serial, bytes) else str(token.serial)
        if serial.rstrip() != uri.serial:
            return False
    return True


def _find_token(lib: Any, uri: Pkcs11Uri) -> Any:
    from pkcs11 import TokenFlag

    try:
        slots = lib.get_slots(token_present=True)
        candidates = []
        for slot in slots:
            if uri.slot_id is not None and slot.slot_id != uri.slot_id:
                continue
            token = slot.get_token()
            # An uninitialised token (softhsm2's spare slot) has no keys and an empty label.
            if not token.flags & TokenFlag.TOKEN_INITIALIZED:
                continue
            if _token_matches(token, uri):
                candidates.append(token)
    except Error:
        raise
    except Exception as e:
        raise KeyMaterialError(f"PKCS#11 module failed listing tokens: {_short(e) or type(e).__name__}",
                               reason="pkcs11-token") from e
    if not candidates:
        raise KeyMaterialError(f"PKCS#11 {uri.describe_token()} not found", reason="pkcs11-token")
    if len(candidates) > 1:
        raise KeyMaterialError(f"{len(candidates)} PKCS#11 tokens match; name one with token= or serial=",
                               reason="pkcs11-token")
    return candidates[0]


@contextmanager
def _mapped(doing: str) -> Iterator[None]:
    """Turn python-pkcs11's exceptions into one-line :class:`KeyMaterialError` s (never with the PIN)."""
    from pkcs11 import exceptions as x

    try:
        yield
    except Error:
        raise
    except x.PinIncorrect:
        raise KeyMaterialError(f"{doing}: the PKCS#11 PIN is incorrect", reason="pkcs11-pin") from None
    except x.PinLocked:
        raise KeyMaterialError(f"{doing}: the PKCS#11 PIN is locked (too many wrong PINs); the security officer "
                               "must unlock it", reason="pkcs11-pin-locked") from None
    except (x.PinLenRange, x.PinInvalid):
        raise KeyMaterialError(f"{doing}: the PKCS#11 PIN is not valid for this token", reason="pkcs11-pin") from None
    except x.PinExpired:
        raise KeyMaterialError(f"{doing}: the PKCS#11 PIN has expired", reason="pkcs11-pin") from None
    except x.UserPinNotInitialized:
        raise KeyMaterialError(f"{doing}: the token's user PIN is not initialised", reason="pkcs11-pin") from None
    except (x.TokenNotPresent, x.DeviceRemoved, x.TokenNotRecognised):
        raise KeyMaterialError(f"{doing}: the PKCS#11 token is not present", reason="pkcs11-token") from None
    except (x.MechanismInvalid, x.KeyTypeInconsistent, x.FunctionNotSupported) as e:
        raise KeyMaterialError(f"{doing}: the token refuses this key or mechanism ({type(e).__name__})",
                               reason="pkcs11-unusable-key") from None
    except x.PKCS11Error as e:
        raise KeyMaterialError(f"{doing}: PKCS#11 error {type(e).__name__}{': ' + _short(e) if _short(e) else ''}",
                               reason="pkcs11") from None


# --- sessions -------------------------------------------------------------------------------


@dataclass
class TokenSession:
    """An open, logged-in session; the token key objects borrow it. Close it when done signing."""

    session: Any
    uri: Pkcs11Uri

    def close(self) -> None:
        from contextlib import suppress

        with suppress(Exception):
            self.session.close()


def open_session(uri: Pkcs11Uri, pin: PinSource | None, *, rw: bool = False) -> TokenSession:
    """Log in to the token ``uri`` names; ``pin`` is asked only once the token is found."""
    lib = _load_library(module_path(uri))
    token = _find_token(lib, uri)
    user_pin = None
    if pin is not None:
        user_pin = pin()
    with _mapped(f"opening PKCS#11 {uri.describe_token()}"):
        session = token.open(rw=rw, user_pin=user_pin)
    return TokenSession(session, uri)


def resolve_pin(uri: Pkcs11Uri, prompt: Callable[[], str] | None,
                warn: Callable[[str], None], environ: dict[str, str] | None = None) -> str:
    """The user PIN: ``pin-value=`` in the URI (with a warning), else ``$IMGSEAL_PKCS11_PIN``, else a prompt."""
    env = os.environ if environ is None else environ
    if uri.pin_value is not None:
        warn("imgseal: warning: the PKCS#11 URI carries pin-value=; command lines are visible to every user of "
             f"this host: prefer {PIN_ENV}")
        return uri.pin_value
    value = env.get(PIN_ENV)
    if value is not None:
        return value
    if prompt is None:
        raise UsageError(f"no PKCS#11 PIN: set {PIN_ENV}, or run in a terminal to be prompted", reason="pin-required")
    return prompt()


def _select_objects(session: Any, uri: Pkcs11Uri, object_class: Any) -> list[Any]:
    from pkcs11 import Attribute

    attrs: dict[Any, Any] = {Attribute.CLASS: object_class}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[Attribute.ID] = uri.id
    with _mapped("searching the PKCS#11 token"):
        return list(session.get_objects(attrs))


def _require_selector(uri: Pkcs11Uri) -> None:
    if uri.object is None and uri.id is None:
        raise UsageError("the PKCS#11 URI names no key: add object=LABEL and/or id=%NN", reason="bad-key-ref")


# --- public keys ----------------------------------------------------------------------------


def _ec_public_key(params: bytes, point: bytes) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    curve = _curve_from_params(params)
    # CKA_EC_POINT is the DER OCTET STRING holding the point (v2.40 §2.3.3); a few modules give
    # the bare point. Go's crypto11 (cosign) accepts both, so do we.
    raw = point
    if len(point) > 2 and point[0] == 0x04 and point[1] in (len(point) - 2, 0x81, 0x82):
        inner = _der_octet_string(point)
        if inner is not None:
            raw = inner
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve(), raw)
    except ValueError:
        try:
            key = load_der_public_key(point)
        except ValueError as e:
            raise KeyMaterialError("the token's EC public key point does not parse",
                                   reason="pkcs11-unusable-key") from e
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyMaterialError("the token's EC public key point does not parse",
                                   reason="pkcs11-unusable-key") from None
        return key


def _der_octet_string(data: bytes) -> bytes | None:
    if data[0] != 0x04:
        return None
    length = data[1]
    pos = 2
    if length & 0x80:
        count = length & 0x7F
        if count not in (1, 2):
            return None
        length = int.from_bytes(data[2:2 + count], "big")
        pos = 2 + count
    return data[pos:] if pos + length == len(data) else None


def _curve_from_params(params: bytes) -> type[ec.EllipticCurve]:
    # CKA_EC_PARAMS is the DER ECParameters; a namedCurve OID is the only form keys come in.
    if len(params) < 3 or params[0] != 0x06 or params[1] != len(params) - 2:
        raise KeyMaterialError("the token key's EC parameters are not a named curve", reason="pkcs11-unusable-key")
    oid = _decode_oid(params[2:])
    curve = _CURVE_BY_OID.get(oid)
    if curve is None:
        raise KeyMaterialError(f"the token key's curve {oid} is not allowed; use P-256, P-384 or P-521",
                               reason="pkcs11-unusable-key")
    return curve


def _decode_oid(body: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return ""
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _encode_oid(oid: str) -> bytes:
    arcs = [int(a) for a in oid.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return bytes([0x06, len(body)]) + bytes(body)


def _public_key_for(session: Any, uri: Pkcs11Uri, private: Any) -> PublicKey:
    """The public half of ``private``: from its own attributes (RSA) or its public-key object (EC)."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    with _mapped("reading the token key"):
        key_type = private[Attribute.KEY_TYPE]
        if key_type == KeyType.RSA:
            modulus = int.from_bytes(private[Attribute.MODULUS], "big")
            exponent = int.from_bytes(private[Attribute.PUBLIC_EXPONENT], "big")
            public: PublicKey = rsa.RSAPublicNumbers(exponent, modulus).public_key()
        elif key_type == KeyType.EC:
            params = private[Attribute.EC_PARAMS]
            match = _matching_public_object(session, uri, private, ObjectClass.PUBLIC_KEY)
            if match is None:
                raise KeyMaterialError(f"no public-key object with {uri.describe_object()} beside the private key: "
                                       "import the public key onto the token too", reason="pkcs11-object")
            public = _ec_public_key(params, match[Attribute.EC_POINT])
        else:
            raise KeyMaterialError(f"the token key is of type {getattr(key_type, 'name', key_type)}; imgseal signs "
                                   "with ECDSA (P-256/P-384/P-521) or RSA keys", reason="pkcs11-unusable-key")
    try:
        validate_key(public)
    except KeyMaterialError as e:
        raise KeyMaterialError(f"the token key is unusable: {e.message}", reason="pkcs11-unusable-key") from e
    return public


def _matching_public_object(session: Any, uri: Pkcs11Uri, private: Any, object_class: Any) -> Any | None:
    from pkcs11 import Attribute

    # Pair by CKA_ID (PKCS#11's own convention for the halves of a pair), else by label.
    key_id = private[Attribute.ID]
    attrs: dict[Any, Any] = {Attribute.CLASS: object_class}
    if key_id:
        attrs[Attribute.ID] = key_id
    else:
        attrs[Attribute.LABEL] = private[Attribute.LABEL]
    found = list(session.get_objects(attrs))
    return found[0] if len(found) == 1 else None


def token_public_key(uri: Pkcs11Uri, pin: PinSource | None) -> PublicKey:
    """The public key of the key ``uri`` names (for ``keys public`` and ``verify --key pkcs11:…``)."""
    _require_selector(uri)
    ts = open_session(uri, pin)
    try:
        return _public_key_for(ts.session, uri, _the_private_key(ts.session, uri))
    finally:
        ts.close()


# --- private keys ---------------------------------------------------------------------------


def _the_private_key(session: Any, uri: Pkcs11Uri) -> Any:
    from pkcs11 import ObjectClass

    if uri.type not in (None, "private"):
        raise UsageError(f"type={uri.type} names no private key; signing needs type=private (or no type=)",
                         reason="bad-key-ref")
    found = _select_objects(session, uri, ObjectClass.PRIVATE_KEY)
    if not found:
        raise KeyMaterialError(f"no private key with {uri.describe_object()} on PKCS#11 {uri.describe_token()}",
                               reason="pkcs11-object")
    if len(found) > 1:
        raise KeyMaterialError(f"{len(found)} private keys match {uri.describe_object()}; add id= to choose one",
                               reason="pkcs11-object")
    return found[0]


def _unextractable() -> NoReturn:
    raise KeyMaterialError("the private key stays on the PKCS#11 token and cannot be exported", reason="pkcs11-export")


def _digest(data: bytes | bytearray | memoryview, algorithm: Any) -> tuple[bytes, hashes.HashAlgorithm]:
    if isinstance(algorithm, utils.Prehashed):
        return bytes(data), algorithm._algorithm
    if not isinstance(algorithm, hashes.HashAlgorithm):
        raise KeyMaterialError("token keys sign with a hash algorithm", reason="pkcs11-unusable-key")
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """An ECDSA private key on a token: signs with ``CKM_ECDSA``, returns DER like cryptography does."""

    def __init__(self, handle: Any, public: ec.EllipticCurvePublicKey, uri: Pkcs11Uri, session: TokenSession) -> None:
        self._handle = handle
        self._public = public
        self.uri = uri
        self.session = session  # the handle is valid only while its session is open

    def close(self) -> None:
        self.session.close()

    def sign(self, data: bytes | bytearray | memoryview,
             signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        from pkcs11 import Mechanism

        if not isinstance(signature_algorithm, ec.ECDSA):
            raise KeyMaterialError("token EC keys sign ECDSA only", reason="pkcs11-unusable-key")
        digest, _ = _digest(data, signature_algorithm.algorithm)
        with _mapped("signing with the PKCS#11 key"):
            raw = bytes(self._handle.sign(digest, mechanism=Mechanism.ECDSA))
        size = (self._public.curve.key_size + 7) // 8
        if len(raw) != 2 * size:
            raise KeyMaterialError(f"the token returned a {len(raw)}-byte ECDSA signature, expected {2 * size}",
                                   reason="pkcs11")
        r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
        return utils.encode_dss_signature(r, s)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise KeyMaterialError("token keys here are for signing only", reason="pkcs11-unusable-key")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _unextractable()

    def private_bytes(self, encoding: serialization.Encoding, format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        _unextractable()

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenEcKey:
        return self


class TokenRsaKey(rsa.RSAPrivateKey):
    """An RSA private key on a token: PKCS#1 v1.5 with SHA-256 through ``CKM_RSA_PKCS``."""

    def __init__(self, handle: Any, public: rsa.RSAPublicKey, uri: Pkcs11Uri, session: TokenSession) -> None:
        self._handle = handle
        self._public = public
        self.uri = uri
        self.session = session  # the handle is valid only while its session is open

    def close(self) -> None:
        self.session.close()

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm: Any) -> bytes:
        from pkcs11 import Mechanism

        digest, hash_alg = _digest(data, algorithm)
        if not isinstance(padding_, padding.PKCS1v15) or not isinstance(hash_alg, hashes.SHA256):
            raise KeyMaterialError("token RSA keys sign PKCS#1 v1.5 with SHA-256 (cosign's scheme) only",
                                   reason="pkcs11-unusable-key")
        with _mapped("signing with the PKCS#11 key"):
            return bytes(self._handle.sign(_SHA256_DIGEST_INFO + digest, mechanism=Mechanism.RSA_PKCS))

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise KeyMaterialError("token keys here are for signing only", reason="pkcs11-unusable-key")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _unextractable()

    def private_bytes(self, encoding: serialization.Encoding, format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        _unextractable()

    def __copy__(self) -> TokenRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenRsaKey:
        return self


TokenKey = TokenEcKey | TokenRsaKey


def open_token_key(uri: Pkcs11Uri, pin: PinSource) -> TokenKey:
    """Log in and find the private key ``uri`` names, ready to sign; check it is of a usable type.

    The key keeps its session open (``close()`` ends it; process exit does too)."""
    _require_selector(uri)
    ts = open_session(uri, pin)
    try:
        handle = _the_private_key(ts.session, uri)
        public = _public_key_for(ts.session, uri, handle)
        key: TokenKey
        if isinstance(public, ec.EllipticCurvePublicKey):
            key = TokenEcKey(handle, public, uri, ts)
        elif isinstance(public, rsa.RSAPublicKey):
            key = TokenRsaKey(handle, public, uri, ts)
        else:  # pragma: no cover - _public_key_for admits only EC and RSA
            raise KeyMaterialError("unusable token key type", reason="pkcs11-unusable-key")
    except BaseException:
        ts.close()
        raise
    return key


# --- generation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedKey:
    public: PublicKey
    uri: Pkcs11Uri  # names the new pair: the given URI with the id= chosen, without any PIN


def generate_on_token(uri: Pkcs11Uri, kind: str, pin: PinSource) -> GeneratedKey:
    """Create a signing key pair of ``kind`` on the token; the private half is sensitive and
    unextractable. Refuses when an object with the same label or id already exists there."""
    from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

    if kind not in TOKEN_KEY_TYPES:
        raise UsageError(f"key type {kind!r} cannot be generated on a token; choose one of "
                         f"{', '.join(TOKEN_KEY_TYPES)}", reason="unknown-key-type")
    if uri.object is None:
        raise UsageError("keys generate --pkcs11 needs object=LABEL in the URI", reason="bad-key-ref")
    if uri.type not in (None, "private"):
        raise UsageError("keys generate --pkcs11 makes a private/public pair; drop type=", reason="bad-key-ref")
    ts = open_session(uri, pin, rw=True)
    try:
        session = ts.session
        for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            by_label = _select_objects(session, Pkcs11Uri(object=uri.object), object_class)
            by_id = _select_objects(session, Pkcs11Uri(id=uri.id), object_class) if uri.id is not None else []
            if by_label or by_id:
                raise UsageError(f"the token already holds a key with {uri.describe_object()}; refusing to add a "
                                 "second one (choose another object= / id=)", reason="file-exists")
        key_id = uri.id if uri.id is not None else secrets.token_bytes(8)
        private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True,
                            Attribute.TOKEN: True}
        capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
        with _mapped(f"generating a {kind} key on the token"):
            if kind.startswith("ecdsa-"):
                params = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: _encode_oid(_OID_BY_KIND[kind])}, local=True)
                _, private = params.generate_keypair(store=True, label=uri.object, id=key_id,
                                                     capabilities=capabilities, private_template=private_template)
            else:
                _, private = session.generate_keypair(KeyType.RSA, int(kind.removeprefix("rsa-")), store=True,
                                                      label=uri.object, id=key_id, capabilities=capabilities,
                                                      private_template=private_template)
        new_uri = Pkcs11Uri(token=uri.token, serial=uri.serial, slot_id=uri.slot_id, manufacturer=uri.manufacturer,
                            model=uri.model, object=uri.object, id=key_id, module_path=uri.module_path)
        public = _public_key_for(session, new_uri, private)
        return GeneratedKey(public, new_uri)
    finally:
        ts.close()

