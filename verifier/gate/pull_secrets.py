"""Registry credentials the way the kubelet sees them: a Pod's pull secrets, then its ServiceAccount's.

A private image is verified with the credentials the kubelet will pull it with, not only
the webhook's own docker config (the commonest reason peers deny correctly signed images:
Kyverno #2709, #6346, #7887, #16878; policy-controller #375, #1625). For one object:

1. the pod spec's ``imagePullSecrets`` (a workload's pod template for Deployment, CronJob …),
2. then the ``imagePullSecrets`` of its ServiceAccount (``serviceAccountName``, else
   ``default``), read from the API server,
3. then, for a registry none of them names, the webhook's own docker config.

Secrets of type ``kubernetes.io/dockerconfigjson`` (``data[".dockerconfigjson"]``, a docker
``config.json``) and ``kubernetes.io/dockercfg`` (``data[".dockercfg"]``, the bare ``auths``
map) count; other types are skipped, as the kubelet skips them
(kubernetes ``pkg/credentialprovider/secrets/secrets.go``). Keys match images as the
kubelet's keyring does (``pkg/credentialprovider/keyring.go``): the scheme and a ``/v1/`` or
``/v2/`` path are dropped, each dot-separated host label may be a glob (``*.example.com``),
the port must be equal and the key's path must prefix the repository; the most specific key
wins. The kubelet tries every matching entry in turn; here the first (most specific) is used.

Secrets are read only from the namespace of the object under review (references in a pod
spec are local names), with the webhook's own ServiceAccount token, through the official
``kubernetes`` client (imported only when this is used), and cached for a few seconds.
An API answer that is not a secret (401, 403, 404, 5xx, no connection) makes the images of
that object undecided with a reason naming the secret; the rule's ``on_error`` decides.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from imgseal.errors import AuthError, InvalidInputError, UndecidableError, UsageError
from imgseal.reference import DEFAULT_DOMAIN, Reference
from imgseal.store.auth import Credentials, decode_auth_entry

T = TypeVar("T")

DOCKERCONFIGJSON: Final = "kubernetes.io/dockerconfigjson"
DOCKERCFG: Final = "kubernetes.io/dockercfg"
DEFAULT_SERVICEACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_TTL: Final = 10.0
API_TIMEOUT: Final = 3.0  # one API read
API_BUDGET: Final = 4.0  # all the reads for one object: half the webhook's 8 s deadline at most
MAX_PULL_SECRETS: Final = 64  # per object: a bound on API reads one review can cause
_DOCKER_HUB_HOSTS: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# metadata.name of a Secret / ServiceAccount (DNS-1123 subdomain) and a namespace (DNS-1123 label).
_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class PullSecretError(UndecidableError):
    """A pull secret or ServiceAccount could not be read from the API server."""


class NotCached(UndecidableError):
    """Asked for cached answers only, and one is not cached (the caller goes the slow way)."""


# --- the keyring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyringEntry:
    """One registry key of one secret: ``host`` (labels may be globs, ``:port`` kept) and a path prefix."""

    host: str
    path: str
    credentials: Credentials
    source: str  # "secret team-a/regcred", for messages

    def matches(self, host: str, repository: str) -> bool:
        glob_host, _, glob_port = self.host.partition(":")
        name, _, port = host.partition(":")
        if glob_port != port:
            return False
        glob_labels, labels = glob_host.split("."), name.split(".")
        if len(glob_labels) != len(labels):
            return False
        if not all(fnmatch.fnmatchcase(label, glob) for glob, label in zip(glob_labels, labels, strict=True)):
            return False
        # The kubelet compares paths with a plain prefix (keyring.go URLsMatch), so do we.
        return repository.startswith(self.path)


def _registry_key(key: str) -> tuple[str, str] | None:
    """A config key (``https://reg:5000/v1/``, ``reg/team``, ``*.example.com``) as (host, path prefix)."""
    value = key.strip()
    for scheme in ("https://", "http://"):
        if value.lower().startswith(scheme):
            value = value[len(scheme):]
    host, _, path = value.partition("/")
    host = host.lower()
    if not host:
        return None
    if path.startswith(("v1/", "v2/")) or path in ("v1", "v2"):
        path = path[3:]
    if host.partition(":")[0] in _DOCKER_HUB_HOSTS and ":" not in host:
        host = DEFAULT_DOMAIN
    return host, path.strip("/")


def _decode_data(data: Mapping[str, Any], field: str, source: str) -> Any:
    raw = data.get(field)
    if not isinstance(raw, str) or not raw:
        raise InvalidInputError(f"{source}: no data[{field!r}]", reason="invalid-pull-secret")
    try:
        return json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, RecursionError) as e:
        raise InvalidInputError(f"{source}: data[{field!r}] is not base64 of JSON", reason="invalid-pull-secret") from e


