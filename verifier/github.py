"""GitHub artifact attestations: ``gh attestation verify``'s checks, offline.

``actions/attest`` signs an in-toto statement (SLSA provenance v1 by default) with a Fulcio
certificate for the workflow's OIDC token and attaches the Sigstore bundle v0.3 to the image
(REFERENCE.md §8). This module decides whether such a bundle proves what the caller expects,
following cli/cli ``pkg/cmd/attestation`` (read at commit 36b1cf5b1; the files named below):

* **Trust domain** (``verification/sigstore.go`` ``chooseVerifier``): the leaf certificate's
  *issuer organisation* names the instance. ``sigstore.dev`` is Sigstore's public-good
  instance: an SCT, a transparency-log entry and an observer timestamp are required
  (``WithSignedCertificateTimestamps(1)``, ``WithTransparencyLog(1)``,
  ``WithObserverTimestamps(1)``). ``GitHub, Inc.`` is GitHub's own instance (private
  repositories, GHE.com): it has a Fulcio and a TSA but no log, so one RFC 3161 timestamp is
  required instead (``WithSignedTimestamps(1)``). With ``--trusted-root`` (what
  ``gh attestation trusted-root`` prints: JSON lines, one root per line) the root whose
  certificate authority the leaf's issuer names is used; another organisation gets gh's
  "custom" policy (an observer timestamp, a log entry when the root lists logs).
* **Identity** (``verify/policy.go`` ``newEnforcementCriteria``): the SAN must start with
  ``https://github.com/<repo or owner>/`` (case-insensitively) unless ``--signer-repo``
  (the same prefix for the reusable workflow's repository) or ``--signer-workflow`` is
  given. gh turns ``--signer-workflow`` into a regular expression; that was cli/cli #9507
  (a value was treated as a regexp, and after quoting it still matches as a bare prefix,
  so ``release.yml`` accepted ``release.yml.bak`` and ``.github/workflows/rel`` any
  workflow starting so). Here it is a literal workflow path, anchored at both ends: the
  SAN must be exactly ``https://<host>/<workflow>@<any ref>``, or exactly the value when it
  carries its own ``@ref``.
* **Claims** (``verification/extensions.go`` ``verifyCertExtensions`` and sigstore-go's
  certificate-identity extensions): SourceRepositoryOwnerURI equal (ignoring case) to
  ``https://<host>/<owner>``; with ``--repo`` SourceRepositoryURI too; the OIDC issuer equal
  to ``--cert-oidc-issuer`` (default ``https://token.actions.githubusercontent.com``; a
  GHE.com tenant's ``https://token.actions.<tenant>.ghe.com`` makes ``<tenant>.ghe.com`` the
  host); ``--deny-self-hosted-runners`` needs RunnerEnvironment ``github-hosted``;
  ``--source-ref``, ``--source-digest`` and ``--signer-digest`` compare exactly with
  SourceRepositoryRef, SourceRepositoryDigest and BuildSignerDigest.
* **Statement**: the predicate type (default ``https://slsa.dev/provenance/v1``) and a
  subject naming the image digest, checked by :mod:`verifier.attestation` on the payload
  whose signature was verified.

The claims are the Fulcio certificate extensions (fulcio ``docs/oid-info.md``), OIDs
``1.3.6.1.4.1.57264.1.8`` to ``.22``, each a DER UTF8String. Nothing here touches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from imgseal.digest import Digest
from imgseal.dsse import Envelope
from imgseal.errors import InvalidInputError, UsageError, VerificationError
from imgseal.intoto import SLSA_PROVENANCE_V1, Statement
from imgseal.payloads import BundleSummary
from verifier.image import check_bundle_statement
from verifier.sigstore.bundle import Thresholds, VerifiedBundle, verify_bundle
from verifier.sigstore.certificate import KeylessPolicy, certificate_identities, der_utf8
from verifier.sigstore.trust import TrustMaterial, load_trusted_root, parse_trusted_root

GITHUB_OIDC_ISSUER: Final = "https://token.actions.githubusercontent.com"
#: GHE.com tenants (gh ``verification.GitHubTenantOIDCIssuer``).
_TENANT_ISSUER: Final = re.compile(r"https://token\.actions\.([a-z0-9][a-z0-9-]{0,62})\.ghe\.com")
#: RunnerEnvironment of GitHub-hosted runners (gh ``verification.GitHubRunner``).
GITHUB_HOSTED: Final = "github-hosted"
PUBLIC_GOOD_ORG: Final = "sigstore.dev"
GITHUB_ORG: Final = "GitHub, Inc."
DEFAULT_PREDICATE_TYPE: Final = SLSA_PROVENANCE_V1

TrustDomain = Literal["public-good", "github", "custom"]

# GitHub names: owners are letters, digits and hyphens (Enterprise Managed Users add an
# "_shortcode" suffix); repositories also allow "." and "_".
_OWNER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_REPO_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,100}")
_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# gh verify/policy.go hostRegex: a workflow value whose first segment has a dot names its host.
_HAS_HOST: Final = re.compile(r"[a-zA-Z0-9-]+\.[a-zA-Z0-9-]+")

_FULCIO_OID_PREFIX: Final = "1.3.6.1.4.1.57264.1."


@dataclass(frozen=True)
class FulcioClaims:
    """The Fulcio extensions of a certificate (fulcio docs/oid-info.md), as text; absent ones are ``""``."""

    issuer: str = ""  # .8
    build_signer_uri: str = ""  # .9
    build_signer_digest: str = ""  # .10
    runner_environment: str = ""  # .11
    source_repository_uri: str = ""  # .12
    source_repository_digest: str = ""  # .13
    source_repository_ref: str = ""  # .14
    source_repository_identifier: str = ""  # .15
    source_repository_owner_uri: str = ""  # .16
    source_repository_owner_identifier: str = ""  # .17
    build_config_uri: str = ""  # .18
    build_config_digest: str = ""  # .19
    build_trigger: str = ""  # .20
    run_invocation_uri: str = ""  # .21
    source_repository_visibility_at_signing: str = ""  # .22

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


#: OID arc (the last number) of each claim, in field order: 8 … 22.
_CLAIM_ARCS: Final = {f.name: 8 + i for i, f in enumerate(fields(FulcioClaims))}


def read_claims(cert: x509.Certificate) -> FulcioClaims:
    """The claim extensions of ``cert``. A claim that is not a DER UTF8String fails closed."""
    by_arc = {arc: name for name, arc in _CLAIM_ARCS.items()}
    values: dict[str, str] = {}
    for ext in cert.extensions:
        dotted = ext.oid.dotted_string
        if not dotted.startswith(_FULCIO_OID_PREFIX):
            continue
        tail = dotted[len(_FULCIO_OID_PREFIX):]
        if not tail.isdigit() or int(tail) not in by_arc:
            continue
        if not isinstance(ext.value, x509.UnrecognizedExtension):
            raise VerificationError(f"certificate extension {dotted} is not a Fulcio claim", reason="github-claims")
        text = der_utf8(ext.value.value)
        if text is None:
            raise VerificationError(f"certificate extension {dotted} is not a DER UTF8String",
                                    reason="github-claims")
        values[by_arc[int(tail)]] = text
    return FulcioClaims(**values)


# --- the policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GithubPolicy:
    """What ``gh attestation verify --owner|--repo …`` enforces; validated on construction.

    ``owner`` is required (with ``repo`` it must be the repository's owner, as gh derives
    it). Raises :class:`UsageError` (exit 2) for a malformed value, before any network.
    """

    owner: str
    repo: str | None = None
    signer_repo: str | None = None
    signer_workflow: str | None = None
    source_ref: str | None = None
    source_digest: str | None = None
    signer_digest: str | None = None
    deny_self_hosted_runners: bool = False
    oidc_issuer: str = GITHUB_OIDC_ISSUER
    predicate_type: str = DEFAULT_PREDICATE_TYPE
    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None

    @classmethod
    def create(cls, *, owner: str | None = None, repo: str | None = None, signer_repo: str | None = None,
               signer_workflow: str | None = None, source_ref: str | None = None, source_digest: str | None = None,
               signer_digest: str | None = None, deny_self_hosted_runners: bool = False,
               oidc_issuer: str | None = None, predicate_type: str | None = None,
               certificate_identity: str | None = None, certificate_identity_regexp: str | None = None,
               names: Callable[[str], str] = lambda field: field) -> GithubPolicy:
        """Build from options; ``names`` maps a field to the option name used in errors."""
        if (owner is None) == (repo is None):
            raise UsageError(f"give exactly one of {names('owner')} ORG or {names('repo')} OWNER/REPO",
                             reason="github-options")
        if repo is not None:
            _check_repo(repo, names("repo"))
            owner = repo.split("/")[0]
        assert owner is not None
        if not _OWNER.fullmatch(owner):
            raise UsageError(f"{names('owner')} {owner[:60]!r} is not a GitHub organisation or user name",
                             reason="github-options")
        signers = [names(n) for n, v in (("signer_repo", signer_repo), ("signer_workflow", signer_workflow),
                                         ("certificate_identity", certificate_identity),
                                         ("certificate_identity_regexp", certificate_identity_regexp)) if v is not None]
        if len(signers) > 1:
            # gh: --cert-identity, --cert-identity-regex, --signer-repo, --signer-workflow are exclusive.
            raise UsageError(f"give one of {', '.join(signers)}, not several", reason="github-options")
        if certificate_identity_regexp is not None:
            try:
                re.compile(certificate_identity_regexp)
            except re.error as e:
                raise UsageError(f"{names('certificate_identity_regexp')} is not a regular expression: {e}",
                                 reason="github-options") from e
        if signer_repo is not None:
            _check_repo(signer_repo, names("signer_repo"))
        if signer_workflow is not None:
            signer_workflow = _check_workflow(signer_workflow, names("signer_workflow"))
        for name, value in (("source_digest", source_digest), ("signer_digest", signer_digest)):
            if value is not None and not _HEX_DIGEST.fullmatch(value):
                raise UsageError(f"{names(name)} must be a lowercase hex commit or SHA-256 digest, not "
                                 f"{value[:80]!r}", reason="github-options")
        if source_ref is not None and not source_ref.startswith("refs/"):
            raise UsageError(f"{names('source_ref')} is a full git ref such as refs/heads/main or refs/tags/v1, not "
                             f"{source_ref[:80]!r}", reason="github-options")
        issuer = oidc_issuer if oidc_issuer is not None else GITHUB_OIDC_ISSUER
        if not issuer.startswith("https://"):
            raise UsageError(f"{names('oidc_issuer')} must be an https:// URL, not {issuer[:80]!r}",
                             reason="github-options")
        return cls(owner, repo, signer_repo, signer_workflow, source_ref, source_digest, signer_digest,
                   deny_self_hosted_runners, issuer, predicate_type or DEFAULT_PREDICATE_TYPE,
                   certificate_identity, certificate_identity_regexp)

    @property
    def host(self) -> str:
        """github.com, or ``<tenant>.ghe.com`` when the issuer is a GHE.com tenant's."""
        m = _TENANT_ISSUER.fullmatch(self.oidc_issuer)
        return f"{m.group(1)}.ghe.com" if m else "github.com"

    def url(self, path: str) -> str:
        return f"https://{self.host}/{path}"

    def describe(self) -> list[str]:
        """The criteria, one line each (gh prints the same list before verifying)."""
        lines = [f"OIDC issuer must be {self.oidc_issuer}",
                 f"source repository owner URI must be {self.url(self.owner)}"]
        if self.repo:
            lines.append(f"source repository URI must be {self.url(self.repo)}")
        lines.append(f"predicate type must be {self.predicate_type}")
        if self.signer_workflow:
            lines.append(f"signer workflow must be exactly {self._workflow_url()}"
                         + ("" if "@" in self.signer_workflow else " (at any ref)"))
        elif self.certificate_identity is not None:
            lines.append(f"signer identity (SAN) must be exactly {self.certificate_identity}")
        elif self.certificate_identity_regexp is not None:
            lines.append(f"signer identity (SAN) must match the whole of {self.certificate_identity_regexp}")
        else:
            signer = self.url(self.signer_repo or self.repo or self.owner)
            lines.append(f"signer identity (SAN) must start with {signer}/")
        if self.deny_self_hosted_runners:
            lines.append(f"runner environment must be {GITHUB_HOSTED}")
        for label, value in (("source ref", self.source_ref), ("source digest", self.source_digest),
                             ("signer digest", self.signer_digest)):
            if value:
                lines.append(f"{label} must be {value}")
        return lines

    def _workflow_url(self) -> str:
        assert self.signer_workflow is not None
        if _HAS_HOST.fullmatch(self.signer_workflow.split("/", 1)[0]):
            return f"https://{self.signer_workflow}"
        return self.url(self.signer_workflow)


