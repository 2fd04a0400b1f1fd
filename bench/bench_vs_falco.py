#!/usr/bin/env python3
"""Falconet side by side with upstream Falco 0.44.1: same machine, same rules, same workloads.

Both engines run Falco's stable rules (``falconet.upstream``/``$FALCONET_FALCO_RULES``), one at
a time, alternating (Falco, Falconet, Falco, Falconet... ``--rounds`` sessions each). Falco is
``../shared/falco-bin/run.sh`` (or ``$FALCONET_FALCO_BIN``), never a copy; without it the bench
prints ``{"skipped": reason}`` and exits 0. Falconet is ``falconet run -c falconet.yaml`` (what
``make run`` starts) with only the rules changed. Figures, per engine and round (docs/performance.md):

- ``sweep``: paced open+close of /etc/hostname at rising rates (a compiled C generator, several
  processes); the highest achieved pairs/s of a step with zero kernel drops. Stops at the first
  step with drops.
- ``loop``: a tight open/close loop (2M pairs, 4M events): kernel drops and engine CPU-seconds.
- ``tar``: ``tar`` of the Python stdlib into a pipe: engine CPU-seconds.
- ``forkexec``: 2000 fork+exec of /bin/true: engine CPU-seconds.
- ``idle``: engine CPU over ``--idle-seconds`` with no workload, percent of one core.
- ``startup``: seconds from start to attached; the first start of the run and later (warm) ones.

Engine CPU is utime+stime of the engine's process tree from /proc, from just before a workload
until the engine has caught up with it. Kernel events and drops come from each engine's
Prometheus ``/metrics`` (``falcosecurity_scap_n_evts_total``/``..._n_drops_total``, the same
series names in both). Prints one JSON document with per-round values, medians, ratios
falconet/falco, load averages and the exact commands. Needs root.

Usage: ``sudo .venv/bin/python bench/bench_vs_falco.py [--quick] [--rounds N] [--only sweep,idle]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _engines as E  # noqa: E402

FIGURES = ("sweep", "loop", "tar", "forkexec", "idle", "startup")
ENGINES = ("falco", "falconet")
STEPS = (50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000, 600_000, 800_000)
QUICK_STEPS = (50_000, 100_000, 200_000, 300_000)

#: the headline numbers: name -> (figure, key in that figure's result, unit)
HEADLINES: dict[str, tuple[str, str, str]] = {
    "sweep_zero_drop_pairs_per_s": ("sweep", "zero_drop_pairs_per_s",
                                    "open+close pairs/s with zero kernel drops, higher is better"),
    "loop_drop_percent": ("loop", "drop_percent", "percent of kernel events dropped, lower is better"),
    "loop_engine_cpu_s": ("loop", "engine_cpu_s", "CPU-seconds, lower is better"),
    "tar_engine_cpu_s": ("tar", "engine_cpu_s", "CPU-seconds, lower is better"),
    "forkexec_engine_cpu_s": ("forkexec", "engine_cpu_s", "CPU-seconds, lower is better"),
    "idle_cpu_percent": ("idle", "cpu_percent", "percent of one core, lower is better"),
    "startup_first_s": ("startup", "first", "seconds to attached, first start of the run"),
    "startup_warm_s": ("startup", "warm", "seconds to attached, later (warm) starts, median"),
}


# ----------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="sessions per engine, alternating")
    ap.add_argument("--quick", action="store_true",
                    help="1 round, fewer and shorter sweep steps, shorter idle (a smoke run)")
    ap.add_argument("--only", action="append", default=[], metavar="NAMES",
                    help=f"comma-separated figures to run (of {', '.join(FIGURES)}); repeatable")
    ap.add_argument("--steps", default=None,
                    help="sweep rates in pairs/s, comma-separated (default "
                         + ",".join(str(s // 1000) + "k" for s in STEPS) + ")")
    ap.add_argument("--step-seconds", type=float, default=None, help="seconds per sweep step (4)")
    ap.add_argument("--procs", type=int, default=2, help="generator processes of the sweep")
    ap.add_argument("--loop-pairs", type=int, default=2_000_000, help="open+close pairs of loop")
    ap.add_argument("--forkexec", type=int, default=2000, help="fork+exec count")
    ap.add_argument("--idle-seconds", type=float, default=None, help="idle window (60; quick 10)")
    ap.add_argument("--falco-shim", choices=("auto", "on", "off"), default="auto",
                    help="LD_PRELOAD bench/c/falco_sigdeliver_shim.c into Falco: auto = only when "
                         "Falco fails to load its signal_deliver program (see that file)")
    args = ap.parse_args(argv)
    only: list[str] = []
    for chunk in args.only:
        for name in (n.strip() for n in chunk.split(",")):
            if name and name not in FIGURES:
                ap.error(f"--only: unknown figure {name!r} (choose from {', '.join(FIGURES)})")
            if name and name not in only:
                only.append(name)
    args.only = only or list(FIGURES)
    if args.quick:
        args.rounds = 1
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.steps:
        try:
            args.steps = [_rate(s) for s in args.steps.split(",") if s.strip()]
        except ValueError as e:
            ap.error(f"--steps: {e}")
    else:
        args.steps = list(QUICK_STEPS if args.quick else STEPS)
    if args.step_seconds is None:
        args.step_seconds = 3.0 if args.quick else 4.0
    if args.idle_seconds is None:
        args.idle_seconds = 10.0 if args.quick else 60.0
    if args.procs < 1:
        ap.error("--procs must be at least 1")
    return args


def _rate(text: str) -> int:
    t = text.strip().lower()
    mult = 1000 if t.endswith("k") else 1
    value = float(t[:-1] if mult > 1 else t)
    if value <= 0:
        raise ValueError(f"rate must be positive: {text!r}")
    return int(value * mult)


# ----------------------------------------------------------------------------- measurement
class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, gen: E.LoadGen) -> None:
        self.args, self.work, self.gen = args, work, gen
        self.stdlib = Path(sysconfig.get_paths()["stdlib"])

    # -- helpers
    @staticmethod
    def until_cpu_below(eng: E.EngineRun, window: float, cpu_s: float, timeout: float) -> None:
        """Until the engine used less than ``cpu_s`` CPU-seconds in a ``window`` (or timeout)."""
        deadline = time.monotonic() + timeout
        prev = eng.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(window)
            cur = eng.cpu_seconds()
            if cur - prev < cpu_s:
                return
            prev = cur

    def caught_up(self, eng: E.EngineRun, since: float) -> None:
        """Until the engine has processed what the workload produced: under a fifth of a core
        for 0.5 s; then at least 1.2 s after the workload, so an engine that refreshes its
        kernel counters once a second (Falconet) has published them."""
        self.until_cpu_below(eng, 0.5, 0.1, timeout=60.0)
        left = since + 1.2 - time.monotonic()
        if left > 0:
            time.sleep(left)

    def measured(self, eng: E.EngineRun, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Counters and engine CPU around ``work()``, until the engine caught up."""
        c0, cpu0 = eng.counters(), eng.cpu_seconds()
        t0 = time.monotonic()
        res = work()
        wall = time.monotonic() - t0
        self.caught_up(eng, time.monotonic())
        c1, cpu1 = eng.counters(), eng.cpu_seconds()
        ev = c1["kernel_events"] - c0["kernel_events"]
        dr = c1["kernel_drops"] - c0["kernel_drops"]
        return {**res, "wall_s": round(wall, 3), "kernel_events": int(ev),
                "kernel_drops": int(dr),
                "drop_percent": round(100 * dr / ev, 2) if ev > 0 else 0.0,
                "engine_cpu_s": round(cpu1 - cpu0, 3)}

    def quiet(self, eng: E.EngineRun) -> None:
        """After start: until the engine's start-up work (Falco's /proc scan, Falconet's state
        and plugin start) is over: under 5 % of a core for a second."""
        self.until_cpu_below(eng, 1.0, 0.05, timeout=20.0)

    # -- figures
    def idle(self, eng: E.EngineRun) -> dict[str, Any]:
        cpu0, run0, t0 = eng.cpu_seconds(), eng.runtime_seconds(), time.monotonic()
        time.sleep(self.args.idle_seconds)
        cpu1, run1, t1 = eng.cpu_seconds(), eng.runtime_seconds(), time.monotonic()
        # the percentage from the scheduler's nanosecond run times: an idle minute is a
        # handful of clock ticks, too coarse to rank two engines (engine_cpu_s is the ticks)
        return {"seconds": round(t1 - t0, 2), "engine_cpu_s": round(cpu1 - cpu0, 3),
                "runtime_s": round(run1 - run0, 4),
                "cpu_percent": round(100 * (run1 - run0) / (t1 - t0), 3),
                "rss_mb": round(eng.rss_bytes() / 2**20, 1)}

    def sweep(self, eng: E.EngineRun) -> dict[str, Any]:
        """Up the steps until the first with drops; when the lowest step already drops, down
        by halves (at most three) so the figure is not just 0."""
        steps: list[dict[str, Any]] = []
        best: float = 0.0
        best_offered: int | None = None
        rates = list(self.args.steps)
        lower = [rates[0] // 2 ** k for k in (1, 2, 3) if rates[0] // 2 ** k > 0] if rates else []
        i = 0
        while i < len(rates):
            rate = rates[i]
            st = self.measured(eng, functools.partial(self._pace, rate))
            st["offered_pairs_per_s"] = rate
            # the generator could not issue the offered rate (a busy machine, or CPUs the
            # engine and the BPF programs take): the step measures less than its name says
            st["generator_saturated"] = st["pairs_per_s"] < 0.9 * rate
            steps.append(st)
            if st["kernel_drops"] == 0:
                if st["pairs_per_s"] > best:
                    best, best_offered = st["pairs_per_s"], rate
                if rate < rates[0]:
                    break                 # came down to a clean step: nothing to learn above
            elif best_offered is None and lower:
                rates.insert(i + 1, lower.pop(0))
            else:
                break
            i += 1
        drops = [s["offered_pairs_per_s"] for s in steps if s["kernel_drops"] > 0]
        out: dict[str, Any] = {"zero_drop_pairs_per_s": round(best),
                               "zero_drop_offered_pairs_per_s": best_offered,
                               "first_drop_offered_pairs_per_s": min(drops) if drops else None,
                               "steps": steps}
        if best_offered is None:
            out["note"] = "drops at every step tried"
        elif not drops:
            out["note"] = "no drops at any step: the figure is a lower bound"
        if any(s["generator_saturated"] and s["kernel_drops"] == 0 for s in steps):
            out["note"] = (out.get("note", "") + "; " if "note" in out else "") + \
                "the generator fell short of the offered rate at a step without drops " \
                "(generator_saturated): the figure is limited by the machine, not the engine"
        return out

    def _pace(self, rate: int) -> dict[str, Any]:
        r = self.gen.pace(rate, self.args.step_seconds, self.args.procs)
        return {"pairs_per_s": round(r["pairs_per_s"]), "pairs_missed": int(r["missed"])}

    def loop(self, eng: E.EngineRun) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            r = self.gen.loop(self.args.loop_pairs)
            return {"pairs": r.pairs, "pairs_per_s": round(r.rate)}
        return self.measured(eng, work)

    def tar(self, eng: E.EngineRun) -> dict[str, Any]:
        return self.measured(eng, lambda: run_tar(self.stdlib))

    def forkexec(self, eng: E.EngineRun) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            r = self.gen.forkexec(self.args.forkexec)
            return {"execs": r.pairs, "execs_per_s": round(r.rate)}
        return self.measured(eng, work)


def tar_cmd(stdlib: Path) -> list[list[str]]:
    """tar into a pipe (GNU tar skips reading the files when the archive is /dev/null)."""
    return [["tar", "-cf", "-", "--exclude=site-packages", "-C", str(stdlib.parent),
             stdlib.name], ["cat"]]


def run_tar(stdlib: Path) -> dict[str, Any]:
    tar_argv, cat_argv = tar_cmd(stdlib)
    tar = subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    cat = subprocess.run(cat_argv, stdin=tar.stdout, stdout=subprocess.DEVNULL, check=True)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() not in (0, 1) or cat.returncode != 0:    # 1: a file changed while read
        raise RuntimeError(f"tar exited {tar.returncode}")
    return {"tree": str(stdlib)}


# ----------------------------------------------------------------------------- orchestration
def is_engine(argv: list[str]) -> bool:
    """A Falco (``.../falco ...``) or Falconet (``falconet run``, ``python -m falconet run``)."""
    if argv and os.path.basename(argv[0]) == "falco":
        return True
    for i, w in enumerate(argv[:4]):
        if (w == "falconet" or w.endswith("/falconet")) and argv[i + 1:i + 2] == ["run"]:
            return True
    return False


def other_engines() -> list[str]:
    """Falco/Falconet processes running now (the bench's own are stopped between sessions):
    another engine on the machine is noise in the figures, so the JSON names it."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        argv = [c.decode("utf-8", "replace") for c in raw.split(b"\0") if c]
        if is_engine(argv):
            found.append(f"{d}: {' '.join(argv)[:160]}")
    return found


class Runner:
    """Starts the engines one at a time, alternating, and collects the figures."""

    def __init__(self, args: argparse.Namespace, work: Path, run_sh: Path, rules: Path) -> None:
        self.args, self.work, self.run_sh, self.rules = args, work, run_sh, rules
        self.gen = E.LoadGen(E.build_c(E.C_DIR / "loadgen.c", work))
        self.bench = Bench(args, work, self.gen)
        self.shim: Path | None = None
        self.shim_reason: str | None = None
        self.commands: dict[str, list[str]] = {}
        self.starts: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
        self.n = 0

    def spec(self, name: str) -> E.EngineSpec:
        port = E.free_port()
        if name == "falco":
            sp = E.falco_spec(self.run_sh, self.rules, port, self.work, self.shim)
        else:
            sp = E.falconet_spec(self.rules, port)
        shown = [*(f"{k}={v}" for k, v in sp.env.items()), *sp.cmd]
        self.commands[name] = [w.replace(str(port), "<port>") if w.endswith(str(port)) else w
                               for w in shown]
        return sp

    def start(self, name: str) -> E.EngineRun:
        self.n += 1
        eng = E.EngineRun(self.spec(name), self.work / f"{name}-{self.n}.out")
        try:
            ready = eng.ready(poke=lambda: os.close(os.open(E.TARGET, os.O_RDONLY)))
        except E.EngineFailed:
            eng.stop()
            raise
        said = [ln.split(": ", 1)[-1] for ln in eng.lines
                if E.FALCONET_READY in ln or "Falco version:" in ln]
        self.starts[name].append({"ready_s": ready, "stderr_marks_s": dict(eng.marks),
                                  "said": said[:2]})
        return eng

    def first_starts(self) -> None:
        """Start each engine once (the "first start" figure); decides the Falco shim."""
        for name in ENGINES:
            try:
                eng = self.start(name)
            except E.EngineFailed as e:
                if name == "falco" and self.args.falco_shim == "auto" and self.shim is None and \
                        E.falco_needs_shim(e):
                    self.use_shim("Falco failed to load its signal_deliver BPF program on this "
                                  "kernel: " + _one_line(e.tail_text))
                    self.starts["falco"].clear()
                    eng = self.start(name)
                else:
                    raise
            eng.stop()

    def use_shim(self, why: str) -> None:
        self.shim = E.falco_shim(self.work)
        self.shim_reason = why

    def session(self, name: str) -> dict[str, Any]:
        others = other_engines()        # another engine on the machine: noise in these figures
        eng = self.start(name)
        out: dict[str, Any] = {"ready_s": self.starts[name][-1]["ready_s"]}
        if others:
            out["other_engines_running"] = others
        try:
            self.bench.quiet(eng)
            for fig in ("idle", "sweep", "loop", "tar", "forkexec"):
                if fig in self.args.only:
                    out[fig] = getattr(self.bench, fig)(eng)
        finally:
            out["exit_code"] = eng.stop()
        return out


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "signal_deliver" in ln or "Error" in ln]
    return " | ".join(lines[-3:])[:400]


def summarise(rounds: list[dict[str, Any]], starts: dict[str, list[dict[str, Any]]],
              only: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Medians per engine of each headline figure, and falconet/falco ratios (None where
    Falco's value is 0 or missing)."""
    med: dict[str, dict[str, Any]] = {e: {} for e in ENGINES}
    for eng in ENGINES:
        ready = [s["ready_s"] for s in starts[eng]]
        for name, (fig, key, _unit) in HEADLINES.items():
            if fig not in only:
                continue
            if fig == "startup":
                med[eng][name] = (ready[0] if ready else None) if key == "first" \
                    else E.median(ready[1:])
            else:
                med[eng][name] = E.median([r[eng][fig][key] for r in rounds if fig in r[eng]])
            if med[eng][name] is not None:
                med[eng][name] = round(med[eng][name], 3)
    ratios: dict[str, Any] = {}
    for fig in med["falconet"]:
        a, b = med["falconet"].get(fig), med["falco"].get(fig)
        ratios[fig] = round(a / b, 3) if a is not None and b not in (None, 0) else None
    return med, ratios


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_sh, why = E.find_falco()
    if run_sh is None:
        print(json.dumps({"bench": "bench_vs_falco", "skipped": why}))
        return 0
    if os.geteuid() != 0:
        print(json.dumps({"bench": "bench_vs_falco", "error": "needs root (eBPF)"}))
        return 2
    from falconet.upstream import falco_rules_path  # noqa: PLC0415

    rules = Path(falco_rules_path())
    t_start = time.monotonic()
    result: dict[str, Any] = {
        "bench": "bench_vs_falco", "falco": str(run_sh), "rules": str(rules),
        "cpus": os.cpu_count(), "kernel": os.uname().release,
        "settings": {"rounds": args.rounds, "quick": args.quick, "only": args.only,
                     "steps_pairs_per_s": args.steps, "step_seconds": args.step_seconds,
                     "generator_procs": args.procs, "loop_pairs": args.loop_pairs,
                     "forkexec": args.forkexec, "idle_seconds": args.idle_seconds,
                     "falco_shim": args.falco_shim},
        "loadavg_before": E.loadavg(), "other_engines_running": other_engines()}
    work = E.temp_dir("falconet-vs-falco-")
    try:
        try:
            runner = Runner(args, work, run_sh, rules)
        except (RuntimeError, OSError) as e:          # no gcc, or it failed
            print(json.dumps({**result, "error": str(e)}))
            return 1
        if args.falco_shim == "on":
            runner.use_shim("--falco-shim on")
        if {"tar"} & set(args.only):
            run_tar(runner.bench.stdlib)          # warm the page cache for both engines
        try:
            runner.first_starts()
            rounds: list[dict[str, Any]] = []
            for i in range(args.rounds):
                rnd: dict[str, Any] = {"round": i + 1}
                for name in ENGINES:              # alternating: Falco, Falconet, Falco, ...
                    rnd[name] = runner.session(name)
                rounds.append(rnd)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            # an engine that does not start or dies mid-run, a generator that fails: say what,
            # with the commands, in the same JSON document (no traceback)
            result.update({"error": str(e)[:4000],
                           "failed_engine": getattr(e, "name", None),
                           "commands": runner.commands, "loadavg_after": E.loadavg()})
            print(json.dumps(result, indent=2))
            return 1
        med, ratios = summarise(rounds, runner.starts, args.only)
        result.update({
            "falco_shim": {"used": runner.shim is not None, "reason": runner.shim_reason},
            "commands": {**runner.commands,
                         "loadgen": [str(E.C_DIR / "loadgen.c"), "gcc -O2 at bench time",
                                     "pace RATE/procs SECONDS /etc/hostname (x procs)",
                                     f"loop {args.loop_pairs} /etc/hostname",
                                     f"forkexec {args.forkexec} /bin/true"],
                         "tar": [" ".join(c) for c in tar_cmd(runner.bench.stdlib)]},
            "startups": runner.starts, "rounds": rounds, "medians": med,
            "ratios_falconet_over_falco": ratios,
            "units": {k: u for k, (_fig, _key, u) in HEADLINES.items()},
            "loadavg_after": E.loadavg(), "other_engines_running_after": other_engines(),
            "duration_s": round(time.monotonic() - t_start, 1)})
        print(json.dumps(result, indent=2))
        return 0
    finally:
        E.remove_tree(work)


if __name__ == "__main__":
    sys.exit(main())
