"""Signing image digests with a local key: cosign v3 bundles (default) or cosign legacy signatures."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imgseal import attach
from imgseal.dsse import Envelope, sign_envelope
from imgseal.intoto import PAYLOAD_TYPE, image_statement
from imgseal.manifest import Descriptor, ImageIndex, Manifest
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
from keys import PrivateKey, public_key_of, sign
from keys.material import public_der


@dataclass(frozen=True)
class SignedArtifact:
    subject: Descriptor
    artifact: Descriptor | None
    format: str


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement_for(name: str, subject: Descriptor, predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    return image_statement(name, subject.digest, predicate_type, predicate).to_bytes()


def key_dsse_bundle(key: PrivateKey, payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    envelope: Envelope = sign_envelope(payload_type, payload, [("", lambda pae: sign(key, pae))])
    return dsse_key_bundle(envelope, public_der(public_key_of(key)))


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
    fmt: str = "bundle",
    annotations: Mapping[str, str] | None = None,
) -> SignedArtifact:
    """Sign one manifest digest and attach the signature beside it."""
    if fmt == "legacy":
        payload = simple_signing_payload(name, subject.digest, annotations)
        signature = base64.b64encode(sign(key, payload)).decode()
        layer = attach.Layer(payload, attach.SIMPLESIGNING, {SIGNATURE_ANNOTATION: signature})
        attach.attach_legacy(store, subject.digest, suffix="sig", layer=layer)
        return SignedArtifact(subject, None, fmt)
    predicate: dict[str, Any] = {"annotations": dict(annotations)} if annotations else {}
    bundle = key_dsse_bundle(key, statement_for(name, subject, COSIGN_SIGN_PREDICATE, predicate))
    return SignedArtifact(subject, attach_bundle(store, subject, bundle, COSIGN_SIGN_PREDICATE), fmt)


def targets(store: Store, manifest: Manifest, recursive: bool) -> list[Descriptor]:
    """The manifest itself, and with ``recursive`` every child of an index (depth first)."""
    out = [manifest.descriptor()]
    if recursive and isinstance(manifest, ImageIndex):
        for child in manifest.manifests:
            out.extend(targets(store, store.get_manifest(child.digest), True))
    return out

