"""Replay benchmark: events/s of the pipeline with NO rules loaded (the engine's overhead floor).

Generates a realistic mixed syscall capture (a process tree, then reads/writes/opens/closes/
network/exec/fork/exit in proportions like a busy web host), then measures three layers:

- ``decode``: reading and decoding the capture only (gzip off);
- ``loop``: decode + the hot loop (numbering, per-type counters, sampled latency, empty ruleset);
- ``state``: decode + loop + the built-in core-state parser (what every replay pays) through
  ``App.run("replay")``, exactly as ``falconet replay`` runs it;
- ``record_gz``: decode + loop + writing every event to a gzip capture (the cost ``record`` adds).

Prints one JSON object. Usage: ``python bench/bench_replay.py [--events N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from falconet.app import App, EmptyRuleset  # noqa: E402
from falconet.capture import CaptureWriter, read_capture  # noqa: E402
from falconet.config import load_config  # noqa: E402
from falconet.events import Event  # noqa: E402
from falconet.pipeline import Pipeline  # noqa: E402

T0 = 1_764_000_000_000_000_000
MIX = [("read", 30), ("write", 20), ("openat", 15), ("close", 15), ("connect", 3), ("socket", 2),
       ("fstat", 8), ("mmap", 3), ("execve", 1), ("clone", 1), ("procexit", 1), ("unlinkat", 1)]


def generate(path: str, n: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    types = [t for t, w in MIX for _ in range(w)]
    files = ["/etc/passwd", "/var/log/app.log", "/usr/lib/x86_64-linux-gnu/libc.so.6",
             "/srv/www/index.html", "/tmp/upload.bin", "/proc/self/status"]
    procs = list(range(1000, 1050))
    next_pid = 2000
    open_fds: dict[int, list[int]] = {p: [] for p in procs}
    with CaptureWriter(path, host="bench", kernel=platform.release(), start_ns=T0) as w:
        for i, p in enumerate(procs):
            w.write_event(Event("syscall", "procfork", T0 + i, 1, 1,
                                {"child_tid": p, "child_pid": p, "parent_tid": 1, "parent_pid": 1}))
            w.write_event(Event("syscall", "execve", T0 + i, p, p,
                                {"filename": "/usr/sbin/nginx", "argv": ["nginx", "-g", "daemon off;"],
                                 "cwd": "/", "exepath": "/usr/sbin/nginx", "uid": 33, "gid": 33,
                                 "comm": "nginx"}, 0))
        for i in range(n):
            ts = T0 + 1_000_000 + i * 1000
            p = rnd.choice(procs)
            t = rnd.choice(types)
            fds = open_fds[p]
            if t == "openat":
                fd = 3 + len(fds)
                fds.append(fd)
                e = Event("syscall", t, ts, p, p, {"fd": fd, "dirfd": -100,
                                                   "name": rnd.choice(files), "flags": 0,
                                                   "mode": 0}, fd)
            elif t == "close":
                fd = fds.pop() if fds else 3
                e = Event("syscall", t, ts, p, p, {"fd": fd}, 0)
            elif t in ("read", "write"):
                e = Event("syscall", t, ts, p, p, {"fd": rnd.choice(fds) if fds else 1,
                                                   "size": 512}, 512)
            elif t == "socket":
                fd = 3 + len(fds)
                fds.append(fd)
                e = Event("syscall", t, ts, p, p, {"domain": 2, "type": 1, "proto": 6}, fd)
            elif t == "connect":
                e = Event("syscall", t, ts, p, p, {"fd": fds[-1] if fds else 3,
                                                   "addr": "10.0.0.5:5432"}, 0)
            elif t == "clone":
                child = next_pid
                next_pid += 1
                e = Event("syscall", t, ts, p, p, {"child_tid": child, "child_pid": child,
                                                   "flags": 0}, child)
            elif t == "execve":
                e = Event("syscall", t, ts, p, p, {"filename": "/bin/sh", "argv": ["sh", "-c", "id"],
                                                   "cwd": "/", "exepath": "/bin/sh", "uid": 33,
                                                   "gid": 33, "comm": "sh"}, 0)
            elif t == "procexit":
                e = Event("syscall", t, ts, next_pid - 1, next_pid - 1, {"status": 0})
            elif t == "unlinkat":
                e = Event("syscall", t, ts, p, p, {"dirfd": -100, "name": "/tmp/upload.bin",
                                                   "flags": 0}, 0)
            else:
                e = Event("syscall", t, ts, p, p, {"fd": 3}, 0)
            w.write_event(e)


def best_rates(fn, n: int, repeat: int) -> tuple[float, float]:
    """(events per wall-clock second, events per CPU-second of this process), best of ``repeat``."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return n / wall, n / cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.fcap")
        t0 = time.perf_counter()
        generate(path, a.events)
        gen_s = time.perf_counter() - t0
        total = a.events + 100

        def decode() -> None:
            for _ in read_capture(path, progress=False):
                pass

        def loop() -> None:
            p = Pipeline(EmptyRuleset())
            p.run(read_capture(path, progress=False))
            p.close()

        def state() -> None:
            cfg = load_config(None, ["outputs.stdout.enabled=false"])
            app = App(cfg, source_name="replay", entry_points=False,
                      builtins=[("core-state", "falconet.state.plugin"),
                                ("replay", "falconet.capture")])
            app.load_plugins()
            app.build_pipeline(EmptyRuleset())
            app.run("replay", {"path": path, "progress": False})

        def record() -> None:
            # the loop with a CaptureWriter as last parser, as `falconet record x.fcap.gz` runs
            with CaptureWriter(os.path.join(d, "out.fcap.gz"), start_ns=T0, overwrite=True) as w:
                p = Pipeline(EmptyRuleset(), parsers=[("capture", w.write_event)])
                p.run(read_capture(path, progress=False))
                p.close()

        result = {
            "benchmark": "replay",
            "events": total,
            "capture_bytes": os.path.getsize(path),
            "generate_seconds": round(gen_s, 2),
        }
        # wall-clock rates, and rates per CPU-second of this process (stable on a busy machine;
        # the figure to compare with Falco's "events per second per CPU")
        for label, fn in (("decode", decode), ("loop_no_rules", loop), ("state_no_rules", state),
                          ("record_gz_no_rules", record)):
            wall, cpu = best_rates(fn, total, a.repeat)
            result[f"{label}_events_per_s"] = round(wall)
            result[f"{label}_events_per_cpu_s"] = round(cpu)
        result.update({
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
        })
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