def _check_repo(value: str, option: str) -> None:
    parts = value.split("/")
    if len(parts) != 2 or not _OWNER.fullmatch(parts[0]) or not _REPO_NAME.fullmatch(parts[1]):
        raise UsageError(f"{option} must be OWNER/REPO, not {value[:80]!r}", reason="github-options")


def _check_workflow(value: str, option: str) -> str:
    text = value.removeprefix("https://")
    parts = text.split("@", 1)[0].split("/")
    if _HAS_HOST.fullmatch(parts[0]):
        parts = parts[1:]
    # owner/repo/path/to/workflow.yml: a repository and at least one path segment.
    if len(parts) < 3 or not _OWNER.fullmatch(parts[0]) or not _REPO_NAME.fullmatch(parts[1]) or "" in parts:
        raise UsageError(f"{option} must be [HOST/]OWNER/REPO/PATH/TO/WORKFLOW.yml[@REF], not {value[:80]!r}",
                         reason="github-options")
    return text


def check_claims(cert: x509.Certificate, policy: GithubPolicy) -> FulcioClaims:
    """Apply the policy to a certificate whose chain, signature and times were verified; return its claims.

    Raises :class:`VerificationError` whose reason names the failing claim
    (``github-signer``, ``github-owner``, ``github-repo``, ``github-issuer``,
    ``github-runner``, ``github-source-ref``, ``github-source-digest``, ``github-signer-digest``).
    """
    claims = read_claims(cert)
    sans = certificate_identities(cert)
    if policy.signer_workflow is not None:
        want = policy._workflow_url()
        ok = any(san == want if "@" in policy.signer_workflow else san.startswith(want + "@") for san in sans)
        if not ok:
            raise VerificationError(f"signer workflow {', '.join(sans)[:200] or '(none)'} is not {want}"
                                    + ("" if "@" in policy.signer_workflow else "@<ref>"), reason="github-signer")
    elif policy.certificate_identity is not None or policy.certificate_identity_regexp is not None:
        # gh's --cert-identity / --cert-identity-regex; the regexp must match the whole SAN here
        # (gh's is unanchored unless written with ^…$, the cli/cli #9507 trap).
        exact, pattern = policy.certificate_identity, policy.certificate_identity_regexp
        if not any(san == exact if exact is not None else re.fullmatch(pattern or "", san) for san in sans):
            raise VerificationError(f"signer identity {', '.join(sans)[:200] or '(none)'} does not match "
                                    f"{exact or pattern}", reason="github-signer")
    else:
        prefix = policy.url(policy.signer_repo or policy.repo or policy.owner).lower() + "/"
        if not any(san.lower().startswith(prefix) for san in sans):
            raise VerificationError(f"signer identity {', '.join(sans)[:200] or '(none)'} is not a workflow of "
                                    f"{prefix}", reason="github-signer")
    want_owner = policy.url(policy.owner)
    if claims.source_repository_owner_uri.lower() != want_owner.lower():
        raise VerificationError(f"source repository owner is {claims.source_repository_owner_uri or '(none)'!r}, "
                                f"not {want_owner}", reason="github-owner")
    if policy.repo is not None:
        want_repo = policy.url(policy.repo)
        if claims.source_repository_uri.lower() != want_repo.lower():
            raise VerificationError(f"source repository is {claims.source_repository_uri or '(none)'!r}, not "
                                    f"{want_repo}", reason="github-repo")
    if claims.issuer.lower() != policy.oidc_issuer.lower():
        hint = ""
        if claims.issuer.startswith(policy.oidc_issuer + "/"):
            # gh's hint: enterprises with a custom issuer policy sign with a longer issuer URL.
            hint = " (an enterprise with a custom OIDC issuer policy: pass that issuer as --cert-oidc-issuer)"
        raise VerificationError(f"certificate OIDC issuer is {claims.issuer or '(none)'!r}, not "
                                f"{policy.oidc_issuer}{hint}", reason="github-issuer")
    if policy.deny_self_hosted_runners and claims.runner_environment != GITHUB_HOSTED:
        raise VerificationError(f"built on a {claims.runner_environment or 'unknown'} runner, and self-hosted "
                                "runners are denied", reason="github-runner")
    for value, got, label, reason in (
            (policy.source_ref, claims.source_repository_ref, "source ref", "github-source-ref"),
            (policy.source_digest, claims.source_repository_digest, "source digest", "github-source-digest"),
            (policy.signer_digest, claims.build_signer_digest, "signer digest", "github-signer-digest")):
        if value is not None and got != value:
            raise VerificationError(f"{label} is {got or '(none)'!r}, not {value!r}", reason=reason)
    return claims


