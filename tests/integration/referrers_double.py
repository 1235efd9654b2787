"""A referrers-API double: a loopback proxy in front of docker-registry that adds exactly the
distribution-spec v1.1 referrers endpoint (no registry packaged for Debian has one).

- ``GET /v2/<name>/referrers/<digest>[?artifactType=…]`` answers an image index (empty, never
  404, when there are none), filtered with ``OCI-Filters-Applied: artifactType``, paged with
  ``Link: <…>; rel="next"`` (``page_size`` entries per page);
- a manifest ``PUT`` whose body has a ``subject`` is recorded and answered with ``OCI-Subject``;
  a manifest ``DELETE`` by digest the registry accepted drops the referrer again;
- ``serve_api=False`` keeps the ``OCI-Subject`` header but forwards the referrers endpoint to the
  registry (404): a registry that sends the header without having the API (ECR did,
  sigstore-js #1183);
- everything else is forwarded unchanged to the real registry.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from imgseal.digest import Digest


@dataclass
class ReferrersDouble:
    upstream: str
    page_size: int = 2
    serve_api: bool = True
    server: ThreadingHTTPServer | None = None
    referrers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests_seen: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ReferrersDouble:
        double = self
        session = requests.Session()
        session.trust_env = False

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self, method: str, body: bytes = b"") -> requests.Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = session.request(method, f"http://{double.upstream}{self.path}", data=body or None,
                                       headers=headers, allow_redirects=False, timeout=30)
                return resp

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _relay(self, method: str, body: bytes = b"", extra: dict[str, str] | None = None) -> None:
                resp = self._forward(method, body)
                location = resp.headers.get("Location", "")
                headers = dict(resp.headers)
                if location.startswith(f"http://{double.upstream}"):
                    headers["Location"] = location.replace(double.upstream, double.host, 1)
                headers.update(extra or {})
                self._reply(resp.status_code, resp.content, headers)

            def do_GET(self) -> None:
                double.requests_seen.append(f"GET {self.path}")
                parsed = urllib.parse.urlsplit(self.path)
                parts = parsed.path.split("/referrers/")
                if double.serve_api and len(parts) == 2 and parts[0].startswith("/v2/"):
                    self._referrers(parts[0][len("/v2/"):], parts[1], urllib.parse.parse_qs(parsed.query))
                    return
                self._relay("GET")

            def do_HEAD(self) -> None:
                self._relay("HEAD")

            def do_POST(self) -> None:
                self._relay("POST", self._body())

            def do_PATCH(self) -> None:
                self._relay("PATCH", self._body())

            def do_DELETE(self) -> None:
                double.requests_seen.append(f"DELETE {self.path}")
                resp = self._forward("DELETE")
                if resp.status_code == 202 and "/manifests/sha256:" in self.path:
                    deleted = self.path.rsplit("/manifests/", 1)[1]
                    for entries in double.referrers.values():
                        entries[:] = [e for e in entries if e["digest"] != deleted]
                self._reply(resp.status_code, resp.content, dict(resp.headers))

            def do_PUT(self) -> None:
                body = self._body()
                double.requests_seen.append(f"PUT {self.path}")
                extra: dict[str, str] = {}
                if "/manifests/" in self.path:
                    try:
                        doc = json.loads(body)
                    except ValueError:
                        doc = None
                    subject = doc.get("subject") if isinstance(doc, dict) else None
                    if isinstance(subject, dict):
                        name = self.path[len("/v2/"):].split("/manifests/")[0]
                        entry = {"mediaType": doc.get("mediaType"), "digest": str(Digest.of(body)), "size": len(body)}
                        artifact_type = doc.get("artifactType") or doc.get("config", {}).get("mediaType")
                        if artifact_type:
                            entry["artifactType"] = artifact_type
                        if doc.get("annotations"):
                            entry["annotations"] = doc["annotations"]
                        key = (name, subject["digest"])
                        if entry not in double.referrers.setdefault(key, []):
                            double.referrers[key].append(entry)
                        extra["OCI-Subject"] = subject["digest"]
                self._relay("PUT", body, extra)

            def _referrers(self, name: str, digest: str, query: dict[str, list[str]]) -> None:
                entries = list(double.referrers.get((name, digest), []))
                headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
                wanted = query.get("artifactType", [None])[0]
                if wanted:
                    entries = [e for e in entries if e.get("artifactType") == wanted]
                    headers["OCI-Filters-Applied"] = "artifactType"
                start = int(query.get("page", ["0"])[0])
                page = entries[start:start + double.page_size]
                if start + double.page_size < len(entries):
                    q = {"page": str(start + double.page_size)}
                    if wanted:
                        q["artifactType"] = wanted
                    headers["Link"] = f'</v2/{name}/referrers/{digest}?{urllib.parse.urlencode(q)}>; rel="next"'
                body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                   "manifests": page}).encode()
                self._reply(200, body, headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
