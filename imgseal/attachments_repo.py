"""Attachments kept in another repository than the image (cosign's ``COSIGN_REPOSITORY``).

cosign lets signatures and attestations live apart from the image: with
``COSIGN_REPOSITORY=registry/sigs`` every read and write of ``sha256-<hex>.sig`` / ``.att``,
of the referrers index and of referrer bundles goes to that repository instead of the
image's (sigstore/cosign pkg/oci/remote/options.go ``WithTargetRepository`` and
``GetEnvTargetRepository``; pkg/oci/remote/referrers.go re-targets the referrers query;
pkg/cosign/verify.go fetches the bundles from the target repository). Kyverno's
``verifyImages[].repository`` and policy-controller's ``signaturePullSecrets``/``COSIGN_REPOSITORY``
do the same on the verifying side.

The image itself is still fetched from its own repository; only the attachment store
changes. The subject digest is what ties the two together: artifacts name it in their
``subject`` (or, for legacy tags, in the tag and the signed payload), so attachments
stored elsewhere are checked exactly as attachments stored beside the image. The other
repository may be on another registry host; the store factory opens a client for that
host and credentials are looked up for it (docker's ``config.json``, credential helpers).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

from imgseal.errors import InvalidReferenceError, UsageError

if TYPE_CHECKING:
    from imgseal.reference import Reference
    from imgseal.store import StoreFactory
    from imgseal.store.base import Store

#: Read in this order when ``--attachments-repo`` is not given. imgseal's own name first, so a
#: shell that exports ``COSIGN_REPOSITORY`` for cosign can still point imgseal elsewhere.
ENV_VARIABLES: Final = ("IMGSEAL_ATTACHMENTS_REPO", "COSIGN_REPOSITORY")


def attachments_repository(option: str | None, *, environment: bool = True) -> Reference | None:
    """The repository named by ``--attachments-repo`` or the environment, or None (beside the image).

    Like cosign's ``name.NewRepository``, the value is a repository: a tag or digest is an
    error rather than silently dropped, and docker's defaults apply (``docker.io``,
    ``library/``). OCI layouts are not accepted: a layout is already its own attachment store.
    ``environment=False`` (for an OCI layout image) reads only the option: a layout carried into
    an air-gapped site keeps its attachments inside it whatever the shell exports, as cosign's
    ``--local-image`` ignores ``COSIGN_REPOSITORY``.
    """
    source, value = "--attachments-repo", option
    if value is None and environment:
        for variable in ENV_VARIABLES:
            if os.environ.get(variable, "").strip():
                source, value = f"${variable}", os.environ[variable].strip()
                break
    if value is None:
        return None
    if not value.strip():
        # An empty variable means unset (as for cosign), but an explicit empty option is a
        # script's unset variable: reading beside the image instead would be a silent accept.
        raise UsageError(f"{source} is empty; give a repository (registry/path) or leave the option out",
                         reason="bad-attachments-repo")
    return parse_attachments_repo(value, source)


def parse_attachments_repo(value: str, source: str) -> Reference:
    """``registry/path`` as a :class:`Reference` without tag or digest; :class:`UsageError` names ``source``."""
    from imgseal.reference import Reference, parse_reference

    host, colon, port = value.strip().partition(":")
    if colon and "/" not in value and port.isdigit() and ("." in host or host == "localhost"):
        # "127.0.0.1:5000" would parse as docker.io/library/127.0.0.1 with the tag 5000
        raise UsageError(f"{source} {value[:80]!r} names only a registry host; add the repository path "
                         "(registry/path)", reason="bad-attachments-repo")
    try:
        parsed = parse_reference(value.strip(), default_tag=None)
    except InvalidReferenceError as e:
        raise UsageError(f"{source} {value[:80]!r}: {e.message}", reason="bad-attachments-repo") from e
    if not isinstance(parsed, Reference):
        raise UsageError(f"{source} names an OCI layout; it takes a registry repository such as "
                         "registry.example/team/signatures", reason="bad-attachments-repo")
    if parsed.tag is not None or parsed.digest is not None:
        raise UsageError(f"{source} {value[:80]!r} names a tag or digest; it takes a repository only "
                         "(registry/path)", reason="bad-attachments-repo")
    return parsed


def attachment_store(factory: StoreFactory, image_store: Store, repository: Reference | None) -> Store:
    """Where attachments are read and written: ``repository`` when given, else the image's own store."""
    if repository is None:
        return image_store
    return factory.open(repository)


def describe(store: Store, image_store: Store) -> str | None:
    """A short note for output when attachments live apart from the image, else None."""
    if store is image_store:
        return None
    return f"attachments in {store.location}"
