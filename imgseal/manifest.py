"""OCI and Docker manifests and indexes, parsed from the exact bytes (which are kept).

Media types (distribution-spec, image-spec): OCI image manifest and index, Docker
schema2 manifest and manifest list. Docker schema1 is refused: it has no stable digest
semantics (signed JWS bodies) and registries stopped serving it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from imgseal.digest import Digest
from imgseal.errors import Error, InvalidInputError, InvalidReferenceError, NotFoundError

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES: Final = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
EMPTY_MEDIA_TYPE: Final = "application/vnd.oci.empty.v1+json"
EMPTY_JSON: Final = b"{}"
# Registries (distribution 2.8 included) refuse manifests over 4 MiB (4 << 20).
MAX_MANIFEST_BYTES: Final = 4 << 20
MAX_JSON_DEPTH: Final = 64
REF_NAME_ANNOTATION: Final = "org.opencontainers.image.ref.name"


def load_json(raw: bytes, *, what: str, max_bytes: int = MAX_MANIFEST_BYTES) -> Any:
    """Parse JSON from untrusted bytes with size and depth bounds; errors are :class:`InvalidInputError`."""
    if len(raw) > max_bytes:
        raise InvalidInputError(f"{what} is {len(raw)} bytes, over the {max_bytes}-byte limit")
    check_json_depth(raw, what=what)
    try:
        return json.loads(raw)
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{what} is not valid UTF-8 JSON: {e.reason} at byte {e.start}") from e
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except (RecursionError, ValueError) as e:
        raise InvalidInputError(f"{what} is not valid JSON: {e}") from e


def strict_json_loads(text: str, *, what: str, reason: str) -> Any:
    """``json.loads`` refusing duplicate keys and the non-JSON constants NaN/Infinity.

    Two JSON parsers that disagree on duplicate keys can read two different documents from
    one signed payload; refuse the ambiguity outright.
    """

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InvalidInputError(f"{what} has a duplicate JSON key {key[:40]!r}", reason=reason)
            out[key] = value
        return out

    def no_constants(name: str) -> Any:
        raise InvalidInputError(f"{what} contains the non-JSON constant {name}", reason=reason)

    return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)


def check_json_depth(raw: bytes, *, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before handing it to the parser."""
    depth = 0
    in_string = False
    escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                raise InvalidInputError(f"{what} nests JSON deeper than {limit} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` as given to ``--platform``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(p and p.strip() == p and p.isascii() for p in parts):
            raise InvalidReferenceError(f"invalid platform {text[:64]!r}: expected os/arch[/variant], e.g. linux/amd64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_dict(cls, data: Any) -> Platform:
        if not isinstance(data, dict) or not isinstance(data.get("os"), str) or not isinstance(
            data.get("architecture"), str
        ):
            raise InvalidInputError("platform must be an object with string 'os' and 'architecture'")
        variant = data.get("variant")
        os_version = data.get("os.version")
        return cls(
            data["os"],
            data["architecture"],
            variant if isinstance(variant, str) else None,
            os_version if isinstance(os_version, str) else None,
        )

    def matches(self, wanted: Platform) -> bool:
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return wanted.variant is None or self.variant == wanted.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    artifact_type: str | None = None
    platform: Platform | None = None

    @classmethod
    def from_dict(cls, data: Any, *, what: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise InvalidInputError(f"{what} must be a JSON object")
        media_type = data.get("mediaType")
        digest = data.get("digest")
        size = data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidInputError(f"{what} has no mediaType")
        if not isinstance(digest, str):
            raise InvalidInputError(f"{what} has no digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"{what} has an invalid size {size!r}")
        try:
            parsed = Digest.parse(digest)
        except Error as e:
            raise InvalidInputError(f"{what}: {e.message}") from e
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidInputError(f"{what} has annotations that are not a string map")
        artifact_type = data.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise InvalidInputError(f"{what} has a non-string artifactType")
        platform = Platform.from_dict(data["platform"]) if data.get("platform") is not None else None
        return cls(media_type, parsed, size, dict(annotations), artifact_type, platform)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            p: dict[str, str] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            if self.platform.os_version:
                p["os.version"] = self.platform.os_version
            out["platform"] = p
        return out


EMPTY_DESCRIPTOR: Final = Descriptor(EMPTY_MEDIA_TYPE, Digest.of(EMPTY_JSON), len(EMPTY_JSON))


@dataclass(frozen=True)
class ImageManifest:
    """An OCI image manifest or Docker schema2 manifest (also an OCI artifact manifest form)."""

    raw: bytes
    media_type: str
    digest: Digest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def is_index(self) -> bool:
        return False

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


@dataclass(frozen=True)
class ImageIndex:
    """An OCI image index or Docker manifest list."""

    raw: bytes
    media_type: str
    digest: Digest
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def is_index(self) -> bool:
        return True

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))

    def select(self, platform: Platform) -> Descriptor:
        """The child manifest for ``platform`` (first match in index order)."""
        for child in self.manifests:
            if child.platform is not None and child.platform.matches(platform):
                return child
        available = ", ".join(str(c.platform) for c in self.manifests if c.platform) or "none"
        raise NotFoundError(f"no manifest for platform {platform} in index {self.digest} (available: {available})")


Manifest = ImageManifest | ImageIndex


def parse_manifest(raw: bytes, *, content_type: str | None = None, digest: Digest | None = None) -> Manifest:
    """Parse manifest bytes. ``digest`` defaults to the sha256 of ``raw`` (the caller checks it)."""
    data = load_json(raw, what="manifest")
    if not isinstance(data, dict):
        raise InvalidInputError("manifest is not a JSON object")
    schema = data.get("schemaVersion")
    if schema != 2:
        if schema == 1:
            raise InvalidInputError("Docker schema1 manifests are not supported (no stable digest); repush the image")
        raise InvalidInputError(f"manifest schemaVersion is {schema!r}, expected 2")
    media_type = data.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise InvalidInputError("manifest mediaType is not a string")
    header_type = (content_type or "").split(";")[0].strip() or None
    if media_type is None:
        # OCI allows omitting mediaType; fall back to the Content-Type, then to the shape.
        if header_type in MANIFEST_TYPES:
            media_type = header_type
        else:
            media_type = OCI_INDEX if "manifests" in data else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise InvalidInputError(f"unsupported manifest media type {media_type[:100]!r}")
    digest = digest or Digest.of(raw)
    subject = Descriptor.from_dict(data["subject"], what="manifest subject") if data.get("subject") else None
    artifact_type = data.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidInputError("manifest artifactType is not a string")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidInputError("manifest annotations are not an object")
    if media_type in INDEX_TYPES:
        children = data.get("manifests")
        if not isinstance(children, list):
            raise InvalidInputError("index has no 'manifests' list")
        descs = tuple(Descriptor.from_dict(c, what=f"index entry {i}") for i, c in enumerate(children))
        return ImageIndex(raw, media_type, digest, descs, subject, artifact_type, annotations)
    if "config" not in data:
        raise InvalidInputError("image manifest has no config descriptor")
    config = Descriptor.from_dict(data["config"], what="manifest config")
    layers_data = data.get("layers")
    if not isinstance(layers_data, list):
        raise InvalidInputError("image manifest has no 'layers' list")
    layers = tuple(Descriptor.from_dict(layer, what=f"layer {i}") for i, layer in enumerate(layers_data))
    return ImageManifest(raw, media_type, digest, config, layers, subject, artifact_type, annotations)


def canonical_json(obj: Any) -> bytes:
    """Compact JSON used for manifests we write (their bytes are then fixed by their digest)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def build_manifest(
    *,
    config: Descriptor,
    layers: list[Descriptor],
    subject: Descriptor | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """Serialise an OCI image manifest."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config.to_dict()
    doc["layers"] = [layer.to_dict() for layer in layers]
    if subject is not None:
        doc["subject"] = subject.to_dict()
    if annotations:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)


def build_index(manifests: list[Descriptor], *, annotations: Mapping[str, str] | None = None) -> bytes:
    """Serialise an OCI image index."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m.to_dict() for m in manifests]}
    if annotations:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)
