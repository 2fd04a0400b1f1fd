"""A synthetic multi-process capture (format v2) for the worker tests and bench/bench_workers.py.

Many independent processes (half of them in containers) do file and network I/O; some read
sensitive files; some fork children that inherit a connected socket and ``dup2`` it onto their
stdin/stdout (the reverse-shell rules), or inherit a ``chdir`` and open a relative path, or exec a
shell; children exit. Every alert of the stream depends on the process table, the fd tables, fd
inheritance across fork or the ancestry: exactly what a partitioned replay must keep right.
"""

from __future__ import annotations

import random

from falconet.capture import CaptureWriter
from falconet.events import Event
from falconet.state.tables import FdInfo, ThreadInfo, thread_to_dict

T0 = 1_764_000_000_000_000_000
_FILES = ["/var/log/app.log", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/srv/www/index.html",
          "/tmp/upload.bin", "/proc/self/status", "/etc/hosts", "/etc/ld.so.cache"]
_SENSITIVE = ["/etc/shadow", "/etc/sudoers", "/etc/pam.conf"]
_COMMS = ["nginx", "node", "java", "python3", "postgres", "redis-server", "php-fpm", "ruby"]


def _root(pid: int, rnd: random.Random) -> ThreadInfo:
    comm = rnd.choice(_COMMS)
    t = ThreadInfo(tid=pid, pid=pid, ptid=1, comm=comm, exe=f"/usr/bin/{comm}",
                   exepath=f"/usr/bin/{comm}", args=["--serve"], cwd="/srv", uid=0, gid=0,
                   euid=0, egid=0, start_ts=T0 - 10**9, cgroup_id=5000 + pid % 7,
                   container_id=(f"{pid:x}".rjust(12, "c") * 6)[:64] if pid % 2 else "")
    for fd in (0, 1, 2):
        t.fds[fd] = FdInfo(fd, "f", "/dev/null", "/dev/null", 2)
    return t


class _Gen:
    def __init__(self, w: CaptureWriter, seed: int) -> None:
        self.w, self.rnd, self.ts, self.n = w, random.Random(seed), T0, 0
        self.next_pid = 20000

    def evt(self, typ: str, pid: int, args: dict, res: int | None, tid: int = 0,
            cg: int = 0) -> None:
        self.ts += 1000
        self.n += 1
        a = dict(args)
        a["cgroup_id"] = cg
        self.w.write_event(Event("syscall", typ, self.ts, tid or pid, pid, a, res))


def generate(path: str, n_events: int, n_procs: int = 64, seed: int = 7, *,
             forks: float = 0.20, sensitive: float = 0.05) -> int:
    """Write the capture; returns the number of events. ``forks``: the share of rounds that
    fork a child (each such round is mostly lifecycle events, which every worker applies);
    ``sensitive``: the share that read a sensitive file (an alert each)."""
    net = 0.45 - sensitive - forks              # after 30% opens and 25% log writes
    if net < 0:
        raise ValueError("forks + sensitive must not exceed 0.45")
    rnd = random.Random(seed)
    roots = [_root(1000 + i, rnd) for i in range(n_procs)]
    fds: dict[int, list[int]] = {t.pid: [] for t in roots}
    cg = {t.pid: t.cgroup_id for t in roots}
    with CaptureWriter(path, host="bench", kernel="6.1.0", start_ns=T0) as w:
        w.write_state("core-state", {"version": 1, "snapshot": True,
                                     "threads": [thread_to_dict(t) for t in roots]})
        g = _Gen(w, seed)
        while g.n < n_events:
            t = rnd.choice(roots)
            p = t.pid
            c = cg[p]
            r = rnd.random()
            mine = fds[p]
            if r < 0.30:                               # open a file, read it, close it
                fd = 3 + len(mine)
                g.evt("openat", p, {"fd": fd, "dirfd": -100, "name": rnd.choice(_FILES),
                                    "flags": 0, "mode": 0}, fd, cg=c)
                for _ in range(3):
                    g.evt("read", p, {"fd": fd, "size": 4096}, 4096, cg=c)
                g.evt("close", p, {"fd": fd}, 0, cg=c)
            elif r < 0.55:                             # writes to the log (fd 1)
                for _ in range(4):
                    g.evt("write", p, {"fd": 1, "size": 128}, 128, cg=c)
            elif r < 0.55 + net:                       # network: socket, connect, send, close
                fd = 3 + len(mine)
                g.evt("socket", p, {"domain": 2, "type": 1, "proto": 6}, fd, cg=c)
                g.evt("connect", p, {"fd": fd, "family": 2, "sip": "10.0.0.2",
                                     "sport": 40000 + g.n % 20000, "dip": "10.0.0.5",
                                     "dport": 5432, "path": "", "tuple": ""}, 0, cg=c)
                for _ in range(2):
                    g.evt("sendto", p, {"fd": fd, "size": 64, "family": 0, "sip": "",
                                        "sport": 0, "dip": "", "dport": 0, "path": "",
                                        "tuple": ""}, 64, cg=c)
                g.evt("close", p, {"fd": fd}, 0, cg=c)
            elif r < 0.55 + net + sensitive:           # a sensitive file read
                fd = 3 + len(mine)
                g.evt("openat", p, {"fd": fd, "dirfd": -100, "name": rnd.choice(_SENSITIVE),
                                    "flags": 0, "mode": 0}, fd, cg=c)
                g.evt("close", p, {"fd": fd}, 0, cg=c)
            else:                                      # fork a child that uses what it inherits
                _child(g, p, c, rnd, mine)
    return g.n


