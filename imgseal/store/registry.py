"""OCI distribution over HTTP(S), with requests.

Behaviours that matter for a security tool (distribution-spec v1.1, REFERENCE.md §2):
- every manifest request sends all four manifest media types in ``Accept`` (distribution
  2.8 answers 404 for an OCI manifest requested without its type);
- manifests are read with a 4 MiB cap and checked against the requested digest; blobs are
  checked while streaming (size, then digest);
- TLS is verified by default; plain HTTP is used only for loopback hosts and hosts named
  as insecure, and only when the server does not speak TLS at all;
- transient failures (connection errors, 429, 5xx) are retried with bounded exponential
  backoff honouring ``Retry-After``;
- redirects are followed by hand so ``Authorization`` never reaches another host;
- a host that does not resolve or refuses the connection is reported in one line at once
  (retrying a definite answer only delays it); resets and timeouts are retried;
- the referrers API is used only when the endpoint answers an image index: any other
  non-auth 4xx (404 is the spec's "no API", registries also send 405/406, notation #659)
  means the referrers tag schema, and the ``OCI-Subject`` header alone proves nothing
  (AWS ECR sent it without an API, sigstore-js #1183). ``--referrers-mode`` overrides.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from imgseal.digest import CHUNK, Digest, VerifyingReader
from imgseal.errors import (
    AuthError,
    DigestMismatchError,
    Error,
    InvalidInputError,
    NetworkError,
    NotFoundError,
    RegistryError,
    UndecidableError,
)
from imgseal.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    Manifest,
    load_json,
    parse_manifest,
)
from imgseal.store.auth import Credentials, find_credentials, parse_challenge

if TYPE_CHECKING:
    import requests

log = logging.getLogger("imgseal.registry")

ACCEPT_MANIFESTS: Final = ", ".join(MANIFEST_TYPES)
RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS: Final = 5
MAX_PAGES: Final = 64
# Answers to a manifest PUT that distribution gives transiently while the same blob is pushed concurrently.
TRANSIENT_MANIFEST_CODES: Final = frozenset({"DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"})
MANIFEST_PUT_ATTEMPTS: Final = 5
USER_AGENT: Final = "imgseal/0.1"
REFERRERS_MODES: Final = ("auto", "api", "tag")
# Docker Hub's rate-limit headers (docs.docker.com/docker-hub/usage/pulls) and the IETF draft's.
RATE_LIMIT_HEADERS: Final = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def is_loopback(host: str) -> bool:
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.index("]")]
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def insecure_from_env() -> frozenset[str]:
    raw = os.environ.get("IMGSEAL_INSECURE_REGISTRIES", "")
    return frozenset(h.strip() for h in raw.split(",") if h.strip())


def referrers_mode_from_env() -> str:
    """``IMGSEAL_REFERRERS_MODE`` (auto, api or tag); an unknown value is refused where options are built."""
    return os.environ.get("IMGSEAL_REFERRERS_MODE", "").strip().lower() or "auto"


@dataclass(frozen=True)
class RegistryOptions:
    """How to talk to registries; one per command run."""

    ca_file: Path | None = None
    insecure_registries: frozenset[str] = field(default_factory=insecure_from_env)
    timeout: float = 30.0
    max_attempts: int = 5
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    retry_budget: float = 30.0
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    pool_size: int = 16
    #: auto: the referrers API where the registry has one, else the tag schema; api: the API or
    #: fail (exit 3); tag: the tag schema without asking (registries whose API misbehaves).
    referrers_mode: str = field(default_factory=referrers_mode_from_env)


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    secret = ("authorization", "proxy-authorization")
    return {k: ("<redacted>" if k.lower() in secret else v) for k, v in headers.items()}


def _registry_error(resp: requests.Response) -> tuple[str | None, str]:
    """The first distribution-spec error code of an error answer (if any) and a one-line message."""
    try:
        if "json" in resp.headers.get("Content-Type", "") and len(resp.content) < 65536:
            data = resp.json()
            errors = data.get("errors") if isinstance(data, dict) else None
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                code = str(errors[0].get("code", ""))
                message = str(errors[0].get("message", ""))
                return code or None, " ".join(f"{code}: {message}".split())[:300]
    except ValueError:
        pass
    return None, f"HTTP {resp.status_code} {resp.reason or ''}".strip()


def connection_problem(e: BaseException) -> tuple[str, bool]:
    """Why a connection failed, in a few words, and whether trying again could help.

    requests wraps urllib3's ``MaxRetryError(NewConnectionError(...))`` whose text is a
    repr of the pool; the cause underneath is what a user needs ("name does not resolve").
    A name that does not resolve and a refused connection are definite answers, not
    glitches: retrying them for seconds only delays the error.
    """
    import socket
    import ssl

    import requests

    if isinstance(e, requests.exceptions.Timeout):
        return "timed out", True
    seen: set[int] = set()
    stack: list[BaseException] = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, socket.gaierror):
            return "name does not resolve", False
        if isinstance(x, ConnectionRefusedError):
            return "connection refused", False
        if isinstance(x, ssl.SSLCertVerificationError):
            return f"TLS: certificate not trusted ({x.verify_message or 'verification failed'})", False
        if isinstance(x, ssl.SSLError):
            return f"TLS: {getattr(x, 'reason', None) or _short(x)}", False
        if isinstance(x, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return "connection reset", True
        if isinstance(x, TimeoutError):
            return "timed out", True
        stack.extend(c for c in (getattr(x, "reason", None), x.__cause__, x.__context__, *x.args)
                     if isinstance(c, BaseException))
    return _short(e), True


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


class RegistryClient:
    """A connection to one registry host: scheme detection, auth, retries, redirects."""

    def __init__(self, host: str, options: RegistryOptions | None = None) -> None:
        import requests
        import requests.adapters

        self.host = host
        self.options = options or RegistryOptions()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # requests' trust_env re-reads the proxy variables and ~/.netrc on every request (about
        # 0.8 ms each), and a ~/.netrc entry for the host would *replace* the Authorization header
        # we set with its own Basic credentials. The environment is read here instead, once:
        # proxies per scheme and host (_proxies), the CA bundle below; netrc is not a source.
        self.session.trust_env = False
        self._loopback = is_loopback(host)  # never sent through an environment proxy
        self._proxy_cache: dict[tuple[str, str], dict[str, str]] = {}
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=self.options.pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.insecure = host in self.options.insecure_registries
        self.verify: bool | str = str(self.options.ca_file) if self.options.ca_file else True
        if self.verify is True and not self._loopback:
            # As requests does with trust_env: a CA bundle named by the environment replaces the default.
            self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        if self.insecure:
            self.verify = False
        self._scheme: str | None = None
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._basic: Credentials | None = None
        self._challenge_scheme: str | None = None
        self._pinged = False
        self._challenge_params: dict[str, str] = {}
        self.request_count = 0
        self._credentials_loaded: dict[str, Credentials | None] = {}

    # -- scheme and ping ---------------------------------------------------------------

    @property
    def base(self) -> str:
        if self._scheme is None:
            with self._lock:
                if self._scheme is None:
                    self._scheme = self._detect_scheme()
        return f"{self._scheme}://{self.host}"

    def _detect_scheme(self) -> str:
        import requests

        if not (is_loopback(self.host) or self.insecure):
            return "https"
        if is_loopback(self.host) and not self.insecure and self._plain_http_registry():
            return "http"
        try:
            url = f"https://{self.host}/v2/"
            self.session.get(url, timeout=self.options.timeout, verify=self.verify, allow_redirects=False,
                             proxies=self._proxies(url))
            return "https"
        except requests.exceptions.SSLError as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate verify failed" in str(e):
                raise NetworkError(
                    f"TLS certificate verification failed for {self.host}: the server's certificate is not trusted",
                    hint="pass --ca-file with the registry's CA certificate",
                    reason="tls-verify",
                ) from e
            return "http"  # the server does not speak TLS: loopback/insecure hosts may use plain HTTP
        except requests.exceptions.ConnectionError as e:
            if "SSL" in str(e) or "EOF occurred" in str(e) or "record" in str(e).lower():
                return "http"
            raise NetworkError(f"cannot reach registry {self.host}: {connection_problem(e)[0]}") from e
        except requests.exceptions.RequestException as e:
            raise NetworkError(f"cannot reach registry {self.host}: {connection_problem(e)[0]}") from e

    def _plain_http_registry(self) -> bool:
        """Whether a loopback host answers ``/v2/`` over plain HTTP (no credentials are sent).

        Asking loopback in plain HTTP first spares the TLS probe (loading a CA bundle costs
        ~40 ms per process). A TLS-only server answers Go's "400 Client sent an HTTP request to
        an HTTPS server" or drops the connection; then the HTTPS probe decides, as for any host.
        Nothing on loopback can be intercepted by the network, so the order changes no trust.
        """
        import requests

        try:
            resp = self.session.get(f"http://{self.host}/v2/", timeout=self.options.timeout, allow_redirects=False)
        except requests.exceptions.RequestException:
            return False
        if resp.status_code not in (200, 401):
            resp.close()
            return False
        self.request_count += 1
        self._pinged = True
        if resp.status_code == 401:
            self._note_challenge(resp)
        resp.close()
        return True

    def _proxies(self, url: str) -> dict[str, str]:
        """The environment's proxies for ``url`` (``HTTPS_PROXY``, ``NO_PROXY`` …), read once per scheme and host."""
        if self._loopback:
            return {}
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        proxies = self._proxy_cache.get(key)
        if proxies is None:
            import requests.utils

            proxies = dict(requests.utils.get_environ_proxies(url))
            self._proxy_cache[key] = proxies
        return proxies

    def ping(self) -> None:
        """``GET /v2/``: learns the auth challenge; raises if the registry is unusable."""
        resp = self._send("GET", "/v2/", scope=None, expected=(200, 401))
        self._pinged = True
        if resp.status_code == 401:
            self._note_challenge(resp)

    # -- auth --------------------------------------------------------------------------

    @property
    def challenge_scheme(self) -> str | None:
        """The auth scheme the registry's ``/v2/`` challenge named (``basic``, ``bearer``), None if none.

        Known once a request has been made (``imgseal registry probe`` reports it).
        """
        return self._challenge_scheme

    def credentials(self, repository: str) -> Credentials | None:
        if self.host in self.options.credentials:
            return self.options.credentials[self.host]
        if repository not in self._credentials_loaded:
            self._credentials_loaded[repository] = find_credentials(self.host, repository)
        return self._credentials_loaded[repository]

    def _note_challenge(self, resp: requests.Response) -> None:
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if challenge is not None:
            self._challenge_scheme = challenge.scheme
            self._challenge_params = challenge.params

    def _auth_header(self, scope: str | None, repository: str) -> dict[str, str]:
        if self._challenge_scheme == "bearer" and scope is not None:
            token = self._tokens.get(scope)
            if token is None:
                token = self._fetch_token(scope, repository)
            return {"Authorization": f"Bearer {token}"}
        if self._challenge_scheme == "basic":
            creds = self.credentials(repository)
            if creds is None or creds.password is None:
                raise AuthError(f"registry {self.host} requires credentials and none were found",
                                hint="docker login, or set REGISTRY_AUTH_FILE / DOCKER_CONFIG")
            import base64

            value = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            return {"Authorization": f"Basic {value}"}
        return {}

    def _fetch_token(self, scope: str, repository: str) -> str:
        import requests

        realm = self._challenge_params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host} sent a Bearer challenge without a realm")
        params = {"scope": scope}
        if "service" in self._challenge_params:
            params["service"] = self._challenge_params["service"]
        creds = self.credentials(repository)
        try:
            if creds is not None and creds.identity_token:
                resp = self.session.post(realm, data={
                    "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "imgseal", **params}, timeout=self.options.timeout, verify=self.verify,
                    proxies=self._proxies(realm))
            else:
                auth = (creds.username, creds.password or "") if creds is not None else None
                resp = self.session.get(realm, params=params, auth=auth, timeout=self.options.timeout,
                                        verify=self.verify, proxies=self._proxies(realm))
        except requests.exceptions.RequestException as e:
            raise NetworkError(f"cannot reach token service {urllib.parse.urlsplit(realm).netloc}: "
                               f"{connection_problem(e)[0]}") from e
        if resp.status_code in (401, 403):
            raise AuthError(f"registry {self.host} refused the credentials for {scope}")
        if resp.status_code != 200:
            raise AuthError(f"token service answered {resp.status_code} for {scope}")
        try:
            data = resp.json()
        except ValueError as e:
            raise AuthError("token service answered with malformed JSON") from e
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError("token service answered without a token")
        self._tokens[scope] = token
        return token

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        push: bool = False,
        expected: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}" if repository else None
        if not self._pinged:
            _ = self.base  # scheme detection may already have pinged (plain-HTTP loopback)
            if not self._pinged:
                self.ping()
        resp = self._send(method, path, scope=scope, repository=repository, expected=(*expected, 401),
                          headers=headers, data=data, stream=stream, params=params, retry=retry)
        if resp.status_code == 401:
            # Token expired or scope changed: learn the challenge again, retry once.
            self._note_challenge(resp)
            if scope is not None:
                self._tokens.pop(scope, None)
            resp.close()
            resp = self._send(method, path, scope=scope, repository=repository, expected=expected, headers=headers,
                              data=data, stream=stream, params=params, retry=retry)
            if resp.status_code == 401:
                raise AuthError(f"registry {self.host} denied access to {repository or '/v2/'} (401)")
        return resp

    def _send(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        repository: str = "",
        expected: tuple[int, ...],
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        import requests

        url = path if path.startswith(("http://", "https://")) else self.base + path
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            if self._challenge_scheme is not None and urllib.parse.urlsplit(url).netloc == self.host:
                hdrs.update(self._auth_header(scope, repository))
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                resp = self._follow(method, url, hdrs, data, stream, params)
            except requests.exceptions.SSLError as e:
                raise NetworkError(f"cannot reach registry {self.host}: {connection_problem(e)[0]}",
                                   hint="pass --ca-file with the registry's CA certificate",
                                   reason="tls-verify") from e
            except requests.exceptions.RequestException as e:
                problem, transient = connection_problem(e)
                if transient and retry and self._may_retry(attempt, started, None):
                    continue
                raise NetworkError(f"cannot reach registry {self.host}: {problem} ({method} {_path_only(url)})",
                                   reason="network-error") from e
            if resp.status_code in expected:
                return resp
            if resp.status_code in RETRY_STATUS and retry and self._may_retry(attempt, started, resp):
                resp.close()
                continue
            raise self._error_for(resp, method, url, attempts=attempt)

    def _may_retry(self, attempt: int, started: float, resp: requests.Response | None) -> bool:
        opts = self.options
        if attempt >= opts.max_attempts:
            return False
        delay = min(opts.backoff_max, opts.backoff_base * (2 ** (attempt - 1)))
        if resp is not None:
            after = _retry_after(resp)
            if after is not None:
                if after > opts.backoff_max:
                    # Asking again before the registry's Retry-After (Docker Hub sends hours when the
                    # pull limit is spent) only earns another 429: give up now and say when.
                    return False
                delay = max(delay, after)
        if time.monotonic() - started + delay > opts.retry_budget:
            return False
        log.debug("retrying in %.2fs (attempt %d)", delay, attempt + 1)
        time.sleep(delay)
        return True

    def _follow(self, method: str, url: str, headers: dict[str, str], data: Any, stream: bool,
                params: Mapping[str, str] | None) -> requests.Response:
        for _ in range(MAX_REDIRECTS + 1):
            self.request_count += 1
            log.debug("%s %s %s", method, url, _redact(headers))
            resp = self.session.request(method, url, headers=headers, data=data, stream=stream, params=params,
                                        timeout=self.options.timeout, verify=self.verify, allow_redirects=False,
                                        proxies=self._proxies(url))
            log.debug("-> %s", resp.status_code)
            if resp.status_code not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            target = urllib.parse.urljoin(url, resp.headers["Location"])
            resp.close()
            params = None
            if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
                # Blob downloads are often redirected to object storage: never forward credentials there.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status_code == 303:
                method, data = "GET", None
            url = target
        raise RegistryError(f"too many redirects from {self.host}")

    def _error_for(self, resp: requests.Response, method: str, url: str, *, attempts: int = 1) -> Error:
        code, message = _registry_error(resp)
        where = f"{method} {_path_only(url)}"
        resp.close()
        error: Error
        if resp.status_code == 404:
            error = NotFoundError(f"{where}: not found ({message})")
        elif resp.status_code in (401, 403):
            if method in ("PUT", "POST", "PATCH", "DELETE"):
                # A token scope with pull but not push (read-only robot accounts, CI tokens).
                error = AuthError(f"{where}: {self.host} denied a write ({message}): the credentials allow "
                                  "reading this repository but not pushing to it",
                                  hint="log in (docker login) with credentials that may push here",
                                  reason="push-denied")
            else:
                error = AuthError(f"{where}: access denied by {self.host} ({message})")
        elif resp.status_code == 429:
            limits = "; ".join(f"{h} {resp.headers[h]}" for h in RATE_LIMIT_HEADERS if h in resp.headers)
            after = resp.headers.get("Retry-After")
            detail = ", ".join(p for p in (limits, f"Retry-After {after} s" if after else "") if p)
            error = RegistryError(f"{where}: registry {self.host} rate-limits this client ({message}"
                                  f"{'; ' + detail if detail else ''})"
                                  f"{f', still after retries ({attempts} attempts)' if attempts > 1 else ''}",
                                  hint="wait and run again, or log in (docker login) for a higher limit",
                                  reason="rate-limited")
        elif resp.status_code in RETRY_STATUS:
            error = RegistryError(f"{where}: registry {self.host} kept failing ({message}) after retries",
                                  reason="registry-unavailable")
        else:
            error = RegistryError(f"{where}: registry {self.host} answered {message}")
            error.registry_code = code
        if isinstance(error, UndecidableError):
            error.http_status = resp.status_code
        return error

    def repository(self, name: str) -> RegistryStore:
        return RegistryStore(self, name)


# requests/urllib3 wrap the OS error twice: "HTTPSConnectionPool(host=…, port=…): Max retries
# exceeded with url: /v2/ (Caused by NewConnectionError("HTTPSConnection(…): Failed to establish a
# new connection: [Errno 111] Connection refused"))". Keep the innermost reason, which the cut
# at 200 characters would otherwise lose.
_URLLIB3_WRAPPER: Final = re.compile(
    r"^\w*ConnectionPool\(.*?\): Max retries exceeded with url: \S+ \(Caused by \w+\(['\"]?(?P<inner>.*?)['\"]?\)\)$")
_URLLIB3_CONNECTION: Final = re.compile(r"^\w*Connection\(host=[^)]*\): ")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    wrapped = _URLLIB3_WRAPPER.match(text)
    if wrapped:
        text = _URLLIB3_CONNECTION.sub("", wrapped.group("inner"))
    return text[:200]


def _path_only(url: str) -> str:
    return urllib.parse.urlsplit(url).path


class RegistryStore:
    """One repository on a registry."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self._repository = repository
        self.referrers_supported: bool | None = None

    @property
    def repository(self) -> str:
        return self._repository

    @property
    def location(self) -> str:
        return f"{self.client.host}/{self._repository}"

    def _path(self, kind: str, ref: str) -> str:
        return f"/v2/{self._repository}/{kind}/{ref}"

    # -- manifests ---------------------------------------------------------------------

    def get_manifest(self, ref: str | Digest) -> Manifest:
        resp = self.client.request("GET", self._path("manifests", str(ref)), repository=self._repository,
                                   headers={"Accept": ACCEPT_MANIFESTS}, stream=True)
        try:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
                raise InvalidInputError(f"manifest {ref} is {declared} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
            raw = _read_capped(resp, MAX_MANIFEST_BYTES, what=f"manifest {ref}")
        finally:
            resp.close()
        if declared is not None and declared.isdigit() and int(declared) != len(raw):
            raise DigestMismatchError(f"manifest {ref}: truncated body ({len(raw)} of {declared} bytes)")
        content_type = resp.headers.get("Content-Type")
        if isinstance(ref, Digest):
            actual = Digest(ref.algorithm, _hash(raw, ref.algorithm))
            if actual != ref:
                raise DigestMismatchError(
                    f"manifest from {self.location} does not match its digest: requested {ref}, received bytes hash "
                    f"to {actual}", reason="digest-mismatch")
            return parse_manifest(raw, content_type=content_type, digest=ref)
        manifest = parse_manifest(raw, content_type=content_type)
        header = resp.headers.get("Docker-Content-Digest")
        if header:
            try:
                claimed = Digest.parse(header)
            except Error:
                claimed = None
            if claimed is not None and claimed.algorithm == "sha256" and claimed != manifest.digest:
                raise DigestMismatchError(f"manifest {self.location}:{ref}: registry claims {claimed} but the bytes "
                                          f"hash to {manifest.digest}")
        return manifest

    def has_manifest(self, ref: str | Digest) -> bool:
        try:
            resp = self.client.request("HEAD", self._path("manifests", str(ref)), repository=self._repository,
                                       headers={"Accept": ACCEPT_MANIFESTS})
        except NotFoundError:
            return False
        resp.close()
        return True

    def put_manifest(self, raw: bytes, media_type: str, *, tag: str | None = None) -> Digest:
        digest = Digest.of(raw)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidInputError(f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
        for attempt in range(1, MANIFEST_PUT_ATTEMPTS + 1):
            try:
                resp = self.client.request("PUT", self._path("manifests", tag or str(digest)),
                                           repository=self._repository, push=True, expected=(200, 201, 202),
                                           headers={"Content-Type": media_type}, data=raw)
                break
            except RegistryError as e:
                # distribution's filesystem driver rewrites a blob's repository link file in place
                # whenever anyone pushes that blob again; a manifest PUT that checks the link at that
                # moment reads a partial file and is refused with DIGEST_INVALID (or BLOB_UNKNOWN).
                # We hashed `raw` ourselves and pushed its blobs first, so that answer is transient.
                if e.registry_code not in TRANSIENT_MANIFEST_CODES or attempt == MANIFEST_PUT_ATTEMPTS:
                    raise
                log.debug("manifest PUT refused with %s; retrying (attempt %d)", e.registry_code, attempt + 1)
                time.sleep(0.05 * 2 ** (attempt - 1))
        resp.close()
        header = resp.headers.get("Docker-Content-Digest")
        if header and header != str(digest):
            raise RegistryError(f"registry stored the manifest as {header}, expected {digest}")
        # An ``OCI-Subject`` answer is not taken as proof of a referrers API: AWS ECR sent it
        # without one (sigstore-js #1183). Only an index from the endpoint counts (referrers()).
        return digest

    def delete_manifest(self, digest: Digest) -> None:
        resp = self.client.request("DELETE", self._path("manifests", str(digest)), repository=self._repository,
                                   push=True, expected=(200, 202))
        resp.close()

    def list_tags(self) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{self._repository}/tags/list?n=1000"
        pages = 0
        while path is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise RegistryError(f"tag listing of {self.location} exceeds {MAX_PAGES} pages")
            try:
                resp = self.client.request("GET", path, repository=self._repository)
            except NotFoundError:
                return tags
            data = load_json(_read_capped(resp, 16 << 20, what="tag list"), what="tag list", max_bytes=16 << 20)
            page = data.get("tags") if isinstance(data, dict) else None
            if page is not None and not (isinstance(page, list) and all(isinstance(t, str) for t in page)):
                raise RegistryError(f"malformed tag list from {self.location}")
            tags.extend(page or [])
            path = _next_link(resp.headers.get("Link"), path)
        return tags

    def referrers(self, digest: Digest, artifact_type: str | None = None) -> list[Descriptor] | None:
        """The referrers API's answer, or None where the tag schema applies (see the module docstring)."""
        mode = self.client.options.referrers_mode
        if mode == "tag" or self.referrers_supported is False:
            return None
        path: str | None = self._path("referrers", str(digest))
        params = {"artifactType": artifact_type} if artifact_type else None
        found: list[Descriptor] = []
        pages = 0
        while path is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise RegistryError(f"referrers of {digest} on {self.location} exceed {MAX_PAGES} pages")
            try:
                resp = self.client.request("GET", path, repository=self._repository, params=params,
                                           headers={"Accept": "application/vnd.oci.image.index.v1+json"})
            except (NotFoundError, RegistryError) as e:
                # distribution 2.8/3.x: "404 page not found"; other registries answer 405 or 406
                # (notation #659). Any 4xx but auth and rate limits means "no API here". 5xx and
                # 429 after retries stay errors: a registry that has the API but is failing must
                # not make us read (or write) the tag schema and miss what the API holds.
                status = e.http_status
                if status is None or not 400 <= status < 500 or status == 429:
                    raise
                self._no_referrers_api(f"answered {status}")
                return None
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in INDEX_TYPES:
                resp.close()
                self._no_referrers_api(f"answered {resp.status_code} {content_type or 'without a type'}, "
                                       "not an image index")
                return None
            raw = _read_capped(resp, MAX_MANIFEST_BYTES, what="referrers index")
            index = parse_manifest(raw, content_type=content_type)
            if not isinstance(index, ImageIndex):
                raise RegistryError(f"referrers response from {self.location} is not an index")
            filtered = "artifactType" in resp.headers.get("OCI-Filters-Applied", "")
            for d in index.manifests:
                if artifact_type is None or filtered or d.artifact_type == artifact_type:
                    found.append(d)
            path = _next_link(resp.headers.get("Link"), path)
            params = None
        self.referrers_supported = True
        return found

    def _no_referrers_api(self, what: str) -> None:
        where = f"GET /v2/{self._repository}/referrers/…"
        if self.client.options.referrers_mode == "api":
            raise RegistryError(f"{self.client.host} has no referrers API ({where} {what}) and --referrers-mode "
                                "is api", hint="use --referrers-mode auto (or tag) to use the referrers tag schema",
                                reason="no-referrers-api")
        if self.referrers_supported is None:
            log.debug("no referrers API on %s (%s %s): using the referrers tag schema", self.client.host, where, what)
        self.referrers_supported = False

    # -- blobs -------------------------------------------------------------------------

    def has_blob(self, digest: Digest) -> bool:
        try:
            resp = self.client.request("HEAD", self._path("blobs", str(digest)), repository=self._repository)
        except NotFoundError:
            return False
        resp.close()
        return True

    def _open_blob(self, desc: Descriptor) -> requests.Response:
        resp = self.client.request("GET", self._path("blobs", str(desc.digest)), repository=self._repository,
                                   stream=True)
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > desc.size:
            resp.close()
            raise DigestMismatchError(f"blob {desc.digest}: registry announces {declared} bytes, descriptor says "
                                      f"{desc.size}")
        return resp

    def blob_chunks(self, desc: Descriptor) -> Iterator[bytes]:
        import requests

        resp = self._open_blob(desc)

        def raw_chunks() -> Iterator[bytes]:
            try:
                yield from resp.iter_content(CHUNK)
            except requests.exceptions.RequestException as e:
                raise NetworkError(f"blob {desc.digest}: connection failed mid-body: {_short(e)}") from e
            finally:
                resp.close()

        return iter(VerifyingReader(raw_chunks(), desc.digest, desc.size, what=f"blob {desc.digest}"))

    def get_blob(self, desc: Descriptor, *, max_bytes: int) -> bytes:
        if desc.size > max_bytes:
            raise InvalidInputError(f"blob {desc.digest} is {desc.size} bytes, over the {max_bytes}-byte limit")
        return b"".join(self.blob_chunks(desc))

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
        digest = digest or Digest.of(data)
        if self.has_blob(digest):
            return digest
        self._upload(data, digest, len(data))
        return digest

    def put_blob_file(self, path: Path, digest: Digest, size: int) -> None:
        if self.has_blob(digest):
            return
        with path.open("rb") as f:
            self._upload(f, digest, size)

    def _upload(self, data: Any, digest: Digest, size: int) -> None:
        resp = self.client.request("POST", f"/v2/{self._repository}/blobs/uploads/", repository=self._repository,
                                   push=True, expected=(202, 201))
        location = resp.headers.get("Location")
        resp.close()
        if resp.status_code == 201:
            return
        if not location:
            raise RegistryError(f"registry {self.client.host} started an upload without a Location")
        # distribution's Location already carries ?_state=…: append the digest parameter.
        target = urllib.parse.urljoin(self.client.base + "/", location)
        target += ("&" if "?" in target else "?") + urllib.parse.urlencode({"digest": str(digest)})
        put = self.client.request("PUT", target, repository=self._repository, push=True, expected=(201, 204),
                                  headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                                  data=data)
        put.close()


def _hash(raw: bytes, algorithm: str) -> str:
    import hashlib

    return hashlib.new(algorithm, raw).hexdigest()


def _read_capped(resp: requests.Response, limit: int, *, what: str) -> bytes:
    import requests

    buf = bytearray()
    try:
        for chunk in resp.iter_content(65536):
            buf += chunk
            if len(buf) > limit:
                raise InvalidInputError(f"{what} exceeds the {limit}-byte limit")
    except requests.exceptions.RequestException as e:
        raise NetworkError(f"{what}: connection failed mid-body: {_short(e)}") from e
    finally:
        resp.close()
    return bytes(buf)


def _next_link(header: str | None, current: str) -> str | None:
    """Follow an RFC 5988 ``Link: <…>; rel="next"`` header (distribution-spec paging)."""
    if not header:
        return None
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if start != -1 and end > start:
                target = part[start + 1 : end]
                return target if target.startswith("/") or target.startswith("http") else None
    return None
