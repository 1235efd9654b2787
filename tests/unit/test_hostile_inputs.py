"""Hostile inputs to every parser: any input ends in a value or in an imgseal Error — never another
exception, never a hang.

Property tests (hypothesis) feed random and mutated inputs to reference parsing,
Digest.parse, parse_manifest, Envelope.from_json, summarise_bundle, verify_bundle (on
mutated sigstore-conformance bundles), decrypt_private_key / load_public_key and the policy
parser; explicit cases cover deeply nested JSON (100k levels), 100 MB bodies (rejected by
the size bounds before parsing), huge base64, NUL bytes and invalid UTF-8. Each call runs
under a 10 s alarm (a hang fails the test). ``pytest -s`` prints examples per parser and the
time spent: docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgseal.digest import Digest
from imgseal.dsse import Envelope
from imgseal.errors import Error
from imgseal.manifest import parse_manifest
from imgseal.payloads import summarise_bundle
from imgseal.reference import parse_reference
from keys import decrypt_private_key, encrypt_private_key, generate, load_public_key, public_pem
from tests.datadir import DATA as DATA_DIR
from verifier.gate.policy_file import parse_policy
from verifier.sigstore.bundle import KeylessPolicy, KeyPolicy, verify_bundle

CONFORMANCE = DATA_DIR / "sigstore-conformance"
HANG_SECONDS = 10
SETTINGS = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow],
                    database=None, derandomize=True)

EXAMPLES: Counter[str] = Counter()
SECONDS: Counter[str] = Counter()


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang(f"no answer within {HANG_SECONDS} s")


def survive(name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``: a value or an imgseal Error is fine; anything else (or a hang) fails the test."""
    EXAMPLES[name] += 1
    started = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        return fn()
    except Error as e:
        assert e.one_line() and "\n" not in e.one_line(), f"{name}: multi-line message {e.one_line()!r}"
        return e
    except Hang:
        pytest.fail(f"{name}: hang")
    except RecursionError as e:  # explicit: deep nesting must be refused by a bound, not by the interpreter
        pytest.fail(f"{name}: RecursionError {e}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        SECONDS[name] += time.perf_counter() - started


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    started = time.perf_counter()
    yield
    total = time.perf_counter() - started
    print(f"\nhostile inputs: {sum(EXAMPLES.values())} examples in {total:.1f} s")
    print("| parser | examples | seconds |\n|---|---|---|")
    for name in sorted(EXAMPLES):
        print(f"| {name} | {EXAMPLES[name]} | {SECONDS[name]:.2f} |")


# -- generators --------------------------------------------------------------------------------

json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_leaves, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(
    st.text(max_size=20), kids, max_size=5), max_leaves=30)
REF_ALPHABET = "abcAZ09._-/:@+ \x00\t\n[]%é" + "sha256" + "0123456789abcdef"
texts = st.text(alphabet=REF_ALPHABET, max_size=300) | st.text(max_size=300)


def mutate(data: bytes) -> st.SearchStrategy[bytes]:
    """Byte-level mutations of ``data``: replace, insert or delete a few bytes."""

    @st.composite
    def go(draw: st.DrawFn) -> bytes:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["replace", "insert", "delete"]))
            i = draw(st.integers(0, max(0, len(out) - 1)))
            if op == "replace" and out:
                out[i] = draw(st.integers(0, 255))
            elif op == "insert":
                out[i:i] = draw(st.binary(min_size=1, max_size=8))
            elif out:
                del out[i]
        return bytes(out)

    return go()


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def structurally_mutate(doc: Any) -> st.SearchStrategy[bytes]:
    """Replace one node anywhere in ``doc`` by a random JSON value (or delete it)."""
    paths = _paths(doc)[1:]

    @st.composite
    def go(draw: st.DrawFn) -> bytes:
        copy = json.loads(json.dumps(doc))
        path = draw(st.sampled_from(paths))
        parent = copy
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
        return json.dumps(copy).encode()

    return go()


# -- references and digests -----------------------------------------------------------------------


@SETTINGS
@given(texts)
def test_parse_reference(text: str) -> None:
    survive("parse_reference", lambda: parse_reference(text))


@SETTINGS
@given(st.text(alphabet="sha256:0123456789abcdefABCDEF-+_.\x00é", max_size=140) | st.text(max_size=140))
def test_digest_parse(text: str) -> None:
    result = survive("Digest.parse", lambda: Digest.parse(text))
    if isinstance(result, Digest):
        assert str(result) == text  # accepted only in canonical form (lowercase hex, exact length)


