"""One-line notices from library code to the user: where imgseal degraded instead of failing.

A registry without OCI 1.1 support makes a signer fall back to cosign's legacy format, a
registry that aliases the referrers tag makes it skip the shared index; the user should
hear of it once, on stderr, without ``--debug``. Each distinct message is printed once per
process (a recursive signing of forty children says it once), and the set remembered is
bounded so a long-running webhook does not grow it without end.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

log = logging.getLogger("imgseal.notice")
_MAX_REMEMBERED: Final = 256
_said: set[str] = set()


def notice(message: str) -> None:
    """Say ``message`` on stderr as ``imgseal: notice: …`` (once per process)."""
    log.debug("notice: %s", message)
    if message in _said:
        return
    if len(_said) >= _MAX_REMEMBERED:
        _said.clear()
    _said.add(message)
    sys.stderr.write(f"imgseal: notice: {' '.join(message.split())}\n")
    sys.stderr.flush()
