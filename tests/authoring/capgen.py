"""Synthetic captures for the authoring unit tests: one process per capture, then its events.

(The live tests record real ones; these keep the checks of ``rules prove`` fast and exact.)"""

from __future__ import annotations

from falconet.capture import CaptureWriter
from falconet.events import Event

T0 = 1_764_000_000_000_000_000


def process_capture(path: str, comm: str, events: list[tuple[str, dict, int]], *,
                    pid: int = 100, exe: str | None = None) -> str:
    """A capture where process ``comm`` (pid ``pid``, child of 99) is started and then makes
    ``events`` (type, args, res)."""
    exe = exe or f"/usr/bin/{comm}"
    with CaptureWriter(path, host="caphost", kernel="6.18.0", start_ns=T0) as w:
        w.write_event(Event("syscall", "procfork", T0 + 1, 99, 99,
                            {"child_tid": pid, "child_pid": pid, "parent_tid": 99,
                             "parent_pid": 99}))
        w.write_event(Event("syscall", "execve", T0 + 2, pid, pid,
                            {"filename": exe, "argv": [comm, "x"], "cwd": "/tmp",
                             "exepath": exe, "uid": 0, "gid": 0, "comm": comm}, 0))
        for i, (t, args, res) in enumerate(events):
            w.write_event(Event("syscall", t, T0 + 10 + i, pid, pid, args, res))
    return path


def unlinks(prefix: str, n: int) -> list[tuple[str, dict, int]]:
    return [("unlinkat", {"dirfd": -100, "name": f"{prefix}{i}", "flags": 0}, 0) for i in range(n)]


def opens(paths: list[str], flags: int = 0) -> list[tuple[str, dict, int]]:
    return [("openat", {"dirfd": -100, "name": p, "flags": flags, "mode": 0, "fd": 3 + i}, 3 + i)
            for i, p in enumerate(paths)]
