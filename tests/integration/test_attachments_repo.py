"""Attachments in another repository (cosign's COSIGN_REPOSITORY): image on one registry, signatures on another.

The image lives on the plain registry; its signatures and attestations go to the TLS +
htpasswd registry, whose credentials come from a docker ``config.json`` naming only that
host — so the credentials lookup for the other registry is exercised, not bypassed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from imgseal import attach
from tests.integration.images import push_image
from tests.integration.test_sign_verify import ENV, make_key

pytestmark = pytest.mark.registry


def _docker_config(tmp_path: Path, secure_registry: Any) -> dict[str, str]:
    user, password = secure_registry.credentials
    config = tmp_path / "dockercfg"
    config.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {secure_registry.host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(config)}


def _secure_store(secure_registry: Any, repo: str) -> Any:
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from imgseal.store.auth import Credentials
    from imgseal.store.registry import RegistryOptions

    user, password = secure_registry.credentials
    options = RegistryOptions(ca_file=secure_registry.ca_cert_path,
                              credentials={secure_registry.host: Credentials(user, password)})
    return StoreFactory(options).open(parse_reference(f"{secure_registry.host}/{repo}"))


def test_sign_attest_verify_tree_with_attachments_on_another_registry(registry, secure_registry, cli,
                                                                     tmp_path: Path) -> None:
    desc = push_image(registry.host, "elsewhere/app", content=b"elsewhere")
    ref = f"{registry.host}/elsewhere/app@{desc.digest}"
    sigs = f"{secure_registry.host}/signatures/app"
    priv, pub, _ = make_key(tmp_path, "k")
    env = {**ENV, **_docker_config(tmp_path, secure_registry)}
    tls = ["--ca-file", str(secure_registry.ca_cert_path)]
    for fmt in ("bundle", "legacy"):
        r = cli("sign", ref, "--key", str(priv), "--format", fmt, "--attachments-repo", sigs, *tls, env=env)
        assert r.code == 0, r.stderr
        assert f"signatures stored in {sigs}" in r.stderr
    predicate = tmp_path / "p.json"
    predicate.write_text(json.dumps({"team": "core"}))
    r = cli("attest", ref, "--predicate", str(predicate), "--type", "https://example.com/t/v1", "--key", str(priv),
            *tls, env={**env, "COSIGN_REPOSITORY": sigs})
    assert r.code == 0, r.stderr

    # Nothing was written beside the image.
    from tests.integration.images import registry_store

    assert [t for t in registry_store(registry.host, "elsewhere/app").list_tags() if t.startswith("sha256-")] == []
    # Everything is in the other repository, found as it would be beside the image.
    found = attach.discover(_secure_store(secure_registry, "signatures/app"), desc.digest)
    assert sorted(a.found_via for a in found) == [attach.VIA_LEGACY_SIG, attach.VIA_REFERRERS_TAG,
                                                   attach.VIA_REFERRERS_TAG]

    r = cli("verify", ref, "--key", str(pub), "--attachments-repo", sigs, *tls, "-o", "json", env=env)
    assert r.code == 0, r.stderr
    assert f"reading attachments from {sigs}" in r.stderr
    assert sorted(v["format"] for v in json.loads(r.stdout)["verified"]) == ["bundle", "legacy"]
    # The variable cosign users already export is honoured by the verifier too.
    r = cli("verify-attestation", ref, "--type", "https://example.com/t/v1", "--key", str(pub), *tls,
            env={**env, "COSIGN_REPOSITORY": sigs})
    assert r.code == 0, r.stderr
    # Without the option, nothing is attached beside the image: verification fails, it does not pass by accident.
    r = cli("verify", ref, "--key", str(pub), *tls, "-o", "json", env=env)
    assert r.code == 1 and json.loads(r.stdout)["reason"] == "no-signatures"

    r = cli("tree", ref, *tls, "-o", "json", env={**env, "IMGSEAL_ATTACHMENTS_REPO": sigs})
    assert r.code == 0, r.stderr
    tree = json.loads(r.stdout)
    assert tree["attachmentsRepository"] == sigs
    assert sorted(a["kind"] for a in tree["attachments"]) == ["attestation", "signature", "signature"]

    # Credentials are looked up for the attachments' registry: without them, one line and exit 3.
    r = cli("verify", ref, "--key", str(pub), "--attachments-repo", sigs, *tls)
    errors = [line for line in r.stderr.splitlines() if line.startswith("imgseal: error:")]
    assert r.code == 3 and len(errors) == 1 and "credentials" in errors[0] and secure_registry.host in errors[0]


def test_copy_reads_the_source_attachments_from_the_other_repository(registry, secure_registry, cli,
                                                                     tmp_path: Path) -> None:
    desc = push_image(registry.host, "elsewhere/copy", content=b"elsewhere copy")
    ref = f"{registry.host}/elsewhere/copy@{desc.digest}"
    sigs = f"{secure_registry.host}/signatures/copy"
    priv, pub, _ = make_key(tmp_path, "k")
    env = {**ENV, **_docker_config(tmp_path, secure_registry)}
    tls = ["--ca-file", str(secure_registry.ca_cert_path)]
    assert cli("sign", ref, "--key", str(priv), "--attachments-repo", sigs, *tls, env=env).code == 0
    layout = f"oci-layout:{tmp_path}/copy"
    r = cli("copy", ref, layout, "--attachments-repo", sigs, *tls, "-o", "json", env=env)
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["attachments"] == 1
    # In the layout the signature sits beside the image: verified with no registry at all.
    r = cli("verify", f"{layout}@{desc.digest}", "--key", str(pub))
    assert r.code == 0, r.stderr


@pytest.mark.parametrize(("value", "needle"), [
    ("127.0.0.1:5000/sigs:v1", "names a tag or digest"),
    (f"127.0.0.1:5000/sigs@sha256:{'a' * 64}", "names a tag or digest"),
    ("oci-layout:/tmp/x", "OCI layout"),
    ("UPPER/case", "--attachments-repo"),
    # a registry host alone parses as docker.io/library/127.0.0.1 tagged 5000: say what it is
    ("127.0.0.1:5000", "names only a registry host"),
    ("localhost:5000", "names only a registry host"),
    # an explicit empty value is a mistake (an unset variable in a script), not "beside the image"
    ("", "is empty"),
    ("  ", "is empty"),
])
def test_bad_attachments_repo_is_a_usage_error_before_any_network(cli, value: str, needle: str) -> None:
    ref = f"127.0.0.1:1/app@sha256:{'b' * 64}"  # nothing listens on port 1: a network call would exit 3
    r = cli("tree", ref, "--attachments-repo", value)
    assert r.code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_environment_precedence(cli) -> None:
    ref = f"127.0.0.1:1/app@sha256:{'b' * 64}"
    # IMGSEAL_ATTACHMENTS_REPO comes before COSIGN_REPOSITORY: a bad imgseal value is what is reported.
    r = cli("tree", ref, env={"IMGSEAL_ATTACHMENTS_REPO": "x/y:tag", "COSIGN_REPOSITORY": "127.0.0.1:1/ok"})
    assert r.code == 2 and "$IMGSEAL_ATTACHMENTS_REPO" in r.stderr
    r = cli("tree", ref, env={"COSIGN_REPOSITORY": "x/y:tag"})
    assert r.code == 2 and "$COSIGN_REPOSITORY" in r.stderr
    # The option wins over both.
    r = cli("tree", ref, "--attachments-repo", "a/b:c", env={"COSIGN_REPOSITORY": "x/y:tag"})
    assert r.code == 2 and "--attachments-repo" in r.stderr


def test_gate_rule_with_attachments_repo(registry, secure_registry, cli, tmp_path: Path) -> None:
    """A policy rule's ``attachments_repo:`` (Kyverno's ``repository:``) reads signatures there, and only there."""
    from tests.integration.test_gate import deployment

    signed = push_image(registry.host, "elsewhere/gated", content=b"gated")
    push_image(registry.host, "elsewhere/gated", tag="v2", content=b"gated unsigned")
    sigs = f"{secure_registry.host}/signatures/gated"
    priv, pub, _ = make_key(tmp_path, "k")
    env = {**ENV, **_docker_config(tmp_path, secure_registry)}
    tls = ["--ca-file", str(secure_registry.ca_cert_path)]
    r = cli("sign", f"{registry.host}/elsewhere/gated@{signed.digest}", "--key", str(priv), "--attachments-repo",
            sigs, *tls, env=env)
    assert r.code == 0, r.stderr
    policy = tmp_path / "policy.yaml"
    rule = f"""\