def keyring_entries(secret_type: str | None, data: Mapping[str, Any] | None, source: str) -> list[KeyringEntry]:
    """The registry credentials in one Secret (its ``data`` values base64, as the API serves them).

    Other types yield nothing (the kubelet skips them); a docker-config secret whose content
    is malformed is an error, as it is for the kubelet.
    """
    if secret_type == DOCKERCONFIGJSON:
        config = _decode_data(data or {}, ".dockerconfigjson", source)
        auths = config.get("auths") if isinstance(config, dict) else None
    elif secret_type == DOCKERCFG:
        auths = _decode_data(data or {}, ".dockercfg", source)
    else:
        return []
    if not isinstance(auths, dict):
        raise InvalidInputError(f"{source}: the docker config has no 'auths' object", reason="invalid-pull-secret")
    entries: list[KeyringEntry] = []
    for key, value in auths.items():
        where = _registry_key(str(key))
        try:
            creds = decode_auth_entry(value, source) if where else None
        except AuthError as e:  # the user's object is malformed: a definite no, not "could not decide"
            raise InvalidInputError(e.one_line(), reason="invalid-pull-secret") from e
        if where is not None and creds is not None:
            entries.append(KeyringEntry(where[0], where[1], creds, source))
    return entries


@dataclass(frozen=True)
class PullCredentials:
    """The keyring one object's images are pulled with, in the kubelet's order, in one namespace."""

    namespace: str
    entries: tuple[KeyringEntry, ...] = ()

    def lookup_all(self, ref: Reference) -> list[KeyringEntry]:
        """Every entry matching ``ref``, in the order the kubelet tries them."""
        host = ref.registry.lower()
        matching = [e for e in self.entries if e.matches(host, ref.repository)]
        # Most specific first (keyring.go sorts its index so longer keys come first); the sort
        # is stable, so among equals the Pod's own secrets stay ahead of its ServiceAccount's.
        matching.sort(key=lambda e: -(len(e.host) + len(e.path)))
        return matching

    def lookup(self, ref: Reference) -> KeyringEntry | None:
        matching = self.lookup_all(ref)
        return matching[0] if matching else None

    def candidates(self, ref: Reference) -> list[Credentials]:
        """The distinct credentials to try for ``ref``, in order; empty: the webhook's own configuration."""
        return list(dict.fromkeys(e.credentials for e in self.lookup_all(ref)))

    def credentials(self, ref: Reference) -> Credentials | None:
        """The first credentials for ``ref``, or None: then the webhook's own configuration applies."""
        found = self.candidates(ref)
        return found[0] if found else None

    def scope(self, ref: Reference) -> str:
        """Who pulls ``ref``, for the success cache: a hash of the credentials tried, or the webhook itself.

        A success verified with one namespace's credentials must not admit, from the cache, an
        image that another namespace cannot pull: so the cache key carries this scope. Two
        namespaces holding the same credentials share entries (they can pull the same images).
        """
        found = self.candidates(ref)
        if not found:
            return "own"
        secret = "\n\n".join(f"{c.username}\n{c.password or ''}\n{c.identity_token or ''}" for c in found)
        return "pull:" + hashlib.sha256(secret.encode()).hexdigest()[:32]


# --- what an object asks for ----------------------------------------------------------------


@dataclass(frozen=True)
class PullRequest:
    """The names one object's pod specs give: pull secrets and ServiceAccounts, in order."""

    secrets: tuple[str, ...]
    service_accounts: tuple[str, ...]


