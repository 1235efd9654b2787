"""One error root for imgseal; every failure the CLI reports is an :class:`Error`.

Each subclass carries its exit code (stable, documented in the README) and a short
machine-readable ``reason`` that ``--output json`` reports.

Exit codes:
    0  success / verified
    1  verification failed (untrusted, mismatch, denied by policy)
    2  usage or bad input (bad reference, bad file)
    3  could not decide (registry, network, auth, transparency log unreachable)
    4  key material problem (wrong password, unreadable key)
"""

from __future__ import annotations


class Error(Exception):
    """Root of every error imgseal raises on purpose."""

    exit_code: int = 1
    default_reason: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.reason = reason or self.default_reason

    def one_line(self) -> str:
        """The message as a single line (newlines folded), suitable for stderr."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (hint: {' '.join(self.hint.split())})"
        return text


# --- exit 1: verification failed -------------------------------------------------------


class VerificationError(Error):
    """Content or signatures did not verify."""

    exit_code = 1
    default_reason = "verification-failed"


class DigestMismatchError(VerificationError):
    """Bytes did not hash to the digest that named them, or their size was wrong."""

    default_reason = "digest-mismatch"


class PolicyDeniedError(VerificationError):
    """A policy rule denied the image."""

    default_reason = "policy-denied"


# --- exit 2: usage / bad input ---------------------------------------------------------


class UsageError(Error):
    """Bad command-line usage or bad input."""

    exit_code = 2
    default_reason = "usage"


class InvalidReferenceError(UsageError):
    """An image reference or digest string that does not parse."""

    default_reason = "invalid-reference"


class InvalidInputError(UsageError):
    """A file or document that is malformed (manifest, bundle, policy, JSON...)."""

    default_reason = "invalid-input"


# --- exit 3: could not decide -----------------------------------------------------------


class UndecidableError(Error):
    """Something outside us failed, so no verdict can be given."""

    exit_code = 3
    default_reason = "undecidable"
    #: The HTTP status of the registry answer behind this error, when there was one.
    http_status: int | None = None


class RegistryError(UndecidableError):
    """The registry answered with an error we cannot recover from."""

    default_reason = "registry-error"
    #: The first distribution-spec error code of the answer (``DIGEST_INVALID`` …), when it had one.
    registry_code: str | None = None


class NetworkError(UndecidableError):
    """The network failed (connection refused, reset, timeout, TLS)."""

    default_reason = "network-error"


class AuthError(UndecidableError):
    """Authentication to the registry failed."""

    default_reason = "auth-error"


class NotFoundError(UndecidableError):
    """The manifest, blob or tag does not exist."""

    default_reason = "not-found"


class ArtifactManifestRefusedError(RegistryError):
    """The registry refused an OCI 1.1 artifact manifest (one with ``subject``, ``artifactType`` or an empty config).

    Registries without OCI 1.1 support answer such a PUT with 400/404/405/415 (AWS ECR:
    405 UNSUPPORTED, aws/containers-roadmap #2783; Docker Hub once: 404, docker/hub-feedback
    #2307). cosign's legacy ``.sig``/``.att`` images need none of those fields, so signers
    fall back to them when the user did not ask for a format.
    """

    default_reason = "artifact-manifest-refused"
    #: "<registry/repo> refuses OCI 1.1 artifact manifests (HTTP 405 UNSUPPORTED)", for notices.
    summary: str = "the registry refuses OCI 1.1 artifact manifests"


# --- exit 4: key material ---------------------------------------------------------------


class KeyMaterialError(Error):
    """A key could not be read, decrypted or used."""

    exit_code = 4
    default_reason = "key-error"
