"""Looking after what is attached to a digest: ``imgseal repair`` and ``imgseal clean``.

**repair** rebuilds the referrers tag schema's fallback index (the tag ``sha256-<hex>``,
distribution-spec v1.1 "Referrers Tag Schema") from what can be found: the index's own
entries and imgseal's per-artifact tags ``sha256-<subject>.<artifact[:32]>.att`` (see
:mod:`imgseal.attach` for why those exist). Each entry is rebuilt from the manifest it names,
fetched by digest: ``artifactType`` and ``annotations`` are copied from it, as the spec asks
of the index ("the descriptor MUST include the artifactType … annotations from the image
manifest"). cosign 3.0.x wrote entries without them (sigstore/cosign #4641, fixed only for
new writes), and a reader that filters by artifact type then sees nothing. Entries whose
manifest is gone or names another subject are dropped: a fallback index is only a hint, but
a stale one costs every reader a fetch and can be made to point anywhere.

**clean** removes what is attached (cosign ``clean``): referrers found through the API, the
fallback index's entries, imgseal's attachment tags and cosign's legacy ``.sig``/``.att``
tags. Only artifacts that name this digest as their ``subject`` are deleted (legacy tags are
named after the digest); whatever a registry refuses to delete is reported, not hidden
(distribution deletes only with ``storage.delete.enabled``, i.e.
``REGISTRY_STORAGE_DELETE_ENABLED=true``, and answers ``405 UNSUPPORTED`` otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from imgseal import attach
from imgseal.digest import Digest
from imgseal.errors import (
    AuthError,
    DigestMismatchError,
    Error,
    InvalidInputError,
    NotFoundError,
    RegistryError,
)
from imgseal.manifest import OCI_INDEX, Descriptor, ImageManifest, build_index
from imgseal.store.base import Store

KIND_SIGNATURE: Final = "signature"
KIND_ATTESTATION: Final = "attestation"
KIND_OTHER: Final = "other"
# Attestation carriers: Sigstore bundles of a predicate other than cosign's sign predicate,
# bare DSSE envelopes (ORAS/in-toto attach) and in-toto JSON.
_ATTESTATION_TYPES: Final = frozenset({attach.BUNDLE_V03, attach.DSSE_ENVELOPE, "application/vnd.in-toto+json"})
REPAIR_ATTEMPTS: Final = 5
_HEX32: Final = re.compile(r"[a-f0-9]{32}")


def kind_of(att: attach.Attachment) -> str:
    """``signature``, ``attestation`` or ``other`` (an SBOM pushed with ORAS, say), for ``clean --type``."""
    if attach.is_signature(att):
        return KIND_SIGNATURE
    if att.found_via == attach.VIA_LEGACY_ATT or att.artifact_type in _ATTESTATION_TYPES:
        return KIND_ATTESTATION
    return KIND_OTHER


def attachment_tags(store: Store, subject: Digest, notes: list[str]) -> list[str] | None:
    """imgseal's per-artifact tags for ``subject``, or None when the registry will not list tags."""
    prefix = subject.tag_form + "."
    try:
        tags = store.list_tags()
    except AuthError as e:
        # Pull-only tokens on some registries deny the listing; the index and legacy tags still work.
        notes.append(f"tag listing denied ({e.one_line()}): only the index and the legacy tags were examined")
        return None
    out = []
    for tag in tags:
        middle = tag[len(prefix):-len(attach.ATTACHMENT_TAG_SUFFIX)]
        if tag.startswith(prefix) and tag.endswith(attach.ATTACHMENT_TAG_SUFFIX) and _HEX32.fullmatch(middle):
            out.append(tag)
    return out


# -- repair ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between the fallback index as found and as rebuilt."""

    action: str  # "add", "fill", "drop"
    digest: str
    detail: str


@dataclass
class RepairReport:
    subject: Digest
    tag: str
    changes: list[Change] = field(default_factory=list)
    entries: int = 0
    written: bool = False
    notes: list[str] = field(default_factory=list)
    index_found: bool = False