version: 1
rules:
  - name: elsewhere
    match: ["{registry.host}/elsewhere/*"]
    ATTACHMENTS
    require:
      signatures:
        keys: [{pub.name}]
"""
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(deployment(f"{registry.host}/elsewhere/gated:v1", f"{registry.host}/elsewhere/gated:v2"))

    def gate() -> dict[str, str]:
        r = cli("gate", "--policy", str(policy), str(manifest), *tls, "-o", "json", env=env)
        assert r.code in (0, 1), r.stderr
        return {x["image"].rsplit(":", 1)[1]: x["decision"] for x in json.loads(r.stdout)["results"]}

    policy.write_text(rule.replace("ATTACHMENTS", f"attachments_repo: {sigs}"))
    assert gate() == {"v1": "allow", "v2": "deny"}
    # The same rule without it looks beside the image, where nothing is attached.
    policy.write_text(rule.replace("    ATTACHMENTS\n", ""))
    assert gate() == {"v1": "deny", "v2": "deny"}


def test_attachments_repo_with_a_referrers_api(registry, cli, tmp_path: Path) -> None:
    """The other repository's registry has the referrers API: the subject is indexed there, though the image is not."""
    from tests.integration.images import registry_store
    from tests.integration.referrers_double import ReferrersDouble

    double = ReferrersDouble(registry.host).start()
    try:
        desc = push_image(registry.host, "elsewhere/api", content=b"elsewhere api")
        ref = f"{registry.host}/elsewhere/api@{desc.digest}"
        sigs = f"{double.host}/signatures/api"
        priv, pub, _ = make_key(tmp_path, "k")
        assert cli("sign", ref, "--key", str(priv), "--attachments-repo", sigs, env=ENV).code == 0
        assert len(double.referrers[("signatures/api", str(desc.digest))]) == 1
        assert [t for t in registry_store(double.host, "signatures/api").list_tags() if t.startswith("sha256-")] == []
        r = cli("verify", ref, "--key", str(pub), "--attachments-repo", sigs, "-o", "json")
        assert r.code == 0, r.stderr
        assert json.loads(r.stdout)["verified"][0]["foundVia"] == "referrers-api"
    finally:
        double.stop()


