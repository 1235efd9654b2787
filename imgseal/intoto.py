"""in-toto Statement v1: the model, strict parsing, subject matching, predicate type names.

Spec: in-toto/attestation ``spec/v1/statement.md``. A statement binds ``subject`` (artifacts
named by digest) to a typed ``predicate``; inside DSSE its payloadType is
``application/vnd.in-toto+json``. We read ``https://in-toto.io/Statement/v0.1`` too, because
cosign's legacy ``.att`` attestations still carry it, but we always write v1.

Parsing follows the in-toto parsing rules: unknown fields are ignored, and an unset, null or
empty ``predicate`` means the same thing (``{}``). Subjects match by digest only; the
subject name is informational (cosign v3 leaves it out entirely).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from imgseal.digest import Digest
from imgseal.errors import InvalidInputError, UsageError
from imgseal.manifest import strict_json_loads

STATEMENT_V1: Final = "https://in-toto.io/Statement/v1"
STATEMENT_V01: Final = "https://in-toto.io/Statement/v0.1"
#: DSSE payloadType of an in-toto statement.
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"

SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
SLSA_PROVENANCE_V02: Final = "https://slsa.dev/provenance/v0.2"
#: The statement cosign v3 signs for ``cosign sign`` (REFERENCE.md §4): predicate ``{}``.
COSIGN_SIGN_V1: Final = "https://sigstore.dev/cosign/sign/v1"

#: Short names accepted by ``--type``. Same meanings as cosign's ``options.PredicateTypeMap``
#: and ``pkg/cosign/attestation`` (``custom`` and ``vuln`` are cosign's own URIs;
#: ``slsaprovenance`` is v0.2 there, kept for compatibility).
PREDICATE_TYPE_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "slsaprovenance1": SLSA_PROVENANCE_V1,
        "slsaprovenance02": SLSA_PROVENANCE_V02,
        "slsaprovenance": SLSA_PROVENANCE_V02,
        "spdxjson": "https://spdx.dev/Document",
        "spdx": "https://spdx.dev/Document",
        "cyclonedx": "https://cyclonedx.org/bom",
        "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "openvex": "https://openvex.dev/ns",
        "link": "https://in-toto.io/Link/v1",
        "custom": "https://cosign.sigstore.dev/attestation/v1",
    }
)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_REASON = "invalid-statement"


def _frozen_digest(digest: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(digest))


@dataclass(frozen=True)
class Subject:
    """One statement subject: a name (may be empty) and a digest set ``{algorithm: hex}``."""

    name: str
    digest: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", _frozen_digest(self.digest))

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.digest.items()))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Subject):
            return NotImplemented
        return self.name == other.name and dict(self.digest) == dict(other.digest)

    def matches(self, digest: Digest) -> bool:
        """True when this subject's digest set has ``digest.algorithm`` with the same hex."""
        return self.digest.get(digest.algorithm) == digest.hex

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["digest"] = dict(self.digest)
        return out


