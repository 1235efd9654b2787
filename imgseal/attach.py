"""Attaching artifacts (signatures, attestations) beside an image, and discovering them.

Where things go (image-spec / distribution-spec v1.1, cosign's formats, REFERENCE.md §3–4):

- **Referrers API** (registries that have it, and OCI layouts): the artifact is a manifest
  whose ``subject`` is the image; it is pushed by digest and the registry indexes it.
- **Referrers tag schema** (distribution 2.8 has no referrers API): the tag
  ``sha256-<hex>`` holds an image index listing the referrers. Updating it is a
  read-modify-write that races: two concurrent writers can each drop the other's entry
  (cosign #2432). So every artifact is *also* pushed under its own tag
  ``sha256-<subject hex>.<artifact hex[:32]>.att`` before the shared index is touched, and
  readers list those tags too. A signature therefore stays discoverable even when the
  shared index loses it; the index is kept for interoperability with cosign and ORAS and
  is re-checked after each write.
- **cosign legacy tags** ``sha256-<hex>.sig`` / ``.att``: one image whose layers are the
  signatures (read and written; written with the same re-check after write).

Ordering: blobs first, then the manifest, then the tags/index that point at it. A run
killed at any step leaves either nothing visible or a complete artifact, never a
half-attached signature.

Registries as they are (docs/registries.md has the profile matrix):

- **no or a refusing referrers API** (404, 405, 406 …): the tag schema
  (:meth:`RegistryStore.referrers` decides; ``--referrers-mode`` overrides);
- **tag listing denied** (pull-only tokens on some clouds): discovery reads the
  ``sha256-<hex>`` index and the legacy tags only, and says so (:attr:`Discovery.notes`);
- **the referrers tag aliases the subject** (GitLab resolves ``sha256-<hex>`` to the
  manifest ``sha256:<hex>``, oras-go #1396): what comes back is the image, not an index:
  it is never read as referrers and never written over; the attachment tags carry
  discovery there;
- **OCI 1.1 artifact manifests refused** (AWS ECR: 405 UNSUPPORTED for ``subject`` /
  ``artifactType``, aws/containers-roadmap #2783): :class:`ArtifactManifestRefusedError`,
  on which signers fall back to the legacy format when no format was asked for;
- **fallback indexes without ``artifactType``/annotations** (cosign 3.0.x, cosign #4641):
  nothing is taken from an index entry but the digest; each manifest is fetched and judged
  by its own fields.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from imgseal.digest import Digest
from imgseal.errors import (
    ArtifactManifestRefusedError,
    AuthError,
    Error,
    InvalidInputError,
    NotFoundError,
    RegistryError,
    UndecidableError,
)
from imgseal.manifest import (
    EMPTY_DESCRIPTOR,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    build_index,
    build_manifest,
    canonical_json,
)
from imgseal.notice import notice
from imgseal.store.base import Store

log = logging.getLogger("imgseal.attach")

BUNDLE_V03: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLESIGNING: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE: Final = "application/vnd.dsse.envelope.v1+json"
NOTATION_SIGNATURE: Final = "application/vnd.cncf.notary.signature"
ATTACHMENT_TAG_SUFFIX: Final = ".att"
MAX_ATTACHMENTS: Final = 512
INDEX_WRITE_ATTEMPTS: Final = 8

# Discovery sources, reported by `imgseal tree`.
VIA_REFERRERS_API: Final = "referrers-api"
VIA_REFERRERS_TAG: Final = "referrers-tag-index"
VIA_ATTACHMENT_TAG: Final = "attachment-tag"
VIA_LEGACY_SIG: Final = "cosign-sig-tag"
VIA_LEGACY_ATT: Final = "cosign-att-tag"

_ATTACHMENT_TAG = re.compile(r"(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})\.([a-f0-9]{32})\.att")


@dataclass(frozen=True)
class Layer:
    """One blob to attach: bytes, media type and (layer) annotations."""

    data: bytes
    media_type: str
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Attachment:
    """An artifact found beside an image: the manifest holding it and how it was found."""

    manifest: ImageManifest
    found_via: str
    tag: str | None = None

    @property
    def digest(self) -> Digest:
        return self.manifest.digest

    @property
    def artifact_type(self) -> str:
        if self.manifest.artifact_type:
            return self.manifest.artifact_type
        if self.manifest.config.media_type not in (OCI_CONFIG, EMPTY_DESCRIPTOR.media_type):
            return self.manifest.config.media_type
        if self.manifest.layers:
            return self.manifest.layers[0].media_type
        return self.manifest.config.media_type


def referrers_tag(subject: Digest) -> str:
    return subject.tag_form


def attachment_tag(subject: Digest, artifact: Digest) -> str:
    return f"{subject.tag_form}.{artifact.hex[:32]}{ATTACHMENT_TAG_SUFFIX}"


def legacy_tag(subject: Digest, suffix: str) -> str:
    return f"{subject.tag_form}.{suffix}"


@dataclass
class Discovery:
    """What :func:`find_attachments` found, and what it could not look at (one line each)."""

    attachments: list[Attachment]
    notes: list[str] = field(default_factory=list)


# -- discovery ---------------------------------------------------------------------------


def discover(store: Store, subject: Digest, *, artifact_type: str | None = None,
             include_legacy: bool = True, limit: int = MAX_ATTACHMENTS) -> list[Attachment]:
    """Every artifact attached to ``subject`` (see :func:`find_attachments`)."""
    return find_attachments(store, subject, artifact_type=artifact_type, include_legacy=include_legacy,
                            limit=limit).attachments


def find_attachments(store: Store, subject: Digest, *, artifact_type: str | None = None,
                     include_legacy: bool = True, limit: int = MAX_ATTACHMENTS) -> Discovery:
    """Every artifact attached to ``subject``: referrers (API or tag schema and attachment tags), then legacy tags.

    Each returned manifest was fetched by digest (bytes checked) and names ``subject`` as
    its subject — except legacy cosign images, which have no subject and are found by tag.
    More than ``limit`` candidates is refused (a flooding attacker must not make
    verification unbounded). Sources that could not be read (tag listing denied, a
    referrers tag that aliases the image) are named in :attr:`Discovery.notes`; they are
    also logged (``--debug``).
    """
    found: dict[Digest, Attachment] = {}
    notes: list[str] = []

    def add(desc_digest: Digest, via: str, tag: str | None = None, manifest: ImageManifest | None = None) -> None:
        if desc_digest in found:
            return
        if len(found) >= limit:
            raise InvalidInputError(f"more than {limit} artifacts attached to {subject}: refusing to examine more",
                                    reason="too-many-attachments")
        try:
            fetched = manifest or store.get_manifest(desc_digest)
        except NotFoundError:
            return  # listed but gone (deleted, or a run killed before its manifest landed)
        if not isinstance(fetched, ImageManifest):
            return
        if fetched.subject is None or fetched.subject.digest != subject:
            return  # not about this image: never let a listing point us at another image's artifact
        if artifact_type is not None and Attachment(fetched, via).artifact_type != artifact_type:
            return
        found[desc_digest] = Attachment(fetched, via, tag)

    native = store.referrers(subject)
    if native is not None:
        for desc in native:
            add(desc.digest, VIA_REFERRERS_API)
        if not native:
            # An empty answer may come from a registry that answers /referrers without indexing
            # anything (sigstore-js #1187; imgseal then also writes the tag schema, see
            # _store_referrer), or one that gained the API after clients wrote fallback
            # indexes: one GET of the sha256-<hex> index covers both.
            for desc in _read_referrers_index(store, subject) or []:
                add(desc.digest, VIA_REFERRERS_TAG)
    else:
        index = _read_referrers_index(store, subject)
        if index is None:
            notes.append(_alias_note(store, subject))
        for desc in index or []:
            add(desc.digest, VIA_REFERRERS_TAG)
        known_prefixes = {d.hex[:32] for d in found}
        prefix = subject.tag_form + "."
        try:
            tags = store.list_tags()
        except AuthError as e:
            # Pull-only tokens on some registries may read manifests but not list tags: the
            # shared index and the legacy tags are read by name; the attachment tags are not.
            tags = []
            notes.append(f"tag listing denied by {store.location} ({e.http_status or 'auth'}): read only the "
                         f"referrers index {referrers_tag(subject)} and cosign's legacy tags, not imgseal's "
                         "per-artifact tags")
        for tag in tags:
            m = _ATTACHMENT_TAG.fullmatch(tag)
            if not tag.startswith(prefix) or m is None or m.group(3) in known_prefixes:
                continue
            try:
                manifest = store.get_manifest(tag)
            except NotFoundError:
                continue
            if isinstance(manifest, ImageManifest) and manifest.digest.hex.startswith(m.group(3)):
                add(manifest.digest, VIA_ATTACHMENT_TAG, tag, manifest)
    if include_legacy:
        for suffix, via in (("sig", VIA_LEGACY_SIG), ("att", VIA_LEGACY_ATT)):
            legacy = _get_optional(store, legacy_tag(subject, suffix))
            if isinstance(legacy, ImageManifest) and legacy.digest not in found:
                if len(legacy.layers) > limit:
                    raise InvalidInputError(f"{legacy_tag(subject, suffix)} holds {len(legacy.layers)} layers, over "
                                            f"the limit of {limit}", reason="too-many-attachments")
                found[legacy.digest] = Attachment(legacy, via, legacy_tag(subject, suffix))
    for note in notes:
        log.debug("discovery of %s: %s", subject, note)
    return Discovery(list(found.values()), notes)


def _get_optional(store: Store, tag: str) -> ImageManifest | ImageIndex | None:
    try:
        return store.get_manifest(tag)
    except NotFoundError:
        return None


@dataclass(frozen=True)
class FallbackIndex:
    """What the tag ``sha256-<hex>`` holds: an index (with its digest), nothing, or the subject itself."""

    tag: str
    index: ImageIndex | None
    resolves_to_subject: bool = False

    @property
    def entries(self) -> list[Descriptor]:
        return list(self.index.manifests) if self.index is not None else []


def read_fallback_index(store: Store, subject: Digest) -> FallbackIndex:
    """Read the fallback index, recognising a registry that answers the tag with the subject itself.

    GitLab's registry resolves the tag ``sha256-<hex>`` to the manifest ``sha256:<hex>``
    (oras-go #1396): the "index" is then the subject, and for a multi-arch subject its
    children would look like referrers. That is reported, never read as an index.
    """
    tag = referrers_tag(subject)
    try:
        found = store.get_manifest(tag)
    except NotFoundError:
        return FallbackIndex(tag, None)
    if found.digest == subject:
        return FallbackIndex(tag, None, resolves_to_subject=True)
    if not isinstance(found, ImageIndex):
        raise InvalidInputError(f"tag {tag} in {store.location} holds an image manifest, not an index: "
                                "refusing to touch it", reason="not-an-index")
    return FallbackIndex(tag, found)


def _read_referrers_index(store: Store, subject: Digest) -> list[Descriptor] | None:
    """The entries of the ``sha256-<hex>`` index; ``[]`` when there is none; None when the tag aliases the subject."""
    found = read_fallback_index(store, subject)
    return None if found.resolves_to_subject else found.entries


def _alias_note(store: Store, subject: Digest) -> str:
    return (f"{store.location} answers the tag {referrers_tag(subject)} with the image {subject} itself (it reads "
            "the tag as a digest): there is no referrers index there; imgseal's per-artifact tags carry discovery")


# -- attaching ---------------------------------------------------------------------------


def attach(
    store: Store,
    subject: Descriptor,
    *,
    artifact_type: str,
    layers: Sequence[Layer],
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Attach an artifact manifest (empty config, ``layers``, ``subject``) to the image ``subject``.

    Returns the descriptor of the artifact manifest. Safe under concurrent writers: see the
    module docstring.
    """
    store.put_blob(EMPTY_JSON, EMPTY_DESCRIPTOR.digest)
    layer_descs = []
    for layer in layers:
        digest = store.put_blob(layer.data)
        layer_descs.append(Descriptor(layer.media_type, digest, len(layer.data), dict(layer.annotations)))
    subject_desc = Descriptor(subject.media_type, subject.digest, subject.size)
    raw = build_manifest(config=EMPTY_DESCRIPTOR, layers=layer_descs, subject=subject_desc,
                         artifact_type=artifact_type, annotations=annotations)
    digest = Digest.of(raw)
    desc = Descriptor(OCI_MANIFEST, digest, len(raw), dict(annotations or {}), artifact_type)
    _store_referrer(store, subject.digest, raw, OCI_MANIFEST, desc)
    return desc


def _store_referrer(store: Store, subject: Digest, raw: bytes, media_type: str, desc: Descriptor) -> None:
    """Push a referrer manifest: by digest where the referrers API lists it, else under the tag schema.

    After a push through the API the listing is read back: some registries answer 200 on
    ``/referrers`` without indexing what is pushed (sigstore-js #1187), and a signature the
    API never lists would be signed but never found. The tag schema is then written too,
    and :func:`find_attachments` reads the ``sha256-<hex>`` index where the API lists nothing.
    """
    if store.referrers(subject) is not None:
        put_artifact_manifest(store, raw, media_type)
        listed = store.referrers(subject)
        if listed is None or desc.digest in {d.digest for d in listed}:
            return
        notice(f"the referrers API of {store.location} does not list {desc.digest} just pushed with its subject "
               "(as sigstore-js #1187 saw): wrote the referrers tag schema too, which imgseal reads where the API "
               "lists nothing")
    # Tag schema: the artifact's own tag first (this alone keeps it discoverable), then the shared index.
    put_artifact_manifest(store, raw, media_type, tag=attachment_tag(subject, desc.digest))
    update_referrers_index(store, subject, add=[desc])


# Answers to a manifest PUT that are about the registry, not the request being malformed or racing.
_NOT_A_REFUSAL: Final = frozenset({401, 403, 429})
_TRANSIENT_CODES: Final = frozenset({"DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"})


def put_artifact_manifest(store: Store, raw: bytes, media_type: str, *, tag: str | None = None) -> Digest:
    """PUT an OCI 1.1 artifact manifest; a registry's refusal of the format is :class:`ArtifactManifestRefusedError`.

    Registries without OCI 1.1 support refuse ``subject``/``artifactType``/empty-config
    manifests with a 4xx: AWS ECR 405 UNSUPPORTED (aws/containers-roadmap #2783), others 400
    MANIFEST_INVALID or 415, Docker Hub once 404 (docker/hub-feedback #2307). The caller
    decides whether cosign's legacy format is an acceptable substitute.
    """
    try:
        return store.put_manifest(raw, media_type, tag=tag)
    except UndecidableError as e:
        status = e.http_status
        code = getattr(e, "registry_code", None)
        if status is None or not 400 <= status < 500 or status in _NOT_A_REFUSAL or code in _TRANSIENT_CODES:
            raise
        summary = f"{store.location} refuses OCI 1.1 artifact manifests (HTTP {status}{' ' + code if code else ''})"
        refused = ArtifactManifestRefusedError(f"{summary}: {e.message}", reason="artifact-manifest-refused")
        refused.http_status, refused.registry_code, refused.summary = status, code, summary
        raise refused from e


def update_referrers_index(store: Store, subject: Digest, *, add: Sequence[Descriptor] = (),
                           remove: Sequence[Digest] = ()) -> None:
    """Read-modify-write the ``sha256-<hex>`` index, re-reading after each write to catch a lost update.

    The attachment tags make this best effort for discovery, but cosign and ORAS read only
    the index, so we try hard to keep it complete.
    """
    tag = referrers_tag(subject)
    removed = set(remove)
    for attempt in range(INDEX_WRITE_ATTEMPTS):
        current = _read_referrers_index(store, subject)
        if current is None:
            # The tag aliases the image (GitLab, oras-go #1396): a PUT there would be read as a
            # write to the image's own digest. Never write it; the attachment tags suffice.
            notice(_alias_note(store, subject).replace("there is no referrers index there", "the shared index "
                                                       "is not written (cosign and ORAS read only that index)"))
            return
        have = {d.digest for d in current}
        merged = [d for d in current if d.digest not in removed] + [d for d in add if d.digest not in have]
        if len(merged) != len(current) or any(d.digest in removed for d in current):
            store.put_manifest(build_index(merged), OCI_INDEX, tag=tag)
        check = {d.digest for d in _read_referrers_index(store, subject) or []}
        if all(d.digest in check for d in add) and not (check & removed):
            return
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    # Every artifact still has its own tag, so nothing is lost; only the shared index is stale.


def detach(store: Store, subject: Digest, attachment: Attachment) -> bool:
    """Remove an attached artifact (used by ``--replace``); False when the registry would not delete it.

    On the tag schema the artifact leaves the shared index first. The manifest itself (and so
    its attachment tag, or its referrers-API entry) goes only if the registry accepts DELETE:
    some answer 405 (distribution without ``storage.delete``, several clouds), and then the
    artifact stays discoverable, so the caller must not claim it was removed.
    """
    if attachment.found_via in (VIA_LEGACY_SIG, VIA_LEGACY_ATT):
        raise RegistryError("legacy cosign attachments are removed layer by layer, not whole")
    if store.referrers(subject) is None:
        update_referrers_index(store, subject, remove=[attachment.digest])
    try:
        store.delete_manifest(attachment.digest)
    except Error as e:
        notice(f"{store.location} would not delete {attachment.digest} ({e.one_line()}): it stays attached")
        return False
    return True


def attach_legacy(store: Store, subject: Digest, *, suffix: str, layer: Layer) -> Digest:
    """Append ``layer`` to cosign's ``sha256-<hex>.<suffix>`` image (``sig`` or ``att``).

    The tag's image is read, extended and written back (cosign's own read-modify-write);
    we re-read after writing and merge again if a concurrent writer replaced it.
    """
    tag = legacy_tag(subject, suffix)
    layer_digest = store.put_blob(layer.data)
    new = Descriptor(layer.media_type, layer_digest, len(layer.data), dict(layer.annotations))
    for attempt in range(INDEX_WRITE_ATTEMPTS):
        existing = _get_optional(store, tag)
        layers: list[Descriptor] = []
        if isinstance(existing, ImageManifest):
            layers = list(existing.layers)
        elif existing is not None:
            raise InvalidInputError(f"tag {tag} does not hold an image manifest")
        if not any(_same_layer(d, new) for d in layers):
            layers.append(new)
            config = _legacy_config(layers)
            config_digest = store.put_blob(config)
            raw = build_manifest(config=Descriptor(OCI_CONFIG, config_digest, len(config)), layers=layers)
            store.put_manifest(raw, OCI_MANIFEST, tag=tag)
        check = _get_optional(store, tag)
        if isinstance(check, ImageManifest) and any(_same_layer(d, new) for d in check.layers):
            return check.digest
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise RegistryError(f"could not append to {tag}: concurrent writers kept replacing it")


def _same_layer(a: Descriptor, b: Descriptor) -> bool:
    return a.digest == b.digest and dict(a.annotations) == dict(b.annotations)


def _legacy_config(layers: Sequence[Descriptor]) -> bytes:
    # cosign writes a minimal image config whose rootfs lists the layer digests.
    doc = {
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
    }
    return canonical_json(doc)




def is_signature(att: Attachment) -> bool:
    """Signatures (cosign bundles of the sign predicate, legacy .sig, notation) vs attestations."""
    if att.found_via == VIA_LEGACY_SIG or att.artifact_type == NOTATION_SIGNATURE:
        return True
    predicate = att.manifest.annotations.get("dev.sigstore.bundle.predicateType")
    return att.artifact_type == BUNDLE_V03 and predicate in (None, "https://sigstore.dev/cosign/sign/v1")


def copy_attachment(src: Store, dst: Store, subject: Descriptor, att: Attachment) -> None:
    """Copy an attached artifact with its exact bytes (digests preserved), blobs first."""
    for blob in (att.manifest.config, *att.manifest.layers):
        if not dst.has_blob(blob.digest):
            dst.put_blob(src.get_blob(blob, max_bytes=64 << 20), blob.digest)
    raw = att.manifest.raw
    if att.found_via in (VIA_LEGACY_SIG, VIA_LEGACY_ATT):
        assert att.tag is not None
        existing = _get_optional(dst, att.tag)
        if isinstance(existing, ImageManifest) and existing.digest != att.manifest.digest:
            for layer in att.manifest.layers:
                attach_legacy(dst, subject.digest, suffix=att.tag.rsplit(".", 1)[1],
                              layer=Layer(src.get_blob(layer, max_bytes=64 << 20), layer.media_type,
                                          dict(layer.annotations)))
            return
        dst.put_manifest(raw, att.manifest.media_type, tag=att.tag)
        return
    desc = Descriptor(att.manifest.media_type, att.manifest.digest, len(raw), dict(att.manifest.annotations),
                      att.artifact_type)
    _store_referrer(dst, subject.digest, raw, att.manifest.media_type, desc)
