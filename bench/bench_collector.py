#!/usr/bin/env python3
"""Benchmark of the eBPF collector with the whole engine (``falconet run``) as a subprocess.

Prints one JSON document:

- ``max_rate``: (a) the highest sustained rate of syscalls of interest (opens, plus a few execs per
  second) with zero kernel drops, found by doubling the offered rate until drops appear or the
  load generator saturates. For each step: offered and achieved rates, kernel events/s, drops, and
  how far the engine lags behind the kernel.
- ``slowdown``: (b) time of a fixed syscall-heavy workload (open+close loop, as fast as it goes)
  with the engine running vs without, measured in the same run (without, with, without again).
- ``slowdown_paced_cpu``: (b) CPU time of the same loop paced at ``--paced-rate`` pairs/s, with
  vs without the engine: the per-syscall overhead without CPU contention effects.
- ``steady``: (c) engine RSS and CPU at a steady offered rate (default 10,000 opens/s).
- ``realistic``: (b) on real syscall-heavy workloads (``tar`` of the Python stdlib and docs
  through a pipe; a shell loop that forks and execs small tools per file; ``compileall`` of a
  copy of some stdlib packages), run alternately without and with the engine (``--rounds`` times
  each, the engine started fresh for every round), reporting median wall time, CPU time (user+sys
  of the workload's processes, which includes the BPF programs' time), the engine's own CPU
  during the run and the event rate the engine saw.

``--mode collector`` measures the collector alone (a small consumer loop instead of
``falconet run``), to separate kernel/transport costs from rule evaluation.

Needs root and bcc. Usage: ``sudo .venv/bin/python bench/bench_collector.py [--quick]
[--mode collector] [--rounds N] [--only-realistic]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from falconet.upstream import falco_rules_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _engines import (  # noqa: E402 - shared with bench_vs_falco.py
    KERNEL_DROPS,
    KERNEL_EVENTS,
    REPO,
    TARGET,
    median,
    metric_total,
    proc_usage,
    scrape,
)

FALCO_RULES = falco_rules_path()       # $FALCONET_FALCO_RULES (falconet.upstream)

COLLECTOR_ONLY = r"""
import json, sys, time
from falconet.collector.source import CollectorConfig, EbpfSource
from falconet.metrics import EngineMetrics
types = None
try:   # the event types the stable rules select, as `falconet run` would
    from falconet.app import App
    from falconet.config import load_config
    app = App(load_config(None, []), source_name="ebpf")
    app.load_ruleset([sys.argv[1]])
    types = app.ruleset.event_types("syscall")
except Exception as e:  # noqa: BLE001
    print(f"(rules not loaded: {e}; tracing everything)", file=sys.stderr)
m = EngineMetrics()
src = EbpfSource(CollectorConfig())
it = src.open({"event_types": types, "metrics": m})
n = 0
nxt = time.monotonic()
try:
    for e in it:
        if e is not None:
            n += 1
        now = time.monotonic()
        if now >= nxt:
            nxt = now + 0.25
            print(json.dumps({"kernel_events": m.kernel_events, "kernel_drops": m.kernel_drops,
                              "processed": n, "drops": dict(m.drops)}), flush=True)
except KeyboardInterrupt:
    src.close()
    print(f"collector: {n} events, {m.kernel_drops} kernel drops", file=sys.stderr)