def repair_index(store: Store, subject: Digest, *, dry_run: bool = False) -> RepairReport:
    """Rebuild ``subject``'s fallback index from its entries and attachment tags; write it unless ``dry_run``.

    The index is a read-modify-write (cosign #2432): if it changed between our read and our
    write, the repair starts again from the new state, up to :data:`REPAIR_ATTEMPTS` times.
    """
    for _ in range(REPAIR_ATTEMPTS):
        report = RepairReport(subject, attach.referrers_tag(subject))
        current = attach.read_fallback_index(store, subject)
        if current.resolves_to_subject:
            report.notes.append(f"the registry answers the tag {current.tag} with the image itself (as GitLab's "
                                "does, oras-go #1396): it holds no fallback index there")
        report.index_found = current.index is not None
        entries = _rebuilt_entries(store, subject, current, report)
        report.entries = len(entries)
        if not report.changes:
            return report
        if current.resolves_to_subject:
            raise RegistryError(f"{store.location} answers the tag {current.tag} with the image itself, so a fallback "
                                "index written there could not be read back; nothing was written",
                                hint="use a registry with the referrers API, or keep the attachment tags only",
                                reason="index-tag-shadowed")
        if dry_run:
            return report
        again = attach.read_fallback_index(store, subject)
        before = current.index.digest if current.index is not None else None
        after = again.index.digest if again.index is not None else None
        if before != after:
            continue  # a concurrent writer changed the index: rebuild from what it wrote
        store.put_manifest(build_index(entries), OCI_INDEX, tag=current.tag)
        report.written = True
        return report
    raise RegistryError(f"the fallback index {attach.referrers_tag(subject)} kept changing under concurrent writers; "
                        "nothing was written", reason="index-contended")


def _rebuilt_entries(store: Store, subject: Digest, current: attach.FallbackIndex,
                     report: RepairReport) -> list[Descriptor]:
    old: dict[Digest, Descriptor] = {}
    for desc in current.entries:
        old.setdefault(desc.digest, desc)
    found_by_tag: dict[Digest, str] = {}
    for tag in attachment_tags(store, subject, report.notes) or []:
        try:
            manifest = store.get_manifest(tag)
        except NotFoundError:
            continue
        # The tag names the first 32 hex digits of the artifact it holds; anything else is not ours.
        if attach.attachment_tag(subject, manifest.digest) == tag and manifest.digest not in old:
            found_by_tag.setdefault(manifest.digest, tag)
    rebuilt: list[Descriptor] = []
    for digest in [*old, *found_by_tag]:
        entry = old.get(digest)
        built, why = _entry_for(store, subject, digest)
        if built is None:
            report.changes.append(Change("drop", str(digest), why))
            continue
        rebuilt.append(built)
        if entry is None:
            report.changes.append(Change("add", str(digest), f"found by its tag {found_by_tag[digest]}"))
        elif built.to_dict() != entry.to_dict():
            report.changes.append(Change("fill", str(digest), _difference(entry, built)))
    return rebuilt


def _entry_for(store: Store, subject: Digest, digest: Digest) -> tuple[Descriptor | None, str]:
    """The index entry for the artifact ``digest``, built from its manifest, or None and why it is dropped."""
    try:
        manifest = store.get_manifest(digest)
    except NotFoundError:
        return None, "its manifest is gone"
    except DigestMismatchError:
        return None, "the registry's bytes do not match its digest"
    if not isinstance(manifest, ImageManifest):
        return None, "it is an index, not an artifact manifest"
    if manifest.subject is None:
        return None, "its manifest has no subject"
    if manifest.subject.digest != subject:
        return None, f"its manifest names another subject ({manifest.subject.digest})"
    artifact_type = attach.Attachment(manifest, attach.VIA_REFERRERS_TAG).artifact_type
    return Descriptor(manifest.media_type, digest, len(manifest.raw), dict(manifest.annotations), artifact_type), ""


def _difference(old: Descriptor, new: Descriptor) -> str:
    parts = []
    if old.artifact_type != new.artifact_type:
        parts.append(f"artifactType {new.artifact_type}")
    if dict(old.annotations) != dict(new.annotations):
        parts.append(f"{len(new.annotations)} annotation(s) from its manifest")
    if old.media_type != new.media_type or old.size != new.size:
        parts.append(f"mediaType/size {new.media_type} {new.size}")
    return "set " + ", ".join(parts) if parts else "rewritten"


# -- clean -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One thing ``clean`` would delete: an artifact manifest (by digest) and where it was found."""

    digest: Digest
    kind: str
    found_via: tuple[str, ...]
    tag: str | None = None
    artifact_type: str = ""


@dataclass
class CleanPlan:
    subject: Digest
    targets: list[Target] = field(default_factory=list)
    index: attach.FallbackIndex | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    target: Target
    removed: bool
    detail: str = ""


