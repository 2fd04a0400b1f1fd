"""Partitioned replay benchmark (issue 18, "more than one core"): replay events/s of a big
multi-process capture with 1 and with N worker processes, their ratio, and whether the alerts
are identical (same rules, output fields and order; only the per-alert uuid differs).

The capture (tests/workers/multiproc_capture.py): many independent processes, half in containers,
doing file and network I/O, reading sensitive files, forking children that inherit sockets
(``dup2`` onto stdin/stdout) and working directories, exec'ing shells. Rules: Falco's stable
rules (``falconet.upstream``), else the default rules (said in the output).

The rate is events / wall seconds of the event phase (``App.events_seconds``: from the first
record read to the last alert handed to the output stage), best of ``--repeat``, the runs of 1
and N workers alternating; ``whole_run`` also counts the fork, plugin start-up and the outputs'
drain of ``App.run("replay")`` (rule loading is before either). The engines keep their state in
a fresh directory (a host's learning profiles would add their load time to every start).

The machine's load average is printed with it: on a shared machine the measured ratio is only
meaningful when the load is low. ``ratio_cpu_bound_quiet_estimate`` is what the CPU seconds of
each process allow on idle cores (the phase lasts at least its busiest process and at least the
total CPU over the cores), a figure other users of the machine distort less.

Prints one JSON object. Usage: ``python bench/bench_workers.py [--events N] [--workers N]
[--repeat R] [--batch LINES] [--rules auto|default|stable] [--key lineage|tgid|cgroup]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))
sys.path.insert(0, str(ROOT / "tests" / "workers"))

from falconet.app import App  # noqa: E402
from falconet.config import load_config  # noqa: E402
from falconet.upstream import falco_rules_path  # noqa: E402
from falconet.workers import pool as pool_mod  # noqa: E402
from multiproc_capture import generate  # noqa: E402


def rules_file(which: str) -> tuple[str, str]:
    stable = falco_rules_path()
    if which == "stable" or (which == "auto" and stable.is_file()):
        if not stable.is_file():
            raise SystemExit(f"bench_workers: the stable rules are not at {stable}")
        return str(stable), "falco stable"
    return str(ROOT / "rules" / "falconet_rules.yaml"), "falconet default"


#: per worker count: CPU seconds of (this process, its worker processes) in the last run
CPU: dict[int, tuple[float, float]] = {}
#: per worker count: each worker's plugin start-up and batch-waiting wall seconds (last run)
WORKER_WAITS: dict[int, list[dict[str, float]]] = {}
#: per worker count: CPU seconds of the event phase, [this process, worker 0, worker 1, ...]
PHASE_CPU: dict[int, list[float]] = {}


def quiet_ratio(cpus: int, one: list[float], many: list[float]) -> float:
    """The speed-up the CPU times allow on ``cpus`` idle cores: the event phase lasts at least
    its busiest process, and at least the total CPU shared by the cores (a load-independent
    estimate next to the measured ratio, which other users of the machine distort)."""
    return one[0] / max(max(many), sum(many) / cpus)


KEY = "lineage"


def replay(path: str, rules: str, workers: int, out: str) -> tuple[float, float, int, list[str]]:
    """(wall seconds of the run, of its event phase, events, alert lines without uuid)."""
    if os.path.exists(out):
        os.unlink(out)
    cfg = load_config(None, ["outputs.stdout.enabled=false", "outputs.file.enabled=true",
                             f"outputs.file.path={out}", "outputs.file.json=true",
                             "metrics.enabled=false"])
    app = App(cfg, source_name="replay")
    app.load_plugins()
    app.load_ruleset([rules])
    app.build_pipeline()
    options = {"path": path, "progress": False, "workers": workers, "partition_key": KEY,
               "restore_state": lambda plugin, data: app.host.restore_state(plugin, data,
                                                                            app.ctx)}
    s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = app.run("replay", options)
    wall = time.perf_counter() - t0
    s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[workers] = (s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime,
                    c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
    if rc != 0 or app.losses():
        raise SystemExit(f"bench_workers: the replay with {workers} worker(s) failed: "
                         f"{app.summary()}")
    events = app.pipeline.events if app.pipeline else 0
    with open(out, encoding="utf-8") as f:
        alerts = []
        for line in f:
            d = json.loads(line)
            d.pop("uuid", None)
            alerts.append(json.dumps(d, sort_keys=True))
    pool = app.worker_pool
    if pool is not None:
        WORKER_WAITS[workers] = [{k: round(f["stats"][k], 3) for k in ("start_s", "idle_s", "stop_s")}
                                 for _, f in sorted(pool.finals.items())]
    PHASE_CPU[workers] = ([app.events_cpu_seconds] if pool is None else
                          [app.events_cpu_seconds] + [f["stats"]["cpu_s"]
                                                      for _, f in sorted(pool.finals.items())])
    return wall, app.events_seconds, events, alerts


def _sink(conn: Any) -> None:
    """Child of :func:`ipc_cost`: take messages until ``None``, unpickling each."""
    while pickle.loads(conn.recv_bytes()) is not None:
        pass


def ipc_cost(lines: list[bytes], batch: int) -> float:
    """Microseconds per record to hand ``lines`` to another process in messages of ``batch``
    records (pickle, pipe write, the reader's unpickle), the parent's CPU and wall."""
    ctx = multiprocessing.get_context("fork")
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_sink, args=(r,))
    p.start()
    t0 = time.perf_counter()
    for i in range(0, len(lines), batch):
        w.send_bytes(pickle.dumps((list(range(i, i + batch)), b"\n".join(lines[i:i + batch]))))
    w.send_bytes(pickle.dumps(None))
    p.join()
    return (time.perf_counter() - t0) / len(lines) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=240_000)
    ap.add_argument("--procs", type=int, default=64)
    ap.add_argument("--forks", type=float, default=0.03,
                    help="share of rounds that fork a child (lifecycle events go to every worker)")
    ap.add_argument("--sensitive", type=float, default=0.01,
                    help="share of rounds that read a sensitive file (an alert each)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=pool_mod.BATCH_LINES,
                    help="records per batch message to a worker")
    ap.add_argument("--credits", type=int, default=pool_mod.CREDITS,
                    help="batches in flight per worker")
    ap.add_argument("--rules", choices=("auto", "stable", "default"), default="auto")
    ap.add_argument("--key", choices=("lineage", "tgid", "cgroup"), default="lineage",
                    help="partition key (collector.partition; lineage puts every fork child on "
                         "its parent's worker)")
    a = ap.parse_args()
    global KEY
    KEY = a.key
    pool_mod.BATCH_LINES = a.batch
    pool_mod.CREDITS = a.credits
    rules, rules_name = rules_file(a.rules)
    with tempfile.TemporaryDirectory() as d:
        os.environ["FALCONET_STATE_DIR"] = os.path.join(d, "state")
        path = os.path.join(d, "multi.fcap")
        t0 = time.perf_counter()
        n = generate(path, a.events, a.procs, forks=a.forks, sensitive=a.sensitive)
        gen_s = time.perf_counter() - t0
        best = {1: float("inf"), a.workers: float("inf")}
        best_phase = dict(best)
        alerts: dict[int, list[str]] = {}
        events: dict[int, int] = {}
        load_before = os.getloadavg()
        for _ in range(a.repeat):
            for w in (1, a.workers):
                wall, phase, ev, al = replay(path, rules, w, os.path.join(d, f"alerts{w}.json"))
                best[w] = min(best[w], wall)
                best_phase[w] = min(best_phase[w], phase)
                alerts[w], events[w] = al, ev
        load_after = os.getloadavg()
        with open(path, "rb") as f:
            sample = f.read(8 << 20).split(b"\n")[2:20002]
        ipc = {str(b): round(ipc_cost(sample, b), 2) for b in (1, 64, a.batch)}
        r1, rn = n / best[1], n / best[a.workers]
        p1, pn = n / best_phase[1], n / best_phase[a.workers]
        same = alerts[1] == alerts[a.workers]
        print(json.dumps({
            "bench": "workers",
            "capture": {"events": n, "processes": a.procs, "bytes": os.path.getsize(path),
                        "fork_share": a.forks, "sensitive_share": a.sensitive,
                        "generate_s": round(gen_s, 2)},
            "rules": rules_name,
            "cpus": len(os.sched_getaffinity(0)),
            "batch_lines": a.batch,
            "credits": a.credits,
            "partition_key": a.key,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "events_per_s": {"1": round(p1), str(a.workers): round(pn)},
            "ratio": round(pn / p1, 3),
            "event_phase_s": {"1": round(best_phase[1], 3),
                              str(a.workers): round(best_phase[a.workers], 3)},
            "whole_run": {"events_per_s": {"1": round(r1), str(a.workers): round(rn)},
                          "wall_s": {"1": round(best[1], 3),
                                     str(a.workers): round(best[a.workers], 3)},
                          "ratio": round(rn / r1, 3)},
            "target_ratio": 1.6,
            "ipc_us_per_record_by_batch": ipc,
            "alerts": {"1": len(alerts[1]), str(a.workers): len(alerts[a.workers])},
            "events_processed": {"1": events[1], str(a.workers): events[a.workers]},
            "alerts_identical": same,
            "worker_start_and_idle_s": {str(w): v for w, v in WORKER_WAITS.items()},
            "event_phase_cpu_s": {str(w): [round(x, 3) for x in c] for w, c in PHASE_CPU.items()},
            "ratio_cpu_bound_quiet_estimate": round(quiet_ratio(
                len(os.sched_getaffinity(0)), PHASE_CPU[1], PHASE_CPU[a.workers]), 3),
            "cpu_s_last_run": {str(w): {"parent": round(c[0], 2), "workers": round(c[1], 2)}
                               for w, c in CPU.items()},
        }, indent=2))
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