"""


# ----------------------------------------------------------------------------- load generator
def _opener(rate: float, seconds: float, out: mp.Queue) -> None:
    """Open+close TARGET ``rate`` times a second for ``seconds`` (paced in 5 ms ticks)."""
    tick = 0.005
    per_tick = rate * tick
    done = 0.0
    n = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = (now - start) / tick * per_tick
        while n < due:
            os.close(os.open(TARGET, os.O_RDONLY))
            n += 1
        done = n
        nxt = start + (int((now - start) / tick) + 1) * tick
        if nxt > now:
            time.sleep(nxt - now)
    out.put(("open", done, time.monotonic() - start))


def _execer(rate: float, seconds: float, out: mp.Queue) -> None:
    n = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("/bin/true", ["true"])
            finally:
                os._exit(127)
        os.waitpid(pid, 0)
        n += 1
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    out.put(("exec", n, time.monotonic() - start))


def offer_load(rate: float, seconds: float, workers: int = 2, exec_rate: float = 50.0
               ) -> dict[str, float]:
    """Run the generators; returns achieved opens/s and execs/s."""
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_opener, args=(rate / workers, seconds, q)) for _ in range(workers)]
    if exec_rate > 0:
        procs.append(mp.Process(target=_execer, args=(exec_rate, seconds, q)))
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    opens = sum(n for k, n, _ in res if k == "open")
    execs = sum(n for k, n, _ in res if k == "exec")
    return {"opens_per_s": opens / seconds, "execs_per_s": execs / seconds}


# ----------------------------------------------------------------------------- engine control
class Engine:
    """``falconet run`` (or the collector alone) as a subprocess, read through /metrics."""

    def __init__(self, mode: str, port: int, seconds: float = 3600,
                 extra: list[str] | None = None) -> None:
        self.mode, self.port = mode, port
        py = str(REPO / ".venv" / "bin" / "python")
        if mode == "engine":
            cmd = [py, "-m", "falconet", "run", "--rules", str(FALCO_RULES), "--json",
                   "--duration", str(seconds), "--metrics-port", str(port), *(extra or [])]
        else:
            cmd = [py, "-c", COLLECTOR_ONLY, str(FALCO_RULES)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if mode == "engine" else
                                     subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO)
        self.t0 = time.monotonic()
        self.last: dict[str, float] = {}
        if mode == "collector":
            import threading  # noqa: PLC0415
            threading.Thread(target=self._read_lines, daemon=True).start()

    def _read_lines(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.last = json.loads(line)

    def counters(self) -> dict[str, float]:
        if self.mode == "collector":
            return dict(self.last)
        m = scrape(self.port)
        return {"kernel_events": metric_total(m, KERNEL_EVENTS),
                "kernel_drops": metric_total(m, KERNEL_DROPS),
                "processed": metric_total(m, "falconet_events_total")}

    def wait_ready(self, timeout: float = 120) -> float:
        """Until the kernel side counts events (the collector is attached)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if self.counters().get("kernel_events", 0) > 0:
                    return time.monotonic() - self.t0
            except OSError:
                pass
            os.close(os.open(TARGET, os.O_RDONLY))
            time.sleep(0.2)
        raise RuntimeError("engine not ready")

    def usage(self) -> tuple[float, int]:
        """(cpu seconds, rss bytes) of the engine process."""
        return proc_usage(self.proc.pid)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err or ""


def wait_drained(eng: Engine, timeout: float = 30) -> float:
    """Wait until the engine has processed what the kernel produced; returns the wait."""
    t0 = time.monotonic()
    last = -1.0
    while time.monotonic() - t0 < timeout:
        c = eng.counters()
        backlog = c["kernel_events"] - c["kernel_drops"] - c["processed"]
        if backlog <= 1000 or c["processed"] == last:
            break
        last = c["processed"]
        time.sleep(0.2)
    return time.monotonic() - t0


# ----------------------------------------------------------------------------- measurements
def settle(eng: Engine) -> None:
    """Until the engine's kernel counters (refreshed every stats_interval, 1 s) include what
    happened so far and the engine has drained its backlog."""
    first = eng.counters().get("kernel_events", 0)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and eng.counters().get("kernel_events", 0) == first:
        time.sleep(0.05)
    wait_drained(eng)


def measure_rate(eng: Engine, rate: float, seconds: float) -> dict[str, float]:
    before = eng.counters()
    t0 = time.monotonic()
    achieved = offer_load(rate, seconds)
    load_s = time.monotonic() - t0
    lag_s = wait_drained(eng)
    after = eng.counters()
    d = {k: after[k] - before[k] for k in ("kernel_events", "kernel_drops", "processed")}
    return {"offered_opens_per_s": rate, **{k: round(v, 1) for k, v in achieved.items()},
            "kernel_events_per_s": round(d["kernel_events"] / load_s, 1),
            "kernel_drops": int(d["kernel_drops"]),
            "processed_per_s": round(d["processed"] / load_s, 1),
            "drain_seconds_after_load": round(lag_s, 2)}


