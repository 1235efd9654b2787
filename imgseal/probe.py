"""``imgseal registry probe``: what a registry supports, found by asking it, read-only by default.

Each answer comes from what the registry *did*, not from what it advertises:

- ``referrers_api`` is true only when ``GET /v2/<name>/referrers/<digest>`` answered 200 with
  an image index (distribution-spec v1.1). A registry may send ``OCI-Subject`` on a manifest
  PUT without having the endpoint (AWS ECR did: sigstore-js #1183), so that header alone is
  never taken as the API; it is reported separately (``oci_subject_header``) by the write test.
  Registries answer a missing endpoint with 404 (the spec's word), 405, 406 or 400 (notation
  #659 lists several); all of those mean "no API".
- ``tag_list`` is true when ``GET /v2/<name>/tags/list`` answered a tag list; pull-only
  tokens on some clouds deny it, and then only the fallback index and legacy tags are usable.
- ``auth`` is the scheme of the ``/v2/`` challenge: ``none``, ``basic`` or ``bearer``.
- ``subject_manifests`` and ``delete`` need ``--write-test``, which pushes one throwaway
  artifact manifest (empty config and layer, a ``subject`` naming REF's digest) by digest,
  no tag, then deletes it; without the flag they are null (not tested). If the delete is
  refused the artifact stays, and the result says where.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from imgseal.digest import Digest
from imgseal.errors import AuthError, Error, NotFoundError, RegistryError
from imgseal.manifest import (
    EMPTY_DESCRIPTOR,
    EMPTY_JSON,
    INDEX_TYPES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    build_manifest,
    load_json,
    parse_manifest,
)

if TYPE_CHECKING:
    import requests

    from imgseal.store.registry import RegistryStore

PROBE_ARTIFACT_TYPE: Final = "application/vnd.imgseal.probe.v1"
PROBE_ANNOTATION: Final = "dev.imgseal.probe"


@dataclass
class ProbeResult:
    registry: str
    repository: str
    reference: str
    api_version: str | None = None
    referrers_api: bool = False
    tag_list: bool = False
    auth: str = "none"
    subject_manifests: bool | None = None
    delete: bool | None = None
    oci_subject_header: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "repository": self.repository,
            "reference": self.reference,
            "api_version": self.api_version,
            "referrers_api": self.referrers_api,
            "tag_list": self.tag_list,
            "auth": self.auth,
            "subject_manifests": self.subject_manifests,
            "delete": self.delete,
            "oci_subject_header": self.oci_subject_header,
            "notes": list(self.notes),
        }


def probe(store: RegistryStore, registry: str, subject: Descriptor, reference: str, *,
          write_test: bool = False) -> ProbeResult:
    """Probe the registry behind ``store`` around the image ``subject`` (already fetched and checked)."""
    client = store.client
    repo = store.repository
    result = ProbeResult(registry, repo, reference)
    # /v2/ with a token for this repository (a registry's token service grants nothing for no scope).
    root = client.request("GET", "/v2/", repository=repo)
    root.close()
    result.api_version = root.headers.get("Docker-Distribution-API-Version")
    result.auth = client.challenge_scheme or "none"
    result.referrers_api = _referrers_api(store, subject.digest, result.notes)
    result.tag_list = _tag_list(store, result.notes)
    if write_test:
        _write_test(store, subject, result)
    return result


def _referrers_api(store: RegistryStore, subject: Digest, notes: list[str]) -> bool:
    path = f"/v2/{store.repository}/referrers/{subject}"
    try:
        resp = store.client.request("GET", path, repository=store.repository, headers={"Accept": OCI_INDEX},
                                    stream=True, retry=False)
    except NotFoundError:
        notes.append("referrers endpoint answered 404: no referrers API (the tag schema is used)")
        return False
    except (RegistryError, AuthError) as e:
        notes.append(f"referrers endpoint refused: {e.one_line()}")
        return False
    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
    raw = _read_capped(resp, MAX_MANIFEST_BYTES)
    if content_type not in INDEX_TYPES or raw is None:
        notes.append(f"referrers endpoint answered 200 with {content_type or 'no content type'}, not an image index")
        return False
    try:
        index = parse_manifest(raw, content_type=content_type)
    except Error as e:
        notes.append(f"referrers endpoint answered a malformed index: {e.one_line()}")
        return False
    return isinstance(index, ImageIndex)


def _tag_list(store: RegistryStore, notes: list[str]) -> bool:
    try:
        resp = store.client.request("GET", f"/v2/{store.repository}/tags/list?n=1", repository=store.repository,
                                    stream=True, retry=False)
    except (NotFoundError, RegistryError, AuthError) as e:
        notes.append(f"tag listing refused: {e.one_line()}")
        return False
    raw = _read_capped(resp, 1 << 20)
    try:
        data = load_json(raw or b"", what="tag list", max_bytes=1 << 20)
    except Error:
        data = None
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not (tags is None or isinstance(tags, list)):
        notes.append("tag listing answered something that is not a tag list")
        return False
    return True


def _write_test(store: RegistryStore, subject: Descriptor, result: ProbeResult) -> None:
    client, repo = store.client, store.repository
    try:
        store.put_blob(EMPTY_JSON, EMPTY_DESCRIPTOR.digest)
    except Error as e:
        result.notes.append(f"write test: could not push a blob ({e.one_line()}); nothing was written")
        return
    # A unique annotation makes the throwaway manifest's digest unique, so deleting it can touch nothing else.
    marker = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H:%M:%SZ} {secrets.token_hex(8)}"
    subject_desc = Descriptor(subject.media_type, subject.digest, subject.size)
    with_subject = build_manifest(config=EMPTY_DESCRIPTOR, layers=[EMPTY_DESCRIPTOR], subject=subject_desc,
                                  artifact_type=PROBE_ARTIFACT_TYPE, annotations={PROBE_ANNOTATION: marker})
    pushed: Digest | None = None
    try:
        resp = _put(store, with_subject)
        pushed = Digest.of(with_subject)
        result.subject_manifests = True
        result.oci_subject_header = bool(resp.headers.get("OCI-Subject"))
        if result.oci_subject_header and not result.referrers_api:
            result.notes.append("the registry sent OCI-Subject but has no referrers API (as ECR did, sigstore-js "
                                "#1183): the tag schema is used")
    except AuthError as e:
        result.notes.append(f"write test: push denied ({e.one_line()}); nothing was written")
        return
    except Error as e:
        result.subject_manifests = False
        result.notes.append(f"write test: a manifest with a subject was refused ({e.one_line()}); "
                            "cosign's legacy tags (--format legacy) need no subject")
        plain = build_manifest(config=EMPTY_DESCRIPTOR, layers=[EMPTY_DESCRIPTOR], artifact_type=PROBE_ARTIFACT_TYPE,
                               annotations={PROBE_ANNOTATION: marker})
        try:
            _put(store, plain)
            pushed = Digest.of(plain)
        except Error as e2:
            result.notes.append(f"write test: a plain artifact manifest was refused too ({e2.one_line()})")
            return
    try:
        resp = client.request("DELETE", f"/v2/{repo}/manifests/{pushed}", repository=repo, push=True,
                              expected=(200, 202), retry=False)
        resp.close()
        result.delete = not store.has_manifest(pushed)
        if not result.delete:
            result.notes.append(f"write test: the delete was accepted but {store.location}@{pushed} is still served")
    except Error as e:
        result.delete = False
        result.notes.append(f"write test: delete refused ({e.one_line()}); the throwaway artifact stays at "
                            f"{store.location}@{pushed}")


def _put(store: RegistryStore, raw: bytes) -> requests.Response:
    digest = Digest.of(raw)
    resp = store.client.request("PUT", f"/v2/{store.repository}/manifests/{digest}", repository=store.repository,
                                push=True, expected=(200, 201, 202), headers={"Content-Type": OCI_MANIFEST},
                                data=raw, retry=False)
    resp.close()
    return resp


def _read_capped(resp: requests.Response, limit: int) -> bytes | None:
    """The body, or None if it exceeds ``limit`` bytes (a probe never buffers an unbounded answer)."""
    import requests

    buf = bytearray()
    try:
        for chunk in resp.iter_content(65536):
            buf += chunk
            if len(buf) > limit:
                return None
    except requests.exceptions.RequestException:
        return None  # a broken body is "not supported" for a probe
    finally:
        resp.close()
    return bytes(buf)
