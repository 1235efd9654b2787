"""Signing image digests with a local key: cosign v3 bundles (default) or cosign legacy signatures.

Format choice (``fmt``): ``"bundle"`` means a bundle or fail; ``"legacy"`` cosign's ``.sig``
layer; ``"auto"`` (no ``--format`` given) a bundle, and the legacy form where the registry
refuses OCI 1.1 artifact manifests (AWS ECR, aws/containers-roadmap #2783), with a notice:
signing there should not take a flag the user could only learn from a failure.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from imgseal import attach
from imgseal.dsse import Envelope, sign_envelope
from imgseal.errors import ArtifactManifestRefusedError, UsageError
from imgseal.intoto import PAYLOAD_TYPE, image_statement
from imgseal.manifest import Descriptor, ImageIndex, Manifest
from imgseal.notice import notice
from imgseal.payloads import (
    BUNDLE_CONTENT_ANNOTATION,
    BUNDLE_PREDICATE_ANNOTATION,
    BUNDLE_V03_MEDIA,
    COSIGN_SIGN_PREDICATE,
    CREATED_ANNOTATION,
    SIGNATURE_ANNOTATION,
    dsse_key_bundle,
    simple_signing_payload,
)
from imgseal.store.base import Store
from keys import PrivateKey, public_key_of, public_pem, sign
from keys.material import public_der

if TYPE_CHECKING:
    from signer.witness import Witness

T = TypeVar("T")
FORMATS = ("auto", "bundle", "legacy")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be bundle or legacy, not {fmt!r}", reason="format")


def bundle_or_legacy(fmt: str, bundle: Callable[[], T], legacy: Callable[[], T] | None, *,
                     legacy_tag: str, legacy_needs: str | None = None) -> T:
    """Write with ``bundle`` unless ``fmt`` is legacy; on a registry that refuses it, fall back when ``fmt`` is auto.

    ``legacy`` is None where no legacy form exists for this signer (``legacy_needs`` then
    says what would give one). An explicit ``--format bundle`` means "bundle or fail": the
    error names ``--format legacy``.
    """
    check_format(fmt)
    if fmt == "legacy":
        if legacy is None:
            raise UsageError(f"--format legacy needs {legacy_needs}", reason="format")
        return legacy()
    try:
        return bundle()
    except ArtifactManifestRefusedError as e:
        if legacy is None:
            e.hint = f"cosign's legacy {legacy_tag} tag needs no OCI 1.1 support: use {legacy_needs} --format legacy"
            raise
        if fmt == "bundle":
            e.hint = f"--format legacy writes cosign's {legacy_tag} tag, which needs no OCI 1.1 support"
            raise
        notice(f"{e.summary}: wrote cosign's legacy {legacy_tag} format instead (as --format legacy would; "
               "--format bundle fails instead)")
        return legacy()


@dataclass(frozen=True)
class SignedArtifact:
    subject: Descriptor
    artifact: Descriptor | None
    format: str


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement_for(name: str, subject: Descriptor, predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    return image_statement(name, subject.digest, predicate_type, predicate).to_bytes()


def key_dsse_bundle(key: PrivateKey, payload: bytes, payload_type: str = PAYLOAD_TYPE,
                    witness: Witness | None = None) -> bytes:
    """Sign ``payload`` as DSSE into a public-key bundle; with ``witness``, logged and/or timestamped."""
    envelope: Envelope = sign_envelope(payload_type, payload, [("", lambda pae: sign(key, pae))])
    if witness is None or not witness.wanted:
        return dsse_key_bundle(envelope, public_der(public_key_of(key)))
    from signer.witness import witness_envelope

    witnessed = witness_envelope(witness, envelope, public_pem(key))
    return dsse_key_bundle(envelope, public_der(public_key_of(key)), tlog_entries=witnessed.tlog_entries,
                           rfc3161_timestamps=witnessed.rfc3161_timestamps)


def legacy_witness(witness: Witness, key: PrivateKey, payload: bytes, signature: bytes) -> dict[str, str]:
    """cosign's witness annotations for a legacy ``.sig`` layer: a hashedrekord entry (hash: the
    one the key signs with) and/or a timestamp over the signature."""
    import hashlib

    from keys import hash_algorithm
    from signer.witness import legacy_annotations, witness_message

    algorithm = hash_algorithm(key)
    hash_name = algorithm.name if algorithm is not None else "sha512"
    witnessed = witness_message(witness, signature, hash_name, hashlib.new(hash_name, payload).digest(),
                                public_pem(key))
    return legacy_annotations(witnessed)


def attach_bundle(store: Store, subject: Descriptor, bundle: bytes, predicate_type: str) -> Descriptor:
    """Attach a DSSE bundle as an OCI 1.1 referrer, annotated as cosign v3 does."""
    annotations = {
        BUNDLE_CONTENT_ANNOTATION: "dsse-envelope",
        BUNDLE_PREDICATE_ANNOTATION: predicate_type,
        CREATED_ANNOTATION: now_rfc3339(),
    }
    return attach.attach(store, subject, artifact_type=BUNDLE_V03_MEDIA,
                         layers=[attach.Layer(bundle, BUNDLE_V03_MEDIA)], annotations=annotations)


def sign_with_key(
    store: Store,
    name: str,
    subject: Descriptor,
    key: PrivateKey,
    *,
    fmt: str = "auto",
    annotations: Mapping[str, str] | None = None,
    witness: Witness | None = None,
) -> SignedArtifact:
    """Sign one manifest digest and attach the signature beside it, witnessed as ``witness`` asks
    (bundles: entry and timestamp in the bundle; legacy: cosign's layer annotations); ``fmt``:
    see the module docstring."""

    def legacy() -> SignedArtifact:
        payload = simple_signing_payload(name, subject.digest, annotations)
        raw_signature = sign(key, payload)
        layer_annotations = {SIGNATURE_ANNOTATION: base64.b64encode(raw_signature).decode()}
        if witness is not None and witness.wanted:
            layer_annotations.update(legacy_witness(witness, key, payload, raw_signature))
        layer = attach.Layer(payload, attach.SIMPLESIGNING, layer_annotations)
        attach.attach_legacy(store, subject.digest, suffix="sig", layer=layer)
        return SignedArtifact(subject, None, "legacy")

    def bundle() -> SignedArtifact:
        predicate: dict[str, Any] = {"annotations": dict(annotations)} if annotations else {}
        raw = key_dsse_bundle(key, statement_for(name, subject, COSIGN_SIGN_PREDICATE, predicate), witness=witness)
        return SignedArtifact(subject, attach_bundle(store, subject, raw, COSIGN_SIGN_PREDICATE), "bundle")

    return bundle_or_legacy(fmt, bundle, legacy, legacy_tag=".sig")


def targets(store: Store, manifest: Manifest, recursive: bool) -> list[Descriptor]:
    """The manifest itself, and with ``recursive`` every child of an index (depth first)."""
    out = [manifest.descriptor()]
    if recursive and isinstance(manifest, ImageIndex):
        for child in manifest.manifests:
            out.extend(targets(store, store.get_manifest(child.digest), True))
    return out

