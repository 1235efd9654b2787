"""Attesting images: sign an in-toto statement about a digest and attach it beside the image.

Two storage forms (REFERENCE.md §3–4, §6):

- **bundle** (default, cosign v3): the DSSE envelope inside a Sigstore bundle v0.3, attached
  as an OCI referrer whose manifest annotation ``dev.sigstore.bundle.predicateType`` lets
  readers pick attestations of one type without downloading any blob.
- **legacy** (cosign ≤ v2 ``.att``): the bare DSSE envelope JSON as one layer of the
  ``sha256-<hex>.att`` image, media type ``application/vnd.dsse.envelope.v1+json``, with the
  layer annotation ``predicateType`` (what cosign's ``verify-attestation --type`` filters on).

Signing is injected: a :data:`BundleSigner` turns statement bytes into bundle bytes, so a
keyless signer (Fulcio certificate + Rekor entry) plugs in beside :func:`key_bundle_signer`
without this module knowing about Sigstore. The legacy form is key-only, as in cosign, where
the certificate would travel in layer annotations we do not write.

``--replace`` removes the earlier attestations of the same predicate type that the same
signer made, and only **after** the new one is attached, so a reader never sees the image
without an attestation of that type. "Same signer" is decided by verifying each candidate's
envelope (:data:`OwnershipCheck`, a key) or whole bundle (:class:`BundleOwnership`, a
keyless identity: certificate chain, transparency log and SAN + issuer), never by the
unauthenticated keyid hint; "same type" is read from the signed statement, never only from
the annotation.

Keyless attestations are read back by a verifier that refuses bundles over
:data:`imgseal.payloads.MAX_BUNDLE_BYTES` (16 MiB, as sigstore-go and our
:mod:`verifier.sigstore.bundle`), so ``attest(..., bundle_limit=...)`` refuses a statement
that could not fit **before** anything is signed or logged to Rekor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from imgseal import attach
from imgseal.digest import Digest
from imgseal.dsse import ENVELOPE_MEDIA_TYPE, MAX_ENVELOPE_BYTES, Envelope, sign_envelope, verify_envelope
from imgseal.errors import Error, InvalidInputError, NotFoundError, UsageError
from imgseal.intoto import PAYLOAD_TYPE, Statement, image_statement
from imgseal.manifest import OCI_CONFIG, OCI_MANIFEST, Descriptor, ImageManifest, build_manifest, canonical_json
from imgseal.payloads import BUNDLE_MEDIA_TYPES, BUNDLE_PREDICATE_ANNOTATION, summarise_bundle
from imgseal.store.base import Store
from keys import PrivateKey, PublicKey, sign, verify
from signer.image import attach_bundle, bundle_or_legacy, check_format, key_dsse_bundle

if TYPE_CHECKING:
    from signer.witness import Witness

#: Layer annotation cosign's legacy ``.att`` layers carry (cosign ``pkg/oci/static``).
LEGACY_PREDICATE_ANNOTATION: Final = "predicateType"

#: Largest predicate file read. The signed statement must fit one DSSE envelope that
#: verifiers accept (:data:`imgseal.dsse.MAX_ENVELOPE_BYTES`), so nothing larger could ever
#: verify; :func:`attest` also checks the finished envelope, which is 4/3 of the statement.
MAX_PREDICATE_BYTES: Final = MAX_ENVELOPE_BYTES

#: Room for the bundle wrapper (media type, key hint) around the envelope.
_BUNDLE_OVERHEAD: Final = 1 << 20

#: Room, in a keyless bundle, for everything but the base64 statement: the Fulcio certificate,
#: the Rekor entry (canonicalized body, inclusion proof, checkpoint, SET) and RFC 3161
#: timestamps. Real ones total a few KiB; 64 KiB leaves a wide margin.
KEYLESS_BUNDLE_OVERHEAD: Final = 64 << 10

BundleSigner = Callable[[bytes], bytes]
"""Signs a DSSE payload (in-toto statement bytes, payloadType in-toto) and returns Sigstore bundle JSON.

