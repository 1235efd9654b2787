"""Bundles other projects publish in their test suites give the outcome their authors expect.

The corpus and its provenance are in tests/data/public-bundles (manifest.json, SOURCE.md).
A case imgseal deliberately judges otherwise carries ``disagreements.imgseal`` naming why
(and the text of imgseal's error that shows it); every other case must match its authors.
Tampered variants of every passing case must fail.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.public_bundles import Case, cases, run_imgseal, tampered

CASES = cases()
ORIGINALS = [c for c in CASES if "derived" not in c.spec]
TAMPERED = [t for c in CASES if c.expected == "pass" for t in tampered(c)]


def test_corpus_is_what_the_manifest_says() -> None:
    assert len(CASES) >= 50 and len(TAMPERED) >= 100
    for c in CASES:
        source = c.spec["source"]
        assert source["repository"] and len(source["commit"]) == 40 and source["path"], c.id
        assert c.expected in ("pass", "fail") and c.spec["expected_by"], c.id
    by_repo = Counter(c.spec["source"]["repository"] for c in ORIGINALS)
    suites = {"sigstore/sigstore-js", "cli/cli", "sigstore/sigstore-go", "sigstore/sigstore-python"}
    assert set(by_repo) == suites, by_repo


def _judge(case: Case, tmp_path: Path) -> None:
    answer = run_imgseal(case, tmp_path)
    known = case.spec.get("disagreements", {}).get("imgseal")
    if known is None:
        assert answer.ok == (case.expected == "pass"), answer.detail
        if not answer.ok:
            assert "\n" not in answer.detail and answer.detail, answer.detail
    else:
        # A deliberate difference (following sigstore-go): it must stay exactly that one.
        assert answer.ok == (known["answer"] == "pass") and known["match"] in answer.detail, answer.detail


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_public_bundle(case: Case, tmp_path: Path) -> None:
    _judge(case, tmp_path)


@pytest.mark.parametrize("case", TAMPERED, ids=[c.id for c in TAMPERED])
def test_tampered_public_bundle_fails(case: Case, tmp_path: Path) -> None:
    answer = run_imgseal(case, tmp_path)
    assert not answer.ok, answer.detail
