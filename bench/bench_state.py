#!/usr/bin/env python3
"""Benchmark of the state engine: state parser cost per event (by event type), field extractor
cost (ns/op, first extraction on a fresh event, i.e. without the per-event cache) and /proc
bootstrap time. Prints one JSON object.

    .venv/bin/python bench/bench_state.py [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

from falconet.events import Event
from falconet.fields.registry import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.state.fields import core_field_defs
from falconet.state.parser import StateParser
from falconet.state.proc_bootstrap import bootstrap
from falconet.state.tables import StateTables, ThreadInfo
from falconet.state.users import UserDB

TS0 = 1_700_000_000_000_000_000


def _world() -> tuple[StateTables, StateParser, FieldRegistry]:
    tables = StateTables()
    users = UserDB()
    parser = StateParser(tables, live=False, metrics=EngineMetrics(), users=users)
    reg = FieldRegistry()
    reg.register_all(core_field_defs(tables, users, "bench"))
    for tid, ptid, comm in ((1, 0, "systemd"), (10, 1, "sshd"), (20, 10, "sshd"), (30, 20, "bash")):
        tables.add(ThreadInfo(tid=tid, pid=tid, ptid=ptid, comm=comm, exe=comm,
                              exepath=f"/usr/bin/{comm}", cwd="/home/u", sid=30))
    parser(Event("syscall", "procfork", TS0, 30, 30, {"child_tid": 40, "child_pid": 40,
                                                      "parent_tid": 30, "parent_pid": 30}))
    parser(Event("syscall", "execve", TS0 + 1, 40, 40,
                 {"filename": "/usr/bin/cat", "argv": ["cat", "/etc/shadow"], "comm": "cat",
                  "exepath": "/usr/bin/cat", "uid": 0, "gid": 0}, 0))
    parser(Event("syscall", "socket", TS0 + 2, 40, 40, {"fd": 5, "domain": 2, "type": 1, "proto": 0}, 5))
    return tables, parser, reg


REPEATS = 5


def _per_op(fn: Any, n: int) -> float:
    """Best of :data:`REPEATS` runs of ``n`` ops (other load on the machine only adds time)."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def bench_parser(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    tables, parser, _ = _world()
    specs = {
        "openat": ("openat", {"fd": 3, "dirfd": -100, "name": "/etc/shadow", "flags": 0}, 3),
        "openat_relative": ("openat", {"fd": 3, "dirfd": -100, "name": "../etc/passwd", "flags": 0}, 3),
        "close": ("close", {"fd": 3}, 0),
        "connect": ("connect", {"fd": 5, "family": 2, "sip": "127.0.0.1", "sport": 4000,
                                "dip": "127.0.0.1", "dport": 80}, 0),
        "read_other": ("read", {"fd": 5}, 10),
        "execve": ("execve", {"filename": "/usr/bin/cat", "argv": ["cat", "x"], "comm": "cat",
                              "exepath": "/usr/bin/cat", "uid": 0, "gid": 0}, 0),
    }
    for label, (etype, args, res) in specs.items():
        evs = [Event("syscall", etype, TS0 + i, 40, 40, dict(args), res) for i in range(n)]

        def run(k: int, _evs: list[Event] = evs) -> None:
            p = parser
            for e in _evs[:k]:
                p(e)
        out[label] = round(_per_op(run, n), 1)
    # process churn: fork + exit of a new child, per pair of events
    forks = [Event("syscall", "procfork", TS0 + i, 30, 30, {"child_tid": 100000 + i,
                                                             "child_pid": 100000 + i,
                                                             "parent_tid": 30, "parent_pid": 30})
             for i in range(n)]
    exits = [Event("syscall", "procexit", TS0 + i, 100000 + i, 100000 + i, {"status": 0})
             for i in range(n)]

    def churn(k: int) -> None:
        for f, x in zip(forks[:k], exits[:k], strict=True):
            parser(f)
            parser(x)
    out["fork_exit_pair"] = round(_per_op(churn, n), 1)
    out["table_after_churn"] = len(tables.threads)
    return out


FIELDS = ["evt.type", "proc.name", "proc.pid", "proc.cmdline", "proc.pname", "proc.aname[2]",
          "proc.aname", "proc.exepath", "user.name", "fd.name", "fd.typechar", "fd.lport",
          "evt.arg.flags", "evt.res", "evt.args", "evt.time", "thread.cap_effective", "proc.sname"]


def bench_fields(n: int) -> dict[str, float]:
    tables, parser, reg = _world()
    base = Event("syscall", "openat", TS0, 40, 40, {"fd": 3, "dirfd": -100, "name": "/etc/shadow",
                                                    "flags": 0o2000000}, 3)
    parser(base)
    out: dict[str, float] = {}
    for tok in FIELDS:
        name, _, arg = tok.partition("[")
        rf = reg.resolve(name, arg.rstrip("]") or None)
        raw = rf.fdef.make_extractor(rf.arg)          # without the per-event cache wrapper
        evs = []
        for _ in range(n):
            e = Event("syscall", "openat", TS0, 40, 40, base.args, 3)
            e.thread, e.fdinfo = base.thread, base.fdinfo
            evs.append(e)

        def run(k: int, _x: Any = raw, _evs: list[Event] = evs) -> None:
            for e in _evs[:k]:
                _x(e)
        out[tok] = round(_per_op(run, n), 1)
    return out


def bench_memory(n: int = 10_000, fds: int = 10) -> dict[str, float]:
    """Bytes per process entry (fork of a process with ``fds`` open files), via tracemalloc."""
    import tracemalloc  # noqa: PLC0415

    tables, parser, _ = _world()
    for i in range(fds):
        parser(Event("syscall", "openat", TS0, 30, 30, {"fd": 10 + i, "dirfd": -100,
                                                        "name": f"/var/log/f{i}", "flags": 0}, 10 + i))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        parser(Event("syscall", "procfork", TS0 + i, 30, 30, {"child_tid": 200000 + i,
                                                              "child_pid": 200000 + i,
                                                              "parent_tid": 30, "parent_pid": 30}))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"processes": n, "fds_each": fds, "bytes_per_process": round(used / n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000, help="events per measurement")
    a = ap.parse_args()
    t = StateTables()
    s = bootstrap(t)
    result = {
        "bench": "state",
        "loadavg_1m": os.getloadavg()[0],
        "method": f"ns per op, best of {REPEATS} runs of n ops; parser events replayed on a "
                  "small process tree; extractors without the per-event cache",
        "python": platform.python_version(),
        "n": a.n,
        "parser_ns_per_event": bench_parser(a.n),
        "extractor_ns_per_op": bench_fields(a.n),
        "memory": bench_memory(),
        "bootstrap": {"processes": s.processes, "threads": s.threads, "fds": s.fds,
                      "ms": round(s.seconds * 1000, 1)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
