"""Registry client behaviours that need a scripted peer: redirects, auth challenges, retries.

The peers are tiny loopback HTTP servers written here (the real docker-registry cannot be
made to redirect or to fail on demand).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgseal.digest import Digest
from imgseal.errors import RegistryError
from imgseal.manifest import Descriptor
from imgseal.store.auth import Credentials
from imgseal.store.registry import RegistryClient, RegistryOptions

BLOB = b"redirected blob bytes"
BLOB_DIGEST = Digest.of(BLOB)
CREDS = base64.b64encode(b"alice:secret").decode()

Handler = Callable[[BaseHTTPRequestHandler], None]


def serve(handler: Handler) -> tuple[ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            handler(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def servers() -> Iterator[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    def storage(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(BLOB)))
        h.end_headers()
        h.wfile.write(BLOB)

    other, other_seen = serve(storage)
    other_host = f"localhost:{other.server_address[1]}"  # another host name, same loopback

    def registry(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") != f"Basic {CREDS}":
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="test"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if h.path.startswith("/v2/app/blobs/"):
            h.send_response(307)
            h.send_header("Location", f"http://{other_host}/storage/blob")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"{}")

    reg, reg_seen = serve(registry)
    yield f"127.0.0.1:{reg.server_address[1]}", reg_seen, other_seen
    reg.shutdown()
    other.shutdown()


def test_credentials_never_follow_a_redirect_to_another_host(servers) -> None:
    host, reg_seen, other_seen = servers
    options = RegistryOptions(credentials={host: Credentials("alice", "secret")})
    store = RegistryClient(host, options).repository("app")
    data = store.get_blob(Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB)), max_bytes=1024)
    assert data == BLOB
    assert any(r.get("authorization") for r in reg_seen)  # the registry did get credentials
    assert other_seen and all("authorization" not in r for r in other_seen)


def test_retries_honour_retry_after_then_give_up() -> None:
    calls: list[str] = []

    def flaky(h: BaseHTTPRequestHandler) -> None:
        calls.append(h.path)
        if h.path == "/v2/":
            h.send_response(200)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(429)
        h.send_header("Retry-After", "0")
        h.send_header("Content-Length", "0")
        h.end_headers()

    server, _ = serve(flaky)
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        options = RegistryOptions(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
        store = RegistryClient(host, options).repository("app")
        with pytest.raises(RegistryError) as info:
            store.get_manifest("v1")
        assert info.value.exit_code == 3 and "after retries" in info.value.message
        assert calls.count("/v2/app/manifests/v1") == 3
    finally:
        server.shutdown()
