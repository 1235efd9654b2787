"""Registry quirk profiles: a scripted front (tests/fault_proxy.py) in front of the real registry.

Every test registry here is distribution 2.8; peers' users meet others. Each profile below
makes the front behave as one documented behaviour of a real registry, and names its source.
The front changes only what the source describes; everything else reaches docker-registry
unchanged, so what imgseal writes is really stored and really read back.

Profiles are data: ``install(proxy)`` adds the proxy rules, ``expect`` says which operations
are expected to end in exit 3 (with the words the one-line error must contain), every other
operation must succeed. docs/registries.md reproduces the table.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fault_proxy import FaultProxy, Request, Respond, Status, Upstream, match

JSON = "application/json"
REFERRERS_TAG = re.compile(r"/manifests/(sha256)-([a-f0-9]{64})$")
KNOWN_CONFIGS = frozenset({"application/vnd.oci.image.config.v1+json",
                           "application/vnd.docker.container.image.v1+json"})


def registry_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def manifest_put_where(predicate: Callable[[dict[str, object]], bool]) -> Callable[[Request], bool]:
    """Matches a manifest PUT whose JSON body satisfies ``predicate``."""

    def when(r: Request) -> bool:
        if r.method != "PUT" or "/manifests/" not in r.path:
            return False
        try:
            doc = json.loads(r.body)
        except ValueError:
            return False
        return isinstance(doc, dict) and predicate(doc)

    return when


def _config_type(doc: dict[str, object]) -> str | None:
    config = doc.get("config")
    return config.get("mediaType") if isinstance(config, dict) else None  # type: ignore[return-value]


@dataclass(frozen=True)
class Profile:
    name: str
    behaves_like: str
    source: str
    install: Callable[[FaultProxy], None]
    #: operation -> words the exit-3 line must contain (every other operation must pass)
    expect: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: seed the shared image's attachments upstream (the front refuses writes)
    seed_upstream: bool = False
    #: the registry behind the front answers the referrers API (the spec's double)
    referrers_api: bool = False


# -- scripted behaviours ----------------------------------------------------------------------


def _nothing(proxy: FaultProxy) -> None:
    pass


def _referrers_status(code: int) -> Callable[[FaultProxy], None]:
    def install(proxy: FaultProxy) -> None:
        body = registry_error("UNSUPPORTED", "The operation is unsupported.") if code != 406 else b"Not Acceptable"
        proxy.add(match("GET", r"/referrers/"), Status(code, {"Content-Type": JSON if code != 406 else "text/plain"},
                                                       body))

    return install


def _referrers_false_200(proxy: FaultProxy) -> None:
    empty = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": []}).encode()
    proxy.add(match("GET", r"/referrers/"), Status(200, {"Content-Type": "application/vnd.oci.image.index.v1+json"},
                                                   empty))


def _gitlab_digest_tag(proxy: FaultProxy) -> None:
    """GET/HEAD ``manifests/sha256-<hex>`` answers the manifest ``sha256:<hex>`` (the subject itself).

    oras-go #1396 (2026) shows registry.gitlab.com doing exactly this, with
    ``Docker-Content-Digest: sha256:<hex>`` and the subject's media type. What a PUT to that
    name does there is not documented; this front answers it as a PUT by digest would be
    (the body does not hash to it: 400 DIGEST_INVALID), and the tests check imgseal never
    sends one.
    """

    def alias(r: Request, fetch: Upstream) -> tuple[int, list[tuple[str, str]], bytes]:
        m = REFERRERS_TAG.search(r.path)
        assert m is not None
        if r.method == "PUT":
            return 400, [("Content-Type", JSON)], registry_error("DIGEST_INVALID", "provided digest did not match "
                                                                 "uploaded content")
        return fetch(r.method, r.path[: m.start()] + f"/manifests/{m.group(1)}:{m.group(2)}", r.headers, b"")

    proxy.add(lambda r: bool(REFERRERS_TAG.search(r.path)), Respond(alias))


def _oci_subject_without_api(proxy: FaultProxy) -> None:
    """Manifest PUTs with ``subject`` answer ``OCI-Subject``; the referrers endpoint stays 404 (sigstore-js #1183)."""

    def with_header(r: Request, fetch: Upstream) -> tuple[int, list[tuple[str, str]], bytes]:
        code, headers, body = fetch(r.method, r.path, r.headers, r.body)
        subject = json.loads(r.body)["subject"]["digest"]
        return code, [*headers, ("OCI-Subject", subject)], body

    proxy.add(manifest_put_where(lambda d: isinstance(d.get("subject"), dict)), Respond(with_header))


def _refuse(predicate: Callable[[dict[str, object]], bool], code: int, error: str, message: str) -> Callable[
        [FaultProxy], None]:
    def install(proxy: FaultProxy) -> None:
        proxy.add(manifest_put_where(predicate), Status(code, {"Content-Type": JSON}, registry_error(error, message)))

    return install


def _tags_denied(code: int) -> Callable[[FaultProxy], None]:
    def install(proxy: FaultProxy) -> None:
        if code == 401:
            # A bearer registry whose token carries pull on the repository but no catalog/list right.
            proxy.require_bearer("pull-token")
            headers = {"Content-Type": JSON, "WWW-Authenticate": f'Bearer realm="http://{proxy.host}/token",'
                       'service="fault-proxy",error="insufficient_scope"'}
            proxy.add(match("GET", r"/tags/list"), Status(401, headers, registry_error("UNAUTHORIZED",
                                                                                       "authentication required")))
        else:
            proxy.add(match("GET", r"/tags/list"), Status(403, {"Content-Type": JSON},
                                                         registry_error("DENIED", "requested access to the "
                                                                        "resource is denied")))

    return install


def _delete_refused(proxy: FaultProxy) -> None:
    proxy.add(match("DELETE"), Status(405, {"Content-Type": JSON},
                                      registry_error("UNSUPPORTED", "The operation is unsupported.")))


def _rate_limited(proxy: FaultProxy) -> None:
    """Every fifth request answers 429 with Retry-After and Docker Hub's RateLimit-* headers."""
    counter = {"n": 0}
    lock = threading.Lock()

    def every_fifth(r: Request) -> bool:
        with lock:
            counter["n"] += 1
            return counter["n"] % 5 == 0

    proxy.add(every_fifth, Status(429, {"Content-Type": JSON, "Retry-After": "0",
                                        "RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"},
                                  registry_error("TOOMANYREQUESTS", "You have reached your pull rate limit.")))


def _if_match_ignored(proxy: FaultProxy) -> None:
    """A second writer's conditional PUT of the referrers index lands although its If-Match is stale.

    distribution ignores If-Match, so sigstore-js's conditional write (REFERENCE.md §8) does
    not stop it from replacing an index it read before ours: right after each first write of
    a ``sha256-<hex>`` index, the front writes back the index as it was before it.
    """
    clobbered: set[str] = set()
    lock = threading.Lock()

    def replay_stale(r: Request, fetch: Upstream) -> tuple[int, list[tuple[str, str]], bytes]:
        accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
        before_code, _, before = fetch("GET", r.path, accept, b"")
        code, headers, body = fetch(r.method, r.path, r.headers, r.body)
        with lock:
            first = r.path not in clobbered
            clobbered.add(r.path)
        if first and code == 201:
            stale = before if before_code == 200 else json.dumps(
                {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}).encode()
            fetch("PUT", r.path, {"Content-Type": "application/vnd.oci.image.index.v1+json",
                                  "If-Match": '"stale-etag"'}, stale)
        return code, headers, body

    proxy.add(lambda r: r.method == "PUT" and bool(REFERRERS_TAG.search(r.path)), Respond(replay_stale))


def _pull_only_token(proxy: FaultProxy) -> None:
    """Bearer auth whose token service grants pull only: every write answers 401 insufficient_scope."""
    proxy.require_bearer("pull-only-token")
    headers = {"Content-Type": JSON, "WWW-Authenticate": f'Bearer realm="http://{proxy.host}/token",'
               'service="fault-proxy",scope="repository:x:pull,push",error="insufficient_scope"'}
    proxy.add(lambda r: r.is_write, Status(401, headers, registry_error("DENIED", "requested access to the resource "
                                                                        "is denied")))


# -- the profiles ---------------------------------------------------------------------------------

WRITES = ("sign", "sign --format bundle", "sign --format legacy", "attest", "copy in")
REFUSED_BUNDLE = {"sign --format bundle": ("refuses OCI 1.1 artifact manifests", "--format legacy"),
                  "copy in": ("copied the image and 1 attachment(s), but not 2", "refuses OCI 1.1 artifact manifests",
                              "--format legacy")}

PROFILES: list[Profile] = [
    Profile("distribution", "distribution 2.8/3.x, GHCR: no referrers API (404 page not found)",
            "distribution-spec v1.1 'referrers tag schema'; REFERENCE.md §2; actions/attest-build-provenance #71",
            _nothing),
    Profile("referrers-api", "OCI 1.1 registries with the API (zot, ACR, Harbor 2.8+, Docker Hub)",
            "distribution-spec v1.1 'listing referrers'; tests/integration/referrers_double.py",
            _nothing, referrers_api=True),
    Profile("referrers-405", "a referrers endpoint answering 405 Method Not Allowed",
            "notation #659 (only 404 is 'no API' in the spec; registries answer others)", _referrers_status(405)),
    Profile("referrers-406", "a referrers endpoint answering 406 Not Acceptable",
            "notation #659; issue 13's measurement (sign exited 3 'answered UNSUPPORTED')", _referrers_status(406)),
    Profile("referrers-false-200", "a referrers endpoint answering 200 with an empty index, indexing nothing",
            "sigstore-js #1187 ('some registries will return a false 200 response')", _referrers_false_200),
    Profile("gitlab-digest-tag", "GitLab: sha256-<hex> resolves to the manifest sha256:<hex> itself",
            "oras-go #1396, oras #2148 (registry.gitlab.com, 2026)", _gitlab_digest_tag),
    Profile("oci-subject-without-api", "AWS ECR (2024): OCI-Subject on subject PUTs without a referrers API",
            "sigstore-js #1183, #1187", _oci_subject_without_api),
    Profile("refuses-subject", "AWS ECR: 405 UNSUPPORTED for manifests with subject",
            "aws/containers-roadmap #2783, #2306; docker/hub-feedback #2307",
            _refuse(lambda d: "subject" in d, 405, "UNSUPPORTED",
                    "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"),
            expect=REFUSED_BUNDLE),
    Profile("refuses-artifact-type", "registries predating image-spec 1.1: artifactType refused",
            "aws/containers-roadmap #2783 (manifests with artifactType); opcr-io/policy #149 (ECR 405 on 1.1 packing)",
            _refuse(lambda d: "artifactType" in d, 400, "MANIFEST_INVALID", "manifest invalid"),
            expect=REFUSED_BUNDLE),
    Profile("refuses-unknown-config", "registries accepting image configs only (no empty config)",
            "image-spec 1.1 artifact guidance (config application/vnd.oci.empty.v1+json is new to pre-1.1 "
            "registries); aws/containers-roadmap #2783",
            _refuse(lambda d: _config_type(d) not in KNOWN_CONFIGS, 400, "MANIFEST_INVALID",
                    "unknown config media type"),
            expect=REFUSED_BUNDLE),
    Profile("tags-list-401", "pull-only tokens without the right to list tags (401 insufficient_scope)",
            "issue 13's measurement (pull-only tokens on some clouds)",
            _tags_denied(401)),
    Profile("tags-list-403", "tag listing forbidden (403 DENIED)", "issue 13's measurement", _tags_denied(403)),
    Profile("delete-405", "DELETE refused (405 UNSUPPORTED: distribution without storage.delete, several clouds)",
            "distribution configuration storage.delete (REFERENCE.md §2: DELETE answers 202 only when enabled)",
            _delete_refused),
    Profile("rate-limited-429", "Docker Hub: 429 TOOMANYREQUESTS with Retry-After and RateLimit-* headers",
            "docs.docker.com/docker-hub/usage (RateLimit-Limit, RateLimit-Remaining)", _rate_limited),
    Profile("if-match-ignored", "If-Match ignored: a concurrent writer's stale index replaces ours once",
            "REFERENCE.md §8 (sigstore-js If-Match on distribution); cosign #2432", _if_match_ignored),
    Profile("pull-only-token", "a token scope that allows pull but not push",
            "distribution docs/spec/auth/token.md (the token carries only the granted actions)",
            _pull_only_token, seed_upstream=True,
            expect={op: ("denied a write", "not pushing", "docker login") for op in WRITES}),
]