# -- manifests, envelopes, bundles ---------------------------------------------------------------

MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + "a" * 64, "size": 2},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "b" * 64, "size": 3}],
}).encode()


@SETTINGS
@given(st.one_of(mutate(MANIFEST), structurally_mutate(json.loads(MANIFEST)), st.binary(max_size=200),
                 json_values.map(lambda v: json.dumps(v).encode())))
def test_parse_manifest(raw: bytes) -> None:
    survive("parse_manifest", lambda: parse_manifest(raw))


ENVELOPE = {"payload": "eyJhIjoxfQ==", "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"keyid": "", "sig": "MEUCIQ=="}]}


@SETTINGS
@given(st.one_of(mutate(json.dumps(ENVELOPE).encode()), structurally_mutate(ENVELOPE), st.binary(max_size=200)))
def test_envelope_from_json(raw: bytes) -> None:
    survive("Envelope.from_json", lambda: Envelope.from_json(raw))


KEY_BUNDLE = (CONFORMANCE / "managed-key-happy-path" / "bundle.sigstore.json").read_bytes()
CERT_BUNDLE = (CONFORMANCE / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()


@SETTINGS
@given(st.one_of(mutate(CERT_BUNDLE), structurally_mutate(json.loads(CERT_BUNDLE)),
                 structurally_mutate(json.loads(KEY_BUNDLE))))
def test_summarise_bundle(raw: bytes) -> None:
    survive("summarise_bundle", lambda: summarise_bundle(raw))


ARTIFACT = (CONFORMANCE / "a.txt").read_bytes()
IDENTITY = KeylessPolicy(identity_regexp=".*", issuer_regexp=".*")
MANAGED_KEY = KeyPolicy((load_public_key((CONFORMANCE / "managed-key-happy-path" / "key.pub").read_bytes()),))


def test_unmutated_bundles_verify() -> None:
    """The baseline the mutation tests depend on: the originals do verify."""
    verify_bundle(CERT_BUNDLE, policy=IDENTITY, artifact=ARTIFACT)
    verify_bundle(KEY_BUNDLE, policy=MANAGED_KEY, artifact=ARTIFACT, require_tlog=False)


@settings(SETTINGS, max_examples=100)
@given(st.one_of(mutate(CERT_BUNDLE), structurally_mutate(json.loads(CERT_BUNDLE))))
def test_verify_mutated_certificate_bundle(raw: bytes) -> None:
    result = survive("verify_bundle (certificate)", lambda: verify_bundle(raw, policy=IDENTITY, artifact=ARTIFACT))
    if not isinstance(result, Error):
        # Accepted only if the mutation did not touch anything signed or verified.
        original, mutated = json.loads(CERT_BUNDLE), json.loads(raw)
        # messageDigest is optional (the signature is checked over the artifact itself).
        assert mutated["messageSignature"]["signature"] == original["messageSignature"]["signature"]
        assert mutated["messageSignature"].get("messageDigest", original["messageSignature"]["messageDigest"]) == \
            original["messageSignature"]["messageDigest"]
        assert mutated["verificationMaterial"]["certificate"] == original["verificationMaterial"]["certificate"]


@settings(SETTINGS, max_examples=100)
@given(st.one_of(mutate(KEY_BUNDLE), structurally_mutate(json.loads(KEY_BUNDLE))))
def test_verify_mutated_key_bundle(raw: bytes) -> None:
    result = survive("verify_bundle (public key)",
                     lambda: verify_bundle(raw, policy=MANAGED_KEY, artifact=ARTIFACT, require_tlog=False))
    if not isinstance(result, Error):
        original, mutated = json.loads(KEY_BUNDLE), json.loads(raw)
        assert mutated["messageSignature"]["signature"] == original["messageSignature"]["signature"]


# -- keys ----------------------------------------------------------------------------------------

_KEY = generate("ecdsa-p256")
PUBLIC_PEM = public_pem(_KEY)
# scrypt N = 32768 is the smallest cosign accepts; every decrypt attempt pays it, so few examples.
ENCRYPTED = encrypt_private_key(_KEY, b"pw", scrypt_n=32768)


@SETTINGS
@given(st.one_of(mutate(PUBLIC_PEM), st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_load_public_key(raw: bytes) -> None:
    survive("load_public_key", lambda: load_public_key(raw))


@settings(SETTINGS, max_examples=40)
@given(mutate(ENCRYPTED), st.binary(max_size=16))
def test_decrypt_private_key(raw: bytes, password: bytes) -> None:
    result = survive("decrypt_private_key", lambda: decrypt_private_key(raw, password))
    assert isinstance(result, Error) or password == b"pw"


# -- policy files (verifier/gate/policy_file.py) ------------------------------------------------

POLICY_YAML = b"""\
rules:
  - images: ["registry.example/app/*"]
    signatures:
      keys: ["cosign.pub"]
"""


@SETTINGS
@given(st.one_of(mutate(POLICY_YAML), st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 json_values.map(lambda v: json.dumps(v).encode())))
def test_parse_policy(raw: bytes) -> None:
    survive("parse_policy", lambda: parse_policy(raw, source="fuzz.yaml", base=Path("/nonexistent")))


# -- explicit extremes ----------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJ = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
HUNDRED_MB = 100 << 20


EXTREMES: dict[str, bytes] = {
    "deep array": DEEP,
    "deep object": DEEP_OBJ,
    "nul bytes": b'{"schemaVersion":2,\x00"mediaType":"\x00"}',
    "invalid utf-8": b'{"payload":"\xff\xfe","payloadType":"\xc3\x28","signatures":[]}',
    "utf-16 bom": '{"a":1}'.encode("utf-16"),
    "huge base64": b'{"payload":"' + b"QUFB" * (5 << 20) + b'","payloadType":"x","signatures":[{"sig":"AA=="}]}',
}

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "parse_manifest": lambda raw: parse_manifest(raw),
    "Envelope.from_json": lambda raw: Envelope.from_json(raw),
    "summarise_bundle": lambda raw: summarise_bundle(raw),
    "verify_bundle": lambda raw: verify_bundle(raw, policy=IDENTITY, artifact=ARTIFACT),
    "load_public_key": lambda raw: load_public_key(raw),
    "decrypt_private_key": lambda raw: decrypt_private_key(raw, b"pw"),
    "parse_reference": lambda raw: parse_reference(raw.decode("utf-8", "replace")),
    "parse_policy": lambda raw: parse_policy(raw, source="x.yaml", base=Path("/nonexistent")),
}


# Parsers that hit Python's recursion limit on 100k-level nesting (a RecursionError, which the
# CLI turns into "internal error", exit 3) instead of refusing by the 64-level bound of
# imgseal.manifest.check_json_depth. The DSSE envelope and policy parsers had this; both fixed.
KNOWN_DEPTH_GAPS: set[tuple[str, str]] = set()
# 20 MB of base64 is inside the 64 MiB envelope bound: a value is the right answer there.
MAY_ACCEPT = {("Envelope.from_json", "huge base64")}


def _extreme_cases() -> list[Any]:
    out = []
    for parser in sorted(PARSERS):
        for case in sorted(EXTREMES):
            marks = [pytest.mark.xfail(strict=True, reason="RecursionError on deep nesting (reported)")] if (
                parser, case) in KNOWN_DEPTH_GAPS else []
            out.append(pytest.param(parser, case, marks=marks, id=f"{parser}-{case}"))
    return out


@pytest.mark.parametrize(("parser", "case"), _extreme_cases())
def test_extreme_inputs_are_refused(parser: str, case: str) -> None:
    result = survive(parser, lambda: PARSERS[parser](EXTREMES[case]))
    if case in ("deep array", "deep object", "nul bytes", "invalid utf-8", "huge base64") and \
            (parser, case) not in MAY_ACCEPT:
        assert isinstance(result, Error), f"{parser} accepted {case}"


@pytest.mark.parametrize("parser", sorted(set(PARSERS) - {"parse_reference"}))
def test_hundred_megabyte_body_is_refused_by_size(parser: str) -> None:
    """100 MB of valid-looking JSON: refused by a size bound (quickly), not parsed."""
    body = b'{"a":"' + b"A" * HUNDRED_MB + b'"}'
    started = time.perf_counter()
    result = survive(parser, lambda: PARSERS[parser](body))
    assert isinstance(result, Error)
    assert time.perf_counter() - started < 5.0, "refused too slowly: parsed before checking the size?"