def pull_request(obj: Any) -> PullRequest:
    """The pull-secret and ServiceAccount names of an object's pod spec(s) (a List's items too)."""
    from verifier.gate.kube import POD_SPEC_PATHS

    secrets: list[str] = []
    accounts: list[str] = []

    def visit(node: Any) -> None:
        if not isinstance(node, Mapping):
            return
        kind = node.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(node.get("items"), list):
            for item in node["items"]:
                visit(item)
            return
        path = POD_SPEC_PATHS.get(kind) if isinstance(kind, str) else None
        spec: Any = node
        for step in path or ():
            spec = spec.get(step) if isinstance(spec, Mapping) else None
        if path is None or not isinstance(spec, Mapping):
            return
        listed = spec.get("imagePullSecrets") or []
        if not isinstance(listed, list):
            raise InvalidInputError("imagePullSecrets must be a list", reason="invalid-manifest")
        for item in listed:
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
                raise InvalidInputError(f"imagePullSecrets: invalid secret name {name!r}", reason="invalid-manifest")
            secrets.append(name)
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if not isinstance(account, str) or not _SUBDOMAIN.fullmatch(account) or len(account) > 253:
            raise InvalidInputError(f"invalid serviceAccountName {account!r}", reason="invalid-manifest")
        accounts.append(account)

    visit(obj)
    return PullRequest(tuple(dict.fromkeys(secrets)), tuple(dict.fromkeys(accounts)))


# --- reading the API server ---------------------------------------------------------------


class _TTLCache:
    """Values for a few seconds; concurrent callers of one key wait for the first. Failures are not kept."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], fn: Callable[[], T], *, cached_only: bool = False) -> T:
        if cached_only:
            with self._lock:
                found = self._values.get(key)
            if found is None or found[0] <= time.monotonic():
                raise NotCached(f"{key} is not cached")
            return found[1]  # type: ignore[no-any-return]
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                found = self._values.get(key)
            if found is not None and found[0] > time.monotonic():
                return found[1]  # type: ignore[no-any-return]
            value = fn()
            with self._lock:
                self._values[key] = (time.monotonic() + self.ttl, value)
                if len(self._values) > 4096:  # drop the expired ones (and their locks) now and then
                    now = time.monotonic()
                    self._values = {k: v for k, v in self._values.items() if v[0] > now}
                    self._locks = {k: v for k, v in self._locks.items() if k in self._values or k == key}
            return value


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, if the body is one."""
    try:
        status = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return " ".join(str(message).split())[:300] if message else ""


