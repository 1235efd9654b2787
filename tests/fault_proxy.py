"""A scriptable loopback HTTP proxy that sits in front of a real registry and injects faults.

Tests point imgseal at ``proxy.host`` (``127.0.0.1:PORT``) instead of the registry; every
request is matched against the proxy's rules, in order, and the first rule that matches
decides what happens: forward it unchanged, answer an error status (with ``Retry-After``),
drop the connection before or in the middle of the body, stall past the client's timeout,
serve a truncated body or substituted bytes, answer another tag's manifest, or redirect to
another loopback host (a :class:`RedirectTarget`, which records the headers it saw).

The proxy speaks plain HTTP/1.1 and closes the connection after each answer, so a fault on
one request never leaks into the next. The client's TLS probe (imgseal tries HTTPS first on
loopback) is hung up on, so it falls back to plain HTTP as it does with a plain-HTTP registry.

Everything here is test code: nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import re
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                        "transfer-encoding", "upgrade", "host", "content-length"})
WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})

# -- what the proxy saw ---------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it, and what it did with it."""

    method: str
    path: str
    headers: dict[str, str]
    at: float
    action: str

    @property
    def repository(self) -> str | None:
        return repository_of(self.path)

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


_REPO = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags|referrers)(/|$)")


def repository_of(path: str) -> str | None:
    m = _REPO.match(urllib.parse.urlsplit(path).path)
    return m.group(1) if m else None


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What a rule's matcher and action get to look at."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def repository(self) -> str | None:
        return repository_of(self.path)

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


@dataclass(frozen=True)
class Forward:
    """Pass the request to the registry unchanged (optionally to another path)."""

    path: str | None = None


@dataclass(frozen=True)
class Status:
    """Answer ``code`` without asking the registry (the request body is read first)."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer. ``commit=True`` forwards first (the write lands)."""

    commit: bool = False


@dataclass(frozen=True)
class DropMidBody:
    """Forward, send the headers and ``fraction`` of the body, then close the connection."""

    fraction: float = 0.5


@dataclass(frozen=True)
class Stall:
    """Sleep ``seconds`` (longer than the client's timeout) before anything; ``after_headers`` sleeps mid-answer."""

    seconds: float
    after_headers: bool = False


@dataclass(frozen=True)
class Truncate:
    """Forward, then serve only the first ``keep`` bytes with a matching Content-Length (a consistent short body)."""

    keep: int | None = None  # None: half


@dataclass(frozen=True)
class Substitute:
    """Forward, then replace the body by ``transform(body)`` (Content-Length adjusted, other headers kept)."""

    transform: Callable[[bytes], bytes]


@dataclass(frozen=True)
class Redirect:
    """Answer 307 to ``target`` (a :class:`RedirectTarget`), which serves the registry's bytes for this path."""

    target: RedirectTarget


Upstream = Callable[[str, str, dict[str, str], bytes], tuple[int, list[tuple[str, str]], bytes]]
"""``fetch(method, path, headers, body)`` -> (status, headers, body) from the registry behind the proxy."""


@dataclass(frozen=True)
class Respond:
    """Script the answer: ``answer(request, fetch)`` -> (status, headers, body); ``fetch`` asks the registry.

    For behaviours no fixed action covers: a registry that rewrites a path, adds a header,
    or replays an older write (tests/integration/quirks.py).
    """

    answer: Callable[[Request, Upstream], tuple[int, list[tuple[str, str]], bytes]]


Action = Forward | Status | Drop | DropMidBody | Stall | Truncate | Substitute | Redirect | Respond


@dataclass
class Rule:
    """``when(request)`` decides whether the rule applies; ``times`` bounds how often (None: forever)."""

    when: Callable[[Request], bool]
    action: Action
    times: int | None = None
    used: int = 0

    def take(self, request: Request) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if not self.when(request):
            return False
        self.used += 1
        return True


def match(method: str | None = None, path: str | None = None, repository: str | None = None) -> Callable[
        [Request], bool]:
    """A matcher on method, a path regex (searched) and repository."""
    pattern = re.compile(path) if path else None

    def when(r: Request) -> bool:
        return ((method is None or r.method == method) and (pattern is None or bool(pattern.search(r.path)))
                and (repository is None or r.repository == repository))

    return when


