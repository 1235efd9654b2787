"""in-toto Statement v1: parsing, writing, subject matching, predicate type names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgseal.digest import Digest
from imgseal.errors import InvalidInputError, UsageError
from imgseal.intoto import (
    COSIGN_SIGN_V1,
    PAYLOAD_TYPE,
    PREDICATE_TYPE_ALIASES,
    STATEMENT_V01,
    STATEMENT_V1,
    Statement,
    Subject,
    image_statement,
    resolve_predicate_type,
)

HEX = "14931c6b13756317849f46da1d01b45937a1150db66c081cfe529d48215943fe"
DIGEST = Digest("sha256", HEX)


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_type": STATEMENT_V1,
        "subject": [{"name": "registry.example/app", "digest": {"sha256": HEX}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "x"}},
    }
    doc.update(overrides)
    return doc


def test_constants() -> None:
    assert STATEMENT_V1 == "https://in-toto.io/Statement/v1"
    assert PAYLOAD_TYPE == "application/vnd.in-toto+json"


def test_cosign_v3_sign_statement() -> None:
    # The statement cosign v3 signs (REFERENCE.md §4): no subject name, empty predicate.
    payload = json.dumps(
        {"_type": STATEMENT_V1, "subject": [{"digest": {"sha256": HEX}}], "predicateType": COSIGN_SIGN_V1,
         "predicate": {}}
    ).encode()
    st = Statement.from_bytes(payload)
    assert st.subjects == (Subject("", {"sha256": HEX}),)
    assert st.predicate_type == COSIGN_SIGN_V1
    assert st.predicate == {}
    assert st.subject_matches(DIGEST)


def test_round_trip_is_stable() -> None:
    st = Statement.from_bytes(json.dumps(_doc()).encode())
    data = st.to_bytes()
    assert b" " not in data
    assert Statement.from_bytes(data) == st
    assert Statement.from_bytes(data).to_bytes() == data
    # Key order of the input does not change the output bytes.
    reordered = dict(reversed(list(_doc().items())))
    assert Statement.from_bytes(json.dumps(reordered).encode()).to_bytes() == data


def test_v01_is_read_but_v1_is_written() -> None:
    st = Statement.from_bytes(json.dumps(_doc(_type=STATEMENT_V01)).encode())
    assert st.statement_type == STATEMENT_V01
    assert json.loads(st.to_bytes())["_type"] == STATEMENT_V1


def test_null_or_missing_predicate_means_empty() -> None:
    assert Statement.from_dict(_doc(predicate=None)).predicate == {}
    doc = _doc()
    del doc["predicate"]
    assert Statement.from_dict(doc).predicate == {}


def test_subject_matching() -> None:
    other = Digest("sha256", "0" * 64)
    sha512 = Digest("sha512", "a" * 128)
    st = Statement.from_dict(
        _doc(subject=[{"name": "a", "digest": {"sha256": "0" * 64}}, {"name": "b", "digest": {"sha512": "a" * 128}}])
    )
    assert st.subject_matches(other)
    assert st.subject_matches(sha512)
    assert not st.subject_matches(DIGEST)
    # Same hex under another algorithm name is not a match.
    st2 = Statement.from_dict(_doc(subject=[{"digest": {"sha512": HEX}}]))
    assert not st2.subject_matches(DIGEST)
    # Uppercase hex is not the lowercase digest (the DigestSet is lowercase by spec).
    st3 = Statement.from_dict(_doc(subject=[{"digest": {"sha256": HEX.upper()}}]))
    assert not st3.subject_matches(DIGEST)
    assert list(st.subject_digests()) == ["sha256:" + "0" * 64, "sha512:" + "a" * 128]


def test_image_statement() -> None:
    st = image_statement("ghcr.io/acme/app", DIGEST, "slsaprovenance1", {"k": "v"})
    assert st.predicate_type == "https://slsa.dev/provenance/v1"
    assert json.loads(st.to_bytes()) == {
        "_type": STATEMENT_V1,
        "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": HEX}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"k": "v"},
    }
    assert st.subject_matches(DIGEST)


def test_subject_digest_is_read_only() -> None:
    source = {"sha256": HEX}
    subject = Subject("n", source)
    source["sha256"] = "0" * 64
    assert subject.digest["sha256"] == HEX
    with pytest.raises(TypeError):
        subject.digest["sha256"] = "x"  # type: ignore[index]
    assert hash(subject) == hash(Subject("n", {"sha256": HEX}))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "must be a JSON object"),
        (json.dumps(_doc(_type="https://in-toto.io/Statement/v2")).encode(), "unsupported in-toto statement _type"),
        (json.dumps({k: v for k, v in _doc().items() if k != "_type"}).encode(), "_type missing"),
        (json.dumps(_doc(subject=[])).encode(), "non-empty subject list"),
        (json.dumps(_doc(subject={"digest": {}})).encode(), "non-empty subject list"),
        (json.dumps(_doc(subject=["x"])).encode(), "subject 0 must be a JSON object"),
        (json.dumps(_doc(subject=[{"name": 3, "digest": {"sha256": HEX}}])).encode(), "name must be a string"),
        (json.dumps(_doc(subject=[{"name": "a"}])).encode(), "non-empty digest object"),
        (json.dumps(_doc(subject=[{"digest": {}}])).encode(), "non-empty digest object"),
        (json.dumps(_doc(subject=[{"digest": {"sha256": 5}}])).encode(), "must be a non-empty string"),
        (json.dumps(_doc(predicateType="")).encode(), "predicateType must be a non-empty string"),
        (json.dumps(_doc(predicate="SPDXVersion: SPDX-2.3")).encode(), "predicate must be a JSON object"),
        (b'{"_type":"https://in-toto.io/Statement/v1","_type":"x"}', "duplicate JSON key"),
        (b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"a":Infinity}}', "non-JSON constant"),
    ],
)
def test_from_bytes_rejects(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Statement.from_bytes(payload)


@pytest.mark.parametrize(
    ("name", "uri"),
    [
        ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
        ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
        ("spdxjson", "https://spdx.dev/Document"),
        ("cyclonedx", "https://cyclonedx.org/bom"),
        ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
        ("openvex", "https://openvex.dev/ns"),
        ("custom", "https://cosign.sigstore.dev/attestation/v1"),
    ],
)
def test_predicate_aliases(name: str, uri: str) -> None:
    assert resolve_predicate_type(name) == uri
    assert PREDICATE_TYPE_ALIASES[name] == uri


@pytest.mark.parametrize(
    "uri", ["https://example.com/predicate/v1", COSIGN_SIGN_V1, "urn:example:thing", "https://slsa.dev/provenance/v1"]
)
def test_absolute_uris_pass(uri: str) -> None:
    assert resolve_predicate_type(uri) == uri


@pytest.mark.parametrize("name", ["slsaprovenence1", "", "example.com/x", "https://exa mple.com", ":nothing", "http:"])
def test_unknown_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_predicate_type(name)
    assert "slsaprovenance1" in info.value.message  # the known names are listed
    assert info.value.exit_code == 2