def _child(g: _Gen, p: int, c: int, rnd: random.Random, mine: list[int]) -> None:
    child = g.next_pid
    g.next_pid += 1
    kind = rnd.random()
    sock = 3 + len(mine)
    if kind < 0.4:                    # the parent connects, the child gets the socket
        g.evt("socket", p, {"domain": 2, "type": 1, "proto": 6}, sock, cg=c)
        g.evt("connect", p, {"fd": sock, "family": 2, "sip": "10.0.0.2",
                             "sport": 30000 + child % 30000, "dip": "203.0.113.9",
                             "dport": 4444, "path": "", "tuple": ""}, 0, cg=c)
    elif kind < 0.7:                  # the parent changes directory, the child opens relative
        g.evt("chdir", p, {"path": "/etc"}, 0, cg=c)
    g.evt("procfork", p, {"child_tid": child, "child_pid": child, "parent_tid": p,
                          "parent_pid": p, "child_comm": "sh"}, None, cg=c)
    g.evt("clone", p, {"child_tid": child, "child_pid": child, "flags": 17}, child, cg=c)
    g.evt("clone", child, {"child_tid": 0, "child_pid": 0, "flags": 17}, 0, cg=c)
    if kind < 0.4:
        g.evt("dup2", child, {"fd": 0, "oldfd": sock, "newfd": 0}, 0, cg=c)
        g.evt("dup2", child, {"fd": 1, "oldfd": sock, "newfd": 1}, 1, cg=c)
        g.evt("execve", child, {"filename": "/bin/sh", "argv": ["sh", "-i"], "cwd": "/srv",
                                "exepath": "/bin/sh", "uid": 0, "gid": 0, "comm": "sh",
                                "ppid": p}, 0, cg=c)
        g.evt("close", p, {"fd": sock}, 0, cg=c)
    elif kind < 0.7:
        g.evt("openat", child, {"fd": 3, "dirfd": -100, "name": "shadow", "flags": 0,
                                "mode": 0}, 3, cg=c)
        g.evt("chdir", p, {"path": "/srv"}, 0, cg=c)
    else:
        g.evt("execve", child, {"filename": "/usr/bin/id", "argv": ["id"], "cwd": "/srv",
                                "exepath": "/usr/bin/id", "uid": 0, "gid": 0, "comm": "id",
                                "ppid": p}, 0, cg=c)
        g.evt("write", child, {"fd": 1, "size": 20}, 20, cg=c)
    g.evt("procexit", child, {"status": 0}, None, cg=c)