def nth_write_onwards(repository: str, n: int, counters: dict[str, int], lock: threading.Lock) -> Callable[
        [Request], bool]:
    """Matches the ``n``-th write (PUT/POST/PATCH/DELETE) to ``repository`` and every write after it."""

    def when(r: Request) -> bool:
        if not r.is_write or r.repository != repository:
            return False
        with lock:
            counters[repository] = counters.get(repository, 0) + 1
            return counters[repository] >= n

    return when


# -- servers --------------------------------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    """Start/stop plumbing shared by the proxy and the redirect target."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def start(self) -> _Base:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # cuts stalls short
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> _Base:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fetch_upstream(upstream: str, method: str, path: str, headers: dict[str, str], body: bytes,
                    host_header: str) -> tuple[int, str, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection(upstream, timeout=30)
    try:
        send = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        send["Host"] = host_header  # the registry builds upload Locations from Host: keep them on the proxy
        send["Connection"] = "close"
        if body or method in ("PUT", "POST", "PATCH"):
            send["Content-Length"] = str(len(body))
        conn.request(method, path, body=body or None, headers=send)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.reason, resp.getheaders(), data
    finally:
        conn.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read FaultProxy.seen instead

    def handle_one_request(self) -> None:
        # A TLS ClientHello (record type 0x16) on this plain-HTTP port: hang up at once, as a
        # plain-HTTP server's failed handshake looks to the client, instead of waiting for a line.
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if first in (b"", b"\x16"):
            self.close_connection = True
            return
        super().handle_one_request()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, code: int, headers: list[tuple[str, str]], body: bytes, *, send_body: bool = True,
                declared: int | None = None) -> None:
        self.send_response(code)
        for k, v in headers:
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def _kill(self) -> None:
        """Close the socket with a reset, so the client sees the connection die."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self.server.owner.handle(self)  # type: ignore[attr-defined]

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET


class RedirectTarget(_Base):
    """A second loopback host that blobs are redirected to: records headers, serves the registry's bytes.

    It is addressed as ``localhost:PORT`` (a different host name from the registry's
    ``127.0.0.1:PORT``) so a client that forwards credentials by mistake is caught. ``serve``
    may substitute the bytes it serves.
    """

    def __init__(self, upstream: str, serve: Callable[[bytes], bytes] | None = None) -> None:
        super().__init__(_Handler)
        self.upstream = upstream
        self.serve = serve
        self.host = f"localhost:{self.port}"
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def handle(self, h: _Handler) -> None:
        headers = dict(h.headers.items())
        with self._lock:
            self.seen.append(Seen(h.command, h.path, headers, time.monotonic(), "redirected"))
        code, _reason, resp_headers, data = _fetch_upstream(self.upstream, h.command, h.path, {}, b"",
                                                            self.upstream)
        if self.serve is not None:
            data = self.serve(data)
        keep = [(k, v) for k, v in resp_headers if k.lower() in ("content-type", "docker-content-digest")]
        h._answer(code, keep, data)


class FaultProxy(_Base):
    """A proxy in front of ``upstream`` (a registry's ``127.0.0.1:PORT``) that injects scripted faults.

    ``add(when, action, times=None)`` appends a rule; the first matching rule wins; requests
    no rule matches are forwarded. ``seen`` records every request (method, path, headers,
    monotonic time, action taken). ``require_basic`` / ``require_bearer`` make the proxy act
    as an authenticating front end, so credential handling can be observed on a registry
    that has none.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(_Handler)
        self.upstream = upstream
        self.host = f"127.0.0.1:{self.port}"
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.write_counters: dict[str, int] = {}
        self.lock = threading.Lock()
        self._counter_lock = threading.Lock()  # matchers run under self.lock
        self.basic: tuple[str, str] | None = None
        self.bearer_token: str | None = None

    # -- scripting ----------------------------------------------------------------------

    def add(self, when: Callable[[Request], bool], action: Action, times: int | None = None) -> Rule:
        rule = Rule(when, action, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.seen.clear()
            self.write_counters.clear()

    def fail_writes_from(self, repository: str, n: int, action: Action) -> Rule:
        """From the ``n``-th write to ``repository`` on, apply ``action`` (for interrupted-write tests)."""
        return self.add(nth_write_onwards(repository, n, self.write_counters, self._counter_lock), action)

    def require_basic(self, username: str, password: str) -> None:
        self.basic = (username, password)

    def require_bearer(self, token: str) -> None:
        self.bearer_token = token

    def requests_for(self, repository: str | None = None, *, writes_only: bool = False) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if (repository is None or s.repository == repository)
                    and (not writes_only or s.is_write)]

    # -- serving ------------------------------------------------------------------------

    def _auth_ok(self, h: _Handler) -> bool:
        given = h.headers.get("Authorization", "")
        if self.basic is not None:
            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if given == want:
                return True
            h._answer(401, [("WWW-Authenticate", 'Basic realm="fault-proxy"'), ("Content-Type", "application/json")],
                      b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
            return False
        if self.bearer_token is not None:
            if given == f"Bearer {self.bearer_token}":
                return True
            realm = f"http://{self.host}/token"
            h._answer(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="fault-proxy"'),
                            ("Content-Type", "application/json")],
                      b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
            return False
        return True

    def handle(self, h: _Handler) -> None:
        body = h._body()
        headers = dict(h.headers.items())
        path = h.path
        if self.bearer_token is not None and urllib.parse.urlsplit(path).path == "/token":
            self._record(h, headers, "token")
            h._answer(200, [("Content-Type", "application/json")],
                      b'{"token":"' + self.bearer_token.encode() + b'","expires_in":300}')
            return
        if not self._auth_ok(h):
            self._record(h, headers, "challenge")
            return
        request = Request(h.command, path, headers, body)
        action: Action = Forward()
        with self.lock:
            for rule in self.rules:
                if rule.take(request):
                    action = rule.action
                    break
        self._record(h, headers, type(action).__name__)
        self._perform(h, request, action)

    def _record(self, h: _Handler, headers: dict[str, str], action: str) -> None:
        with self.lock:
            self.seen.append(Seen(h.command, h.path, headers, time.monotonic(), action))

    def _upstream(self, r: Request, path: str | None = None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
        code, reason, resp_headers, data = _fetch_upstream(self.upstream, r.method, path or r.path, headers, r.body,
                                                           self.host)
        fixed = [(k, v.replace(self.upstream, self.host)) if k.lower() == "location" else (k, v)
                 for k, v in resp_headers]
        return code, reason, fixed, data

    def _perform(self, h: _Handler, r: Request, action: Action) -> None:
        if isinstance(action, Forward):
            code, _, headers, data = self._upstream(r, action.path)
            h._answer(code, headers, data)
        elif isinstance(action, Status):
            h._answer(action.code, list(action.headers.items()), action.body)
        elif isinstance(action, Drop):
            if action.commit:
                self._upstream(r)
            h._kill()
        elif isinstance(action, DropMidBody):
            code, _, headers, data = self._upstream(r)
            h._answer(code, headers, data[: int(len(data) * action.fraction)], declared=len(data))
            h._kill()
        elif isinstance(action, Stall):
            if action.after_headers:
                code, _, headers, data = self._upstream(r)
                h.send_response(code)
                for k, v in headers:
                    if k.lower() not in HOP_BY_HOP:
                        h.send_header(k, v)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
            self.stopping.wait(action.seconds)
            h._kill()
        elif isinstance(action, Truncate):
            code, _, headers, data = self._upstream(r)
            keep = len(data) // 2 if action.keep is None else action.keep
            h._answer(code, headers, data[:keep])
        elif isinstance(action, Substitute):
            code, _, headers, data = self._upstream(r)
            h._answer(code, headers, action.transform(data))
        elif isinstance(action, Redirect):
            h._answer(307, [("Location", f"http://{action.target.host}{r.path}")], b"")
        elif isinstance(action, Respond):

            def fetch(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[
                    int, list[tuple[str, str]], bytes]:
                code, _, resp_headers, data = self._upstream(Request(method, path, headers, body))
                return code, resp_headers, data

            code, headers, data = action.answer(r, fetch)
            h._answer(code, headers, data)
        else:  # pragma: no cover - exhaustive over Action
            raise AssertionError(action)


def flip_last_byte(data: bytes) -> bytes:
    """Same length, different bytes: the substitution a digest check must catch."""
    return data[:-1] + bytes([data[-1] ^ 0x01]) if data else b"x"
