"""An unreachable registry is one short line, at once: name resolution, refused connections, TLS.

No test here leaves the machine: a name that does not resolve is simulated by replacing
``socket.getaddrinfo`` (the resolver behind this sandbox is not loopback, so a real lookup of
even an ``.invalid`` name could reach it); refused connections use a closed loopback port.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import urllib3.exceptions

from imgseal.errors import NetworkError
from imgseal.store.registry import RegistryClient, RegistryOptions, connection_problem

REPO = Path(__file__).resolve().parents[3]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_name_that_does_not_resolve_is_one_line_and_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []

    def no_such_name(host: str, *args: object, **kwargs: object) -> list[object]:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    monkeypatch.setattr(socket, "gethostbyname", no_such_name)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    store = RegistryClient("registry.example.invalid").repository("team/app")
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        store.get_manifest("v1")
    elapsed = time.monotonic() - started
    assert info.value.one_line() == "cannot reach registry registry.example.invalid: name does not resolve (GET /v2/)"
    assert lookups == ["registry.example.invalid"] and elapsed < 1.0  # asked once, no 4 s of backoff


def test_a_refused_connection_is_one_line_at_once(tmp_path: Path) -> None:
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEAL_")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "imgseal", "digest", f"127.0.0.1:{port}/team/app:v1"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == f"imgseal: error: cannot reach registry 127.0.0.1:{port}: connection refused\n"
    assert elapsed < 10  # the interpreter's start-up, not retries (four backoffs alone would be 3.75 s)


def test_a_refused_connection_is_not_retried_by_the_client() -> None:
    port = _closed_port()
    client = RegistryClient(f"127.0.0.1:{port}", RegistryOptions(insecure_registries=frozenset()))
    client._scheme = "http"  # past scheme detection: the request path itself
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        client.ping()
    assert "connection refused" in info.value.one_line() and time.monotonic() - started < 1.0


def _wrapped(reason: BaseException, kind: type[requests.exceptions.RequestException]) -> BaseException:
    pool = urllib3.HTTPSConnectionPool("registry.example", 443)
    return kind(urllib3.exceptions.MaxRetryError(pool, "/v2/", reason=reason))


@pytest.mark.parametrize(("error", "words", "transient"), [
    (_wrapped(urllib3.exceptions.SSLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")),
              requests.exceptions.SSLError), "TLS: ", False),
    (_wrapped(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
              requests.exceptions.ConnectionError), "connection reset", True),
    (requests.exceptions.ConnectTimeout("timed out"), "timed out", True),
])
def test_connection_problems_are_named_without_urllib3_reprs(error: BaseException, words: str,
                                                             transient: bool) -> None:
    described, retry = connection_problem(error)
    assert described.startswith(words) and "Pool" not in described and retry is transient
