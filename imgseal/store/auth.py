"""Registry credentials and auth challenges.

Credentials come from, in order: containers' ``auth.json`` (``$REGISTRY_AUTH_FILE``), docker's
``config.json`` (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``: ``credHelpers``,
``auths``, ``credsStore``) and ``${XDG_RUNTIME_DIR}/containers/auth.json``. Helpers speak the
docker credential-helper protocol: ``docker-credential-<suffix> get`` with the server URL on
stdin, answering ``{"Username", "Secret"}``; a Username of ``<token>`` marks an identity token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgseal.errors import AuthError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 15


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str | None = None
    identity_token: str | None = None

    def __repr__(self) -> str:  # never print secrets, even in debug output
        return f"Credentials(username={self.username!r}, secret=<redacted>)"


def _candidates(registry: str) -> list[str]:
    """Keys under which a registry's credentials may be stored in config files."""
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return [DOCKER_HUB_KEY, "index.docker.io", "docker.io", "registry-1.docker.io", "https://index.docker.io/v1"]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]


def _load_json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuthError(f"cannot read credentials file {path}: {e}") from e
    if not isinstance(data, dict):
        raise AuthError(f"credentials file {path} is not a JSON object")
    return data


def decode_auth_entry(entry: Any, source: str) -> Credentials | None:
    """One ``auths`` entry of a docker config (``auth`` = base64 ``user:password``, or the fields)."""
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    username = entry.get("username")
    password = entry.get("password")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise AuthError(f"malformed 'auth' entry in {source}: not base64 of user:password") from e
        if ":" not in decoded:
            raise AuthError(f"malformed 'auth' entry in {source}: expected user:password")
        username, _, password = decoded.partition(":")
    if isinstance(token, str) and token:
        return Credentials(username if isinstance(username, str) else "", identity_token=token)
    if isinstance(username, str) and isinstance(password, str):
        return Credentials(username, password)
    return None


def _from_auths(data: dict[str, Any], registry: str, repository: str, source: str) -> Credentials | None:
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return None
    # containers auth.json may key by host/namespace/repo: the longest matching prefix wins.
    scoped = sorted(
        (k for k in auths if isinstance(k, str) and "/" in k and not k.startswith("http")
         and f"{registry}/{repository}".startswith(k.rstrip("/"))
         and (f"{registry}/{repository}" == k.rstrip("/") or f"{registry}/{repository}"[len(k.rstrip("/"))] == "/")),
        key=len,
        reverse=True,
    )
    for key in [*scoped, *_candidates(registry)]:
        if key in auths:
            creds = decode_auth_entry(auths[key], source)
            if creds is not None:
                return creds
    return None


def run_credential_helper(suffix: str, server: str) -> Credentials | None:
    """Ask ``docker-credential-<suffix>`` for ``server``'s credentials."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", suffix):
        raise AuthError(f"invalid credential helper name {suffix!r}")
    program = shutil.which(f"docker-credential-{suffix}")
    if program is None:
        raise AuthError(f"credential helper docker-credential-{suffix} is configured but not on PATH")
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=_HELPER_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthError(f"credential helper docker-credential-{suffix} failed: {e}") from e
    if proc.returncode != 0:
        message = proc.stdout.decode(errors="replace").strip() or proc.stderr.decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise AuthError(f"credential helper docker-credential-{suffix} failed: {message[:200]}")
    try:
        data = json.loads(proc.stdout)
        username, secret = data["Username"], data["Secret"]
    except (ValueError, KeyError, TypeError) as e:
        raise AuthError(f"credential helper docker-credential-{suffix} returned malformed output") from e
    if not isinstance(username, str) or not isinstance(secret, str):
        raise AuthError(f"credential helper docker-credential-{suffix} returned malformed output")
    if username == "<token>":
        return Credentials("", identity_token=secret)
    return Credentials(username, secret)


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def find_credentials(registry: str, repository: str = "") -> Credentials | None:
    """Credentials for ``registry`` (and ``repository``, for scoped auth.json keys), or None."""
    auth_file = os.environ.get("REGISTRY_AUTH_FILE")
    if auth_file:
        data = _load_json_file(Path(auth_file))
        if data is not None:
            creds = _from_auths(data, registry, repository, auth_file)
            if creds is not None:
                return creds
    config_path = docker_config_path()
    config = _load_json_file(config_path)
    if config is not None:
        helpers = config.get("credHelpers")
        server = DOCKER_HUB_KEY if registry == "docker.io" else registry
        if isinstance(helpers, dict) and isinstance(helpers.get(registry), str):
            return run_credential_helper(helpers[registry], server)
        creds = _from_auths(config, registry, repository, str(config_path))
        if creds is not None:
            return creds
        store = config.get("credsStore")
        if isinstance(store, str) and store:
            found = run_credential_helper(store, server)
            if found is not None:
                return found
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        path = Path(runtime) / "containers" / "auth.json"
        data = _load_json_file(path)
        if data is not None:
            return _from_auths(data, registry, repository, str(path))
    return None


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """Parse a ``WWW-Authenticate`` header (``Bearer realm="…",service="…",scope="…"``)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3) or ""
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)
