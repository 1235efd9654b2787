"""The webhook's short tag memory: warm requests ask the registry nothing; a moved tag is seen after the TTL."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imgseal.store import StoreFactory
from tests.integration.images import push_image
from tests.integration.test_sign_verify import ENV, make_key
from tests.integration.webhook_server import pod, review, serve
from verifier.gate.cache import MemoryCache, TagCache
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy_file import load_policy
from verifier.gate.webhook import Webhook

pytestmark = pytest.mark.registry


def test_tag_cache_is_per_scope_and_expires() -> None:
    tags = TagCache(0.2)
    tags.put("own", "r/app", "v1", "sha256:" + "a" * 64)
    assert tags.get("own", "r/app", "v1") == "sha256:" + "a" * 64
    assert tags.get("pull:other", "r/app", "v1") is None
    time.sleep(0.25)
    assert tags.get("own", "r/app", "v1") is None
    off = TagCache(0)
    off.put("own", "r/app", "v1", "sha256:" + "a" * 64)
    assert off.get("own", "r/app", "v1") is None


def test_warm_requests_skip_the_registry_and_a_moved_tag_is_seen_after_the_ttl(registry, tmp_path: Path) -> None:
    priv, _pub, _ = make_key(tmp_path, "team")
    host = registry.host

    def push_signed(content: bytes) -> str:
        desc = push_image(host, "tags/app", content=content)
        subprocess.run([sys.executable, "-m", "imgseal", "sign", f"{host}/tags/app@{desc.digest}", "--key",
                        str(priv)], env={**os.environ, **ENV}, check=True, capture_output=True)
        return str(desc.digest)

    first = push_signed(b"first")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'version: 1\ndefault: deny\nrules:\n  - name: team\n    match: ["{host}/tags/*"]\n'
                      "    require:\n      signatures: {keys: [team.pub]}\n")
    factory = StoreFactory()
    evaluator = Evaluator(load_policy(policy), factory, cache=MemoryCache(), resolve_tags=True, tags=TagCache(2.0))
    with serve(Webhook(evaluator, log=lambda *a, **k: None), tmp_path / "hook") as served:

        def answer() -> dict[str, Any]:
            return dict(served.post("/mutate", review(pod(f"{host}/tags/app:v1"))).json()["response"])

        assert answer()["allowed"] is True
        resolved_at = time.monotonic()
        before = factory.request_count
        warm = answer()
        assert factory.request_count == before  # tag and verification both remembered
        assert json.loads(base64.b64decode(warm["patch"]))[0]["value"] == f"{host}/tags/app:v1@{first}"
        push_image(host, "tags/app", content=b"moved, unsigned")  # the tag moves to an unsigned image
        still = answer()
        if time.monotonic() - resolved_at < 1.5:  # within the TTL: the verified digest is still what is pinned
            assert still["allowed"] is True and first in json.loads(base64.b64decode(still["patch"]))[0]["value"]
        deadline = time.monotonic() + 10
        while answer()["allowed"]:
            assert time.monotonic() < deadline, "the moved tag was never seen"
            time.sleep(0.1)
        assert "no signatures" in answer()["status"]["message"] or "denied" in answer()["status"]["message"]
