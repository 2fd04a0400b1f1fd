"""The engine's state directory (``state_dir``): created 0700, files in it 0600, never reached
through a symlink. The engine runs as root and the spool holds attacker-influenced data, so a
directory another user could write to, or a planted symlink, is refused with a clear error."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class StateDirError(Exception):
    """The state directory (or a file in it) cannot be used safely; the message says why."""


def _check_dir(path: Path) -> None:
    """``path`` is a real directory (not a symlink), ours, writable by nobody else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise StateDirError(f"{path}: not a usable directory ({e.strerror}; symlinks are "
                            "refused)") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise StateDirError(f"{path}: owned by uid {st.st_uid}, expected {os.geteuid()}")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StateDirError(f"{path}: writable by group or others (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}); expected 0700")
    finally:
        os.close(fd)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or check an existing one. Returns
    the path. Raises :class:`StateDirError`."""
    p = Path(path)
    if not p.is_absolute():
        p = Path.cwd() / p
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StateDirError(f"{p}: cannot create the directory: {e.strerror or e}") from None
    _check_dir(p)
    return p


def private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing; refuse a symlink or another user's file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StateDirError(f"{path}: cannot open ({e.strerror}; symlinks are refused)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise StateDirError(f"{path}: not a regular file owned by this user")
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def no_symlink(path: Path) -> None:
    """A file SQLite creates itself (``-wal``, ``-shm``) must not be a planted symlink."""
    if path.is_symlink():
        raise StateDirError(f"{path}: is a symlink; refusing to use it")
