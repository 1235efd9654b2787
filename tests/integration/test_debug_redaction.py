"""--debug logs registry traffic but never credentials; passwords never reach argv or output."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.integration.test_sign_verify import ENV, PASSWORD, make_key

pytestmark = pytest.mark.registry


def test_debug_log_redacts_authorization(secure_registry, cli, tmp_path: Path) -> None:
    from imgseal.image import build_image
    from imgseal.reference import parse_reference
    from imgseal.store import StoreFactory
    from imgseal.store.auth import Credentials
    from imgseal.store.registry import RegistryOptions

    user, password = secure_registry.credentials
    options = RegistryOptions(ca_file=secure_registry.ca_cert_path,
                              credentials={secure_registry.host: Credentials(user, password)})
    store = StoreFactory(options).open(parse_reference(f"{secure_registry.host}/debug/app:v1"))
    build_image(store, [{"f": b"debug"}], tag="v1")
    config = tmp_path / "dockercfg"
    config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {secure_registry.host: {"auth": auth}}}))
    r = cli("--debug", "digest", f"{secure_registry.host}/debug/app:v1", "--ca-file",
            str(secure_registry.ca_cert_path), env={"DOCKER_CONFIG": str(config)})
    assert r.code == 0, r.stderr
    assert "GET https://" in r.stderr and "<redacted>" in r.stderr  # traffic is logged, credentials are not
    assert auth not in r.stderr and password not in r.stderr and auth not in r.stdout


def test_password_never_printed_on_failure(registry, cli, tmp_path: Path) -> None:
    from tests.integration.images import push_image

    desc = push_image(registry.host, "debug/pw")
    priv, _, _ = make_key(tmp_path, "k")
    secret = "a-wrong-but-secret-password"
    r = cli("--debug", "sign", f"{registry.host}/debug/pw@{desc.digest}", "--key", str(priv),
            env={"IMGSEAL_PASSWORD": secret})
    assert r.code == 4
    assert secret not in r.stderr and secret not in r.stdout and PASSWORD not in r.stderr
    assert cli("sign", f"{registry.host}/debug/pw@{desc.digest}", "--key", str(priv), env=ENV).code == 0
