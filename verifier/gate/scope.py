"""Where the policy applies: namespace globs, and time-boxed exceptions.

- A rule's ``namespaces: [GLOB, ...]`` limits it to reviews in a matching namespace; the
  policy's ``exclude_namespaces`` admits everything in a matching namespace without checks (as
  the webhook configurations' ``namespaceSelector`` does at the API server, but also for
  ``imgseal gate``). Globs are Kubernetes namespace names (RFC 1123 labels: ``a-z``, ``0-9``,
  ``-``, at most 63 characters) with ``*`` for any run of those characters. Peers scope the
  same way: Kyverno's namespaced policies and ``match.resources.namespaces`` (wildcards),
  policy-controller's namespace-scoped ClusterImagePolicy requests (#810, #1780).
- An exception (``exceptions: [{images, namespaces, until, reason}]``) admits matching images
  with a warning until its date, like Kyverno's PolicyException but always time-boxed: a
  waiver nobody remembers is the commonest hole in an admission policy. Expired exceptions
  are ignored (the clock is read at every decision, so a running webhook drops one at its
  instant) and ``imgseal policy check`` warns about them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from imgseal.errors import UsageError

MAX_NAMESPACE: Final = 63  # a namespace is an RFC 1123 DNS label
_NAMESPACE_GLOB: Final = re.compile(r"[a-z0-9*](?:[-a-z0-9*]*[a-z0-9*])?")
_NAMESPACE: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")


def normalise_namespace_glob(text: str) -> str:
    """Check a namespace glob; raise :class:`UsageError` saying what is wrong."""
    if "**" in text:
        raise UsageError(f"namespace pattern {text!r}: namespaces have no '/', so '**' means nothing; write '*'")
    if len(text) > MAX_NAMESPACE or not _NAMESPACE_GLOB.fullmatch(text):
        raise UsageError(f"namespace pattern {text!r}: a namespace name (a-z, 0-9, '-', at most {MAX_NAMESPACE} "
                         "characters, starting and ending with a letter or digit) with '*' wildcards")
    return text


def is_namespace(text: str) -> bool:
    return len(text) <= MAX_NAMESPACE and _NAMESPACE.fullmatch(text) is not None


_NAMESPACE_RX: dict[str, re.Pattern[str]] = {}


def namespace_matches(glob: str, namespace: str) -> bool:
    rx = _NAMESPACE_RX.get(glob)
    if rx is None:
        rx = _NAMESPACE_RX[glob] = re.compile("[-a-z0-9]*".join(re.escape(p) for p in glob.split("*")))
    return rx.fullmatch(namespace) is not None


def first_match(globs: tuple[str, ...], namespace: str | None) -> str | None:
    """The first of ``globs`` matching ``namespace`` (None when none does or the namespace is unknown)."""
    if namespace is None:
        return None
    return next((g for g in globs if namespace_matches(g, namespace)), None)


@dataclass(frozen=True)
class PolicyException:
    """One entry of the policy's ``exceptions``: these images (in these namespaces) are admitted
    with a warning, without checks, until ``until``."""

    number: int  # 1-based position in the list, for messages
    line: int
    images: tuple[str, ...]  # normalised name globs, as rules' match
    namespaces: tuple[str, ...]  # empty: every namespace
    until: dt.datetime  # the first instant (UTC) at which it no longer holds
    until_text: str  # as written
    reason: str

    def active(self, now: dt.datetime) -> bool:
        return now < self.until

    def covers_namespace(self, namespace: str | None) -> bool:
        """An exception for some namespaces never covers a review whose namespace is unknown (stricter)."""
        return not self.namespaces or first_match(self.namespaces, namespace) is not None

    def label(self) -> str:
        return f"exception #{self.number} (line {self.line}, until {self.until_text}): {self.reason}"


_EXTENDED_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?:$|[Tt ]\d{2}:\d{2})")


def parse_until(value: object) -> tuple[dt.datetime, str]:
    """``until`` as YAML gives it: a date (holds through that whole day, UTC) or a timestamp with
    a time zone (holds until that instant). Raise :class:`UsageError` otherwise."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            # PyYAML turns "…Z" / "…+02:00" into aware datetimes; a bare "2026-01-01 10:00" has no zone.
            raise UsageError(f"until {value.isoformat()}: give a time zone (e.g. 'Z'), or a plain date")
        return value.astimezone(dt.UTC), value.isoformat()
    if isinstance(value, dt.date):
        end = dt.datetime.combine(value + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        return end, value.isoformat()
    # fromisoformat also takes ISO 8601's basic and week forms (20260131, 2026-W05-1): only the
    # extended forms the docs name are accepted, so a YAML int 20260131 is not silently a date.
    if isinstance(value, str) and _EXTENDED_DATE.match(value):
        try:
            if len(value) == 10:
                return parse_until(dt.date.fromisoformat(value))
            return parse_until(dt.datetime.fromisoformat(value))
        except ValueError:
            pass
    raise UsageError(f"until {value!r}: not a date (YYYY-MM-DD) or a timestamp with a time zone")
