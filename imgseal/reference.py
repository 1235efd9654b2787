"""Image references: parse, validate and normalise registry and OCI-layout references.

Registry references follow the grammar of distribution/reference (``reference.go``,
``regexp.go``, ``normalize.go``)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host [ ":" port ]        host = DNS name | IPv4 | "[" IPv6 "]"
    component  := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

and the docker normalisation rules (``normalize.go`` ``splitDockerDomain``): the first
component is a domain only if it contains ``.`` or ``:`` or is exactly ``localhost``;
otherwise the domain is ``docker.io``. ``index.docker.io`` becomes ``docker.io``, and a
one-component path on ``docker.io`` gets ``library/``. A reference with neither tag nor
digest gets the default tag ``latest``. ``name:tag@digest`` is a digest reference: the tag
is kept only as information and never used to resolve anything.

Where we are stricter than distribution/reference, on purpose (fail closed):

* the port must be a decimal number in 1..65535 (Go accepts any digit string);
* a bracketed IPv6 address must be a real IPv6 address (Go accepts any ``[a-fA-F0-9:]+``);
* digests must be ``sha256``/``sha512`` lowercase hex (image-spec ``descriptor.md``;
  :class:`imgseal.digest.Digest` decides);
* a bare digest (``sha256:<hex>``) or a 64-hex "image ID" is not accepted as a reference,
  because docker would read the first as repository ``sha256`` with a tag and the second
  as a repository name (``normalize.go`` rejects the latter too);
* surrounding whitespace, control characters and non-ASCII characters are rejected rather
  than stripped, and ``https://``-style schemes are rejected with a hint.

Host names are normalised to lowercase (DNS names are case-insensitive, RFC 4343), so
``Docker.IO/alpine`` and ``docker.io/alpine`` name the same image; path components must
already be lowercase.

OCI image layouts (image-spec ``image-layout.md``) are named ``oci-layout:PATH[:TAG][@DIGEST]``;
see :class:`LayoutReference` for how colons and ``@`` inside paths are resolved.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

from imgseal.digest import Digest
from imgseal.errors import InvalidReferenceError

DEFAULT_DOMAIN: Final = "docker.io"
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX: Final = "library/"
DEFAULT_TAG: Final = "latest"
LAYOUT_PREFIX: Final = "oci-layout:"
NAME_TOTAL_LENGTH_MAX: Final = 255  # reference.go NameTotalLengthMax
TAG_LENGTH_MAX: Final = 128
# Longest well-formed reference: 255 name + ":" + 128 tag + "@sha512:" + 128 hex.
# Anything far longer is rejected before any scanning, whatever it contains.
_INPUT_LENGTH_MAX: Final = 4096

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DOMAIN_LABEL = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")  # normalize.go anchoredIdentifierRegexp
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class _Forms:
    """The forms both kinds of reference share, built from ``name``, ``tag`` and ``digest``."""

    if TYPE_CHECKING:
        tag: str | None
        digest: Digest | None

        @property
        def name(self) -> str: ...

    @property
    def is_digest(self) -> bool:
        """True when the reference pins a digest (any tag is then informational)."""
        return self.digest is not None

    def with_digest(self, digest: Digest) -> Self:
        """The same name and tag, pinned to ``digest``."""
        if not isinstance(digest, Digest):
            raise InvalidReferenceError(f"digest must be a Digest, not {type(digest).__name__}")
        return replace(self, digest=digest)  # type: ignore[type-var]

    def with_tag(self, tag: str) -> Self:
        """A tag reference to ``tag`` in the same place (any digest is dropped).

        Dropping the digest is deliberate: the result names whatever the tag points at,
        e.g. ``ref.with_tag(digest.tag_form + ".sig")`` for cosign's legacy signature tag.
        """
        if not isinstance(tag, str):
            raise InvalidReferenceError("tag must be a string")
        _check_tag(tag, tag)
        return replace(self, tag=tag, digest=None)  # type: ignore[type-var]

    def pinned(self) -> str:
        """``NAME@digest``: the form to deploy. Needs a digest."""
        if self.digest is None:
            raise InvalidReferenceError(f"{self} has no digest to pin", hint="resolve the tag to a digest first")
        return f"{self.name}@{self.digest}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Reference(_Forms):
    """A normalised registry reference such as ``docker.io/library/alpine:latest``.

    Instances are always in normal form: ``registry`` lowercase and never
    ``index.docker.io``, ``repository`` valid (with ``library/`` on docker.io), ``tag``
    valid or None, ``digest`` a :class:`Digest` or None. Construct via
    :func:`parse_reference`; direct construction is validated too.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        registry = _normalise_domain(self.registry, self.registry)
        if registry != self.registry:
            raise InvalidReferenceError(
                f"registry {self.registry!r} is not in normal form (expected {registry!r})",
                hint="build references with parse_reference()",
            )
        _check_repository(self.repository, self.repository)
        if registry == DEFAULT_DOMAIN and "/" not in self.repository:
            raise InvalidReferenceError(
                f"docker.io repository {self.repository!r} is not in normal form"
                f" (expected {OFFICIAL_REPO_PREFIX + self.repository!r})"
            )
        _check_name_length(registry, self.repository, self.repository)
        if self.tag is not None:
            _check_tag(self.tag, self.tag)
        if self.digest is not None and not isinstance(self.digest, Digest):
            raise InvalidReferenceError(f"digest must be a Digest, not {type(self.digest).__name__}")

    @property
    def name(self) -> str:
        """``registry/repository``, e.g. ``docker.io/library/alpine`` (docker.io kept)."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the distribution API for this registry."""
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_DOMAIN else self.registry



