"""Bounding what the webhook says: capped messages and warnings."""

from __future__ import annotations

from verifier.gate.admission import MAX_WARNING_CHARS, MAX_WARNINGS, capped, capped_warnings


def test_capped_keeps_what_fits_then_counts_the_rest() -> None:
    items = [f"image{i}: denied" for i in range(1000)]
    text = capped("head: ", items, limit=200, noun="more denied")
    assert len(text.encode()) <= 200 and text.startswith("head: image0: denied; image1: denied")
    shown = text.count(": denied")
    assert text.endswith(f"; and {1000 - shown} more denied")


def test_capped_shows_a_cut_first_item_rather_than_none() -> None:
    text = capped("h: ", ["x" * 10_000, "y" * 10_000, "z"], limit=100)
    assert text.startswith("h: xxx") and text.endswith("...; and 2 more")
    assert len(text.encode()) <= 100


def test_capped_leaves_short_lists_alone_and_cuts_multibyte_text_cleanly() -> None:
    assert capped("h: ", ["a", "b"], limit=100) == "h: a; b"
    text = capped("h: ", ["é" * 500], limit=100)
    assert text.encode().decode() == text and len(text.encode()) <= 100


def test_capped_warnings() -> None:
    warnings = capped_warnings(["w" * 2000] + [f"w{i}" for i in range(50)])
    assert len(warnings) == MAX_WARNINGS + 1 and len(warnings[0]) == MAX_WARNING_CHARS
    assert warnings[-1] == f"imgseal: and {51 - MAX_WARNINGS} more warning(s)"