class KubeSecrets:
    """Pull secrets and ServiceAccounts from the API server, as the webhook's own ServiceAccount."""

    def __init__(self, api_client: Any, *, ttl: float = DEFAULT_TTL, timeout: float = API_TIMEOUT,
                 budget: float = API_BUDGET) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._api_client = api_client
        self._cache = _TTLCache(ttl)
        self.timeout = timeout
        self.budget = budget
        self._budget = threading.local()  # the deadline of the pull_credentials call on this thread

    @classmethod
    def in_cluster(cls, directory: Path = DEFAULT_SERVICEACCOUNT_DIR, environ: Mapping[str, str] | None = None,
                   **kw: Any) -> KubeSecrets:
        """Configured like a Pod: ``KUBERNETES_SERVICE_HOST``/``PORT``, ``token`` and ``ca.crt`` in ``directory``.

        The token file is re-read every minute (bound ServiceAccount tokens rotate).
        """
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader

        configuration = client.Configuration()
        configuration.retries = 0  # our budget, not urllib3's three retries, bounds a hanging API server
        try:
            loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
                str(directory / "token"), str(directory / "ca.crt"),
                environ=dict(os.environ if environ is None else environ))
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as e:
            raise UsageError(f"cannot use the in-cluster API configuration ({directory}): {e}",
                             hint="outside a cluster, give --kubeconfig FILE") from e
        return cls(client.ApiClient(configuration), **kw)

    @classmethod
    def from_kubeconfig(cls, path: Path, **kw: Any) -> KubeSecrets:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=str(path), client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, TypeError) as e:
            raise UsageError(f"--kubeconfig {path}: {e}") from e
        configuration.retries = 0
        return cls(client.ApiClient(configuration), **kw)

    def close(self) -> None:
        self._api_client.close()

    def _read(self, what: str, namespace: str, name: str, call: Callable[..., Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"{what} {namespace}/{name}"
        budget = getattr(self._budget, "until", None)
        timeout = self.timeout if budget is None else min(self.timeout, budget - time.monotonic())
        if timeout <= 0:
            raise PullSecretError(f"cannot read {where}: the API server took more than {self.budget:g} s for this "
                                  "object's pull secrets", reason="pull-secret-unreadable")
        try:
            return call(name, namespace, _request_timeout=timeout)
        except ApiException as e:
            detail = _status_message(e.body) or f"{e.status} {e.reason}"
            if e.status == 401:
                message = f"cannot read {where}: the API server refused the webhook's token (401: {detail})"
            elif e.status == 403:
                message = f"cannot read {where}: the webhook's ServiceAccount may not get it (403: {detail})"
            elif e.status == 404:
                message = f"{where} not found (404: {detail})"
            else:
                message = f"cannot read {where}: API server answered {e.status}: {detail}"
            raise PullSecretError(message, reason="pull-secret-unreadable") from e
        except (HTTPError, OSError, ValueError) as e:
            raise PullSecretError(f"cannot read {where}: {type(e).__name__}: {str(e)[:200]}",
                                  reason="pull-secret-unreadable") from e

    def secret_entries(self, namespace: str, name: str, *, cached_only: bool = False) -> tuple[KeyringEntry, ...]:
        def fetch() -> tuple[KeyringEntry, ...]:
            secret = self._read("secret", namespace, name, self._core.read_namespaced_secret)
            return tuple(keyring_entries(secret.type, secret.data, f"secret {namespace}/{name}"))

        return self._cache.get(("secret", namespace, name), fetch, cached_only=cached_only)

    def account_secrets(self, namespace: str, name: str, *, cached_only: bool = False) -> tuple[str, ...]:
        def fetch() -> tuple[str, ...]:
            account = self._read("serviceaccount", namespace, name, self._core.read_namespaced_service_account)
            refs = account.image_pull_secrets or []
            return tuple(r.name for r in refs if isinstance(getattr(r, "name", None), str))

        return self._cache.get(("serviceaccount", namespace, name), fetch, cached_only=cached_only)

    def pull_credentials(self, namespace: str, wanted: PullRequest, *, cached_only: bool = False) -> PullCredentials:
        """The keyring for an object of ``namespace``: its pod specs' secrets, then their ServiceAccounts'.

        ``cached_only``: never ask the API server; :class:`NotCached` if something is not cached.
        """
        if not _LABEL.fullmatch(namespace):
            raise InvalidInputError(f"invalid namespace {namespace!r}", reason="invalid-manifest")
        self._budget.until = time.monotonic() + self.budget
        try:
            return self._pull_credentials(namespace, wanted, cached_only)
        finally:
            self._budget.until = None

    def _pull_credentials(self, namespace: str, wanted: PullRequest, cached_only: bool) -> PullCredentials:
        names: list[str] = list(wanted.secrets)
        for account in wanted.service_accounts:
            names.extend(self.account_secrets(namespace, account, cached_only=cached_only))
        names = list(dict.fromkeys(names))
        if len(names) > MAX_PULL_SECRETS:
            raise InvalidInputError(f"{len(names)} image pull secrets: at most {MAX_PULL_SECRETS} are read",
                                    reason="invalid-manifest")
        entries: list[KeyringEntry] = []
        for name in names:
            entries.extend(self.secret_entries(namespace, name, cached_only=cached_only))
        return PullCredentials(namespace, tuple(entries))


def describe(entries: Sequence[KeyringEntry]) -> list[str]:
    """Where credentials came from, for logs (never the secrets themselves)."""
    return [f"{e.source}: {e.host}/{e.path}".rstrip("/") for e in entries]
