"""Usage errors that click detects (bad choices, unknown commands and options, missing arguments)
are one ``imgseal: error:`` line with exit 2, like every other imgseal error (README, "Exit codes")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

CASES = [
    (["gate", "-o", "xml", "x.yaml"], "'xml' is not one of 'text', 'json', 'sarif'", "imgseal gate --help"),
    (["verfy"], "Did you mean 'verify'?", "imgseal --help"),
    (["digest"], "Missing argument 'reference'", "imgseal digest --help"),
    (["verify", "--no-such-flag", "r@sha256:" + "0" * 64], "No such option: --no-such-flag", "imgseal verify --help"),
    (["keys", "generate", "--type", "dsa"], "'dsa' is not one of", "imgseal keys generate --help"),
]


@pytest.mark.parametrize(("argv", "says", "help_cmd"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_click_usage_errors_are_one_line_exit_2(cli: Callable[..., object], argv: list[str], says: str,
                                                help_cmd: str) -> None:
    result = cli(*argv)
    assert result.code == 2, result.stderr  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("imgseal: error: ") and says in lines[0] and f"{help_cmd}')" in lines[0]
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr  # type: ignore[attr-defined]


def test_help_and_no_arguments_still_print_help(cli: Callable[..., object]) -> None:
    bare = cli()
    assert bare.code == 2 and "Commands:" in bare.stderr + bare.stdout  # type: ignore[attr-defined]
    helped = cli("verify", "--help")
    assert helped.code == 0 and "imgseal verify [OPTIONS]" in helped.stdout  # type: ignore[attr-defined]
    version = cli("--version")
    assert version.code == 0 and version.stdout.startswith("imgseal ")  # type: ignore[attr-defined]
