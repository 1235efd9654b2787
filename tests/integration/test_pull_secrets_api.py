"""Pull secrets read through the official ``kubernetes`` client from an HTTPS API double on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgseal.digest import Digest
from imgseal.errors import AuthError, UsageError
from imgseal.image import build_image
from imgseal.reference import parse_reference
from imgseal.store import StoreFactory
from imgseal.store.auth import Credentials
from imgseal.store.registry import RegistryOptions
from tests.integration.kube_api_double import KubeAPI, docker_config_secret, kube_api, serviceaccount_dir
from verifier.gate.pull_secrets import KubeSecrets, PullRequest, PullSecretError


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeAPI]:
    with kube_api(tmp_path / "api") as served:
        served.grants[served.token] = {"team-a", "team-b"}
        served.add_secret(docker_config_secret("team-a", "regcred", {"reg.example": ("alice", "pw-a")}))
        served.add_secret(docker_config_secret("team-a", "old", {"https://old.example/v1/": ("olga", "pw-o")},
                                               legacy=True))
        served.add_secret({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "tls", "namespace": "team-a"},
                           "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
        served.add_service_account("team-a", "default", ["old"])
        served.add_service_account("team-a", "builder", ["tls"])
        served.add_service_account("team-b", "default", [])
        yield served


def in_cluster(tmp_path: Path, api: KubeAPI, token: str | None = None, ttl: float = 10.0) -> KubeSecrets:
    directory, env = serviceaccount_dir(tmp_path / "sa", api, token)
    return KubeSecrets.in_cluster(directory, env, ttl=ttl)


def test_pod_secrets_then_service_account_secrets_cached(tmp_path: Path, api: KubeAPI) -> None:
    kube = in_cluster(tmp_path, api)
    wanted = PullRequest(secrets=("regcred",), service_accounts=("default",))
    creds = kube.pull_credentials("team-a", wanted)
    assert [e.source for e in creds.entries] == ["secret team-a/regcred", "secret team-a/old"]
    assert creds.credentials(parse_reference("reg.example/app:v1")) == Credentials("alice", "pw-a")  # type: ignore[arg-type]
    assert creds.credentials(parse_reference("old.example/app:v1")) == Credentials("olga", "pw-o")  # type: ignore[arg-type]
    again = kube.pull_credentials("team-a", wanted)
    assert again == creds
    assert api.count("secrets", "team-a", "regcred") == 1 and api.count("serviceaccounts", "team-a", "default") == 1
    # Other secret types are skipped, as the kubelet skips them.
    assert kube.pull_credentials("team-a", PullRequest((), ("builder",))).entries == ()


def test_cache_expires(tmp_path: Path, api: KubeAPI) -> None:
    kube = in_cluster(tmp_path, api, ttl=0.0)
    for _ in range(2):
        kube.pull_credentials("team-a", PullRequest(("regcred",), ()))
    assert api.count("secrets", "team-a", "regcred") == 2


def test_secrets_are_read_only_in_the_objects_namespace(tmp_path: Path, api: KubeAPI) -> None:
    kube = in_cluster(tmp_path, api)
    with pytest.raises(PullSecretError, match=r"secret team-b/regcred not found \(404: secrets \"regcred\" not found"):
        kube.pull_credentials("team-b", PullRequest(("regcred",), ("default",)))
    assert api.count("secrets", "team-a", "regcred") == 0


def test_forbidden_and_unauthorized_are_clear_errors(tmp_path: Path, api: KubeAPI) -> None:
    api.grants[api.token] = {"team-b"}
    kube = in_cluster(tmp_path, api)
    with pytest.raises(PullSecretError, match=r"may not get it \(403: serviceaccounts \"default\" is forbidden"):
        kube.pull_credentials("team-a", PullRequest(("regcred",), ("default",)))
    stranger = in_cluster(tmp_path / "other", api, token="not-the-token")
    with pytest.raises(PullSecretError, match=r"refused the webhook's token \(401: Unauthorized\)"):
        stranger.pull_credentials("team-b", PullRequest((), ("default",)))


def test_unreachable_api_server_is_an_error_not_a_crash(tmp_path: Path, api: KubeAPI) -> None:
    directory, env = serviceaccount_dir(tmp_path / "sa", api)
    env["KUBERNETES_SERVICE_PORT"] = "1"  # nothing listens there
    kube = KubeSecrets.in_cluster(directory, env, timeout=1.0)
    with pytest.raises(PullSecretError, match="cannot read serviceaccount team-a/default"):
        kube.pull_credentials("team-a", PullRequest((), ("default",)))


def test_in_cluster_configuration_must_be_complete(tmp_path: Path, api: KubeAPI) -> None:
    directory, env = serviceaccount_dir(tmp_path / "sa", api)
    with pytest.raises(UsageError, match="in-cluster"):
        KubeSecrets.in_cluster(directory, {})
    (directory / "token").unlink()
    with pytest.raises(UsageError, match="token"):
        KubeSecrets.in_cluster(directory, env)


def test_kubeconfig_outside_a_cluster(tmp_path: Path, api: KubeAPI) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{api.url}", certificate-authority: "{api.ca_cert}"}}}}]
users: [{{name: u, user: {{token: {api.token}}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    kube = KubeSecrets.from_kubeconfig(kubeconfig)
    creds = kube.pull_credentials("team-a", PullRequest(("regcred",), ()))
    assert [e.source for e in creds.entries] == ["secret team-a/regcred"]
    with pytest.raises(UsageError, match="--kubeconfig"):
        KubeSecrets.from_kubeconfig(tmp_path / "missing")


@pytest.mark.registry
def test_pull_secret_credentials_open_the_private_registry(tmp_path: Path, api: KubeAPI, secure_registry) -> None:
    host = secure_registry.host
    user, password = secure_registry.credentials
    api.add_secret(docker_config_secret("team-a", "private", {host: (user, password)}))
    store_options = RegistryOptions(ca_file=secure_registry.ca_cert_path, credentials={host: Credentials(user,
                                                                                                         password)})
    pushed = push_image_to(StoreFactory(store_options), host)
    creds = in_cluster(tmp_path, api).pull_credentials("team-a", PullRequest(("private",), ()))
    ref = parse_reference(f"{host}/pull/app:v1")
    factory = StoreFactory(RegistryOptions(ca_file=secure_registry.ca_cert_path))
    found = creds.credentials(ref)  # type: ignore[arg-type]
    assert found == Credentials(user, password)
    assert factory.open(ref, credentials=found).get_manifest("v1").digest == pushed
    # The same factory with no credentials for this host (another namespace) is refused.
    with pytest.raises(AuthError, match="requires credentials"):
        factory.open(ref).get_manifest("v1")


def push_image_to(factory: StoreFactory, host: str) -> Digest:
    store = factory.open(parse_reference(f"{host}/pull/app:v1"))
    return build_image(store, [{"app": b"private"}], tag="v1").digest


def test_hanging_api_server_is_bounded(tmp_path: Path, api: KubeAPI) -> None:
    import socket
    import time

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)  # accepts, never answers
    try:
        directory, env = serviceaccount_dir(tmp_path / "sa", api)
        env["KUBERNETES_SERVICE_PORT"] = str(hanging.getsockname()[1])
        kube = KubeSecrets.in_cluster(directory, env, timeout=0.5, budget=0.8)
        started = time.monotonic()
        with pytest.raises(PullSecretError, match="cannot read serviceaccount team-a/default"):
            kube.pull_credentials("team-a", PullRequest(("regcred",), ("default",)))
        assert time.monotonic() - started < 2.0  # no retries behind our back
    finally:
        hanging.close()