@dataclass(frozen=True)
class LayoutReference(_Forms):
    """An image in an OCI image layout directory: ``oci-layout:PATH[:TAG][@DIGEST]``.

    How the text after ``oci-layout:`` is split (paths may contain ``:`` and ``@``):

    1. If the text after the last ``@`` contains no ``/``, it is the digest and must be a
       valid digest (so ``oci-layout:dir@`` is an error, not a directory named ``dir@``).
    2. Then, if the text after the last ``:`` contains no ``/``, it is the tag and must be
       a valid tag (so ``oci-layout:dir:..`` is an error, not a directory named ``dir:..``).
    3. What remains is the directory path; it must not be empty.

    So a directory whose last path component contains ``:`` or ``@`` is written with a
    trailing ``/`` (``oci-layout:/srv/img:v1/`` is the directory ``/srv/img:v1``;
    ``oci-layout:/srv/img:v1`` is directory ``/srv/img`` with tag ``v1``). ``str()`` adds
    that ``/`` when needed, so the rendered form always parses back to the same value.

    The path is the user's own choice of local directory, so ``..`` and absolute paths
    are allowed in it; only control characters, lone surrogates and surrounding
    whitespace are rejected. Tags and digests are validated against their grammars, so
    neither can carry ``/`` or ``..`` into a path built from them later; stores must
    still build blob paths only from a validated :class:`Digest`.

    Without a tag or digest, ``tag`` stays None: a layout has no ``latest`` convention
    (image-spec ``image-layout.md`` ``org.opencontainers.image.ref.name`` is optional and
    often absent), so the layout store decides, e.g. by taking its only manifest.
    """

    path: Path
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            raise InvalidReferenceError(f"layout path must be a Path, not {type(self.path).__name__}")
        _check_layout_path(str(self.path), str(self.path))
        if self.tag is not None:
            _check_tag(self.tag, self.tag)
        if self.digest is not None and not isinstance(self.digest, Digest):
            raise InvalidReferenceError(f"digest must be a Digest, not {type(self.digest).__name__}")

    @property
    def resolved_path(self) -> Path:
        """The absolute directory, resolved now (symlinks followed) rather than at parse."""
        return self.path.expanduser().resolve()

    @property
    def name(self) -> str:
        """``oci-layout:PATH`` without tag or digest."""
        return LAYOUT_PREFIX + _render_layout_path(self.path)



