"""Benchmark: the upstream stable Falco ruleset over a generated, mostly benign event stream.

Prints JSON: load time of falco_rules.yaml, events/s on one core through ``Ruleset.match`` (events
are fresh objects each time, so per-event field caches start empty as in the real pipeline), the
alert count, and (with ``--profile``) the cProfile top entries.

    .venv/bin/python bench/bench_rules.py [--events 200000] [--profile]

Events are built with thread/fd state pre-attached (``falconet.state.tables`` objects). Fields come
from the real registry (core fields + container plugin) when those are installed, else from the
stand-in registry of the unit tests (``tests/rules/stubfields.py``); the JSON says which.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "rules"))

from falconet.events import Event  # noqa: E402
from falconet.rules import load_rules  # noqa: E402
from falconet.state.tables import FdInfo, ThreadInfo  # noqa: E402
from stubfields import stub_registry  # noqa: E402

FALCO_RULES = REPO.parent / "shared" / "falco" / "falco_rules.yaml"


def build_registry():
    """The engine's registry when core fields are there; else the test stand-in."""
    try:
        from falconet.rules.registry_builder import build_registry as real  # noqa: PLC0415
        reg, kind = real(), "real"
        if "proc.name" in reg.fields and "container.id" in reg.fields:
            return reg, kind
    except Exception:  # noqa: BLE001 - fall back to the stand-in
        pass
    return stub_registry(), "stub"


def make_threads(rng: random.Random) -> list[ThreadInfo]:
    names = [("bash", "/usr/bin/bash"), ("python3", "/usr/bin/python3.11"), ("nginx", "/usr/sbin/nginx"),
             ("java", "/usr/lib/jvm/bin/java"), ("node", "/usr/bin/node"), ("cron", "/usr/sbin/cron"),
             ("sshd", "/usr/sbin/sshd"), ("containerd", "/usr/bin/containerd"),
             ("postgres", "/usr/lib/postgresql/bin/postgres"), ("ls", "/usr/bin/ls"),
             ("cat", "/usr/bin/cat"), ("grep", "/usr/bin/grep"), ("sh", "/usr/bin/dash")]
    threads = []
    init = ThreadInfo(1, 1, comm="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd")
    for i in range(200):
        comm, path = rng.choice(names)
        parent_comm, parent_path = rng.choice(names)
        parent = ThreadInfo(5000 + i, 5000 + i, ptid=1, comm=parent_comm, exe=parent_comm,
                            exepath=parent_path, args=["-c", "run"], start_ts=1)
        grand = ThreadInfo(7000 + i, 7000 + i, ptid=1, comm="containerd-shim", exe="containerd-shim",
                           exepath="/usr/bin/containerd-shim-runc-v2")
        t = ThreadInfo(10000 + i, 10000 + i, ptid=parent.pid, comm=comm, exe=comm, exepath=path,
                       args=rng.choice([["-l"], ["--config", "/etc/app.yaml"], ["/srv/app.py"], []]),
                       uid=rng.choice([0, 1000, 33]), cwd="/srv", tty=0, start_ts=1,
                       loginuid=-1)
        t.extra["ancestors"] = [parent, grand, init]
        t.extra["caps"] = "CAP_CHOWN CAP_NET_BIND_SERVICE"
        if i % 2:
            t.extra["container"] = {"id": f"{i:012x}", "name": f"app{i}",
                                    "repository": "docker.io/library/nginx", "tag": "1.25",
                                    "privileged": False, "start_ts": 1}
        threads.append(t)
    return threads


def make_events(n: int, seed: int = 7) -> list[tuple]:
    """Event recipes (type, thread, fd, args, res): mostly benign activity."""
    rng = random.Random(seed)
    threads = make_threads(rng)
    files = ["/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/srv/data/log.txt",
             "/proc/self/status", "/var/log/nginx/access.log", "/etc/hosts", "/tmp/tmpa1b2",
             "/home/user/.cache/x", "/etc/passwd", "/dev/null"]
    mix = (["openat"] * 40 + ["execve"] * 12 + ["connect"] * 8 + ["read"] * 15 + ["close"] * 10
           + ["socket"] * 3 + ["dup2"] * 2 + ["sendto"] * 3 + ["ptrace"] * 1 + ["symlinkat"] * 1
           + ["mmap"] * 5)
    out = []
    for _ in range(n):
        ty = rng.choice(mix)
        t = rng.choice(threads)
        fd, args, res = None, {}, 0
        if ty == "openat":
            path = rng.choice(files)
            fd = FdInfo(rng.randint(3, 64), "f", path, path, flags=0)
            args = {"fd": fd.num, "name": path, "flags": "O_RDONLY|O_CLOEXEC", "flags_raw": 0}
            res = fd.num
        elif ty in ("connect", "sendto"):
            fd = FdInfo(5, "4", "10.0.0.5:40000->10.0.0.9:443", l4proto="tcp", sip="10.0.0.5",
                        sport=40000, dip=rng.choice(["10.0.0.9", "93.184.216.34"]), dport=443,
                        connected=True)
            args = {"fd": 5, "addr": fd.name}
        elif ty == "execve":
            args = {"filename": t.exepath, "flags": "0"}
        elif ty == "socket":
            args = {"domain": "AF_INET", "type": 1, "proto": 0}
            res = 7
        elif ty == "dup2":
            fd = FdInfo(1, "p", "pipe:[1234]")
            args = {"oldfd": 3, "newfd": 1}
        elif ty == "ptrace":
            args = {"request": "PTRACE_PEEKDATA", "pid": 4}
        elif ty == "symlinkat":
            args = {"target": "/srv/a", "linkpath": "/srv/b"}
        out.append((ty, t, fd, args, res))
    return out


def run(ruleset, recipes) -> tuple[float, int]:
    alerts = 0
    match = ruleset.match
    t0 = time.perf_counter()
    for i, (ty, t, fd, args, res) in enumerate(recipes, 1):
        e = Event("syscall", ty, 1_700_000_000_000_000_000 + i, t.tid, t.pid, args, res)
        e.thread = t
        e.fdinfo = fd
        e.num = i
        alerts += len(match(e))
    return time.perf_counter() - t0, alerts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="add the cProfile top entries")
    ap.add_argument("--rules", default=str(FALCO_RULES))
    a = ap.parse_args(argv)
    registry, kind = build_registry()
    t0 = time.perf_counter()
    res = load_rules([a.rules], registry, plugin_versions={"container": "0.6.0"})
    load_s = time.perf_counter() - t0
    if not res.ok:
        print(json.dumps({"error": [str(m) for m in res.errors]}))
        return 1
    recipes = make_events(a.events)
    run(res.ruleset, recipes[:5000])                 # warm-up
    secs, alerts = run(res.ruleset, recipes)
    out = {"benchmark": "rules", "registry": kind, "rules": res.counts["rules"],
           "load_seconds": round(load_s, 4), "events": a.events, "seconds": round(secs, 3),
           "events_per_second": round(a.events / secs), "alerts": alerts,
           "eval_errors": sum(res.ruleset.eval_errors.values())}
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(res.ruleset, recipes[:50_000])
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        out["profile_top"] = [ln.strip() for ln in s.getvalue().splitlines()
                              if ln.strip() and ln.strip()[0].isdigit()][:12]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
