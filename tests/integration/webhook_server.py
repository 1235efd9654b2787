"""Run a :class:`~verifier.gate.webhook.Webhook` over real HTTPS (uvicorn) on loopback, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.integration.kube_api_double import throwaway_cert
from verifier.gate.webhook import Webhook, make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    cert: Path
    key: Path
    hook: Webhook
    session: requests.Session

    def post(self, path: str, body: Any, *, raw: bytes | None = None) -> requests.Response:
        if raw is not None:
            return self.session.post(self.url + path, data=raw, headers={"Content-Type": "application/json"},
                                     timeout=30, verify=str(self.cert))
        return self.session.post(self.url + path, json=body, timeout=30, verify=str(self.cert))

    def metric(self, name: str, **labels: str) -> float:
        """One sample read back from ``GET /metrics`` (0 when absent), as a scraper sees it."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def get(self, path: str) -> requests.Response:
        # verify per request: a session's verify loses to $REQUESTS_CA_BUNDLE (requests #3829)
        return self.session.get(self.url + path, timeout=10, verify=str(self.cert))


@contextmanager
def serve(hook: Webhook, directory: Path, *, cert: Path | None = None, key: Path | None = None) -> Iterator[Served]:
    directory.mkdir(parents=True, exist_ok=True)
    if cert is None or key is None:
        cert, key = throwaway_cert(directory, "webhook")
    server = make_server(hook, host="127.0.0.1", port=free_port(), cert=cert, key=key)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    session = requests.Session()
    try:
        yield Served(f"https://127.0.0.1:{server.config.port}", cert, key, hook, session)
    finally:
        session.close()  # first: uvicorn waits for open keep-alive connections before it exits
        server.should_exit = True
        thread.join(1)
        if thread.is_alive():  # a client connection still open: do not wait it out
            server.force_exit = True
            thread.join(5)
        assert not thread.is_alive(), "uvicorn did not stop"


def review(obj: Any, *, kind: str = "Pod", namespace: str = "default", operation: str = "CREATE",
           uid: str = "0b7b6a4e-1f4d-4c55-9d8e-6f0c1a2b3c4d", dry_run: bool = False) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
                        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
                        "namespace": namespace, "operation": operation, "object": obj, "oldObject": None,
                        "dryRun": dry_run, "userInfo": {"username": "admin"}}}


def pod(*images: str, pull_secrets: tuple[str, ...] = (), service_account: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]}
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    if service_account:
        spec["serviceAccountName"] = service_account
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
