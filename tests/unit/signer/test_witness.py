"""signer.witness refuses what a Rekor or TSA answers unless it is the entry / stamp for *this* signature.

A loopback HTTP server plays a misbehaving service; nothing may reach a bundle from it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from imgseal.dsse import sign_envelope
from imgseal.errors import NetworkError, UndecidableError, UsageError
from keys import generate, public_pem, sign
from signer.witness import Witness, dsse_proposed_entry, log_dsse, request_timestamp, witness_envelope

Answer = Callable[[bytes], tuple[int, bytes]]


@pytest.fixture
def service() -> Iterator[Callable[[Answer], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, data = answer(body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _envelope() -> tuple[Any, bytes]:
    key = generate("ecdsa-p256")
    envelope = sign_envelope("application/vnd.in-toto+json", b'{"_type":"x"}', [("", lambda pae: sign(key, pae))])
    return envelope, public_pem(key)


def _entry(body: dict[str, Any], *, proof: bool = True) -> bytes:
    entry: dict[str, Any] = {"body": base64.b64encode(json.dumps(body).encode()).decode(), "integratedTime": 1,
                             "logID": "00" * 32, "logIndex": 0, "verification": {"signedEntryTimestamp": "AA=="}}
    if proof:
        entry["verification"]["inclusionProof"] = {"checkpoint": "c", "hashes": [], "logIndex": 0,
                                                   "rootHash": "00" * 32, "treeSize": 1}
    return json.dumps({"uuid": entry}).encode()


def _logged(envelope: Any, *, signature: bytes | None = None, payload: bytes | None = None) -> dict[str, Any]:
    sig = envelope.signatures[0].sig if signature is None else signature
    return {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload or envelope.payload).hexdigest()},
        "signatures": [{"signature": base64.b64encode(sig).decode(), "verifier": "x"}]}}


def test_an_honest_answer_becomes_a_bundle_entry(service: Callable[[Answer], str]) -> None:
    envelope, pem = _envelope()
    seen: list[dict[str, Any]] = []

    def answer(body: bytes) -> tuple[int, bytes]:
        seen.append(json.loads(body))
        return 201, _entry(_logged(envelope))

    entry = log_dsse(service(answer), envelope, pem)
    assert seen == [dsse_proposed_entry(envelope, pem)]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"} and entry["inclusionProof"]["treeSize"] == "1"


@pytest.mark.parametrize(("answer", "message"), [
    (lambda env: (201, _entry(_logged(env, signature=b"other"))), "another signature"),
    (lambda env: (201, _entry(_logged(env, payload=b"other"))), "another payload"),
    (lambda env: (201, _entry(_logged(env), proof=False)), "inclusion proof"),
    (lambda env: (201, _entry({"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {"payloadHash": {},
                                                                                      "signatures": []}})),
     "not the dsse"),
    (lambda env: (201, b"[]"), "not one log entry"),
    (lambda env: (201, b"<html>"), "other than JSON"),
    (lambda env: (500, b"boom"), "HTTP 500: boom"),
])
def test_a_wrong_answer_is_refused(service: Callable[[Answer], str], answer: Callable[[Any], tuple[int, bytes]],
                                   message: str) -> None:
    envelope, pem = _envelope()
    with pytest.raises(UndecidableError, match=message) as info:
        log_dsse(service(lambda _body: answer(envelope)), envelope, pem)
    assert info.value.exit_code == 3


def test_a_timestamp_server_that_answers_garbage_or_nothing(service: Callable[[Answer], str]) -> None:
    with pytest.raises(UndecidableError, match="not a TimeStampResp"):
        request_timestamp(service(lambda _body: (200, b"\x30\x00")), b"signature")
    with pytest.raises(NetworkError, match=r"cannot reach 127\.0\.0\.1:9"):
        request_timestamp("http://127.0.0.1:9/tsa", b"signature", timeout=2)


def test_witness_urls_must_be_http() -> None:
    with pytest.raises(UsageError, match="http"):
        Witness(rekor_url="file:///etc/passwd")
    envelope, pem = _envelope()
    assert witness_envelope(Witness(), envelope, pem).tlog_entries == ()


@pytest.mark.sigstore
def test_a_replayed_timestamp_is_refused(sigstore_rig: Any, service: Callable[[Answer], str]) -> None:
    # A genuine stamp from the rig's TSA, for another signature, replayed by a service in the middle.
    genuine = request_timestamp(f"{sigstore_rig.url}/api/v1/timestamp", b"signature A")
    with pytest.raises(UndecidableError, match="nonce"):
        request_timestamp(service(lambda _body: (200, genuine)), b"signature B")
