"""GitHub artifact attestations made as actions/attest makes them, against the offline rig.

Two Sigstore instances from ``tests/sigstore_rig/server.mjs`` stand in for the two trust
domains ``gh attestation verify`` knows (cli/cli ``verification/sigstore.go``):

- **public good** — CA organisation ``sigstore.dev``, Fulcio with an SCT, Rekor, a TSA;
- **GitHub's instance** — CA organisation ``GitHub, Inc.``, Fulcio and a TSA, no Rekor and
  no CT log; its trusted root lists no ``tlogs`` and no ``ctlogs``.

Tokens look like GitHub Actions OIDC tokens (issuer ``https://token.actions.githubusercontent.com``,
``job_workflow_ref``, ``repository_owner``, ``runner_environment`` …); the rig's Fulcio turns
them into the claim extensions (OIDs 1.3.6.1.4.1.57264.1.8–.22) as Fulcio does.
``attest()`` runs ``attest.mjs``: sigstore-js signs (``@sigstore/sign``) and ``@sigstore/oci``
attaches the bundle to the image — referrer manifest, or the ``sha256-<hex>`` tag index when
the registry has no referrers API.

@sigstore/oci signs in to every registry (an open registry's 202 to its probe is not a
challenge it accepts), so these tests use a registry with basic auth over plain HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.sigstore_rig import RIG_DIR, SigstoreRig, _node, node_verify

ATTEST_SCRIPT = RIG_DIR / "attest.mjs"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
SLSA_V1 = "https://slsa.dev/provenance/v1"
USER, PASSWORD = "attester", "rig-pass"


@dataclass(frozen=True)
class Workflow:
    """The GitHub Actions run a token is minted for (the claims Fulcio copies into the certificate)."""

    repository: str = "acme/app"
    workflow: str = ".github/workflows/release.yml"
    ref: str = "refs/heads/main"
    sha: str = "a" * 40
    signer_repository: str | None = None  # a reusable workflow's repository (job_workflow_ref)
    signer_sha: str = "b" * 40
    runner_environment: str = "github-hosted"
    issuer: str = GITHUB_ISSUER
    visibility: str = "private"

    @property
    def owner(self) -> str:
        return self.repository.split("/")[0]

    @property
    def job_workflow_ref(self) -> str:
        return f"{self.signer_repository or self.repository}/{self.workflow}@{self.ref}"

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer, "aud": "sigstore", "iat": now, "exp": now + 600,
            "sub": f"repo:{self.repository}:ref:{self.ref}",
            "repository": self.repository, "repository_id": "101", "repository_owner": self.owner,
            "repository_owner_id": "100", "repository_visibility": self.visibility, "ref": self.ref,
            "sha": self.sha, "workflow_ref": f"{self.repository}/{self.workflow}@{self.ref}",
            "workflow_sha": self.sha, "job_workflow_ref": self.job_workflow_ref,
            "job_workflow_sha": self.signer_sha, "runner_environment": self.runner_environment,
            "event_name": "push", "run_id": "4242", "run_attempt": "1",
        }

    def token(self) -> str:
        def b64(doc: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=").decode()

        return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(self.claims())}."


def provenance_statement(name: str, digest: str, predicate_type: str = SLSA_V1) -> dict[str, Any]:
    """An in-toto statement about ``digest`` (``sha256:<hex>``), SLSA v1 shaped as actions/attest-build-provenance."""
    algorithm, hex_ = digest.split(":", 1)
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {algorithm: hex_}}],
        "predicateType": predicate_type,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": "https://github.com/acme/app",
                                                    "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/heads/main",
                                          "digest": {"gitCommit": "a" * 40}}],
            },
            "runDetails": {"builder": {"id": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"},
                           "metadata": {"invocationId": "https://github.com/acme/app/actions/runs/4242/attempts/1"}},
        },
    }


@dataclass(frozen=True)
class Attested:
    bundle_path: Path
    manifest_digest: str | None

    def bundle(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.bundle_path.read_text())
        return doc


def attest(rig: SigstoreRig, workflow: Workflow, statement: dict[str, Any], workdir: Path, *,
           image: str | None = None, digest: str | None = None, predicate_type: str = SLSA_V1,
           public_good: bool = False) -> Attested:
    """Sign ``statement`` as actions/attest does (TSA for GitHub's instance; Rekor for public good) and,
    with ``image``/``digest``, attach the bundle with @sigstore/oci."""
    workdir.mkdir(parents=True, exist_ok=True)
    statement_path = workdir / f"statement-{time.monotonic_ns()}.json"
    statement_path.write_text(json.dumps(statement))
    argv = [_node(), str(ATTEST_SCRIPT), "--fulcio", rig.url, "--token", workflow.token(),
            "--statement", str(statement_path)]
    argv += ["--rekor", rig.url] if public_good else ["--tsa", rig.url]
    if image is not None:
        assert digest is not None
        argv += ["--image", image, "--digest", digest, "--predicate-type", predicate_type]
    env = {**os.environ, "RIG_REGISTRY_USER": USER, "RIG_REGISTRY_PASSWORD": PASSWORD}
    proc = subprocess.run(argv, cwd=RIG_DIR, capture_output=True, text=True, timeout=60, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"attest.mjs failed ({proc.returncode}): {proc.stderr.strip()}\n{rig.log()}")
    out = json.loads(proc.stdout)
    attached = out.get("attached")
    return Attested(Path(out["bundle"]), attached["digest"] if attached else None)


def auth_file(path: Path, *hosts: str) -> Path:
    """A containers auth.json for the rig's registry (imgseal reads it through REGISTRY_AUTH_FILE)."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token} for host in hosts}}))
    return path


def js_verify(bundle: Path, trusted_root: Path, workflow: Workflow, digest: str, *, github: bool) -> str:
    """Cross-check with @sigstore/verify: GitHub's instance needs 1 timestamp and no log or SCT."""
    thresholds: dict[str, int] = {"tlog_threshold": 0, "ctlog_threshold": 0} if github else {}
    result = node_verify(bundle, trusted_root, identity=f"https://github.com/{workflow.job_workflow_ref}",
                         issuer=workflow.issuer, digest=digest, **thresholds)
    return result.message if not result.ok else "OK"