@dataclass(frozen=True, eq=True)
class Statement:
    """An in-toto statement. ``statement_type`` records the ``_type`` that was read."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]
    statement_type: str = STATEMENT_V1

    __hash__ = None  # type: ignore[assignment]  # the predicate is a mutable JSON object

    @classmethod
    def from_bytes(cls, payload: bytes) -> Statement:
        """Parse statement JSON (the DSSE payload). Raises :class:`InvalidInputError`."""
        try:
            # Decode explicitly: json.loads(bytes) would also guess UTF-16/32.
            text = payload.decode("utf-8")
            obj = strict_json_loads(text, what="in-toto statement", reason=_REASON)
        except UnicodeDecodeError as exc:
            raise InvalidInputError("in-toto statement is not UTF-8 text", reason=_REASON) from exc
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"in-toto statement is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                reason=_REASON,
            ) from exc
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> Statement:
        """Build from decoded JSON, with the same checks as :meth:`from_bytes`."""
        if not isinstance(obj, Mapping):
            raise InvalidInputError("in-toto statement must be a JSON object", reason=_REASON)
        stype = obj.get("_type")
        if stype not in (STATEMENT_V1, STATEMENT_V01):
            shown = repr(stype)[:80] if stype is not None else "missing"
            raise InvalidInputError(
                f"unsupported in-toto statement _type {shown}"
                f" (expected {STATEMENT_V1!r} or {STATEMENT_V01!r})",
                reason=_REASON,
            )
        raw_subjects = obj.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise InvalidInputError("in-toto statement must have a non-empty subject list", reason=_REASON)
        subjects = tuple(_parse_subject(i, s) for i, s in enumerate(raw_subjects))
        predicate_type = obj.get("predicateType")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise InvalidInputError("in-toto statement predicateType must be a non-empty string", reason=_REASON)
        predicate = obj.get("predicate")
        if predicate is None:
            predicate = {}
        if not isinstance(predicate, Mapping):
            raise InvalidInputError(
                f"in-toto statement predicate must be a JSON object (predicateType {predicate_type!r})",
                reason=_REASON,
            )
        return cls(subjects, predicate_type, dict(predicate), stype)

    def to_dict(self) -> dict[str, Any]:
        """The statement as JSON-ready data (always written as ``_type`` v1)."""
        return {
            "_type": STATEMENT_V1,
            "subject": [s.to_dict() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON with sorted keys, so equal statements give equal bytes."""
        return json.dumps(
            self.to_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        ).encode("utf-8")

    def subject_matches(self, digest: Digest) -> bool:
        """True when any subject names ``digest`` (same algorithm, equal hex)."""
        return any(s.matches(digest) for s in self.subjects)

    def subject_digests(self) -> Iterator[str]:
        """Every ``alg:hex`` the subjects name, for error messages."""
        for s in self.subjects:
            for alg, hex_ in s.digest.items():
                yield f"{alg}:{hex_}"


def image_statement(name: str, digest: Digest, predicate_type: str, predicate: Mapping[str, Any]) -> Statement:
    """A statement about one image manifest. ``predicate_type`` may be a short alias."""
    return Statement(
        (Subject(name, {digest.algorithm: digest.hex}),),
        resolve_predicate_type(predicate_type),
        dict(predicate),
    )


def resolve_predicate_type(name_or_uri: str) -> str:
    """Map a short name (``slsaprovenance1``, ``cyclonedx`` …) to its URI; pass absolute URIs.

    Unknown short names raise :class:`UsageError` listing the known ones, so a typo such as
    ``slsaprovenence1`` never becomes a predicate type nobody will ever verify against.
    """
    if name_or_uri in PREDICATE_TYPE_ALIASES:
        return PREDICATE_TYPE_ALIASES[name_or_uri]
    if is_absolute_uri(name_or_uri):
        return name_or_uri
    known = ", ".join(sorted(PREDICATE_TYPE_ALIASES))
    raise UsageError(
        f"unknown predicate type {name_or_uri[:80]!r}: use an absolute URI or one of {known}",
        reason="unknown-predicate-type",
    )


def is_absolute_uri(text: str) -> bool:
    """RFC 3986 absolute URI: a scheme, ``:``, then something, with no whitespace."""
    scheme, sep, rest = text.partition(":")
    return bool(sep and rest and _SCHEME.fullmatch(scheme) and not any(c.isspace() for c in text))


def _parse_subject(index: int, raw: Any) -> Subject:
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"in-toto subject {index} must be a JSON object", reason=_REASON)
    name = raw.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise InvalidInputError(f"in-toto subject {index} name must be a string", reason=_REASON)
    digest = raw.get("digest")
    if not isinstance(digest, Mapping) or not digest:
        raise InvalidInputError(f"in-toto subject {index} must have a non-empty digest object", reason=_REASON)
    for alg, value in digest.items():
        if not isinstance(value, str) or not value:
            raise InvalidInputError(
                f"in-toto subject {index} digest {alg[:40]!r} must be a non-empty string", reason=_REASON
            )
    return Subject(name, digest)