# --- trust domains ------------------------------------------------------------------------


@dataclass(frozen=True)
class GithubTrust:
    """The trusted roots an attestation may chain to, each with the organisations its CAs name."""

    roots: tuple[TrustMaterial, ...]
    source: str

    def root_for(self, issuer_org: str) -> TrustMaterial | None:
        for root in self.roots:
            if issuer_org in _ca_organisations(root):
                return root
        return None


def _ca_organisations(root: TrustMaterial) -> set[str]:
    orgs: set[str] = set()
    for cert in root.fulcio_certs:
        orgs.update(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return orgs


MAX_TRUSTED_ROOTS: Final = 16


def load_github_trust(path: Path | None) -> GithubTrust:
    """``--trusted-root FILE`` (one trusted root, or JSON lines of roots as ``gh attestation trusted-root``
    prints), else the embedded public-good root alone (GitHub's root is not embedded: it rotates
    through TUF; ``imgseal trust update --github`` fetches it)."""
    if path is None:
        return GithubTrust((load_trusted_root(None),), "embedded production trusted root")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"cannot read trusted root {path}: {e.strerror or e}") from e
    return GithubTrust(parse_trusted_roots(data, source=f"trusted root {path}"), f"trusted root {path}")


def parse_trusted_roots(data: bytes, *, source: str) -> tuple[TrustMaterial, ...]:
    """One trusted-root document, or several as JSON lines (gh's ``trusted_root.jsonl``)."""
    try:
        json.loads(data)
        return (parse_trusted_root(data, source=source),)
    except ValueError:
        pass  # not one document: JSON lines
    roots: list[TrustMaterial] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        if len(roots) == MAX_TRUSTED_ROOTS:
            raise InvalidInputError(f"{source}: more than {MAX_TRUSTED_ROOTS} trusted roots")
        roots.append(parse_trusted_root(line, source=f"{source} line {number}"))
    if not roots:
        raise InvalidInputError(f"{source} holds no trusted root")
    return tuple(roots)