def plan_clean(store: Store, subject: Digest, kinds: Iterable[str]) -> CleanPlan:
    """Everything attached to ``subject`` of the given kinds, from every place attachments live.

    Unlike discovery, which reads the referrers API *or* the tag schema, cleaning looks in all
    of them: a registry upgraded to the referrers API may still hold an older fallback index
    and attachment tags.
    """
    wanted = set(kinds)
    plan = CleanPlan(subject)
    sources: dict[Digest, list[str]] = {}
    tags: dict[Digest, str] = {}
    manifests: dict[Digest, ImageManifest] = {}

    def consider(digest: Digest, via: str, manifest: ImageManifest | None = None, tag: str | None = None) -> None:
        if digest not in manifests:
            if len(manifests) >= attach.MAX_ATTACHMENTS:
                raise InvalidInputError(f"more than {attach.MAX_ATTACHMENTS} artifacts attached to {subject}: "
                                        "refusing to examine more", reason="too-many-attachments")
            if manifest is None:
                try:
                    fetched = store.get_manifest(digest)
                except (NotFoundError, DigestMismatchError):
                    return
                if not isinstance(fetched, ImageManifest):
                    return
                manifest = fetched
            if manifest.subject is None or manifest.subject.digest != subject:
                return  # never delete something that is not about this image
            manifests[digest] = manifest
        sources.setdefault(digest, [])
        if via not in sources[digest]:
            sources[digest].append(via)
        if tag is not None:
            tags.setdefault(digest, tag)

    try:
        native = store.referrers(subject)
    except (RegistryError, AuthError) as e:
        native = None
        plan.notes.append(f"the referrers API could not be read ({e.one_line()}): the tag schema was examined")
    for desc in native or []:
        consider(desc.digest, attach.VIA_REFERRERS_API)
    plan.index = attach.read_fallback_index(store, subject)
    for desc in plan.index.entries:
        consider(desc.digest, attach.VIA_REFERRERS_TAG)
    for tag in attachment_tags(store, subject, plan.notes) or []:
        try:
            manifest = store.get_manifest(tag)
        except NotFoundError:
            continue
        if isinstance(manifest, ImageManifest) and attach.attachment_tag(subject, manifest.digest) == tag:
            consider(manifest.digest, attach.VIA_ATTACHMENT_TAG, manifest, tag)
    for digest, manifest in manifests.items():
        att = attach.Attachment(manifest, sources[digest][0], tags.get(digest))
        kind = kind_of(att)
        if kind in wanted:
            plan.targets.append(Target(digest, kind, tuple(sources[digest]), tags.get(digest), att.artifact_type))
    for suffix, via, kind in (("sig", attach.VIA_LEGACY_SIG, KIND_SIGNATURE),
                              ("att", attach.VIA_LEGACY_ATT, KIND_ATTESTATION)):
        if kind not in wanted:
            continue
        tag = attach.legacy_tag(subject, suffix)
        try:
            legacy = store.get_manifest(tag)
        except NotFoundError:
            continue
        shown = attach.Attachment(legacy, via).artifact_type if isinstance(legacy, ImageManifest) else legacy.media_type
        plan.targets.append(Target(legacy.digest, kind, (via,), tag, shown))
    return plan


def execute_clean(store: Store, plan: CleanPlan) -> list[Outcome]:
    """Delete every target by digest (distribution removes the tags pointing at it), then fix the index.

    An artifact the registry refused to delete stays listed in the index: it still exists,
    and its own tag keeps it discoverable anyway.
    """
    outcomes: list[Outcome] = []
    removed: list[Digest] = []
    for target in plan.targets:
        try:
            store.delete_manifest(target.digest)
        except NotFoundError:
            removed.append(target.digest)
            outcomes.append(Outcome(target, True, "already gone"))
            continue
        except Error as e:
            outcomes.append(Outcome(target, False, _refusal(e)))
            continue
        if target.tag is not None and store.has_manifest(target.tag):
            outcomes.append(Outcome(target, False, f"manifest deleted but the registry still serves the tag "
                                                   f"{target.tag}"))
            continue
        removed.append(target.digest)
        outcomes.append(Outcome(target, True))
    index = plan.index
    if index is not None and index.index is not None:
        gone = set(removed)
        remaining = [d for d in index.entries if d.digest not in gone]
        if len(remaining) != len(index.entries):
            _shrink_index(store, plan.subject, index, remaining, gone, outcomes)
    return outcomes


def _shrink_index(store: Store, subject: Digest, index: attach.FallbackIndex, remaining: list[Descriptor],
                  gone: set[Digest], outcomes: list[Outcome]) -> None:
    assert index.index is not None
    if not remaining:
        index_target = Target(index.index.digest, "index", (attach.VIA_REFERRERS_TAG,), index.tag, OCI_INDEX)
        try:
            store.delete_manifest(index.index.digest)
            outcomes.append(Outcome(index_target, True))
            return
        except NotFoundError:
            return
        except Error as e:
            # Could not delete the index itself: an empty index is the next best thing.
            outcomes.append(Outcome(index_target, False, _refusal(e) + "; emptied instead"))
    attach.update_referrers_index(store, subject, remove=sorted(gone, key=str))


def _refusal(e: Error) -> str:
    text = e.one_line()
    if "UNSUPPORTED" in text or "405" in text:
        text += " (distribution deletes only with storage.delete.enabled: REGISTRY_STORAGE_DELETE_ENABLED=true)"
    return text
