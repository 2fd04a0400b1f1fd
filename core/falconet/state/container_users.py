"""A container's users and groups, from its own ``/etc/passwd`` and ``/etc/group`` (issue 17).

libsinsp names a container process's uid/gid through the container's files
(``sinsp_usergroup_manager::add_container_user``/``add_container_group``): it opens
``/proc/<pid>/root/etc/passwd`` when the process's root is not the host's (``ns_helper::
in_own_ns_mnt``: ``stat()`` of ``/proc/<pid>/root`` against ``/proc/1/root``), caches every entry
per container id and forgets them when the container goes. A uid the file lacks, an unreadable
file or a container sharing the host's root gives no entry (the ``root``/``<NA>`` fallback),
never the host's name.

The files belong to the container, so they are read as hostile input: ``openat2`` with
``RESOLVE_IN_ROOT`` (a symlink such as ``/etc/passwd -> /../../host/etc/shadow`` resolves inside
the container's root, never out of it) and ``RESOLVE_NO_MAGICLINKS``, ``O_NONBLOCK`` (a FIFO
cannot stall the reader), a regular file only, at most :data:`MAX_FILE_BYTES`. A container is read
once, on the first lookup of one of its processes; a uid the tables lack re-reads them at most
every ``check_interval`` seconds (a user added since), and only when the file changed (inode,
size, mtime). At most ``max_containers`` are kept (oldest dropped first): a container that went
away ages out.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from collections import OrderedDict
from typing import Any

from falconet.state.users import UserEntry, parse_group, parse_passwd

#: a passwd/group file larger than this is not read (counted): bounded work per container
MAX_FILE_BYTES = 1 << 20
#: a failed read (the process already gone) is retried at most this often
RETRY_SECONDS = 1.0

_SYS_OPENAT2 = 437                      # the same number on every architecture (5.6+)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str) -> int:
    """``openat2(root_fd, path, O_RDONLY|O_NONBLOCK, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)``:
    ``path`` and every symlink on the way resolve with ``root_fd`` as ``/``. Raises OSError."""
    how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK, 0,
                   _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(root_fd), path.encode(), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return int(fd)


#: what identifies a file's version: (inode, size, mtime ns); None when absent/unreadable
Stamp = tuple[int, int, int] | None


def read_in_root(root_fd: int, path: str, limit: int = MAX_FILE_BYTES) -> tuple[str, Stamp]:
    """The text of ``path`` inside the root ``root_fd`` and its stamp. A missing file is
    ``("", None)``; a file that is not regular or is larger than ``limit`` raises OSError
    (EINVAL/EFBIG)."""
    try:
        fd = open_in_root(root_fd, path)
    except FileNotFoundError:
        return "", None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        data = os.read(fd, limit + 1)
        if len(data) > limit:               # grew since fstat
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        return data.decode("utf-8", "replace"), (st.st_ino, st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)


class _Entry:
    __slots__ = ("users", "groups", "stamps", "next_check", "ok")

    def __init__(self) -> None:
        self.users: dict[int, UserEntry] = {}
        self.groups: dict[int, str] = {}
        self.stamps: tuple[Stamp, Stamp] = (None, None)
        self.next_check = 0.0
        self.ok = False                     # read at least once (else retried soon)


class ContainerUsers:
    """Per-container user and group tables. ``frozen`` (replay): never touch ``/proc``."""

    def __init__(self, check_interval: float = 10.0, max_containers: int = 256,
                 proc: str = "/proc", frozen: bool = False, metrics: Any = None,
                 plugin_name: str = "core-state") -> None:
        self.check_interval = check_interval
        self.max_containers = max_containers
        self.proc = proc
        self.frozen = frozen
        self.metrics = metrics
        self.plugin_name = plugin_name
        self.tables: OrderedDict[str, _Entry] = OrderedDict()
        self.reads = 0
        self.errors = 0
        self._host_root_ino: int | None = None

    # ---------------------------------------------------------------------- lookups (hot path)
    def user(self, cid: str, pid: int, uid: int) -> UserEntry | None:
        e = self.tables.get(cid)
        if e is None or (uid not in e.users and not self.frozen
                         and time.monotonic() >= e.next_check):
            e = self._load(cid, pid, e)
        return e.users.get(uid) if e is not None else None

    def group(self, cid: str, pid: int, gid: int) -> str | None:
        e = self.tables.get(cid)
        if e is None or (gid not in e.groups and not self.frozen
                         and time.monotonic() >= e.next_check):
            e = self._load(cid, pid, e)
        return e.groups.get(gid) if e is not None else None

    # ---------------------------------------------------------------------- loading
    def _load(self, cid: str, pid: int, e: _Entry | None) -> _Entry | None:
        if self.frozen:
            return e
        if e is None:
            e = _Entry()
            self.tables[cid] = e
            while len(self.tables) > self.max_containers:
                self.tables.popitem(last=False)
        now = time.monotonic()
        try:
            self._read(e, pid)
        except OSError:
            self.errors += 1
            self._count("users_unreadable")
            e.next_check = now + (self.check_interval if e.ok else RETRY_SECONDS)
            return e
        e.ok = True
        e.next_check = now + self.check_interval
        return e

    def _read(self, e: _Entry, pid: int) -> None:
        root = f"{self.proc}/{pid}/root"
        rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if os.fstat(rfd).st_ino == self._host_root():
                # libsinsp's in_own_ns_mnt(): the host's root is no container's user database
                e.users, e.groups, e.stamps = {}, {}, (None, None)
                return
            pw, pst = read_in_root(rfd, "/etc/passwd")
            gr, gst = read_in_root(rfd, "/etc/group")
        finally:
            os.close(rfd)
        if (pst, gst) != e.stamps or not e.ok:
            e.users, e.groups, e.stamps = parse_passwd(pw), parse_group(gr), (pst, gst)
            self.reads += 1
            self._count("users_read")

    def _host_root(self) -> int:
        if self._host_root_ino is None:
            try:
                self._host_root_ino = os.stat(f"{self.proc}/1/root").st_ino
            except OSError:
                self._host_root_ino = -1
        return self._host_root_ino

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.enrichment[(self.plugin_name, result)] += 1

    # ---------------------------------------------------------------------- captures
    def dump(self) -> dict[str, Any]:
        return {cid: {"users": {str(k): list(v) for k, v in e.users.items()},
                      "groups": {str(k): v for k, v in e.groups.items()}}
                for cid, e in self.tables.items() if e.ok}

    def load(self, data: dict[str, Any]) -> None:
        """Replace the tables with a :meth:`dump` and stop reading ``/proc``."""
        self.frozen = True
        self.tables.clear()
        for cid, d in data.items():
            e = _Entry()
            e.users = {int(k): (v[0], v[1], v[2]) for k, v in (d.get("users") or {}).items()}
            e.groups = {int(k): str(v) for k, v in (d.get("groups") or {}).items()}
            e.ok = True
            self.tables[str(cid)] = e