def issuer_organisation(cert: x509.Certificate) -> str:
    """The leaf's issuer organisation; gh requires exactly one."""
    orgs = [str(a.value) for a in cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if len(orgs) != 1:
        raise VerificationError(f"signing certificate's issuer names {len(orgs)} organisations, expected one",
                                reason="github-trust-domain")
    return orgs[0]


def trust_domain(issuer_org: str) -> TrustDomain:
    if issuer_org == PUBLIC_GOOD_ORG:
        return "public-good"
    if issuer_org == GITHUB_ORG:
        return "github"
    return "custom"


@dataclass(frozen=True)
class GithubVerified:
    """One attestation bundle that met the policy."""

    domain: TrustDomain
    bundle: VerifiedBundle
    claims: FulcioClaims
    statement: Statement


def verify_github_bundle(raw: bytes, digest: Digest, policy: GithubPolicy, trust: GithubTrust) -> GithubVerified:
    """Verify one bundle as ``gh attestation verify`` would, for the image ``digest``; raise if it does not pass."""
    from verifier.sigstore.bundle import _leaf_certificate, load_bundle_json, parse_bundle

    bundle = parse_bundle(load_bundle_json(raw))
    if bundle.media_type == "application/vnd.dev.sigstore.bundle+json;version=0.1":
        # gh chooseVerifier: "unsupported bundle version" below 0.2 (no inclusion proof required there).
        raise VerificationError("bundle v0.1 is not accepted for GitHub attestations (gh requires v0.2 or later)",
                                reason="github-bundle-version")
    cert = _leaf_certificate(bundle)
    if cert is None:
        raise VerificationError("GitHub attestations are signed with a Fulcio certificate; this bundle carries a "
                                "public key", reason="verification-material")
    org = issuer_organisation(cert)
    domain = trust_domain(org)
    root = trust.root_for(org)
    if root is None:
        hint = (" — GitHub's instance (private repositories, GHE.com): fetch its root with `imgseal trust update "
                "--github --output F` and pass --trusted-root F" if domain == "github" else "")
        raise VerificationError(f"no trusted root in the {trust.source} has a certificate authority of {org!r}"
                                f"{hint}", reason="github-trust-domain")
    needs = domain_requirements(domain, root)
    verified = verify_bundle(raw, policy=KeylessPolicy(identity_regexp=".*", issuer_regexp=".*"),
                             expect_dsse=True, trusted_root=root,
                             thresholds=Thresholds(transparency_log=needs.transparency_log,
                                                   signed_timestamps=needs.signed_timestamps,
                                                   observer_timestamps=needs.observer_timestamps),
                             signed_certificate_timestamps=needs.signed_certificate_timestamps)
    claims = check_claims(cert, policy)
    if verified.payload is None or verified.payload_type is None:
        raise VerificationError("verified bundle carries no DSSE payload", reason="payload-type")
    envelope = Envelope(payload_type=verified.payload_type, payload=verified.payload, signatures=())
    statement = check_bundle_statement(envelope, digest, policy.predicate_type)
    return GithubVerified(domain, verified, claims, statement)


@dataclass(frozen=True)
class DomainRequirements:
    """sigstore-go verifier options, as counts (``WithSignedCertificateTimestamps(n)`` …)."""

    signed_certificate_timestamps: int
    transparency_log: int
    signed_timestamps: int
    observer_timestamps: int


def domain_requirements(domain: TrustDomain, root: TrustMaterial) -> DomainRequirements:
    """The verification thresholds of each trust domain (gh ``verification/sigstore.go``)."""
    if domain == "public-good":
        return DomainRequirements(signed_certificate_timestamps=1, transparency_log=1, signed_timestamps=0,
                                  observer_timestamps=1)
    if domain == "github":
        return DomainRequirements(signed_certificate_timestamps=0, transparency_log=0, signed_timestamps=1,
                                  observer_timestamps=1)
    # gh's newCustomVerifier: an observer timestamp, a log entry when the root lists logs. It
    # requires no SCT; one is required here when the root lists CT logs.
    return DomainRequirements(signed_certificate_timestamps=1 if root.ct_keys else 0,
                              transparency_log=1 if root.tlog_keys else 0, signed_timestamps=0,
                              observer_timestamps=1)


def github_bundle_verifier(policy: GithubPolicy, trust: GithubTrust,
                           seen: list[GithubVerified] | None = None) -> Callable[[BundleSummary, Digest],
                                                                               tuple[str, Statement]]:
    """The ``bundle_verifier`` hook of :func:`verifier.attestation.examine_attestations` for GitHub attestations.

    ``seen`` collects every bundle that passed (the CLI reports their claims).
    """

    def verify(summary: BundleSummary, digest: Digest) -> tuple[str, Statement]:
        result = verify_github_bundle(summary.raw, digest, policy, trust)
        if seen is not None:
            seen.append(result)
        workflow = result.claims.build_signer_uri or (result.bundle.certificate_identity or "?")
        return f"{workflow} ({result.domain})", result.statement

    return verify
