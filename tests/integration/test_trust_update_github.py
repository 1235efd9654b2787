"""`imgseal trust update --github` against a TUF repository served on loopback (python-tuf's Metadata API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.tuf_repo import TufRepository

ROOT = Path(__file__).resolve().parents[2]
# A trusted root with no log members at all, as GitHub's (CA and TSA taken from the embedded staging root).
_STAGING = json.loads((ROOT / "verifier" / "data" / "trusted_root.staging.json").read_text())
GITHUB_LIKE = json.dumps({"mediaType": _STAGING["mediaType"],
                          "certificateAuthorities": _STAGING["certificateAuthorities"],
                          "timestampAuthorities": _STAGING.get("timestampAuthorities", [])}, indent=2).encode()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[TufRepository]:
    repository = TufRepository(tmp_path / "repo").start()
    try:
        yield repository
    finally:
        repository.stop()


def _update(cli, repo: TufRepository, bootstrap: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("trust", "update", "--github", "--tuf-url", repo.url, "--tuf-root", str(bootstrap), *extra)


def test_fetches_the_target_as_one_json_line_through_a_root_rotation(cli, repo: TufRepository,
                                                                      tmp_path: Path) -> None:
    bootstrap = repo.init()
    repo.rotate_root("targets")  # the client must walk 1.root.json -> 2.root.json
    repo.rotate_root("root")  # and trust a root signed by the old and the new root key
    repo.publish(GITHUB_LIKE)
    out = tmp_path / "github.jsonl"
    r = _update(cli, repo, bootstrap, "--output", str(out))
    assert r.code == 0, r.stderr
    text = out.read_text()
    assert text.count("\n") <= 1 and json.loads(text) == json.loads(GITHUB_LIKE)
    r = _update(cli, repo, bootstrap)
    assert r.code == 0 and json.loads(r.stdout) == json.loads(GITHUB_LIKE)
    # The line is what verify-attestation --trusted-root reads.
    from verifier.github import parse_trusted_roots

    assert len(parse_trusted_roots(out.read_bytes(), source="t")) == 1


@pytest.mark.parametrize("fault", ["tampered-target", "expired-timestamp", "foreign-bootstrap"])
def test_a_repository_that_does_not_verify_is_refused(cli, repo: TufRepository, tmp_path: Path, fault: str) -> None:
    bootstrap = repo.init()
    if fault == "foreign-bootstrap":
        other = TufRepository(tmp_path / "other")
        bootstrap = other.init()
    repo.publish(GITHUB_LIKE, tamper_target=fault == "tampered-target",
                 timestamp_expires=datetime.now(UTC) - timedelta(hours=1) if fault == "expired-timestamp" else None)
    out = tmp_path / "out.json"
    r = _update(cli, repo, bootstrap, "--output", str(out))
    assert r.code == 3, (r.stdout, r.stderr)
    assert r.stderr.startswith("imgseal: error: cannot refresh GitHub's trusted root"), r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_target_that_is_not_a_trusted_root_is_refused(cli, repo: TufRepository, tmp_path: Path) -> None:
    bootstrap = repo.init()
    repo.publish(b'{"mediaType": "something else"}')
    r = _update(cli, repo, bootstrap)
    assert r.code == 2 and "GitHub trusted root from" in r.stderr and "media type" in r.stderr, r.stderr


def test_usage_and_unreachable(cli, tmp_path: Path) -> None:
    r = cli("trust", "update", "--tuf-url", "http://127.0.0.1:9")
    assert r.code == 2 and "go together" in r.stderr
    root = TufRepository(tmp_path / "r").init()
    r = cli("trust", "update", "--tuf-url", "http://127.0.0.1:9", "--tuf-root", str(root))
    assert r.code == 2 and "apply with --github" in r.stderr
    r = cli("trust", "update", "--github", "--staging")
    assert r.code == 2
    r = cli("trust", "update", "--github", "--tuf-url", "http://127.0.0.1:9", "--tuf-root", str(root))
    assert r.code == 3 and "cannot refresh GitHub's trusted root" in r.stderr, r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = cli("trust", "update", "--github", "--tuf-url", "http://127.0.0.1:9", "--tuf-root", str(bad))
    assert r.code == 2 and "not TUF root metadata" in r.stderr, r.stderr


def test_a_ghe_tenant_trust_domain_names_its_own_target(cli, repo: TufRepository, tmp_path: Path) -> None:
    bootstrap = repo.init()
    repo.publish(GITHUB_LIKE, name="acme.trusted_root.json")
    r = _update(cli, repo, bootstrap, "--trust-domain", "acme")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(GITHUB_LIKE)
    r = _update(cli, repo, bootstrap)  # the default target is not there
    assert r.code == 3 and "no target trusted_root.json" in r.stderr, r.stderr
    r = _update(cli, repo, bootstrap, "--trust-domain", "../x")
    assert r.code == 2
    r = cli("trust", "update", "--trust-domain", "acme")
    assert r.code == 2 and "applies with --github" in r.stderr
