"""@sigstore/verify and sigstore-python on the public-bundle corpus, beside imgseal's own test.

Every case of tests/data/public-bundles (and its tampered variants) is given to both peers
with the same bundle, trusted root, artifact, identity and thresholds. Each peer must reach
the authors' expected outcome, except where the manifest records that peer's disagreement
(``disagreements.<peer>``, with the reason and the text of its error that shows it): then it
must still disagree in exactly that way, so the list cannot go stale silently. The counts
are in docs/keyless.md's agreement table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.sigstore_rig import require_rig
from tests.public_bundles import Answer, Case, cases, run_sigstore_js, run_sigstore_python, tampered

CASES = cases()
TAMPERED = [t for c in CASES if c.expected == "pass" for t in tampered(c)]
PEERS: dict[str, Callable[[Case, Path], Answer]] = {"sigstore-js": run_sigstore_js,
                                                    "sigstore-python": run_sigstore_python}


def _check(peer: str, case: Case, tmp_path: Path) -> None:
    if peer == "sigstore-js":
        require_rig()
    answer = PEERS[peer](case, tmp_path)
    known = case.spec.get("disagreements", {}).get(peer)
    if known is None:
        assert answer.ok == (case.expected == "pass"), answer.detail
    else:
        assert answer.ok == (known["answer"] == "pass") and known["match"] in answer.detail, answer.detail


@pytest.mark.parametrize("peer", sorted(PEERS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_peer_on_public_bundle(peer: str, case: Case, tmp_path: Path) -> None:
    _check(peer, case, tmp_path)


@pytest.mark.parametrize("peer", sorted(PEERS))
@pytest.mark.parametrize("case", TAMPERED[::7], ids=[c.id for c in TAMPERED[::7]])
def test_peer_refuses_tampered_public_bundle(peer: str, case: Case, tmp_path: Path) -> None:
    # A sample (every 7th variant) keeps the Node runs short; imgseal's own test takes them all.
    if peer == "sigstore-js":
        require_rig()
    assert not PEERS[peer](case, tmp_path).ok