def paced_cpu(ops: int, rate: float) -> float:
    """CPU seconds (user+sys) a child spends doing ``ops`` open+close pairs at ``rate`` pairs/s.

    The BPF programs run in the syscall's context, so their cost is charged to this child's
    system time; the engine's own CPU use (on another core) is not. This isolates the per-syscall
    overhead from CPU contention on a small machine."""
    code = (
        "import os, time, resource\n"
        f"ops, rate = {ops}, {rate}\n"
        "t0 = time.monotonic(); done = 0\n"
        "while done < ops:\n"
        "    due = min(ops, int((time.monotonic() - t0) * rate) + 1)\n"
        "    while done < due:\n"
        f"        os.close(os.open({TARGET!r}, os.O_RDONLY)); done += 1\n"
        "    time.sleep(0.001)\n"
        "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(ru.ru_utime + ru.ru_stime)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


#: realistic workloads for (b): name -> argv (no shell=True: the pipeline lives in sh -c text
#: that we write ourselves, nothing user-supplied)
REALISTIC = {
    # read-heavy: ~22k files, an open/fstat/read.../close per file
    "tar": ["sh", "-c", "tar -cf - /usr/lib/python3.11 /usr/lib/python3 /usr/share/doc "
                        "/usr/share/man 2>/dev/null | cat >/dev/null"],
    # exec-heavy: a fork+exec of two small tools per file, like shell scripts and build steps
    "shell_tools": ["sh", "-c", "for f in /usr/lib/python3.11/*.py; do head -c 64 \"$f\" | "
                                "wc -c >/dev/null; done"],
    # a developer workload: byte-compile a copy of some stdlib packages (stat/open/read/write)
    "compileall": ["python3", "-m", "compileall", "-q", "-f", "-j", "1", "{tmp}"],
}
COMPILE_DIRS = ("email", "json", "http", "xml", "asyncio", "logging", "unittest")


def run_realistic(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the workload's processes) of one run."""
    r0 = os.times()
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = os.times()
    return wall, (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)


def realistic(mode: str, port: int, rounds: int) -> dict:
    """Alternate without/with the engine for each workload; medians of ``rounds`` runs."""
    def med(xs: list[float]) -> float:
        return median(xs) or 0.0
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    tmp = tempfile.mkdtemp(prefix="falconet-bench-")
    for d in COMPILE_DIRS:
        shutil.copytree(f"/usr/lib/python3.11/{d}", f"{tmp}/{d}")
    workloads = {k: [a.replace("{tmp}", tmp) for a in v] for k, v in REALISTIC.items()}
    try:
        return _realistic(mode, port, rounds, workloads, med)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _realistic(mode: str, port: int, rounds: int, workloads: dict[str, list[str]],
               med: Callable[[list[float]], float]) -> dict:
    out: dict = {}
    for argv in workloads.values():      # warm the page cache: both sides see cached files
        run_realistic(argv)
    runs: dict[str, dict[str, list[float]]] = {
        k: {"wall_without": [], "cpu_without": [], "wall_with": [], "cpu_with": [],
            "events_per_s": [], "drops": [], "engine_cpu": []} for k in workloads}
    for _ in range(rounds):
        for name, argv in workloads.items():
            w, c = run_realistic(argv)
            runs[name]["wall_without"].append(w)
            runs[name]["cpu_without"].append(c)
        eng = Engine(mode, port)
        try:
            eng.wait_ready()
            wait_drained(eng)
            for name, argv in workloads.items():
                settle(eng)
                before = eng.counters()
                cpu0, _rss = eng.usage()
                w, c = run_realistic(argv)
                cpu1, _rss = eng.usage()
                settle(eng)
                after = eng.counters()
                runs[name]["engine_cpu"].append(cpu1 - cpu0)
                runs[name]["wall_with"].append(w)
                runs[name]["cpu_with"].append(c)
                runs[name]["events_per_s"].append((after["kernel_events"] -
                                                   before["kernel_events"]) / w)
                runs[name]["drops"].append(after["kernel_drops"] - before["kernel_drops"])
        finally:
            eng.stop()
    for name, r in runs.items():
        ww, wo = med(r["wall_with"]), med(r["wall_without"])
        cw, co = med(r["cpu_with"]), med(r["cpu_without"])
        out[name] = {"rounds": rounds, "wall_s_without": round(wo, 3), "wall_s_with": round(ww, 3),
                     "wall_ratio": round(ww / wo, 3), "cpu_s_without": round(co, 3),
                     "cpu_s_with": round(cw, 3), "cpu_ratio": round(cw / co, 3),
                     "engine_events_per_s": round(med(r["events_per_s"])),
                     # the engine's own CPU while the workload ran: on a 2-CPU machine it
                     # competes with the workload for cores, which is most of the wall slowdown
                     "engine_cpu_s": round(med(r["engine_cpu"]), 3),
                     "kernel_drops": int(sum(r["drops"]))}
    return out


def workload(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        os.close(os.open(TARGET, os.O_RDONLY))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("engine", "collector"), default="engine")
    ap.add_argument("--start-rate", type=float, default=6250)
    ap.add_argument("--max-rate", type=float, default=400000)
    ap.add_argument("--window", type=float, default=5.0, help="seconds of load per step")
    ap.add_argument("--bisect", type=int, default=2, help="bisection steps after the first drop")
    ap.add_argument("--steady-rate", type=float, default=10000)
    ap.add_argument("--workload-ops", type=int, default=200000)
    ap.add_argument("--paced-rate", type=float, default=25000,
                    help="open+close pairs/s of the paced (b) workload (2 syscalls each)")
    ap.add_argument("--port", type=int, default=18799)
    ap.add_argument("--rounds", type=int, default=5,
                    help="without/with rounds of the realistic (b) workloads (0 = skip)")
    ap.add_argument("--only-realistic", action="store_true",
                    help="run only the realistic (b) workloads")
    ap.add_argument("--quick", action="store_true", help="short windows (smoke run)")
    ap.add_argument("--engine-arg", action="append", default=[],
                    help="extra `falconet run` argument (repeat), e.g. -o collector.io_uring=false")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (eBPF)"}))
        return 2
    if args.quick:
        args.window, args.workload_ops, args.rounds = 2.0, 50000, min(args.rounds, 1)
    result: dict = {"mode": args.mode, "cpus": os.cpu_count(), "kernel": os.uname().release,
                    "loadavg_at_start": os.getloadavg()[0],
                    "rules": str(FALCO_RULES) if args.mode == "engine" else None}
    if args.only_realistic:
        result["realistic"] = realistic(args.mode, args.port, max(args.rounds, 1))
        result["loadavg_at_end"] = os.getloadavg()[0]
        print(json.dumps(result, indent=2))
        return 0

    # (b) baseline before the engine starts
    base1 = workload(args.workload_ops)
    paced_ops = int(args.paced_rate * args.window)
    paced_base1 = paced_cpu(paced_ops, args.paced_rate)

    eng = Engine(args.mode, args.port, extra=args.engine_arg)
    result["engine_args"] = args.engine_arg
    try:
        result["startup_seconds"] = round(eng.wait_ready(), 2)
        # (c) steady state
        cpu0, _ = eng.usage()
        t0 = time.monotonic()
        steady = measure_rate(eng, args.steady_rate, max(args.window, 5.0))
        cpu1, rss = eng.usage()
        result["steady"] = {**steady, "engine_cpu_percent": round(100 * (cpu1 - cpu0) /
                                                                  (time.monotonic() - t0), 1),
                            "engine_rss_mb": round(rss / 2**20, 1)}
        # (a) doubling
        steps = []
        rate = args.start_rate
        best = 0.0
        good = 0.0
        while rate <= args.max_rate:
            step = measure_rate(eng, rate, args.window)
            steps.append(step)
            if step["kernel_drops"] > 0:
                bad = rate
                for _ in range(args.bisect if good else 0):   # narrow between good and bad
                    mid = measure_rate(eng, (good + bad) / 2, args.window)
                    steps.append(mid)
                    if mid["kernel_drops"] == 0:
                        best = max(best, mid["kernel_events_per_s"])
                        good = (good + bad) / 2
                    else:
                        bad = (good + bad) / 2
                break
            best = max(best, step["kernel_events_per_s"])
            good = rate
            if step["opens_per_s"] < 0.9 * rate:        # the generator saturated
                step["note"] = "load generator saturated"
                break
            rate *= 2
        result["max_rate"] = {"zero_drop_kernel_events_per_s": best, "steps": steps}
        # (b) with the engine running
        paced_with = paced_cpu(paced_ops, args.paced_rate)
        wait_drained(eng)
        with_engine = workload(args.workload_ops)
        wait_drained(eng)
        _cpu, rss = eng.usage()
        result["engine_rss_mb_end"] = round(rss / 2**20, 1)
    finally:
        err = eng.stop()
    base2 = workload(args.workload_ops)
    result["slowdown"] = _slowdown(base1, with_engine, base2, args.workload_ops)
    paced_base = min(paced_base1, paced_cpu(paced_ops, args.paced_rate))
    result["slowdown_paced_cpu"] = {
        "pairs_per_s": args.paced_rate, "syscalls_per_s": 2 * args.paced_rate, "pairs": paced_ops,
        "cpu_s_without": round(paced_base, 3), "cpu_s_with": round(paced_with, 3),
        "ratio": round(paced_with / paced_base, 3)}
    if args.rounds > 0:
        result["realistic"] = realistic(args.mode, args.port, args.rounds)
    result["loadavg_at_end"] = os.getloadavg()[0]
    summary = [ln for ln in err.splitlines() if ln.startswith(("falconet:", "collector:"))]
    result["engine_summary"] = summary[-1:] if summary else err.strip().splitlines()[-3:]
    print(json.dumps(result, indent=2))
    return 0


def _slowdown(base1: float, with_engine: float, base2: float, ops: int) -> dict:
    base = min(base1, base2)
    return {"ops": ops, "without_s": round(base, 3), "with_s": round(with_engine, 3),
            "ratio": round(with_engine / base, 3),
            "ops_per_s_without": round(ops / base), "ops_per_s_with": round(ops / with_engine)}


if __name__ == "__main__":
    sys.exit(main())