AnyReference = Reference | LayoutReference


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference | LayoutReference:
    """Parse and normalise an image reference.

    ``oci-layout:`` selects a :class:`LayoutReference`; anything else is a registry
    :class:`Reference`. ``default_tag`` is given to registry references that have neither
    tag nor digest (None keeps the tag None). Raises :class:`InvalidReferenceError`
    whose message names the part that is wrong.
    """
    if not isinstance(text, str):
        raise InvalidReferenceError(f"image reference must be a string, not {type(text).__name__}")
    if default_tag is not None:
        _check_tag(default_tag, default_tag)
    shown = _clip(text)
    if not text:
        raise InvalidReferenceError("empty image reference", hint="e.g. registry.example.com/team/app:1.2")
    if len(text) > _INPUT_LENGTH_MAX:
        raise InvalidReferenceError(
            f"image reference is too long ({len(text)} characters; a name may have at most {NAME_TOTAL_LENGTH_MAX})"
        )
    if text != text.strip():
        raise InvalidReferenceError(f"image reference {shown!r} has leading or trailing whitespace")
    if text.startswith(LAYOUT_PREFIX):
        return _parse_layout(text[len(LAYOUT_PREFIX) :], shown)
    _check_characters(text, shown)
    if _SCHEME.match(text):
        scheme = text.split("://", 1)[0]
        raise InvalidReferenceError(
            f"image reference {shown!r} has a URL scheme {scheme + '://'!r}; references have none",
            hint=f"drop the scheme: {_clip(text.split('://', 1)[1])}",
        )
    if "://" in text:
        raise InvalidReferenceError(f"image reference {shown!r} looks like a URL ('://'); references have none")
    try:
        Digest.parse(text)
    except InvalidReferenceError:
        pass
    else:
        raise InvalidReferenceError(
            f"{shown!r} is a bare digest, not an image reference",
            hint="name the repository too: REGISTRY/REPOSITORY@" + text[:15] + "…",
        )

    remainder, digest = _split_digest(text, shown)
    name_text, tag = _split_tag(remainder, shown)
    registry, repository = _split_name(name_text, shown)
    _check_name_length(registry, repository, shown)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, repository, tag, digest)


def parse_digest_arg(text: str) -> Digest:
    """Parse a digest given on its own (a CLI argument); errors name the digest."""
    if not isinstance(text, str):
        raise InvalidReferenceError(f"digest must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidReferenceError("empty digest", hint="expected sha256:<64 lowercase hex>")
    if text != text.strip():
        raise InvalidReferenceError(f"digest {_clip(text)!r} has leading or trailing whitespace")
    return Digest.parse(text)


# --- parsing steps -------------------------------------------------------------------------


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _check_characters(text: str, shown: str) -> None:
    for index, char in enumerate(text):
        if char.isspace():
            raise InvalidReferenceError(f"image reference {shown!r} contains whitespace {char!r} at position {index}")
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidReferenceError(
                f"image reference {shown!r} contains a control character {char!r} at position {index}"
            )
        if not char.isascii():
            raise InvalidReferenceError(
                f"image reference {shown!r} contains a non-ASCII character {char!r} at position {index};"
                " references are ASCII only"
            )


def _split_digest(text: str, shown: str) -> tuple[str, Digest | None]:
    count = text.count("@")
    if count == 0:
        return text, None
    if count > 1:
        raise InvalidReferenceError(f"image reference {shown!r} has more than one '@' (digest separator)")
    remainder, _, digest_text = text.partition("@")
    if not digest_text:
        raise InvalidReferenceError(
            f"image reference {shown!r} has '@' without a digest", hint="expected NAME@sha256:<64 hex>"
        )
    if not remainder:
        raise InvalidReferenceError(f"image reference {shown!r} has a digest but no repository name")
    return remainder, _parse_digest_part(digest_text, shown)


def _parse_digest_part(digest_text: str, shown: str) -> Digest:
    try:
        return Digest.parse(digest_text)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"invalid digest in {shown!r}: {exc.message}", hint=exc.hint) from exc


def _split_tag(remainder: str, shown: str) -> tuple[str, str | None]:
    # The tag is whatever follows the last ':' after the last '/'; a ':' before a '/'
    # belongs to the domain's port (reference.go: the regexp anchors tag after the name).
    colon = remainder.rfind(":")
    if colon == -1 or "/" in remainder[colon + 1 :]:
        return remainder, None
    name_text, tag = remainder[:colon], remainder[colon + 1 :]
    if not name_text:
        raise InvalidReferenceError(f"image reference {shown!r} has a tag but no repository name")
    if not tag:
        raise InvalidReferenceError(f"image reference {shown!r} has ':' without a tag")
    _check_tag(tag, shown)
    return name_text, tag


def _check_tag(tag: str, shown: str) -> None:
    if not tag:
        raise InvalidReferenceError(f"empty tag in {shown!r}")
    if len(tag) > TAG_LENGTH_MAX:
        raise InvalidReferenceError(
            f"tag in {_clip(shown)!r} is too long ({len(tag)} characters; at most {TAG_LENGTH_MAX})"
        )
    if _TAG.fullmatch(tag):
        return
    if tag[0] in ".-":
        raise InvalidReferenceError(
            f"invalid tag {_clip(tag, 40)!r} in {_clip(shown)!r}: a tag must start with a letter, digit or '_'"
        )
    bad = next((c for c in tag if not (c.isascii() and (c.isalnum() or c in "_.-"))), tag[0])
    raise InvalidReferenceError(
        f"invalid tag {_clip(tag, 40)!r} in {_clip(shown)!r}: character {bad!r} is not allowed"
        " (letters, digits, '_', '.', '-')"
    )


