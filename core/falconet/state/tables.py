"""State table entries. Plain slotted objects: they are read on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class FdInfo:
    """One open file descriptor of a process.

    ``typechar`` follows Falco: ``f`` file, ``d`` directory, ``4`` IPv4 socket, ``6`` IPv6 socket,
    ``u`` unix socket, ``p`` pipe, ``e`` eventfd, ``s`` signalfd, ``l`` eventpoll, ``i`` inotify,
    ``b`` bpf, ``r`` io_uring, ``m`` memfd, ``o`` other/unknown.
    """

    num: int
    typechar: str = "o"
    name: str = ""                 # path, or "sip:sport->dip:dport" for sockets
    nameraw: str = ""              # the path as the syscall gave it
    flags: int = 0                 # open flags
    l4proto: str = ""              # tcp, udp, raw, icmp
    sip: str = ""                  # client (source) ip for connected sockets
    sport: int = 0
    dip: str = ""                  # server (destination) ip
    dport: int = 0
    is_server: bool = False        # accepted/listening socket (local side is the server)
    connected: bool = False
    ino: int = 0
    dev: int = 0


@dataclass(slots=True)
class ThreadInfo:
    """One thread (Falco's threadinfo). Processes are their main thread (``tid == pid``).

    Times are ns since the epoch. ``args`` excludes argv[0] (``exe``). ``ptid`` is the parent
    thread id as the kernel reported it at fork (``sched_process_fork``).
    """

    tid: int
    pid: int
    ptid: int = 0
    comm: str = ""                 # proc.name (task->comm, 15 chars)
    exe: str = ""                  # argv[0]
    exepath: str = ""              # resolved executable path
    args: list[str] = field(default_factory=list)
    cwd: str = ""
    env: list[str] = field(default_factory=list)
    uid: int = 0
    gid: int = 0
    euid: int = 0
    egid: int = 0
    loginuid: int = -1             # -1 when unset (UINT32_MAX)
    tty: int = 0
    sid: int = 0
    vpgid: int = 0
    vpid: int = 0                  # pid inside its pid namespace
    pidns_init_start_ts: int = 0
    start_ts: int = 0              # proc.duration counts from here
    cap_effective: int = 0
    cap_permitted: int = 0
    cap_inheritable: int = 0
    exe_ino: int = 0
    exe_ino_ctime: int = 0
    exe_ino_mtime: int = 0
    exe_writable: bool = False
    exe_from_memfd: bool = False
    exe_upper_layer: bool = False
    cgroup: str = ""               # the unified (0::) cgroup path, or the first v1 path
    cgroup_id: int = 0             # bpf_get_current_cgroup_id()
    container_id: str = ""         # full 64-hex id, "" for host (set by the container plugin)
    fds: dict[int, FdInfo] = field(default_factory=dict)
    dead: bool = False
    exit_ts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)   # plugin-owned per-thread data


class StateTables:
    """The thread table (by tid) with fd tables hanging off processes.

    Threads of one process share the main thread's fd table and cwd, as in the kernel (CLONE_FILES
    is the common case): :meth:`main` returns the process entry for any thread.
    """

    __slots__ = ("threads", "max_threads", "evictions", "__weakref__")

    def __init__(self, max_threads: int = 262144) -> None:
        self.threads: dict[int, ThreadInfo] = {}
        self.max_threads = max_threads
        self.evictions = 0

    def get(self, tid: int) -> ThreadInfo | None:
        return self.threads.get(tid)

    def main(self, t: ThreadInfo) -> ThreadInfo:
        if t.tid == t.pid:
            return t
        return self.threads.get(t.pid, t)

    def parent(self, t: ThreadInfo) -> ThreadInfo | None:
        """The parent *process* of ``t``'s process."""
        m = self.main(t)
        p = self.threads.get(m.ptid)
        return self.main(p) if p is not None else None

    def ancestors(self, t: ThreadInfo, limit: int = 64):
        """Yield ancestor processes, parent first (bounded, loop-safe)."""
        seen = {t.pid}
        p = self.parent(t)
        while p is not None and p.pid not in seen and limit > 0:
            yield p
            seen.add(p.pid)
            limit -= 1
            p = self.parent(p)

    def sizes(self) -> dict[str, int]:
        """Table sizes, for metrics: threads and fds."""
        n_fds = sum(len(t.fds) for t in self.threads.values() if t.tid == t.pid)
        return {"threads": len(self.threads), "fds": n_fds}
