"""Session fixtures: real registries (Debian's docker-registry) and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.registry_rig import RegistryInstance, registry_available, start_registry

REGISTRY_USER, REGISTRY_PASSWORD = "alice", "s3cret-pass"
ROOT = Path(__file__).resolve().parent.parent


def _need_registry() -> None:
    if not registry_available():
        if os.environ.get("CI"):
            pytest.fail("docker-registry is not installed; `make test` installs it")
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInstance]:
    """One plain-HTTP registry for the whole run; use distinct repository names per test."""
    _need_registry()
    with start_registry(tmp_path_factory.mktemp("registry")) as instance:
        yield instance


@pytest.fixture(scope="session")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInstance]:
    """TLS (throwaway CA at .ca_cert_path) + htpasswd basic auth (.credentials)."""
    _need_registry()
    with start_registry(tmp_path_factory.mktemp("secure-registry"), tls=True,
                        htpasswd={REGISTRY_USER: REGISTRY_PASSWORD}) as instance:
        yield instance


@pytest.fixture(scope="session")
def no_delete_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInstance]:
    """distribution as it ships: storage.delete.enabled off, so manifest deletes answer 405 UNSUPPORTED."""
    _need_registry()
    with start_registry(tmp_path_factory.mktemp("no-delete-registry"), delete_enabled=False) as instance:
        yield instance


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[RegistryInstance]:
    """A private registry per test, for tests that tamper with storage."""
    _need_registry()
    with start_registry(tmp_path / "registry") as instance:
        yield instance


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path) -> object:
    """Run the installed ``imgseal`` console script as a user would (a real process)."""
    env_base = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSEAL_", "COSIGN_", "DOCKER_CONFIG"))}
    env_base["DOCKER_CONFIG"] = str(tmp_path / "docker-config-empty")

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None, cwd: Path | None = None,
            timeout: float = 120) -> Result:
        full_env = {**env_base, **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "imgseal", *args], capture_output=True, text=True,
                              env=full_env, input=input, cwd=cwd or tmp_path, timeout=timeout, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


from tests.integration.sigstore_rig import make_rig_fixture  # noqa: E402 - fixtures grouped by service

sigstore_rig = make_rig_fixture()  # session-scoped; skips only if tests/sigstore_rig/node_modules is absent