def _split_name(name_text: str, shown: str) -> tuple[str, str]:
    if name_text.startswith("/"):
        raise InvalidReferenceError(f"image reference {shown!r} starts with '/' (leading separator)")
    if name_text.endswith("/"):
        raise InvalidReferenceError(f"image reference {shown!r} ends with '/' (trailing separator)")
    if "//" in name_text:
        raise InvalidReferenceError(f"image reference {shown!r} has an empty path component ('//')")
    # normalize.go splitDockerDomain: a domain needs '.', ':' or to be 'localhost'.
    first, sep, rest = name_text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = _normalise_domain(first, shown), rest
    else:
        if ":" in name_text:
            # Only reachable without '/': e.g. "a:b:c" — the last ':' was taken as the tag.
            raise InvalidReferenceError(
                f"image reference {shown!r} has a ':' in the repository name",
                hint="a port belongs to a registry host followed by '/', e.g. localhost:5000/app",
            )
        registry, repository = DEFAULT_DOMAIN, name_text
    _check_repository(repository, shown)
    if registry == DEFAULT_DOMAIN:
        if "/" not in repository:
            if _IDENTIFIER.fullmatch(repository):
                raise InvalidReferenceError(
                    f"invalid repository name {_clip(repository, 20)!r}: 64-hex strings are image IDs, not names"
                )
            repository = OFFICIAL_REPO_PREFIX + repository
    return registry, repository


def _normalise_domain(domain: str, shown: str) -> str:
    """Validate ``host[:port]`` and return it with the host lowercased."""
    if not isinstance(domain, str) or not domain:
        raise InvalidReferenceError(f"empty registry host in {_clip(shown)!r}")
    if domain.startswith("["):
        close = domain.find("]")
        if close == -1:
            raise InvalidReferenceError(f"registry host {_clip(domain, 60)!r} has '[' without ']' (IPv6)")
        inner, after = domain[1:close], domain[close + 1 :]
        if not inner or not re.fullmatch(r"[a-fA-F0-9:]+", inner):
            raise InvalidReferenceError(
                f"invalid IPv6 address {_clip(domain, 60)!r} in registry host"
                " (hex digits and ':' only; no zones or embedded IPv4)"
            )
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError as exc:
            raise InvalidReferenceError(f"invalid IPv6 address {_clip(domain, 60)!r} in registry host") from exc
        host = f"[{address.compressed}]"
        if after and not after.startswith(":"):
            raise InvalidReferenceError(f"unexpected {after[:20]!r} after ']' in registry host {_clip(domain, 60)!r}")
        port = after[1:] if after else None
    else:
        if domain.count(":") > 1:
            raise InvalidReferenceError(
                f"registry host {_clip(domain, 60)!r} has more than one ':' (an IPv6 address needs brackets)",
                hint="write an IPv6 address in brackets, e.g. [::1]:5000/app",
            )
        host, sep, port_text = domain.partition(":")
        port = port_text if sep else None
        _check_host_name(host, domain)
        host = host.lower()
        if host == LEGACY_DEFAULT_DOMAIN:
            host = DEFAULT_DOMAIN
    if port is None:
        return host
    if not port:
        raise InvalidReferenceError(f"registry host {_clip(domain, 60)!r} has ':' without a port")
    if not port.isascii() or not port.isdigit():
        raise InvalidReferenceError(f"invalid port {_clip(port, 20)!r} in registry host: not a number")
    if len(port) > 5 or not 1 <= int(port) <= 65535:
        raise InvalidReferenceError(f"invalid port {_clip(port, 20)!r} in registry host: out of range 1-65535")
    return f"{host}:{port}"


def _check_host_name(host: str, domain: str) -> None:
    if not host:
        raise InvalidReferenceError(f"registry {_clip(domain, 60)!r} has an empty host name")
    for label in host.split("."):
        if not label:
            raise InvalidReferenceError(
                f"registry host {_clip(host, 60)!r} has an empty label (leading, trailing or double '.')"
            )
        if _DOMAIN_LABEL.fullmatch(label):
            continue
        if label[0] == "-" or label[-1] == "-":
            raise InvalidReferenceError(
                f"invalid registry host {_clip(host, 60)!r}: label {_clip(label, 30)!r} starts or ends with '-'"
            )
        bad = next((c for c in label if not (c.isascii() and (c.isalnum() or c == "-"))), label[0])
        raise InvalidReferenceError(
            f"invalid registry host {_clip(host, 60)!r}: character {bad!r} is not allowed in a host name"
        )