The one hook for keyless signing: a function that obtains a certificate, signs PAE, logs to
Rekor and returns the bundle fits here unchanged.
"""

OwnershipCheck = Callable[[Envelope], bool]
"""True when an existing envelope was signed by "us" (the signer of the new attestation)."""


@dataclass(frozen=True)
class BundleOwnership:
    """Ownership proven on the whole Sigstore bundle (raw JSON), not the bare envelope.

    Keyless signatures cannot be checked from the envelope alone: who signed is in the bundle's
    certificate, and trusting it takes the chain, the transparency log entry and the signing
    time. ``check(raw_bundle)`` is true only when all of that verifies for "our" identity.
    Legacy ``.att`` layers (bare envelopes, no certificate) are never ours under this check.
    """

    check: Callable[[bytes], bool]


Ownership = OwnershipCheck | BundleOwnership

Format = Literal["bundle", "legacy"]
# What one write produced: format, artifact, digest to keep on --replace, the new referrer's digest.
_Written = tuple[Format, str, Digest, Digest | None]


@dataclass(frozen=True)
class Attestation:
    """What :func:`attest` attached and what it replaced."""

    subject: Descriptor
    predicate_type: str
    format: Format
    artifact: str
    """The referrer manifest digest (bundle) or the ``.att`` tag and layer digest (legacy)."""
    replaced: tuple[str, ...]


def key_bundle_signer(key: PrivateKey, witness: Witness | None = None) -> BundleSigner:
    """A :data:`BundleSigner` for a self-managed key: a bundle with a public-key hint and, with
    ``witness``, a Rekor entry and/or an RFC 3161 timestamp (:mod:`signer.witness`)."""
    return lambda payload: key_dsse_bundle(key, payload, witness=witness)


def signed_by_key(public_key: PublicKey) -> OwnershipCheck:
    """An :data:`OwnershipCheck` that verifies the envelope with ``public_key``."""

    def check(envelope: Envelope) -> bool:
        try:
            verify_envelope(envelope, {"key": lambda data, sig: verify(public_key, data, sig)})
        except Error:
            return False
        return True

    return check


def read_predicate(path: Path, *, max_bytes: int = MAX_PREDICATE_BYTES) -> dict[str, Any]:
    """Read a predicate file once, bounded, and parse it as one JSON object.

    Refused with :class:`InvalidInputError` (exit 2): a missing/unreadable file, more than
    ``max_bytes``, non-UTF-8, invalid JSON, duplicate keys (two parsers could read two
    different predicates from the signed bytes), NaN/Infinity, or anything but an object.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInputError(f"cannot read predicate file {path}: {exc.strerror or exc}",
                                reason="bad-predicate") from exc
    if len(raw) > max_bytes:
        raise InvalidInputError(f"predicate file {path} is over the {max_bytes >> 20} MiB limit",
                                hint="a signed statement must fit one DSSE envelope verifiers accept",
                                reason="predicate-too-large")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"predicate file {path} is not UTF-8 text", reason="bad-predicate") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"predicate file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                                f"column {exc.colno}", reason="bad-predicate") from exc
    except RecursionError as exc:
        raise InvalidInputError(f"predicate file {path} is nested too deeply", reason="bad-predicate") from exc
    except ValueError as exc:  # _no_duplicates / _no_constant
        raise InvalidInputError(f"predicate file {path}: {exc}", reason="bad-predicate") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"predicate file {path} must hold a JSON object, not {type(data).__name__}",
                                hint="an in-toto predicate is an object (in-toto Statement v1)",
                                reason="bad-predicate")
    return data


