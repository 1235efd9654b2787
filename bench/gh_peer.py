"""The peer of ``imgseal verify-attestation --github-repo``: what ``gh attestation verify oci://…
--bundle-from-oci --repo OWNER/REPO`` does, done with sigstore-python, as one process.

gh itself needs a GitHub token and the network, so the same work is done here offline:
find the bundle referrer through the ``sha256-<hex>`` tag index, fetch the manifest and the
layer by digest (bytes checked), verify the bundle with sigstore-python's ``Verifier`` against
the trusted root, and apply gh's criteria (cli/cli ``verify/policy.go``,
``verification/extensions.go``): SAN under ``https://github.com/<repo>/``, source repository
owner URI and URI, OIDC issuer, the statement's predicate type and a subject naming the image
digest (``verify_dsse`` leaves the subject to its caller). See :func:`_with_defaults` for the
one normalisation sigstore-python needs to read sigstore-js's bundles.

    python -m bench.gh_peer HOST REPO sha256:DIGEST OWNER/REPO TRUSTED_ROOT USER:PASSWORD

Exit 0 when verified; 1 (with the reason) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SLSA_V1 = "https://slsa.dev/provenance/v1"
ISSUER = "https://token.actions.githubusercontent.com"
ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"


def _with_defaults(raw: bytes) -> bytes:
    """The same protobuf message with omitted zero values written out.

    proto3 JSON lets writers omit scalars at their default and empty repeated fields;
    sigstore-js does so for an inclusion proof of a tree's first leaf (no ``logIndex``, no
    ``hashes``), and sigstore-python's models require both. gh (sigstore-go, protojson) reads
    either form.
    """
    doc = json.loads(raw)
    for entry in doc.get("verificationMaterial", {}).get("tlogEntries", []):
        proof = entry.get("inclusionProof")
        if isinstance(proof, dict):
            proof.setdefault("logIndex", "0")
            proof.setdefault("hashes", [])
    return json.dumps(doc).encode()


def main(argv: list[str]) -> int:
    import requests
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy

    host, repo, digest, gh_repo, root_path, creds = argv
    session = requests.Session()
    session.trust_env = False
    session.auth = tuple(creds.split(":", 1))  # type: ignore[assignment]
    base = f"http://{host}/v2/{repo}"

    def get(path: str, want: str | None = None, accept: str = ACCEPT) -> bytes:
        r = session.get(f"{base}/{path}", headers={"Accept": accept}, timeout=10)
        r.raise_for_status()
        if want is not None and "sha256:" + hashlib.sha256(r.content).hexdigest() != want:
            raise SystemExit(f"{path}: bytes do not match {want}")
        return r.content

    index = json.loads(get(f"manifests/{digest.replace(':', '-')}"))
    owner = gh_repo.split("/")[0]
    verifier = Verifier(trusted_root=TrustedRoot.from_file(root_path))
    checks = policy.AllOf([policy.OIDCIssuerV2(ISSUER),
                           policy.OIDCSourceRepositoryOwnerURI(f"https://github.com/{owner}"),
                           policy.OIDCSourceRepositoryURI(f"https://github.com/{gh_repo}")])
    reasons = []
    for entry in index.get("manifests", []):
        if entry.get("artifactType") != BUNDLE_V03 or \
                entry.get("annotations", {}).get("dev.sigstore.bundle.predicateType") != SLSA_V1:
            continue
        manifest = json.loads(get(f"manifests/{entry['digest']}", entry["digest"]))
        if manifest.get("subject", {}).get("digest") != digest:
            continue
        layer = manifest["layers"][0]
        bundle = Bundle.from_json(_with_defaults(get(f"blobs/{layer['digest']}", layer["digest"], accept="*/*")))
        try:
            payload_type, payload = verifier.verify_dsse(bundle, checks)
            san = bundle.signing_certificate.extensions.get_extension_for_oid(
                __import__("cryptography").x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
            uris = [str(u) for u in san.get_values_for_type(__import__("cryptography").x509.UniformResourceIdentifier)]
            if not any(u.lower().startswith(f"https://github.com/{gh_repo}/".lower()) for u in uris):
                raise ValueError(f"SAN {uris} is not under {gh_repo}")
            statement = json.loads(payload)
            if payload_type != "application/vnd.in-toto+json" or statement.get("predicateType") != SLSA_V1:
                raise ValueError("not a SLSA v1 in-toto statement")
            if not any(s.get("digest", {}).get("sha256") == digest.split(":", 1)[1]
                       for s in statement.get("subject", [])):
                raise ValueError("statement is about another artifact")
        except Exception as e:
            reasons.append(str(e))
            continue
        print(f"verified {entry['digest']}")
        return 0
    print(f"not verified: {reasons or 'no attestation'}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
