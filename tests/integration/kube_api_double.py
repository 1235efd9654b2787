"""The few Kubernetes API endpoints the webhook reads, served over HTTPS on loopback.

No API server can be installed here, so this double serves
``GET /api/v1/namespaces/{ns}/secrets/{name}`` and ``.../serviceaccounts/{name}`` the way the
API reference describes them: the bearer token is checked (none or a wrong one: 401), each
token may get only the namespaces it is granted (else 403), an absent object is a 404, and
every error body is a ``Status`` object (``kind: Status``, ``status: Failure``, ``message``,
``reason``, ``details``, ``code``). Requests are counted per path, so caching can be tested.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RESOURCES = {"secrets": "Secret", "serviceaccounts": "ServiceAccount"}


def throwaway_cert(directory: Path, name: str = "tls") -> tuple[Path, Path]:
    """A self-signed loopback certificate (SAN 127.0.0.1, usable as its own CA) and its key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.imgseal.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def docker_config_secret(namespace: str, name: str, auths: dict[str, tuple[str, str]], *,
                         legacy: bool = False) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret (``legacy``: ``kubernetes.io/dockercfg``), as served."""
    entries = {host: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for host, (u, p) in auths.items()}
    if legacy:
        kind, key, doc = "kubernetes.io/dockercfg", ".dockercfg", entries
    else:
        kind, key, doc = "kubernetes.io/dockerconfigjson", ".dockerconfigjson", {"auths": entries}
    return {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
            "type": kind, "data": {key: base64.b64encode(json.dumps(doc).encode()).decode()}}


@dataclass
class KubeAPI:
    """What the double serves, and what it saw. Mutate ``objects`` / ``grants`` between requests."""

    url: str
    ca_cert: Path
    token: str
    # (resource, namespace, name) -> object
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    # token -> namespaces it may read (missing token: none)
    grants: dict[str, set[str]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_secret(self, secret: dict[str, Any]) -> None:
        meta = secret["metadata"]
        self.objects[("secrets", meta["namespace"], meta["name"])] = secret

    def add_service_account(self, namespace: str, name: str, pull_secrets: list[str]) -> None:
        self.objects[("serviceaccounts", namespace, name)] = {
            "kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
            "imagePullSecrets": [{"name": s} for s in pull_secrets]}

    def count(self, resource: str, namespace: str, name: str) -> int:
        with self.lock:
            return self.requests[f"/api/v1/namespaces/{namespace}/{resource}/{name}"]

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())


def _status(code: int, reason: str, message: str, details: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def _handler(api: KubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, code: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with api.lock:
                api.requests[path] += 1
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            if token is None or token not in api.grants:
                self.answer(401, _status(401, "Unauthorized", "Unauthorized"))
                return
            parts = path.strip("/").split("/")
            if len(parts) != 6 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] not in RESOURCES:
                self.answer(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return
            namespace, resource, name = parts[3], parts[4], parts[5]
            details = {"name": name, "kind": resource}
            if namespace not in api.grants[token]:
                user = "system:serviceaccount:imgseal:imgseal-webhook"
                self.answer(403, _status(403, "Forbidden", f'{resource} "{name}" is forbidden: User "{user}" cannot '
                                         f'get resource "{resource}" in API group "" in the namespace '
                                         f'"{namespace}"', details))
                return
            found = api.objects.get((resource, namespace, name))
            if found is None:
                self.answer(404, _status(404, "NotFound", f'{resource} "{name}" not found', details))
                return
            self.answer(200, found)

    return Handler


@contextmanager
def kube_api(directory: Path, token: str = "webhook-sa-token") -> Iterator[KubeAPI]:
    """Serve the double on 127.0.0.1; ``token`` is granted no namespace until ``grants`` says so."""
    cert, key = throwaway_cert(directory, "kube-api")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    api = KubeAPI(url="", ca_cert=cert, token=token, grants={token: set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def serviceaccount_dir(directory: Path, api: KubeAPI, token: str | None = None) -> tuple[Path, dict[str, str]]:
    """A ``/var/run/secrets/kubernetes.io/serviceaccount``-like directory and the Pod's environment."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token if token is not None else api.token)
    (directory / "ca.crt").write_bytes(api.ca_cert.read_bytes())
    (directory / "namespace").write_text("imgseal")
    host, port = api.url.removeprefix("https://").rsplit(":", 1)
    return directory, {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