def test_the_environment_never_moves_an_oci_layout_s_attachments(cli, tmp_path: Path) -> None:
    # A layout is its own attachment store, carried whole into air-gapped sites: a
    # COSIGN_REPOSITORY exported for cosign must not send its signatures to (or read them from)
    # a registry, as cosign's --local-image ignores it too. Port 1: any registry call exits 3.
    from tests.integration.images import layout_image

    desc = layout_image(tmp_path / "lay")
    ref = f"oci-layout:{tmp_path}/lay@{desc.digest}"
    priv, pub, _ = make_key(tmp_path, "k")
    elsewhere = {"COSIGN_REPOSITORY": "127.0.0.1:1/sigs", "IMGSEAL_ATTACHMENTS_REPO": "127.0.0.1:1/sigs"}
    for env in ({**ENV, "COSIGN_REPOSITORY": elsewhere["COSIGN_REPOSITORY"]}, {**ENV, **elsewhere}):
        r = cli("sign", ref, "--key", str(priv), env=env)
        assert r.code == 0, r.stderr
        r = cli("verify", ref, "--key", str(pub), env=env)
        assert r.code == 0, r.stderr
        r = cli("tree", ref, env=env)
        assert r.code == 0 and "attachments in" not in r.stdout, r.stdout + r.stderr
    # The option, given on purpose, still applies.
    r = cli("tree", ref, "--attachments-repo", "127.0.0.1:1/sigs")
    assert r.code == 3, r.stderr
