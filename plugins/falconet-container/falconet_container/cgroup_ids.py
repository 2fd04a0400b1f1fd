"""A cgroup v2 id (the ``cgroup_id`` of every kernel record, ``bpf_get_current_cgroup_id``) to
its path, without the process: the id is the cgroup directory's kernfs file handle, so
``open_by_handle_at`` on the cgroup2 mount opens that directory and ``/proc/self/fd`` names it.

Why: a short-lived process (``docker exec <c> /bin/true``) has often exited before the engine
reads its ``/proc/<pid>/cgroup``; its exec record still says which cgroup it ran in, and that
cgroup outlives it. Needs CAP_DAC_READ_SEARCH (root); without it, or without a cgroup2 mount,
:meth:`CgroupIds.path` answers ``None`` and the caller keeps its fallback."""

from __future__ import annotations

import ctypes
import os

#: the file handle type kernfs (cgroupfs) uses: FILEID_KERNFS
_FILEID_KERNFS = 0xFE

_libc = ctypes.CDLL(None, use_errno=True)


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_uint64)]


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup2 (unified) hierarchy is mounted, or ``None``."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        return None
    return None


class CgroupIds:
    """Paths of cgroup v2 ids, relative to the hierarchy's root (``/docker/<id>``)."""

    def __init__(self, mount: str | None = None) -> None:
        self.mount = mount if mount is not None else cgroup2_mount()
        self._fd = -1
        if self.mount:
            try:
                self._fd = os.open(self.mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                self._fd = -1

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path below the mount (``/`` for the root), ``None`` when unknown (a
        removed cgroup, no permission, no cgroup2 mount)."""
        if self._fd < 0 or cgroup_id <= 0:
            return None
        fh = _FileHandle(8, _FILEID_KERNFS, cgroup_id)
        fd = _libc.open_by_handle_at(self._fd, ctypes.byref(fh),
                                     os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if fd < 0:
            return None
        try:
            full = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)
        assert self.mount is not None
        if full == self.mount:
            return "/"
        if not full.startswith(self.mount.rstrip("/") + "/"):
            return None
        return full[len(self.mount.rstrip("/")):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
