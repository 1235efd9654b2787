"""attest / provenance / verify-attestation against the real docker-registry and OCI layouts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from imgseal import attach
from imgseal.digest import Digest
from imgseal.dsse import ENVELOPE_MEDIA_TYPE, sign_envelope
from imgseal.errors import InvalidInputError
from imgseal.intoto import PAYLOAD_TYPE, image_statement, resolve_predicate_type
from imgseal.manifest import Descriptor
from imgseal.payloads import dsse_key_bundle
from keys import public_key_of, sign
from keys.material import public_der
from signer.attest import read_predicate
from signer.image import attach_bundle, key_dsse_bundle
from tests.integration.images import push_image, registry_store
from tests.integration.test_sign_verify import ENV, make_key

pytestmark = pytest.mark.registry
DATA = Path(__file__).resolve().parents[1] / "data" / "provenance"
SPDX = "https://spdx.dev/Document"
CYCLONEDX = "https://cyclonedx.org/bom"
BUILDER = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


def _image(registry: Any, repo: str) -> tuple[str, Descriptor]:
    desc = push_image(registry.host, repo, content=repo.encode())
    return f"{registry.host}/{repo}@{desc.digest}", desc


def _write(tmp_path: Path, name: str, obj: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def _verify(cli: Any, ref: str, pub: Path, type_: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    r = cli("verify-attestation", ref, "--type", type_, "--key", str(pub), *extra, "-o", "json")
    return r.code, json.loads(r.stdout), r.stderr


def test_several_types_on_one_image_each_verified_by_its_own_type(registry, cli, tmp_path: Path) -> None:
    ref, desc = _image(registry, "att/types")
    priv, pub, _ = make_key(tmp_path, "k")
    predicates = {
        "spdxjson": {"spdxVersion": "SPDX-2.3", "name": "app"},
        "cyclonedx": {"bomFormat": "CycloneDX", "specVersion": "1.5"},
        "vuln": {"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": []}},
        "https://example.com/custom/v1": {"team": "core"},
    }
    for type_, predicate in predicates.items():
        r = cli("attest", ref, "--predicate", str(_write(tmp_path, "p.json", predicate)), "--type", type_,
                "--key", str(priv), env=ENV)
        assert r.code == 0, r.stderr
    for type_, predicate in predicates.items():
        code, result, err = _verify(cli, f"{registry.host}/att/types:v1", pub, type_)
        assert code == 0, err
        assert result["ok"] and result["digest"] == str(desc.digest)
        [verified] = result["verified"]
        statement = verified["statement"]
        assert statement["predicateType"] == resolve_predicate_type(type_)
        assert statement["predicate"] == predicate
        assert statement["subject"] == [{"name": f"{registry.host}/att/types", "digest": {"sha256": desc.digest.hex}}]
    # Text mode: the statements as a JSON list on stdout, the summary on stderr.
    r = cli("verify-attestation", ref, "--type", "spdxjson", "--key", str(pub))
    assert r.code == 0 and json.loads(r.stdout)[0]["predicate"]["name"] == "app" and "Verified" in r.stderr
    code, result, _ = _verify(cli, ref, pub, "openvex")
    assert code == 1 and result["reason"] == "no-attestations"
    # An attestation is not a signature: `verify` still finds none.
    assert cli("verify", ref, "--key", str(pub)).code == 1


def test_twenty_megabyte_sbom_predicate(registry, cli, tmp_path: Path) -> None:
    ref, _ = _image(registry, "att/big")
    priv, pub, _ = make_key(tmp_path, "k")
    packages = [{"name": f"pkg-{i}", "SPDXID": f"SPDXRef-{i}", "versionInfo": "1.0.0-" + "x" * 160}
                for i in range(100_000)]
    path = _write(tmp_path, "sbom.json", {"spdxVersion": "SPDX-2.3", "packages": packages})
    assert path.stat().st_size > 20_000_000
    r = cli("attest", ref, "--predicate", str(path), "--type", "spdxjson", "--key", str(priv), env=ENV)
    assert r.code == 0, r.stderr
    code, result, err = _verify(cli, ref, pub, "spdxjson", "--where", "predicate.packages[99999].name==pkg-99999")
    assert code == 0, err
    assert len(result["verified"][0]["statement"]["predicate"]["packages"]) == 100_000


def test_predicate_file_must_be_one_json_object_and_bounded(registry, cli, tmp_path: Path) -> None:
    ref, _ = _image(registry, "att/badpred")
    priv, _, _ = make_key(tmp_path, "k")
    for name, text in (("list.json", "[1, 2]"), ("bad.json", "{not json"), ("dup.json", '{"a": 1, "a": 2}'),
                       ("nan.json", '{"a": NaN}')):
        (tmp_path / name).write_text(text)
        r = cli("attest", ref, "--predicate", str(tmp_path / name), "--type", "custom", "--key", str(priv), env=ENV)
        assert r.code == 2 and r.stderr.count("\n") == 1 and name in r.stderr, r.stderr
    r = cli("attest", ref, "--predicate", str(tmp_path / "missing.json"), "--key", str(priv), env=ENV)
    assert r.code == 2
    r = cli("attest", ref.split("@")[0] + ":v1", "--predicate", str(tmp_path / "list.json"), "--key", str(priv),
            env=ENV)
    assert r.code == 2 and "names no digest" in r.stderr
    r = cli("attest", ref, "--predicate", str(tmp_path / "list.json"), "--type", "slsaprovenence1", "--key",
            str(priv), env=ENV)
    assert r.code == 2 and "unknown predicate type" in r.stderr
    (tmp_path / "big.json").write_text(json.dumps({"a": "x" * 2000}))
    with pytest.raises(InvalidInputError, match="over the 0 MiB limit"):
        read_predicate(tmp_path / "big.json", max_bytes=1000)


@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
def test_replace_removes_only_our_earlier_attestations_of_that_type(registry, cli, tmp_path: Path, fmt: str) -> None:
    ref, _ = _image(registry, f"att/replace-{fmt}")
    priv_a, pub_a, _ = make_key(tmp_path, "a")
    priv_b, pub_b, _ = make_key(tmp_path, "b")

    def attest(priv: Path, type_: str, predicate: dict[str, Any], *extra: str) -> dict[str, Any]:
        r = cli("attest", ref, "--predicate", str(_write(tmp_path, "p.json", predicate)), "--type", type_,
                "--key", str(priv), "--format", fmt, *extra, "-o", "json", env=ENV)
        assert r.code == 0, r.stderr
        return dict(json.loads(r.stdout))

    attest(priv_a, "spdxjson", {"v": 1})
    attest(priv_a, "cyclonedx", {"v": "cdx"})
    attest(priv_b, "spdxjson", {"v": "b"})
    result = attest(priv_a, "spdxjson", {"v": 2}, "--replace")
    assert len(result["replaced"]) == 1
    code, out, err = _verify(cli, ref, pub_a, "spdxjson")
    assert code == 0, err
    assert [v["statement"]["predicate"] for v in out["verified"]] == [{"v": 2}]
    assert all(v["format"] == fmt for v in out["verified"])
    # Another signer's attestation of the same type and ours of another type survive.
    code, out, _ = _verify(cli, ref, pub_b, "spdxjson")
    assert code == 0 and [v["statement"]["predicate"] for v in out["verified"]] == [{"v": "b"}]
    code, out, _ = _verify(cli, ref, pub_a, "cyclonedx")
    assert code == 0 and out["verified"][0]["statement"]["predicate"] == {"v": "cdx"}


def test_legacy_att_is_cosigns_layout(registry, cli, tmp_path: Path) -> None:
    ref, desc = _image(registry, "att/legacy")
    priv, pub, _ = make_key(tmp_path, "k")
    r = cli("attest", ref, "--predicate", str(_write(tmp_path, "p.json", {"a": 1})), "--type", "cyclonedx",
            "--key", str(priv), "--format", "legacy", env=ENV)
    assert r.code == 0, r.stderr
    store = registry_store(registry.host, "att/legacy")
    manifest = store.get_manifest(f"sha256-{desc.digest.hex}.att")
    [layer] = manifest.layers
    assert layer.media_type == ENVELOPE_MEDIA_TYPE and layer.annotations == {"predicateType": CYCLONEDX}
    envelope = json.loads(store.get_blob(layer, max_bytes=1 << 20))
    assert envelope["payloadType"] == PAYLOAD_TYPE
    code, out, err = _verify(cli, ref, pub, "cyclonedx")
    assert code == 0 and out["verified"][0]["format"] == "legacy", err


def _provenance(tmp_path: Path, ref: str, *extra: str, cli: Any) -> Any:
    env = {**json.loads((DATA / "github-actions-env.json").read_text()), **ENV}
    return cli("provenance", ref, "--ci", "github", *extra, env=env)


def test_provenance_from_recorded_github_env_attested_and_slsa_checked(registry, cli, tmp_path: Path) -> None:
    ref, _ = _image(registry, "att/slsa")
    priv, pub, _ = make_key(tmp_path, "k")
    r = _provenance(tmp_path, ref, "--output", str(tmp_path / "prov.json"), "--attest", "--key", str(priv), cli=cli)
    assert r.code == 0, r.stderr
    written = json.loads((tmp_path / "prov.json").read_text())
    assert written["runDetails"]["builder"]["id"] == BUILDER
    ok = ("--builder-id", BUILDER, "--source-uri", "github.com/acme/app", "--source-branch", "main")
    code, out, err = _verify(cli, ref, pub, "slsaprovenance1", *ok)
    assert code == 0, err
    assert out["verified"][0]["statement"]["predicate"] == written
    # Unversioned builder id matches any version, as slsa-verifier's MatchesLoose.
    assert _verify(cli, ref, pub, "slsaprovenance1", "--builder-id", BUILDER.split("@")[0])[0] == 0
    assert _verify(cli, ref, pub, "slsaprovenance1", "--source-tag", "v1")[1]["reason"] == "slsa-source-tag"
    for args, reason in (
        (("--builder-id", "https://github.com/evil/app/.github/workflows/release.yml"), "slsa-builder-id"),
        (("--source-uri", "github.com/acme/other"), "slsa-source-uri"),
        (("--source-branch", "dev"), "slsa-source-branch"),
        (("--build-type", "https://example.com/other"), "slsa-build-type"),
    ):
        code, out, _ = _verify(cli, ref, pub, "slsaprovenance1", *args)
        assert code == 1 and out["reason"] == reason, (args, out)
    # SLSA options on a non-provenance type are a usage error, not a silent pass.
    r = cli("verify-attestation", ref, "--type", "spdxjson", "--key", str(pub), "--builder-id", BUILDER)
    assert r.code == 2
    # Printing without --attest; a missing CI variable is named.
    r = _provenance(tmp_path, ref, cli=cli)
    assert r.code == 0 and json.loads(r.stdout)["buildDefinition"]["resolvedDependencies"][0]["uri"] == (
        "git+https://github.com/acme/app@refs/heads/main")
    r = cli("provenance", ref, "--ci", "github", env={"GITHUB_ACTIONS": "true"})
    assert r.code == 2 and "GITHUB_SERVER_URL" in r.stderr


def test_generic_provenance_and_where_conditions(registry, cli, tmp_path: Path) -> None:
    ref, _ = _image(registry, "att/generic")
    priv, pub, _ = make_key(tmp_path, "k")
    r = cli("provenance", ref, "--ci", "generic", "--builder-id", "https://ci.example.com/builder",
            "--source-uri", "git+https://git.example.com/app@refs/heads/main",
            "--source-digest", "gitCommit:" + "a" * 40,
            "--param", "target=prod", "--attest", "--key", str(priv), env=ENV)
    assert r.code == 0, r.stderr
    base = ("--type", "slsaprovenance1")
    ok = ["--where", "predicate.buildDefinition.externalParameters.target==prod",
          "--where", "predicate.runDetails.builder.id!=https://evil.example.com",
          "--where", 'subject[0].digest.sha256!="nope"']
    code, out, err = _verify(cli, ref, pub, base[1], *ok, "--source-uri", "git.example.com/app")
    assert code == 0, err
    where = "predicate.buildDefinition.externalParameters.target==dev"
    code, out, _ = _verify(cli, ref, pub, base[1], "--where", where)
    assert code == 1 and out["reason"] == "where-condition"
    code, out, _ = _verify(cli, ref, pub, base[1], "--where", "predicate.missing!=x")
    assert code == 1 and out["reason"] == "where-condition"
    r = cli("verify-attestation", ref, *base, "--key", str(pub), "--where", "predicate.x=y")
    assert r.code == 2


def _attach_statement(store: Any, image: Descriptor, key: Any, *, about: Digest, type_: str,
                      annotated: str | None = None) -> None:
    payload = image_statement("x", about, type_, {"evil": True}).to_bytes()
    attach_bundle(store, image, key_dsse_bundle(key, payload), annotated or type_)


def test_attacks_are_rejected_with_a_specific_reason(registry, cli, tmp_path: Path) -> None:
    _, pub, key = make_key(tmp_path, "k")
    _, _, other_key = make_key(tmp_path, "other")
    other = push_image(registry.host, "att/other", content=b"other image")

    def case(name: str) -> tuple[str, Descriptor, Any]:
        ref, desc = _image(registry, f"att/attack-{name}")
        return ref, desc, registry_store(registry.host, f"att/attack-{name}")

    # A statement about another image, signed by the trusted key, attached to this one.
    ref, desc, store = case("digest")
    _attach_statement(store, desc, key, about=other.digest, type_=SPDX)
    code, out, _ = _verify(cli, ref, pub, "spdxjson")
    assert code == 1 and out["reason"] == "payload-digest-mismatch" and out["rejected"], out

    # Annotated as SPDX, but the signed statement is CycloneDX: the annotation is only a hint.
    ref, desc, store = case("type")
    _attach_statement(store, desc, key, about=desc.digest, type_=CYCLONEDX, annotated=SPDX)
    code, out, _ = _verify(cli, ref, pub, "spdxjson")
    assert code == 1 and out["reason"] == "predicate-type"

    # A valid bundle whose payload was changed after signing.
    ref, desc, store = case("tamper")
    payload = image_statement("x", desc.digest, SPDX, {"ok": True}).to_bytes()
    bundle = json.loads(key_dsse_bundle(key, payload))
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload.replace(b"true", b"false")).decode()
    attach_bundle(store, desc, json.dumps(bundle).encode(), SPDX)
    code, out, _ = _verify(cli, ref, pub, "spdxjson")
    assert code == 1 and out["reason"] == "no-matching-signature"

    # Signed by a key we do not trust.
    ref, desc, store = case("key")
    _attach_statement(store, desc, other_key, about=desc.digest, type_=SPDX)
    code, out, _ = _verify(cli, ref, pub, "spdxjson")
    assert code == 1 and out["reason"] == "no-matching-signature"

    # An unsigned legacy envelope, and one whose payloadType is not in-toto.
    ref, desc, store = case("unsigned")
    env = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(), "signatures": []}
    attach.attach_legacy(store, desc.digest, suffix="att", layer=attach.Layer(
        json.dumps(env).encode(), ENVELOPE_MEDIA_TYPE, {"predicateType": SPDX}))
    code, out, _ = _verify(cli, ref, pub, "spdxjson")
    assert code == 1 and out["reason"] == "invalid-dsse-envelope"
    statement = image_statement("x", desc.digest, SPDX, {}).to_bytes()
    envelope = sign_envelope("text/plain", statement, [lambda pae: sign(key, pae)])
    attach_bundle(store, desc, dsse_key_bundle(envelope, public_der(public_key_of(key))), SPDX)
    code, out, _ = _verify(cli, ref, pub, "spdxjson")
    assert code == 1 and out["reason"] == "payload-type"
    assert {r["reason"] for r in out["rejected"]} == {"invalid-dsse-envelope", "payload-type"}

    # A good attestation beside the junk still verifies: junk cannot veto.
    _attach_statement(store, desc, key, about=desc.digest, type_=SPDX)
    code, out, err = _verify(cli, ref, pub, "spdxjson")
    assert code == 0 and len(out["verified"]) == 1 and len(out["rejected"]) == 2, err


def test_copy_to_layout_then_verify_offline(registry, cli, tmp_path: Path) -> None:
    ref, desc = _image(registry, "att/copy")
    priv, pub, _ = make_key(tmp_path, "k")
    for fmt, type_ in (("bundle", "spdxjson"), ("legacy", "cyclonedx")):
        r = cli("attest", ref, "--predicate", str(_write(tmp_path, "p.json", {"fmt": fmt})), "--type", type_,
                "--key", str(priv), "--format", fmt, env=ENV)
        assert r.code == 0, r.stderr
    layout = tmp_path / "layout"
    r = cli("copy", ref, f"oci-layout:{layout}:v1")
    assert r.code == 0, r.stderr
    # A closed port for any registry traffic: the layout must be enough.
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    for fmt, type_ in (("bundle", "spdxjson"), ("legacy", "cyclonedx")):
        r = cli("verify-attestation", f"oci-layout:{layout}@{desc.digest}", "--type", type_, "--key", str(pub),
                "-o", "json", env=offline)
        assert r.code == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["verified"][0]["statement"]["predicate"] == {"fmt": fmt}
