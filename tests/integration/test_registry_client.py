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


# -- the environment: proxies honoured (read once), ~/.netrc never a credential source -------------

REMOTE = "registry.example"
DOCKER_CREDS = "Basic " + base64.b64encode(b"docker-user:docker-pass").decode()


class ForwardProxy(ThreadingHTTPServer):
    """An HTTP forward proxy that *is* the remote registry: nothing leaves loopback.

    Absolute-form requests for ``http://registry.example/…`` are answered as a Basic-auth
    registry would; ``CONNECT`` (the HTTPS probe) gets a tunnel that speaks plain HTTP, as a
    registry without TLS does, so the client falls back to HTTP for an insecure registry.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # (method, target, Authorization)
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_CONNECT(self) -> None:
                outer.seen.append(("CONNECT", self.path, self.headers.get("Authorization")))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.close_connection = True

            def do_GET(self) -> None:
                outer.seen.append(("GET", self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != DOCKER_CREDS:
                    self._answer(401, b"", {"WWW-Authenticate": 'Basic realm="remote"'})
                elif self.path == f"http://{REMOTE}/v2/app/tags/list?n=1000":
                    self._answer(200, b'{"name":"app","tags":["v1"]}', {"Content-Type": "application/json"})
                else:
                    self._answer(200, b"{}", {"Content-Type": "application/json"})

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def remote_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:  # type: ignore[no-untyped-def]
    proxy = ForwardProxy()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine {REMOTE} login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    yield proxy
    proxy.shutdown()


def _remote_store(**extra: object):  # type: ignore[no-untyped-def]
    from imgseal.store.registry import RegistryStore

    options = RegistryOptions(insecure_registries=frozenset({REMOTE}),
                              credentials={REMOTE: Credentials("docker-user", "docker-pass")}, **extra)  # type: ignore[arg-type]
    return RegistryStore(RegistryClient(REMOTE, options), "app")


def test_environment_proxy_carries_remote_traffic_with_our_credentials_not_netrc(remote_env: ForwardProxy) -> None:
    assert _remote_store().list_tags() == ["v1"]
    methods = [(m, t) for m, t, _ in remote_env.seen]
    assert methods[0] == ("CONNECT", f"{REMOTE}:443")  # the HTTPS probe went through HTTPS_PROXY
    assert ("GET", f"http://{REMOTE}/v2/app/tags/list?n=1000") in methods  # plain HTTP through HTTP_PROXY
    sent = {auth for _, _, auth in remote_env.seen if auth is not None}
    assert sent == {DOCKER_CREDS}  # ~/.netrc's entry for the host never replaced or joined ours


def test_no_proxy_is_honoured_and_proxies_are_read_once_per_host(remote_env: ForwardProxy,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client = _remote_store().client
    assert client._proxies(f"http://{REMOTE}/v2/") == {"http": remote_env.url, "https": remote_env.url}
    monkeypatch.setenv("NO_PROXY", REMOTE)
    assert client._proxies(f"http://{REMOTE}/v2/x")["http"] == remote_env.url  # cached for this host
    assert client._proxies("https://blobs.example/b")["https"] == remote_env.url  # other hosts still proxied
    fresh = _remote_store().client
    assert fresh._proxies(f"https://{REMOTE}/v2/") == {}  # a new client reads NO_PROXY
    assert RegistryClient("127.0.0.1:5000")._proxies("http://127.0.0.1:5000/v2/") == {}  # loopback: never
