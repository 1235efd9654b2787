"""Write key files safely: private from the first byte, atomically, never over an existing file by accident.

* The file is created with ``O_CREAT | O_EXCL`` and its final mode (0600 for a private key), so it
  is never group- or world-readable, not even between ``open`` and ``chmod``.
* Content goes to a temporary file in the destination directory, is flushed to disk, and only then
  takes the final name; a failure (disk full, interrupt) leaves no partial key behind.
* Without ``force`` the final name is taken with ``link(2)``, which fails if the name exists, so a
  file that appears between our check and our write is still not overwritten. With ``force`` it is
  ``rename(2)``, which replaces a symlink itself rather than writing through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Final

from imgseal.errors import UsageError

PRIVATE_MODE: Final = 0o600
PUBLIC_MODE: Final = 0o644

_NO_HARDLINKS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


def _exists_error(path: Path) -> UsageError:
    return UsageError(f"refusing to overwrite existing file {path}", hint="use --force to overwrite",
                      reason="file-exists")


def _write_error(path: Path, e: OSError) -> UsageError:
    if isinstance(e, FileNotFoundError):
        return UsageError(f"cannot write {path}: directory {path.parent} does not exist", reason="cannot-write")
    if isinstance(e, PermissionError):
        return UsageError(f"cannot write {path}: permission denied", reason="cannot-write")
    return UsageError(f"cannot write {path}: {e.strerror or e}", reason="cannot-write")


def _fsync_dir(directory: Path) -> None:
    # Durability of the rename; best effort (some filesystems refuse to open directories).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_temp(directory: Path, name: str, data: bytes, mode: int) -> Path:
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(16):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, mode)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(directory))


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise the error :func:`write_new_file` would raise for ``path``'s directory, writing nothing.

    For work that cannot be undone before the file is written (a key pair made on a token):
    a trial temporary file is created and removed, which also catches read-only mounts and ACLs.
    """
    target = Path(path)
    try:
        _write_temp(target.parent, target.name, b"", PUBLIC_MODE).unlink()
    except OSError as e:
        raise _write_error(target, e) from e


def write_new_file(path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_MODE,
                   force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically, created with ``mode``; refuse to replace it unless ``force``."""
    target = Path(path)
    directory = target.parent
    if not force and os.path.lexists(target):
        raise _exists_error(target)
    try:
        tmp = _write_temp(directory, target.name, data, mode)
    except OSError as e:
        raise _write_error(target, e) from e
    try:
        if force:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
    except FileExistsError:
        raise _exists_error(target) from None
    except OSError as e:
        raise _write_error(target, e) from e
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(directory)
    return target


def _link_new(tmp: Path, target: Path) -> None:
    try:
        os.link(tmp, target)
    except OSError as e:
        if e.errno not in _NO_HARDLINKS:
            raise
        # No hard links here (some FUSE and network filesystems): check, then rename. The window
        # between the two is the best such a filesystem allows.
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from e
        os.rename(tmp, target)


def key_pair_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``PREFIX.key`` and ``PREFIX.pub``, as cosign's ``--output-key-prefix`` names them."""
    base = os.fspath(prefix)
    return Path(base + ".key"), Path(base + ".pub")


def write_key_pair(prefix: str | os.PathLike[str], private_pem: bytes, public_pem: bytes, *,
                   force: bool = False) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (0600) and ``PREFIX.pub`` (0644); without ``force``, both or neither."""
    private_path, public_path = key_pair_paths(prefix)
    if not os.fspath(prefix) or private_path.name == ".key":
        raise UsageError("the output prefix must name a file, e.g. 'cosign' or 'keys/release'",
                         reason="bad-output-prefix")
    if not force:
        for existing in (private_path, public_path):
            if os.path.lexists(existing):
                raise _exists_error(existing)
    write_new_file(private_path, private_pem, mode=PRIVATE_MODE, force=force)
    try:
        write_new_file(public_path, public_pem, mode=PUBLIC_MODE, force=force)
    except BaseException:
        # Without force, leave neither new file. With force the old private key is already replaced,
        # so keep the new one: its public half can be exported again with 'imgseal keys public'.
        if not force:
            private_path.unlink(missing_ok=True)
        raise
    return private_path, public_path
