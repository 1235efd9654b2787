"""How many signatures a naive referrers-tag-index read-modify-write loses under 32 concurrent writers.

Each writer does what cosign does for the tag schema (GET ``sha256-<hex>``, append its entry,
PUT) without imgseal's per-artifact tag and re-check; the survivors are counted afterwards.
Run: ``python -m bench.naive_race`` (starts its own docker-registry on loopback).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imgseal import attach
from imgseal.digest import Digest
from imgseal.manifest import (
    EMPTY_DESCRIPTOR,
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    build_index,
    build_manifest,
)
from tests.integration.images import push_image, registry_store
from tests.integration.registry_rig import start_registry

WRITERS = 32
ROUNDS = 5


def naive_append(host: str, repo: str, subject: Descriptor, i: int) -> None:
    store = registry_store(host, repo)  # one client per writer, like separate processes
    store.put_blob(EMPTY_JSON)
    layer = store.put_blob(f"signature {i}".encode())
    raw = build_manifest(config=EMPTY_DESCRIPTOR, layers=[Descriptor("text/plain", layer, len(f"signature {i}"))],
                         subject=subject, artifact_type="application/example")
    store.put_manifest(raw, OCI_MANIFEST)  # the artifact itself, by digest (complete before the index)
    entry = Descriptor(OCI_MANIFEST, Digest.of(raw), len(raw), {}, "application/example")
    current = attach._read_referrers_index(store, subject.digest)
    store.put_manifest(build_index([*current, entry]), OCI_INDEX, tag=attach.referrers_tag(subject.digest))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, start_registry(Path(tmp) / "registry") as reg:
        lost = []
        for r in range(ROUNDS):
            repo = f"naive/race{r}"
            desc = push_image(reg.host, repo, content=f"naive {r}".encode())
            with ThreadPoolExecutor(max_workers=WRITERS) as pool:
                list(pool.map(naive_append, [reg.host] * WRITERS, [repo] * WRITERS, [desc] * WRITERS, range(WRITERS)))
            survivors = len(attach._read_referrers_index(registry_store(reg.host, repo), desc.digest))
            lost.append(WRITERS - survivors)
        print(f"naive read-modify-write, {WRITERS} concurrent writers x {ROUNDS} rounds: lost {lost} "
              f"(total {sum(lost)} of {WRITERS * ROUNDS}); imgseal's attach loses 0 (tests/integration/"
              "test_sign_verify.py::test_32_concurrent_signers_lose_nothing)")


if __name__ == "__main__":
    main()
