"""Tests for imgseal.reference: the distribution/reference grammar plus our stricter rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgseal.digest import Digest
from imgseal.errors import InvalidReferenceError
from imgseal.reference import (
    LayoutReference,
    Reference,
    parse_digest_arg,
    parse_reference,
)

H256 = "a" * 64
D256 = f"sha256:{H256}"
H512 = "0123456789abcdef" * 8
D512 = f"sha512:{H512}"

# (input, keyword the message must contain)
MALFORMED: list[tuple[str, str]] = [
    # empty / whitespace / control / non-ASCII
    ("", "empty"),
    (" ", "whitespace"),
    (" alpine", "whitespace"),
    ("alpine ", "whitespace"),
    ("alpine\n", "whitespace"),
    ("al pine", "whitespace"),
    ("al\tpine", "whitespace"),
    ("alpine\x00", "control character"),
    ("alp\x00ine:latest", "control character"),
    ("alpine\x1b[31m", "control character"),
    ("alpine\x7f", "control character"),
    ("alpinë", "non-ASCII"),
    ("registry.example.com/ÿ", "non-ASCII"),
    ("алпайн", "non-ASCII"),
    ("alpine:lätest", "non-ASCII"),
    # URL schemes
    ("https://registry.example.com/app", "scheme"),
    ("http://localhost:5000/app:1", "scheme"),
    ("docker://alpine", "scheme"),
    ("://alpine", "URL"),
    # digest part
    (f"alpine@sha256:{'A' * 64}", "uppercase hex"),
    ("alpine@sha256:abc", "64 lowercase hex"),
    (f"alpine@md5:{'a' * 32}", "unsupported digest algorithm"),
    ("alpine@sha256:", "got nothing"),
    (f"alpine@sha512:{H256}", "128 lowercase hex"),
    (f"alpine@{H256}", "missing algorithm"),
    ("alpine@", "'@' without a digest"),
    (f"alpine@{D256}@{D256}", "more than one '@'"),
    (f"@{D256}", "no repository name"),
    (f"alpine@sha256:{'g' * 64}", "non-hex"),
    (f"alpine@SHA256:{H256}", "malformed algorithm"),
    (D256, "bare digest"),
    (H256, "image IDs"),
    # tags
    ("alpine:", "without a tag"),
    ("alpine:.hidden", "must start with"),
    ("alpine:-dash", "must start with"),
    ("alpine:" + "t" * 129, "too long"),
    ("alpine:a+b", "character '+'"),
    ("alpine:a/b", "not a number"),  # ':' before '/' makes 'alpine:a' a host with a port
    (":latest", "no repository name"),
    ("a:b:c", "':' in the repository name"),
    ("foo::bar", "':' in the repository name"),
    # repository path
    ("Alpine", "lowercase"),
    ("library/Alpine:3", "lowercase"),
    ("registry.example.com/Team/app", "lowercase"),
    ("-alpine", "must start"),
    (".alpine", "must start"),
    ("_alpine", "must start"),
    ("alpine-", "must end"),
    ("alpine.", "must end"),
    ("a___b", "bad separator"),
    ("a..b", "bad separator"),
    ("a._b", "bad separator"),
    ("a/b$c", "character '$'"),
    ("/alpine", "leading separator"),
    ("alpine/", "trailing separator"),
    ("a//b", "'//'"),
    ("registry.example.com//app", "'//'"),
    ("registry.example.com/", "trailing separator"),
    ("a" * 300, "too long"),
    ("registry.example.com/" + "a" * 240, "too long"),
    ("x" * 5000, "too long"),
    # registry host / port
    ("localhost:port/app", "not a number"),
    ("localhost:/app", "without a port"),
    ("localhost:99999/app", "out of range"),
    ("localhost:65536/app", "out of range"),
    ("localhost:0/app", "out of range"),
    ("localhost:+80/app", "not a number"),
    ("::1:5000/app", "IPv6"),
    ("fe80::1/app", "IPv6"),
    ("[::1/app", "without ']'"),
    ("[:::::]:5000/app", "invalid IPv6"),
    ("[fe80::1%eth0]:5000/app", "invalid IPv6"),
    ("[::1]x/app", "after ']'"),
    ("[]/app", "character '['"),
    ("-bad.example.com/app", "starts or ends with '-'"),
    ("bad-.example.com/app", "starts or ends with '-'"),
    ("my_host.example.com/app", "character '_'"),
    (".example.com/app", "empty label"),
    ("example..com/app", "empty label"),
    (":5000/app", "empty host"),
    # OCI layouts
    ("oci-layout:", "empty directory path"),
    ("oci-layout::latest", "empty directory path"),
    (f"oci-layout:@{D256}", "empty directory path"),
    ("oci-layout:dir@", "'@' without a digest"),
    ("oci-layout:dir:", "without a tag"),
    ("oci-layout:dir:..", "must start with"),
    ("oci-layout:dir@sha256:abc", "64 lowercase hex"),
    (f"oci-layout:dir@sha256:{'A' * 64}", "uppercase hex"),
    ("oci-layout:dir@..", "missing algorithm"),
    ("oci-layout:dir:a+b", "character '+'"),
    ("oci-layout:dir\x00x", "control character"),
    ("oci-layout: dir", "whitespace"),
    ("oci-layout:dir:" + "t" * 129, "too long"),
    ("oci-layout:/srv/a@b", "invalid digest"),  # a directory named 'a@b' needs a trailing '/'
]


@pytest.mark.parametrize(("text", "keyword"), MALFORMED, ids=[repr(t)[:50] for t, _ in MALFORMED])
def test_malformed_references_are_rejected_with_a_specific_message(text: str, keyword: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(text)
    assert keyword.lower() in info.value.message.lower(), info.value.message
    assert "\n" not in info.value.one_line()
    assert info.value.exit_code == 2


def test_malformed_table_is_large() -> None:
    assert len(MALFORMED) >= 60


# (input, exact normalised form)
VALID: list[tuple[str, str]] = [
    ("alpine", "docker.io/library/alpine:latest"),
    ("alpine:3.20", "docker.io/library/alpine:3.20"),
    ("library/alpine", "docker.io/library/alpine:latest"),
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("docker.io/library/alpine", "docker.io/library/alpine:latest"),
    ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
    ("Docker.IO/alpine", "docker.io/library/alpine:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/team/app:1", "docker.io/user/team/app:1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
    ("127.0.0.1/x", "127.0.0.1/x:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("[::1]/x", "[::1]/x:latest"),
    ("[0:0:0:0:0:0:0:1]:5000/x", "[::1]:5000/x:latest"),
    ("[FE80::1]:443/x", "[fe80::1]:443/x:latest"),
    ("Registry.Example.COM/team/app", "registry.example.com/team/app:latest"),
    ("registry.example.com:443/team/app:v1.2.3", "registry.example.com:443/team/app:v1.2.3"),
    ("ghcr.io/owner/repo", "ghcr.io/owner/repo:latest"),
    ("gcr.io/p/app:tag_1", "gcr.io/p/app:tag_1"),
    ("a-b.c-d.example/app", "a-b.c-d.example/app:latest"),
    ("localhost:65535/x", "localhost:65535/x:latest"),
    ("localhost:5000", "docker.io/library/localhost:5000"),  # docker's rule: no '/', so 5000 is a tag
    ("host:1/x", "host:1/x:latest"),
    ("a.b/c", "a.b/c:latest"),
    ("a/b/c/d/e", "docker.io/a/b/c/d/e:latest"),
    ("a__b", "docker.io/library/a__b:latest"),
    ("a_b.c-d---e", "docker.io/library/a_b.c-d---e:latest"),
    ("0", "docker.io/library/0:latest"),
    ("x:" + "t" * 128, "docker.io/library/x:" + "t" * 128),
    ("x:_", "docker.io/library/x:_"),
    ("x:V1.0-RC_1", "docker.io/library/x:V1.0-RC_1"),
    (f"x@{D256}", f"docker.io/library/x@{D256}"),
    (f"x:tag@{D256}", f"docker.io/library/x:tag@{D256}"),
    (f"localhost:5000/x@{D512}", f"localhost:5000/x@{D512}"),
    (f"registry.example.com/a/b:1@{D512}", f"registry.example.com/a/b:1@{D512}"),
    ("sha256:abc", "docker.io/library/sha256:abc"),  # short, so a tag: not a digest
    ("r.example/" + "a" * 244, "r.example/" + "a" * 244 + ":latest"),  # exactly 255
    ("oci-layout:./image", "oci-layout:image"),
    ("oci-layout:/srv/img:v1", "oci-layout:/srv/img:v1"),
    ("oci-layout:/srv/img:v1/", "oci-layout:/srv/img:v1/"),
    ("oci-layout:/srv/a@b/", "oci-layout:/srv/a@b/"),
    ("oci-layout:/srv/a@b/:t", "oci-layout:/srv/a@b/:t"),
    (f"oci-layout:../up/img@{D256}", f"oci-layout:../up/img@{D256}"),
    (f"oci-layout:img:t@{D256}", f"oci-layout:img:t@{D256}"),
    # After the last ':' comes a '/', so it is all directory path (the user's own choice).
    ("oci-layout:dir:../../etc", "oci-layout:dir:../../etc"),
    ("oci-layout:dir@../../x", "oci-layout:dir@../../x"),
    ("oci-layout:/home/josé/img", "oci-layout:/home/josé/img"),
    ("oci-layout:/a b/img", "oci-layout:/a b/img"),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t[:50] for t, _ in VALID])
def test_valid_references_normalise_exactly(text: str, expected: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == expected
    assert str(parse_reference(str(ref))) == expected


def test_valid_table_is_large() -> None:
    assert len(VALID) >= 40


def test_reference_fields_and_helpers() -> None:
    ref = parse_reference(f"alpine:3@{D256}")
    assert isinstance(ref, Reference)
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/alpine", "3")
    assert ref.digest == Digest.parse(D256)
    assert ref.name == "docker.io/library/alpine"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.is_digest
    assert ref.pinned() == f"docker.io/library/alpine@{D256}"

    local = parse_reference("localhost:5000/a/b")
    assert isinstance(local, Reference)
    assert local.api_host == "localhost:5000"
    assert not local.is_digest
    with pytest.raises(InvalidReferenceError, match="no digest"):
        local.pinned()
    pinned = local.with_digest(Digest.parse(D512))
    assert str(pinned) == f"localhost:5000/a/b:latest@{D512}"
    sig = pinned.with_tag(Digest.parse(D256).tag_form + ".sig")
    assert str(sig) == f"localhost:5000/a/b:sha256-{H256}.sig"
    assert sig.digest is None
    with pytest.raises(InvalidReferenceError, match="must start with"):
        local.with_tag("../x")
    with pytest.raises(InvalidReferenceError, match="Digest"):
        local.with_digest(D256)  # type: ignore[arg-type]


def test_default_tag_parameter() -> None:
    ref = parse_reference("alpine", default_tag=None)
    assert isinstance(ref, Reference)
    assert ref.tag is None
    assert str(ref) == "docker.io/library/alpine"
    assert str(parse_reference("alpine", default_tag="stable")) == "docker.io/library/alpine:stable"
    assert parse_reference(f"alpine@{D256}").tag is None
    with pytest.raises(InvalidReferenceError, match="must start with"):
        parse_reference("alpine", default_tag="-x")


def test_direct_construction_is_validated() -> None:
    assert str(Reference("docker.io", "library/x", "1")) == "docker.io/library/x:1"
    for registry, repository, tag in [
        ("index.docker.io", "library/x", None),
        ("Docker.io", "library/x", None),
        ("docker.io", "x", None),
        ("docker.io", "library/X", None),
        ("docker.io", "library/x", ".bad"),
        ("", "a/b", None),
        ("localhost:70000", "a", None),
    ]:
        with pytest.raises(InvalidReferenceError):
            Reference(registry, repository, tag)
    with pytest.raises(InvalidReferenceError):
        LayoutReference(Path("a\x00b"))
    with pytest.raises(InvalidReferenceError):
        LayoutReference("dir")  # type: ignore[arg-type]


def test_layout_reference_fields(tmp_path: Path) -> None:
    ref = parse_reference(f"oci-layout:{tmp_path}/img:v1@{D256}")
    assert isinstance(ref, LayoutReference)
    assert ref.path == tmp_path / "img"
    assert ref.tag == "v1"
    assert ref.digest == Digest.parse(D256)
    assert ref.resolved_path == (tmp_path / "img").resolve()
    assert ref.pinned() == f"oci-layout:{tmp_path}/img@{D256}"
    bare = parse_reference("oci-layout:img", default_tag="latest")
    assert isinstance(bare, LayoutReference)
    assert bare.tag is None  # layouts have no 'latest' convention: the store decides
    assert not bare.is_digest
    assert str(bare.with_tag("x")) == "oci-layout:img:x"
    assert str(ref.with_tag("y")) == f"oci-layout:{tmp_path}/img:y"
    # the path is kept as given (relative), resolved only on request
    assert not bare.path.is_absolute()
    colon_dir = parse_reference("oci-layout:/srv/img:v1/")
    assert isinstance(colon_dir, LayoutReference)
    assert (colon_dir.path, colon_dir.tag) == (Path("/srv/img:v1"), None)


def test_parse_digest_arg() -> None:
    assert parse_digest_arg(D256) == Digest.parse(D256)
    for bad, keyword in [("", "empty"), (f" {D256}", "whitespace"), ("sha256:ABC", "uppercase"), ("x", "missing")]:
        with pytest.raises(InvalidReferenceError, match=keyword):
            parse_digest_arg(bad)


def test_non_string_input_is_a_usage_error() -> None:
    with pytest.raises(InvalidReferenceError, match="must be a string"):
        parse_reference(b"alpine")  # type: ignore[arg-type]


_REF_ALPHABET = st.sampled_from([*"abcAZ09._-/:@[]%+ \t\x00é", "sha256:", H256, "oci-layout:", "localhost"])


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_REF_ALPHABET, max_size=12).map("".join)))
def test_any_text_parses_or_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError as exc:
        assert exc.message
        return
    assert isinstance(ref, Reference | LayoutReference)
    once = str(ref)
    again = parse_reference(once)
    assert again == ref
    assert str(again) == once


_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,5}){0,2}", fullmatch=True)
# docker's rule makes a first component with '.' a registry host, so keep the first one dotless.
_first_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:_|__|-{1,3})[a-z0-9]{1,5}){0,2}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    domain=st.sampled_from(["", "localhost/", "localhost:5000/", "Reg.Example.com/", "[::1]:80/", "index.docker.io/"]),
    path=st.tuples(_first_component, st.lists(_component, max_size=2)).map(lambda t: "/".join([t[0], *t[1]])),
    tag=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
    digest=st.one_of(st.none(), st.just(D256), st.just(D512)),
)
def test_generated_valid_references_round_trip(domain: str, path: str, tag: str | None, digest: str | None) -> None:
    text = domain + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text)
    assert isinstance(ref, Reference)
    assert ref.tag == (tag if tag or digest else "latest")
    assert (str(ref.digest) if ref.digest else None) == digest
    assert ref.repository.endswith(path)
    assert parse_reference(str(ref)) == ref
