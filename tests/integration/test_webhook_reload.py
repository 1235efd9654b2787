"""Hot reload under a running webhook: a ConfigMap-style mount swapped (good → good → broken → good), TLS rotated."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from imgseal.store import StoreFactory
from tests.integration.kube_api_double import throwaway_cert
from tests.integration.webhook_server import Served, pod, review, serve
from verifier.gate.cache import MemoryCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy_file import load_policy
from verifier.gate.webhook import Webhook

DIGEST = "sha256:" + "cd" * 32
IMAGE = f"127.0.0.1:1/team/app@{DIGEST}"  # decided by policy alone: no registry is asked
DENY_ALL = "version: 1\ndefault: deny\nrules: []\n"
ALLOW_TEAM = 'version: 1\ndefault: deny\nrules:\n  - name: team\n    match: ["127.0.0.1:1/team/*"]\n    allow: true\n'
BROKEN = "version: 1\ndefault: maybe\nrules:\n  - name: team\n    match: 7\n"


class ConfigMapVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume, updated as it updates it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.generation = 0

    def publish(self, files: dict[str, bytes]) -> None:
        self.generation += 1
        target = self.root / f"..2026_12_01_00_00_{self.generation:02d}.000000001"
        target.mkdir()
        for name, data in files.items():
            (target / name).write_bytes(data)
        tmp_link = self.root / "..data_tmp"
        tmp_link.symlink_to(target.name)
        os.replace(tmp_link, self.root / "..data")  # the one atomic rename of an update
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the webhook did not pick up the change"
        time.sleep(0.05)


def allowed(served: Served) -> bool:
    resp = served.post("/validate", review(pod(IMAGE)))
    assert resp.status_code == 200
    return bool(resp.json()["response"]["allowed"])


def test_configmap_swaps_reload_the_policy_without_restart(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "policy")
    volume.publish({"policy.yaml": DENY_ALL.encode()})
    path = volume.root / "policy.yaml"
    logged: list[dict[str, object]] = []
    evaluator = Evaluator(load_policy(path), StoreFactory(), cache=MemoryCache(), resolve_tags=True)
    hook = Webhook(evaluator, policy_path=path, reload_interval=0.05, log=lambda event, **f: logged.append(
        {"event": event, **f}))
    with serve(hook, tmp_path / "hook") as served:
        assert not allowed(served)
        volume.publish({"policy.yaml": ALLOW_TEAM.encode()})  # good -> good
        wait_for(lambda: allowed(served))
        assert served.metric("imgseal_policy_reloads_total", result="success") == 1
        volume.publish({"policy.yaml": BROKEN.encode()})  # good -> broken: the last good one stays
        wait_for(lambda: served.get("/readyz").json()["policy"]["lastReloadOk"] is False)
        ready = served.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ok"] is True
        errors = ready.json()["policy"]["errors"]
        assert len(errors) >= 2 and any("default" in e for e in errors) and any("match" in e for e in errors)
        assert ready.json()["policy"]["sha256"] == hashlib.sha256(ALLOW_TEAM.encode()).hexdigest()
        assert allowed(served)
        assert served.metric("imgseal_policy_last_reload_success") == 0
        assert served.metric("imgseal_policy_reloads_total", result="failure") == 1
        assert [e["error"] for e in logged if e["event"] == "policy-reload-error"] == errors
        volume.publish({"policy.yaml": DENY_ALL.encode()})  # broken -> good
        wait_for(lambda: not allowed(served))
        assert served.get("/readyz").json()["policy"]["lastReloadOk"] is True
        assert served.metric("imgseal_policy_last_reload_success") == 1


def test_policy_edited_in_place_reloads_too(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DENY_ALL)
    evaluator = Evaluator(load_policy(path), StoreFactory(), cache=MemoryCache(), resolve_tags=True)
    hook = Webhook(evaluator, policy_path=path, reload_interval=0.05, log=lambda *a, **k: None)
    with serve(hook, tmp_path / "hook") as served:
        assert not allowed(served)
        path.write_text(ALLOW_TEAM)
        wait_for(lambda: allowed(served))


def served_certificate(served: Served) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read which certificate is served
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_tls_files_rotate_under_a_running_webhook(tmp_path: Path) -> None:
    first_cert, first_key = throwaway_cert(tmp_path / "one", "tls")
    second_cert, second_key = throwaway_cert(tmp_path / "two", "tls")
    volume = ConfigMapVolume(tmp_path / "tls")
    volume.publish({"tls.crt": first_cert.read_bytes(), "tls.key": first_key.read_bytes()})
    policy = tmp_path / "policy.yaml"
    policy.write_text(DENY_ALL)
    evaluator = Evaluator(load_policy(policy), StoreFactory(), cache=MemoryCache())
    logged: list[dict[str, object]] = []
    hook = Webhook(evaluator, reload_interval=0.05, log=lambda event, **f: logged.append({"event": event, **f}))
    with serve(hook, tmp_path / "hook", cert=volume.root / "tls.crt", key=volume.root / "tls.key") as served:
        served.cert = first_cert  # a copy: the mounted file is about to change under us
        original = served_certificate(served)
        # Mid-rotation a certificate without its key: the old pair stays in service.
        volume.publish({"tls.crt": second_cert.read_bytes(), "tls.key": first_key.read_bytes()})
        wait_for(lambda: any(e["event"] == "tls-reload" and e["result"] == "failure" for e in logged))
        assert served_certificate(served) == original
        assert "tlsReloadError" in served.get("/readyz").json()
        volume.publish({"tls.crt": second_cert.read_bytes(), "tls.key": second_key.read_bytes()})
        wait_for(lambda: served_certificate(served) != original)
        served.cert = second_cert
        assert served.get("/healthz").json()["ok"] is True
