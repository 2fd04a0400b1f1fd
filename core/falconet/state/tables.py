"""State table entries. Plain slotted objects: they are read on the hot path."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
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
    resolved: str = ""             # the path the kernel opened (dentry walk), "" when unknown
    pid: int = 0                   # a pidfd's process (pidfd_open), for pidfd_getfd


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

    ``threads`` is never replaced (only mutated; :meth:`clear` empties it in place): the state
    parser binds its ``get`` once. Only the hot loop writes it; other threads only read it (through
    ``list(...)`` copies when iterating).
    """

    __slots__ = ("threads", "max_threads", "evictions", "dead", "max_dead", "dead_grace_ns",
                 "reclaimed", "__weakref__")

    def __init__(self, max_threads: int = 262144, max_dead: int = 4096,
                 dead_grace_ns: int = 5_000_000_000) -> None:
        self.threads: dict[int, ThreadInfo] = {}
        self.max_threads = max_threads
        self.evictions = 0
        #: exited processes kept for the ancestor chain of their children, oldest first:
        #: (exit_ts, tid). Reclaimed after ``dead_grace_ns`` or when more than ``max_dead``.
        self.dead: deque[tuple[int, int]] = deque()
        self.max_dead = max_dead
        self.dead_grace_ns = dead_grace_ns
        self.reclaimed = 0

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

    # ------------------------------------------------------------------ mutation (state parser)
    def add(self, t: ThreadInfo) -> int:
        """Insert or replace ``t``. Keeps the table within ``max_threads``: dead entries go first,
        then the oldest entries (counted in ``evictions``). Returns how many were evicted."""
        threads = self.threads
        if t.tid in threads or len(threads) < self.max_threads:
            threads[t.tid] = t
            return 0
        self.reclaim(None)
        evicted = 0
        while len(threads) >= self.max_threads:
            victim = next(iter(threads))
            del threads[victim]
            evicted += 1
        self.evictions += evicted
        threads[t.tid] = t
        return evicted

    def remove(self, tid: int) -> ThreadInfo | None:
        return self.threads.pop(tid, None)

    def mark_dead(self, t: ThreadInfo, ts: int) -> None:
        """A process exited: keep it briefly (its children may still name it as parent), then
        :meth:`reclaim` removes it. Non-main threads are removed at once."""
        t.dead = True
        t.exit_ts = ts
        if t.tid != t.pid:
            if self.threads.get(t.tid) is t:
                del self.threads[t.tid]
            return
        self.dead.append((ts, t.tid))
        if len(self.dead) > self.max_dead:
            self.reclaim(ts)

    def reclaim(self, now_ns: int | None) -> int:
        """Remove dead processes whose grace period ended by ``now_ns`` (all beyond ``max_dead``;
        with ``now_ns=None`` every dead entry). Returns how many were removed."""
        dead, threads, n = self.dead, self.threads, 0
        limit = None if now_ns is None else now_ns - self.dead_grace_ns
        while dead:
            ts, tid = dead[0]
            if limit is not None and ts > limit and len(dead) <= self.max_dead:
                break
            dead.popleft()
            t = threads.get(tid)
            if t is not None and t.dead:     # the tid may have been reused by a live process
                del threads[tid]
                n += 1
        self.reclaimed += n
        return n

    def clear(self) -> None:
        self.threads.clear()
        self.dead.clear()

    def sizes(self) -> dict[str, int]:
        """Table sizes, for metrics: threads and fds."""
        # list() copies atomically under the GIL: the scrape thread must not iterate a dict the
        # hot loop is resizing
        threads = list(self.threads.values())
        n_fds = sum(len(t.fds) for t in threads if t.tid == t.pid)
        return {"threads": len(threads), "fds": n_fds}


# ---------------------------------------------------------------------- (de)serialisation
_FD_FIELDS = tuple(f.name for f in fields(FdInfo))
_THREAD_FIELDS = tuple(f.name for f in fields(ThreadInfo) if f.name not in ("fds", "extra"))


def fd_to_dict(fd: FdInfo) -> dict[str, Any]:
    return {k: getattr(fd, k) for k in _FD_FIELDS}


def fd_from_dict(d: dict[str, Any]) -> FdInfo:
    return FdInfo(**{k: d[k] for k in _FD_FIELDS if k in d})


def thread_to_dict(t: ThreadInfo, with_fds: bool = True) -> dict[str, Any]:
    """JSON-able form of a thread (capture snapshots). ``extra`` (plugin-owned) is not included.
    Only process entries carry ``fds`` (threads share their process's table)."""
    d: dict[str, Any] = {k: getattr(t, k) for k in _THREAD_FIELDS}
    d["args"] = list(t.args)
    d["env"] = list(t.env)
    if with_fds and t.tid == t.pid:
        d["fds"] = [fd_to_dict(f) for f in t.fds.values()]
    return d


def thread_from_dict(d: dict[str, Any]) -> ThreadInfo:
    """Inverse of :func:`thread_to_dict`; unknown keys are ignored (forward compatible)."""
    t = ThreadInfo(**{k: d[k] for k in _THREAD_FIELDS if k in d})
    fds = d.get("fds") or ()
    if isinstance(fds, dict):
        fds = fds.values()
    for fd in fds:
        f = fd_from_dict(fd)
        t.fds[f.num] = f
    return t