def _check_repository(repository: str, shown: str) -> None:
    if not isinstance(repository, str) or not repository:
        raise InvalidReferenceError(f"empty repository name in {_clip(shown)!r}")
    if repository.startswith("/") or repository.endswith("/"):
        raise InvalidReferenceError(f"repository {_clip(repository, 60)!r} has a leading or trailing '/'")
    for component in repository.split("/"):
        _check_component(component, repository)


def _check_component(component: str, repository: str) -> None:
    if _COMPONENT.fullmatch(component):
        return
    where = f"path component {_clip(component, 40)!r} of repository {_clip(repository, 60)!r}"
    if not component:
        raise InvalidReferenceError(f"repository {_clip(repository, 60)!r} has an empty path component ('//')")
    if _COMPONENT.fullmatch(component.lower()):
        raise InvalidReferenceError(f"invalid {where}: repository names must be lowercase")
    bad = next((c for c in component if not (c in "._-" or (c.isascii() and c.isalnum()))), None)
    if bad is not None:
        if bad == ":":
            raise InvalidReferenceError(f"invalid {where}: ':' is only allowed before a tag or a port")
        raise InvalidReferenceError(f"invalid {where}: character {bad!r} is not allowed")
    if component != component.lower():
        raise InvalidReferenceError(f"invalid {where}: repository names must be lowercase")
    if component[0] in "._-":
        raise InvalidReferenceError(f"invalid {where}: must start with a lowercase letter or digit")
    if component[-1] in "._-":
        raise InvalidReferenceError(f"invalid {where}: must end with a lowercase letter or digit")
    raise InvalidReferenceError(
        f"invalid {where}: bad separator (allowed between letters/digits: one '.', one or two '_',"
        " or any number of '-')"
    )


def _check_name_length(registry: str, repository: str, shown: str) -> None:
    length = len(registry) + 1 + len(repository)
    if length > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(
            f"image name in {_clip(shown)!r} is too long ({length} characters including the registry;"
            f" at most {NAME_TOTAL_LENGTH_MAX})"
        )


# --- OCI layouts ---------------------------------------------------------------------------


def _parse_layout(body: str, shown: str) -> LayoutReference:
    digest: Digest | None = None
    tag: str | None = None
    at = body.rfind("@")
    if at != -1 and "/" not in body[at + 1 :]:
        digest_text = body[at + 1 :]
        if not digest_text:
            raise InvalidReferenceError(
                f"layout reference {shown!r} has '@' without a digest",
                hint="for a directory whose name ends in '@', add a trailing '/'",
            )
        digest = _parse_digest_part(digest_text, shown)
        body = body[:at]
    colon = body.rfind(":")
    if colon != -1 and "/" not in body[colon + 1 :]:
        tag = body[colon + 1 :]
        if not tag:
            raise InvalidReferenceError(
                f"layout reference {shown!r} has ':' without a tag",
                hint="for a directory whose name contains ':', add a trailing '/'",
            )
        try:
            _check_tag(tag, shown)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(
                exc.message, hint="for a directory whose name contains ':', add a trailing '/'"
            ) from exc
        body = body[:colon]
    if not body:
        raise InvalidReferenceError(
            f"layout reference {shown!r} has an empty directory path", hint="e.g. oci-layout:./image:latest"
        )
    _check_layout_path(body, shown)
    return LayoutReference(Path(body), tag, digest)


def _check_layout_path(path: str, shown: str) -> None:
    if not path:
        raise InvalidReferenceError(f"layout reference {_clip(shown)!r} has an empty directory path")
    if path != path.strip():
        raise InvalidReferenceError(f"layout path {_clip(path)!r} has leading or trailing whitespace")
    for index, char in enumerate(path):
        # NUL cannot reach the OS (ValueError), other controls are almost surely mistakes,
        # and lone surrogates cannot be encoded to a file name on POSIX.
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidReferenceError(
                f"layout path {_clip(path)!r} contains a control character {char!r} at position {index}"
            )


def _render_layout_path(path: Path) -> str:
    text = str(path)
    last = path.name
    # Keep the rendering unambiguous for _parse_layout: see LayoutReference's docstring.
    if ":" in last or "@" in last:
        text += "/"
    return text
