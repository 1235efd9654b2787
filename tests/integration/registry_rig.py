"""Start a real registry (Debian's ``docker-registry``, distribution 2.8) for tests.

The instance listens on 127.0.0.1 only, keeps its storage and config in a work
directory, and can serve TLS (a throwaway CA made here with ``cryptography``) and HTTP
basic auth (an htpasswd file of bcrypt hashes made with the ``bcrypt`` package).

Traps of distribution 2.8 worth knowing when writing tests against it (REFERENCE.md §2):
an OCI manifest fetched without its media type in ``Accept`` answers 404; there is no
referrers API; upload ``Location`` URLs already carry a query (append ``&digest=``).

``http.secret`` is set so upload state tokens are signed with a known key rather than a
random one logged as a warning on each start; the storage health check is off because it
would touch the storage root every 10 s for nothing. ``REGISTRY_*`` variables are removed
from the child's environment because the registry reads them as config overrides.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from imgseal.digest import Digest

DOCKER_REGISTRY = "/usr/bin/docker-registry"
START_TIMEOUT_S = 10.0
START_ATTEMPTS = 5
LOG_TAIL_LINES = 30


class RegistryStartError(RuntimeError):
    """The registry did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class RegistryInstance:
    """A running registry. ``host`` is ``127.0.0.1:PORT``, the form references use."""

    host: str
    url: str
    storage_dir: Path
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    ca_cert_path: Path | None = None
    credentials: tuple[str, str] | None = None

    @property
    def tls(self) -> bool:
        return self.ca_cert_path is not None

    def session(self, *, authenticated: bool = True) -> requests.Session:
        """A requests session that trusts this registry's CA and, optionally, logs in.

        ``trust_env`` is off so proxy variables in the environment never route loopback
        traffic elsewhere.
        """
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_cert_path) if self.ca_cert_path else True
        if authenticated and self.credentials:
            session.auth = self.credentials
        return session

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Terminate the registry and wait for it; kill it if it does not exit in 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> RegistryInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def registry_available(binary: str = DOCKER_REGISTRY) -> bool:
    """True when the registry binary is installed (tests skip otherwise)."""
    return Path(binary).is_file() and os.access(binary, os.X_OK)


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    htpasswd: dict[str, str] | None = None,
    binary: str = DOCKER_REGISTRY,
    delete_enabled: bool = True,
) -> RegistryInstance:
    """Start ``docker-registry serve`` on a free loopback port and wait for ``/v2/``.

    ``htpasswd`` maps user names to passwords; with it the registry demands basic auth
    (and ``credentials`` holds the first pair). Picking a free port by binding port 0 and
    releasing it can race with another process, so a registry that dies during start is
    retried on a fresh port, up to :data:`START_ATTEMPTS` times. ``delete_enabled=False`` starts
    it as distribution ships by default: manifest deletes answered ``405 UNSUPPORTED``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    storage_dir = workdir / "storage"
    storage_dir.mkdir(exist_ok=True)
    ca_cert_path: Path | None = None
    tls_files: tuple[Path, Path] | None = None
    if tls:
        ca_cert_path, cert_path, key_path = make_tls_material(workdir / "tls")
        tls_files = (cert_path, key_path)
    htpasswd_path: Path | None = None
    credentials: tuple[str, str] | None = None
    if htpasswd:
        htpasswd_path = write_htpasswd(workdir / "htpasswd", htpasswd)
        credentials = next(iter(htpasswd.items()))

    last_error = "not started"
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port()
        config_path = workdir / "config.yml"
        log_path = workdir / f"registry-{attempt}.log"
        config_path.write_text(
            yaml.safe_dump(_config(storage_dir, port, tls_files, htpasswd_path, delete_enabled), sort_keys=False),
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
            )
        scheme = "https" if tls else "http"
        instance = RegistryInstance(
            host=f"127.0.0.1:{port}",
            url=f"{scheme}://127.0.0.1:{port}",
            storage_dir=storage_dir,
            workdir=workdir,
            log_path=log_path,
            process=process,
            ca_cert_path=ca_cert_path,
            credentials=credentials,
        )
        outcome = _wait_ready(instance)
        if outcome is None:
            return instance
        instance.stop()
        last_error = f"attempt {attempt} on port {port}: {outcome}\n{instance.log_tail()}"
    raise RegistryStartError(f"{binary} did not start after {START_ATTEMPTS} attempts; last {last_error}")


def _wait_ready(instance: RegistryInstance) -> str | None:
    """None once ``/v2/`` answers 200 (or 401 with auth); otherwise why it failed."""
    session = instance.session(authenticated=False)
    deadline = time.monotonic() + START_TIMEOUT_S
    expected = 401 if instance.credentials else 200
    try:
        while time.monotonic() < deadline:
            code = instance.process.poll()
            if code is not None:
                return f"exited with status {code} during start"
            try:
                response = session.get(f"{instance.url}/v2/", timeout=1)
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            if response.status_code == expected:
                return None
            return f"/v2/ answered {response.status_code}, expected {expected}"
        return f"/v2/ did not answer within {START_TIMEOUT_S:.0f} s"
    finally:
        session.close()


def _config(
    storage_dir: Path, port: int, tls_files: tuple[Path, Path] | None, htpasswd_path: Path | None,
    delete_enabled: bool = True,
) -> dict[str, object]:
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
    if tls_files:
        http["tls"] = {"certificate": str(tls_files[0]), "key": str(tls_files[1])}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": delete_enabled},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd_path:
        config["auth"] = {"htpasswd": {"realm": "imgseal-test", "path": str(htpasswd_path)}}
    return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """Write an htpasswd file of bcrypt entries (the only kind distribution accepts).

    Cost 4 (bcrypt's minimum) keeps each authenticated request fast; these are test
    passwords. If the file were missing, distribution 2.8 would create one with a random
    ``admin`` password instead, so it is always written before the registry starts.
    """
    import bcrypt

    lines = []
    for user, password in users.items():
        if not user or ":" in user or "\n" in user:
            raise ValueError(f"htpasswd user name {user!r} is not usable")
        hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=4)).decode("ascii")
        lines.append(f"{user}:{hashed}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def make_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, ::1 and localhost.

    Returns ``(ca_cert, server_cert, server_key)`` PEM paths. The server certificate has
    IP SANs (clients match an IP host only against IP SANs, never the CN).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imgseal test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(ipaddress.IPv6Address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def blob_path(storage_dir: Path, digest: Digest | str) -> Path:
    """Where distribution's filesystem driver keeps a blob's bytes.

    Layout: ``docker/registry/v2/blobs/<alg>/<first 2 hex>/<hex>/data``. The digest is
    parsed first so a malformed one can never steer the path outside the storage root.
    """
    parsed = digest if isinstance(digest, Digest) else Digest.parse(digest)
    return (
        storage_dir / "docker" / "registry" / "v2" / "blobs" / parsed.algorithm / parsed.hex[:2] / parsed.hex / "data"
    )


def corrupt_blob(storage_dir: Path, digest: Digest | str, *, keep_size: bool = True) -> bytes:
    """Tamper with a stored blob in place and return the new bytes.

    With ``keep_size`` the length stays the same (every byte is flipped), so only a digest
    check, not a size check, can notice; otherwise one byte is appended.
    """
    path = blob_path(storage_dir, digest)
    original = path.read_bytes()
    tampered = bytes(b ^ 0xFF for b in original) if keep_size else original + b"\x00"
    if tampered == original:  # an empty blob cannot be flipped
        tampered = original + b"\x00"
    path.write_bytes(tampered)
    return tampered
