"""verifier.github on attestations GitHub actually issued, with gh's own expected outcomes.

Data and expectations: tests/data/gh-attestations/SOURCE.md (cli/cli verify_integration_test.go).
These are blob attestations, so the digest is the artifact file's (sha512 for the npm tarball,
as gh's ``--digest-alg sha512``); for images it is the manifest digest.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from imgseal.digest import Digest
from imgseal.errors import VerificationError
from tests.datadir import DATA
from verifier.github import GithubPolicy, load_github_trust, verify_github_bundle

GH = DATA / "gh-attestations"
SIGSTORE_JS = ("sigstore-js-2.1.0-bundle.json", "sigstore-js-2.1.0.tgz", "sha512")
CUSTOM = ("custom-issuer.sigstore.json", "custom-issuer-artifact", "sha256")
REUSABLE = ("reusable-workflow-attestation.sigstore.json", "reusable-workflow-artifact", "sha256")
HAMMER = "https://token.actions.githubusercontent.com/hammer-time"
SIGNER = "github/artifact-attestations-workflows/.github/workflows/attest.yml"

CASES = [
    # TestVerifyIntegration
    (SIGSTORE_JS, {"owner": "sigstore"}, None),
    (SIGSTORE_JS, {"repo": "sigstore/sigstore-js"}, None),
    (SIGSTORE_JS, {"repo": "sigstore/fakerepo", "signer_repo": "sigstore/sigstore-js"}, "github-repo"),
    (SIGSTORE_JS, {"repo": "sigstore/fakerepo"}, "github-signer"),
    (SIGSTORE_JS, {"owner": "fakeowner"}, "github-signer"),
    (SIGSTORE_JS, {"owner": "sigstore", "deny_self_hosted_runners": True}, None),
    # TestVerifyIntegrationCustomIssuer
    (CUSTOM, {"owner": "too-legit", "oidc_issuer": HAMMER}, None),
    (CUSTOM, {"repo": "too-legit/attest", "oidc_issuer": HAMMER}, None),
    (CUSTOM, {"owner": "too-legit"}, "github-issuer"),  # the default issuer is not the enterprise's
    # TestVerifyIntegrationReusableWorkflow / ...SignerWorkflow
    (REUSABLE, {"owner": "malancas", "signer_repo": "github/artifact-attestations-workflows"}, None),
    (REUSABLE, {"repo": "malancas/attest-demo", "signer_repo": "github/artifact-attestations-workflows"}, None),
    (REUSABLE, {"repo": "malancas/attest-demo", "signer_workflow": f"github.com/{SIGNER}"}, None),
    (REUSABLE, {"repo": "malancas/attest-demo", "signer_workflow": SIGNER}, None),
    (REUSABLE, {"repo": "malancas/attest-demo", "signer_workflow": "foo/bar/.github/workflows/attest.yml"},
     "github-signer"),
    (REUSABLE, {"repo": "malancas/attest-demo"}, "github-signer"),  # the SAN is the reusable workflow's
    # cli/cli #9507: a prefix of the signer workflow must not pass here.
    (REUSABLE, {"repo": "malancas/attest-demo", "signer_workflow": SIGNER[:-4]}, "github-signer"),
]


@pytest.mark.parametrize(("files", "options", "reason"), CASES,
                         ids=[f"{f[0].split('.')[0]}-{'-'.join(map(str, o.values()))}" for f, o, _ in CASES])
def test_gh_expectations(files: tuple[str, str, str], options: dict[str, object], reason: str | None) -> None:
    bundle_name, artifact_name, algorithm = files
    raw = (GH / bundle_name).read_bytes()
    digest = Digest.parse(f"{algorithm}:{hashlib.new(algorithm, (GH / artifact_name).read_bytes()).hexdigest()}")
    predicate_type = json.loads(base64.b64decode(json.loads(raw)["dsseEnvelope"]["payload"]))["predicateType"]
    policy = GithubPolicy.create(predicate_type=predicate_type, **options)  # type: ignore[arg-type]
    trust = load_github_trust(GH / "trusted_root.json")
    if reason is None:
        result = verify_github_bundle(raw, digest, policy, trust)
        assert result.domain == "public-good"
        assert result.claims.source_repository_owner_uri.lower().endswith("/" + policy.owner.lower())
        return
    with pytest.raises(VerificationError) as e:
        verify_github_bundle(raw, digest, policy, trust)
    assert e.value.reason == reason, e.value


def test_recorded_bundle_for_another_artifact_never_counts() -> None:
    raw = (GH / "custom-issuer.sigstore.json").read_bytes()
    other = Digest.of((GH / "reusable-workflow-artifact").read_bytes())
    predicate_type = json.loads(base64.b64decode(json.loads(raw)["dsseEnvelope"]["payload"]))["predicateType"]
    policy = GithubPolicy.create(owner="too-legit", oidc_issuer=HAMMER, predicate_type=predicate_type)
    with pytest.raises(VerificationError) as e:
        verify_github_bundle(raw, other, policy, load_github_trust(GH / "trusted_root.json"))
    assert e.value.reason == "payload-digest-mismatch"