def attest(
    store: Store,
    name: str,
    subject: Descriptor,
    predicate_type: str,
    predicate: Mapping[str, Any],
    *,
    signer: BundleSigner | None = None,
    key: PrivateKey | None = None,
    fmt: str = "auto",
    replace: Ownership | None = None,
    bundle_limit: int | None = None,
    witness: Witness | None = None,
) -> Attestation:
    """Sign an in-toto statement (subject = ``subject.digest``) and attach it beside the image.

    ``predicate_type`` may be a short alias; it is resolved to its URI. For ``fmt="bundle"``
    give ``signer`` (or ``key``, which makes :func:`key_bundle_signer`); ``fmt="legacy"``
    needs ``key``; ``fmt="auto"`` is a bundle, or with ``key`` the legacy form where the
    registry refuses OCI 1.1 artifact manifests (:func:`signer.image.bundle_or_legacy`).
    With ``replace``, earlier attestations of the same type that it accepts are removed after
    the new one is attached. ``bundle_limit`` (keyless signers: pass
    :data:`imgseal.payloads.MAX_BUNDLE_BYTES`) refuses, before signing, a statement whose
    bundle would exceed it, and checks the signed bundle again before attaching it.
    ``witness`` logs/timestamps a legacy ``.att`` envelope (cosign's layer annotations; a
    ``dsse`` entry); for bundles the ``signer`` carries it (:func:`key_bundle_signer`).
    """
    statement = image_statement(name, subject.digest, predicate_type, predicate)
    payload = statement.to_bytes()
    _check_size(payload)
    check_format(fmt)
    if bundle_limit is not None:
        if fmt == "legacy":
            raise UsageError("a bundle size limit applies to --format bundle only", reason="format")
        check_bundle_fits(len(payload), bundle_limit)

    def legacy(key: PrivateKey) -> _Written:
        envelope = sign_envelope(PAYLOAD_TYPE, payload, [("", lambda pae: sign(key, pae))])
        layer_annotations = {LEGACY_PREDICATE_ANNOTATION: statement.predicate_type}
        if witness is not None and witness.wanted:
            from keys import public_pem
            from signer.witness import legacy_annotations, witness_envelope

            layer_annotations.update(legacy_annotations(witness_envelope(witness, envelope, public_pem(key))))
        layer = attach.Layer(envelope.to_json(), ENVELOPE_MEDIA_TYPE, layer_annotations)
        manifest_digest = attach.attach_legacy(store, subject.digest, suffix="att", layer=layer)
        return "legacy", f"{attach.legacy_tag(subject.digest, 'att')}@{manifest_digest}", Digest.of(layer.data), None

    def bundle() -> _Written:
        bundle_signer = signer
        if bundle_signer is None:
            if key is None:
                raise UsageError("give --key KEY to sign the attestation", reason="no-signer")
            bundle_signer = key_bundle_signer(key)
        raw = bundle_signer(payload)
        if bundle_limit is not None and len(raw) > bundle_limit:
            # The estimate above should make this unreachable; never attach what cannot verify.
            raise InvalidInputError(f"the signed bundle is {len(raw)} bytes, over the {bundle_limit}-byte limit "
                                    "verifiers accept; nothing was attached", reason="predicate-too-large")
        desc = attach_bundle(store, subject, raw, statement.predicate_type)
        return "bundle", str(desc.digest), Digest.of(raw), desc.digest

    # Legacy .att layers are key-signed only (the certificate would travel in annotations we do not write).
    legacy_writer = (lambda: legacy(key)) if key is not None else None
    written, artifact, keep, new_referrer = bundle_or_legacy(fmt, bundle, legacy_writer, legacy_tag=".att",
                                                             legacy_needs="--key KEY")
    replaced: tuple[str, ...] = ()
    if replace is not None:
        replaced = remove_earlier(store, subject.digest, statement.predicate_type, replace,
                                  keep_referrer=new_referrer, keep_layer=keep)
    return Attestation(subject, statement.predicate_type, written, artifact, replaced)


def remove_earlier(
    store: Store,
    subject: Digest,
    predicate_type: str,
    ours: Ownership,
    *,
    keep_referrer: Digest | None,
    keep_layer: Digest | None,
) -> tuple[str, ...]:
    """Remove attestations of ``predicate_type`` about ``subject`` that ``ours`` accepts.

    Referrer bundles are detached whole; legacy ``.att`` layers are dropped by rewriting the
    ``.att`` image. Candidates whose blob cannot be read or parsed are left alone: removing
    something we cannot prove is ours would let a malformed artifact make us delete others'.
    """
    removed: list[str] = []
    for att in attach.discover(store, subject):
        if att.found_via == attach.VIA_LEGACY_ATT:
            if not isinstance(ours, BundleOwnership):  # bare envelopes carry no certificate
                removed += _rewrite_legacy_att(store, subject, predicate_type, ours, keep_layer)
            continue
        if att.digest == keep_referrer or att.artifact_type not in BUNDLE_MEDIA_TYPES:
            continue
        if att.manifest.annotations.get(BUNDLE_PREDICATE_ANNOTATION) != predicate_type:
            continue
        verdicts = [_bundle_is_ours(store, layer, predicate_type, subject, ours)
                    for layer in att.manifest.layers if layer.media_type in BUNDLE_MEDIA_TYPES]
        if verdicts and all(verdicts) and attach.detach(store, subject, att):
            removed.append(str(att.digest))
    return tuple(removed)


