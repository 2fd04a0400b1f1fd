"""Wake a thread when files in some directories change: Linux inotify through libc, no
dependency. The watcher only says *that* something changed; the caller decides what (the
rules reloader compares file fingerprints, so a spurious wakeup costs one ``stat`` per file).

A path is watched through its directory (and its symlink target's directory), so the ways
editors and Kubernetes ConfigMaps replace a file (write, rename over it, swap a ``..data``
symlink) all wake it. Where inotify is unavailable the caller polls instead."""

from __future__ import annotations

import ctypes
import os
import select
from collections.abc import Iterable

from falconet.wakeup import Wakeup

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
#: every change of a directory entry or of a file's content or metadata in it
CHANGES = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
           | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)

_libc = ctypes.CDLL(None, use_errno=True)


def directories_of(paths: Iterable[str]) -> set[str]:
    """The directories whose entries decide what ``paths`` hold: a directory itself and its
    parent (it may be replaced), a file's directory, and the same for a symlink's target."""
    out: set[str] = set()
    for p in paths:
        for q in {os.path.abspath(p), os.path.realpath(p)}:
            if os.path.isdir(q):
                out.add(q)
            out.add(os.path.dirname(q) or "/")
    return out


class DirWatch:
    """An inotify instance over a set of directories, plus a wake-up the owner can trigger
    from another thread (:meth:`wake`). :meth:`wait` returns when either fires.

    Raises :class:`OSError` when the kernel gives no inotify instance."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd
        self._wds: dict[str, int] = {}
        self._wakeup = Wakeup()

    def watch(self, dirs: Iterable[str]) -> bool:
        """Watch exactly ``dirs`` (adding and removing watches); whether every one of them is
        watched (a missing or unreadable directory is not: the caller should poll)."""
        want = set(dirs)
        for d in set(self._wds) - want:
            _libc.inotify_rm_watch(self.fd, self._wds.pop(d))
        complete = True
        for d in want - set(self._wds):
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(d), CHANGES | IN_ONLYDIR)
            if wd < 0:
                complete = False
                continue
            self._wds[d] = wd
        return complete

    def wake(self) -> None:
        """Make a :meth:`wait` return (thread-safe; never blocks)."""
        self._wakeup.set()

    def wait(self, timeout: float | None) -> bool:
        """Sleep until a change, a :meth:`wake` or ``timeout``; whether a watched directory
        changed. Drains what fired, so the next wait sleeps again."""
        ready, _, _ = select.select([self.fd, self._wakeup], [], [], timeout)
        changed = False
        if self.fd in ready:
            changed = True
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass
        if self._wakeup in ready:
            self._wakeup.drain()
        return changed

    def close(self) -> None:
        os.close(self.fd)
        self._wakeup.close()
