"""PKCS#11 URIs (RFC 7512) naming a key on a token, in the form cosign's ``--key`` takes.

``pkcs11:token=NAME;object=LABEL;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234``

* The path part (``;``-separated) selects the token and the object; the query part
  (``&``-separated) carries the module and the PIN (RFC 7512 §2.3).
* Values are percent-decoded (§2.3: ``id`` is raw bytes, every other value UTF-8 text); ``id``
  is kept as bytes because CKA_ID is a byte string (``id=%01%02``).
* Attributes RFC 7512 defines but imgseal cannot honour are refused, not ignored: a selector
  that is silently dropped could pick another key than the one meant. Vendor attributes
  (``x-…``, §2.3) are ignored, as the RFC asks.

Parsing only: nothing here loads a module, so it is cheap to import anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from imgseal.errors import UsageError

SCHEME: Final = "pkcs11:"
MODULE_ENV: Final = "IMGSEAL_PKCS11_MODULE"
PIN_ENV: Final = "IMGSEAL_PKCS11_PIN"

_PATH_ATTRS: Final = frozenset({"token", "object", "id", "type", "serial", "manufacturer", "model", "slot-id"})
_QUERY_ATTRS: Final = frozenset({"module-path", "pin-value"})
# Defined by RFC 7512 but not supported here; refusing them is safer than ignoring a selector.
_UNSUPPORTED: Final = frozenset({"library-manufacturer", "library-description", "library-version",
                                 "slot-description", "slot-manufacturer", "module-name", "pin-source"})
_OBJECT_TYPES: Final = frozenset({"private", "public", "cert", "secret-key", "data"})
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def is_pkcs11_uri(ref: str) -> bool:
    """True when ``ref`` is a PKCS#11 URI rather than a file path (the scheme is case-insensitive)."""
    return ref[: len(SCHEME)].lower() == SCHEME


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a PKCS#11 URI imgseal uses. ``pin_value`` never appears in :meth:`redacted`."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    slot_id: int | None = None
    module_path: str | None = None
    pin_value: str | None = field(default=None, repr=False)

    def redacted(self) -> str:
        """The URI to show in messages: the PIN, if any, is left out."""
        return format_uri(replace(self, pin_value=None))

    def describe_object(self) -> str:
        parts = []
        if self.object is not None:
            parts.append(f"label {self.object!r}")
        if self.id is not None:
            parts.append(f"id {self.id.hex()}")
        return " and ".join(parts) or "(no object selector)"

    def describe_token(self) -> str:
        if self.token is not None:
            return f"token {self.token!r}"
        if self.serial is not None:
            return f"token with serial {self.serial!r}"
        if self.slot_id is not None:
            return f"token in slot {self.slot_id}"
        return "token"


def _decode(raw: str, name: str, uri_for_errors: str) -> bytes:
    if _PCT.search(raw):
        raise UsageError(f"malformed percent-encoding in {name}= of PKCS#11 URI {uri_for_errors}", reason="bad-key-ref")
    return unquote_to_bytes(raw)


def _text(raw: bytes, name: str, uri_for_errors: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{name}= of PKCS#11 URI {uri_for_errors} is not UTF-8", reason="bad-key-ref") from None


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse ``text`` strictly; every problem is a one-line :class:`UsageError` (the PIN never in it)."""
    if not is_pkcs11_uri(text):
        raise UsageError("not a PKCS#11 URI (it must start with pkcs11:)", reason="bad-key-ref")
    body = text[len(SCHEME):]
    path, _, query = body.partition("?")
    shown = SCHEME + path  # the query may hold a PIN: messages show the path part only
    values: dict[str, bytes] = {}
    for part, seps, allowed in ((path, ";", _PATH_ATTRS), (query, "&", _QUERY_ATTRS)):
        if not part:
            continue
        for item in part.split(seps):
            name, eq, raw = item.partition("=")
            name = name.strip().lower()
            if not item:
                continue
            if not eq or not name:
                raise UsageError(f"malformed attribute {name or item[:20]!r} in PKCS#11 URI {shown}",
                                 reason="bad-key-ref")
            if name.startswith("x-"):
                continue  # vendor-specific (RFC 7512 §2.3): ignored
            if name in _UNSUPPORTED:
                raise UsageError(f"PKCS#11 URI attribute {name}= is not supported", reason="bad-key-ref",
                                 hint=f"name the module with module-path= or {MODULE_ENV}, the PIN with {PIN_ENV}"
                                 if name in ("module-name", "pin-source") else None)
            if name not in allowed:
                where = "path" if seps == ";" else "query"
                raise UsageError(f"unknown {where} attribute {name}= in PKCS#11 URI {shown}", reason="bad-key-ref")
            if name in values:
                raise UsageError(f"PKCS#11 URI repeats {name}=", reason="bad-key-ref")
            values[name] = _decode(raw, name, shown)
    def text_of(name: str) -> str | None:
        return _text(values[name], name, shown) if name in values else None

    slot_text = text_of("slot-id")
    slot_id = None
    if slot_text is not None:
        if not slot_text.isdigit():
            raise UsageError(f"slot-id= of PKCS#11 URI {shown} is not a number", reason="bad-key-ref")
        slot_id = int(slot_text)
    object_type = text_of("type")
    if object_type is not None and object_type not in _OBJECT_TYPES:
        raise UsageError(f"type={object_type!r} in PKCS#11 URI {shown} is not one of "
                         f"{', '.join(sorted(_OBJECT_TYPES))}", reason="bad-key-ref")
    return Pkcs11Uri(token=text_of("token"), object=text_of("object"), id=values.get("id"), type=object_type,
                     serial=text_of("serial"), manufacturer=text_of("manufacturer"), model=text_of("model"),
                     slot_id=slot_id, module_path=text_of("module-path"), pin_value=text_of("pin-value"))


def format_uri(uri: Pkcs11Uri) -> str:
    """The canonical text of ``uri`` (RFC 7512 percent-encoding; ``id`` encoded byte by byte)."""
    def enc(value: str) -> str:
        return quote(value, safe="")

    path: list[str] = []
    for name, value in (("token", uri.token), ("manufacturer", uri.manufacturer), ("model", uri.model),
                        ("serial", uri.serial), ("object", uri.object)):
        if value is not None:
            path.append(f"{name}={enc(value)}")
    if uri.id is not None:
        path.append("id=" + "".join(f"%{b:02x}" for b in uri.id))
    if uri.type is not None:
        path.append(f"type={uri.type}")
    if uri.slot_id is not None:
        path.append(f"slot-id={uri.slot_id}")
    query: list[str] = []
    if uri.module_path is not None:
        query.append(f"module-path={quote(uri.module_path, safe='/')}")
    if uri.pin_value is not None:
        query.append(f"pin-value={enc(uri.pin_value)}")
    return SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")