def _rewrite_legacy_att(store: Store, subject: Digest, predicate_type: str, ours: OwnershipCheck,
                        keep_layer: Digest | None) -> list[str]:
    tag = attach.legacy_tag(subject, "att")
    for _ in range(attach.INDEX_WRITE_ATTEMPTS):
        try:
            current = store.get_manifest(tag)
        except NotFoundError:
            return []
        if not isinstance(current, ImageManifest):
            return []
        drop = [layer for layer in current.layers
                if layer.digest != keep_layer
                and layer.media_type == ENVELOPE_MEDIA_TYPE
                and layer.annotations.get(LEGACY_PREDICATE_ANNOTATION) == predicate_type
                and _legacy_is_ours(store, layer, predicate_type, subject, ours)]
        if not drop:
            return []
        kept = [layer for layer in current.layers if layer not in drop]
        config = _legacy_config(kept)
        config_digest = store.put_blob(config)
        raw = build_manifest(config=Descriptor(OCI_CONFIG, config_digest, len(config)), layers=kept)
        written = store.put_manifest(raw, OCI_MANIFEST, tag=tag)
        # Read-modify-write of a shared tag (as cosign does): if another writer replaced the
        # image meanwhile, go round again on what is there now.
        check = store.get_manifest(tag)
        if check.digest == written:
            return [f"{tag}#{layer.digest}" for layer in drop]
    return []


def _legacy_config(layers: list[Descriptor]) -> bytes:
    # The minimal image config cosign writes for .sig/.att images: rootfs lists the layers.
    return canonical_json({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
    })


def _bundle_is_ours(store: Store, layer: Descriptor, predicate_type: str, subject: Digest, ours: Ownership) -> bool:
    try:
        raw = store.get_blob(layer, max_bytes=MAX_ENVELOPE_BYTES + _BUNDLE_OVERHEAD)
        summary = summarise_bundle(raw, max_bytes=MAX_ENVELOPE_BYTES + _BUNDLE_OVERHEAD)
    except Error:
        return False
    if summary.envelope is None:
        return False
    if isinstance(ours, BundleOwnership):
        try:
            owned = ours.check(raw)
        except Error:
            return False
        # The statement is still read from the envelope: same type, same subject.
        return owned and _is_ours(summary.envelope, predicate_type, subject, lambda _: True)
    return _is_ours(summary.envelope, predicate_type, subject, ours)


def _legacy_is_ours(store: Store, layer: Descriptor, predicate_type: str, subject: Digest,
                    ours: OwnershipCheck) -> bool:
    try:
        envelope = Envelope.from_json(store.get_blob(layer, max_bytes=MAX_ENVELOPE_BYTES))
    except Error:
        return False
    return _is_ours(envelope, predicate_type, subject, ours)


def _is_ours(envelope: Envelope, predicate_type: str, subject: Digest, ours: OwnershipCheck) -> bool:
    if not ours(envelope) or envelope.payload_type != PAYLOAD_TYPE:
        return False
    try:
        statement = Statement.from_bytes(envelope.payload)
    except Error:
        return False
    return statement.predicate_type == predicate_type and statement.subject_matches(subject)


def _check_size(payload: bytes) -> None:
    # The envelope carries the statement in base64 (4/3 larger); refuse what no verifier
    # would read rather than attach an attestation that can never verify.
    envelope_size = (len(payload) + 2) // 3 * 4 + 4096
    if envelope_size > MAX_ENVELOPE_BYTES:
        raise InvalidInputError(
            f"the signed statement would be a {envelope_size >> 20} MiB DSSE envelope, over the "
            f"{MAX_ENVELOPE_BYTES >> 20} MiB limit verifiers accept",
            hint=f"predicates up to about {MAX_ENVELOPE_BYTES * 3 // 4 >> 20} MiB fit",
            reason="predicate-too-large",
        )


def check_bundle_fits(payload_size: int, limit: int) -> None:
    """Refuse (before signing) a statement whose keyless bundle would exceed ``limit`` bytes.

    The bundle carries the statement base64-encoded inside the DSSE envelope (4/3 of it) plus
    :data:`KEYLESS_BUNDLE_OVERHEAD` of certificate, log entry and timestamps.
    """
    estimate = (payload_size + 2) // 3 * 4 + KEYLESS_BUNDLE_OVERHEAD
    if estimate > limit:
        fits = (limit - KEYLESS_BUNDLE_OVERHEAD) * 3 // 4
        raise InvalidInputError(
            f"the signed statement is {payload_size} bytes; as a Sigstore bundle it would be about {estimate} bytes, "
            f"over the {limit >> 20} MiB limit bundle verifiers accept",
            hint=f"keyless attestations fit statements up to about {fits >> 20} MiB; sign larger ones with --key",
            reason="predicate-too-large",
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate JSON key {k[:40]!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")
