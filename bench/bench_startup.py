"""Benchmark: start-up to ready of ``falconet run``, cold (BPF cache empty) and warm, with where
the seconds go; and upstream Falco's, when its binary is here and starts.

    sudo .venv/bin/python bench/bench_startup.py [--runs 5] [--no-falco]

For each configuration (the default ``falconet.yaml``; the same with ``--rules`` Falco's stable
rules) it runs ``falconet run`` ``--runs`` times with an empty cache directory (cold: every start
compiles) and ``--runs`` times with a filled one (warm), while a trigger runs ``cat /etc/shadow``
every 100 ms. Measured from the spawn: ``ready_s``, until the stderr line ``falconet: watching
(source ...`` (printed once the programs are attached), and ``first_alert_s``, until the first
JSON alert on stdout (the signal used for Falco too, which prints no readiness line). Medians.

``breakdown`` comes from one more cold and one more warm run of each configuration in a child
that wraps the start-up steps with timers (interpreter and imports, plugins, rules, BTF offsets,
BPF compile/load/attach, metrics server, plugin start). When ``PYTHONDONTWRITEBYTECODE`` is
set (this sandbox), ``warm_with_pyc`` repeats the warm runs with a private bytecode cache
(``PYTHONPYCACHEPREFIX``), as an installed engine has. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FALCONET = [sys.executable, "-m", "falconet"]
FALCO_RUN = Path(os.environ.get("FALCONET_FALCO_BIN", REPO.parent / "shared" / "falco-bin")) \
    / "run.sh"
READY = "falconet: watching (source"
PHASES = "BENCH-PHASES "


def _stable_rules() -> str | None:
    try:
        from falconet.upstream import falco_rules_path  # noqa: PLC0415
        p = falco_rules_path()
    except Exception:  # noqa: BLE001 - absent: the stable configuration is skipped
        return None
    return str(p) if p and Path(p).is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Trigger:
    """``cat /etc/shadow`` every 100 ms (a sensitive-file read both engines' rules alert on;
    not faster: on 2 vCPUs the forks slow the compile being measured)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            subprocess.run(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            self._stop.wait(0.1)

    def __enter__(self) -> _Trigger:
        self._t.start()
        return self

    def __exit__(self, *_a: object) -> None:
        self._stop.set()
        self._t.join(5)


def timed_start(cmd: list[str], env: dict[str, str], ready_marker: str | None,
                timeout: float = 120.0) -> dict[str, Any]:
    """Spawn ``cmd``; return seconds to the ready line (stderr) and to the first alert (stdout),
    plus phases a profiled child printed; the process is stopped with SIGINT once both are in."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                         start_new_session=True)
    out: dict[str, Any] = {}
    done = threading.Event()
    tail: list[str] = []

    def read_err() -> None:
        assert p.stderr is not None
        for line in p.stderr:
            tail.append(line.rstrip())
            del tail[:-20]
            if ready_marker and ready_marker in line and "ready_s" not in out:
                out["ready_s"] = round(time.monotonic() - t0, 3)
            if line.startswith(PHASES):
                out["phases"] = json.loads(line[len(PHASES):])
        done.set()

    def read_out() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("{") and '"rule"' in line and "first_alert_s" not in out:
                out["first_alert_s"] = round(time.monotonic() - t0, 3)
                done.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
    for t in threads:
        t.start()
    deadline = t0 + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if "first_alert_s" in out and ("ready_s" in out or not ready_marker):
            break
        done.wait(0.05)
        done.clear()
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    for t in threads:
        t.join(5)
    if "first_alert_s" not in out:
        out["error"] = f"exit {p.returncode}: " + " | ".join(tail[-4:])[-600:]
    return out


def _median(runs: list[dict[str, Any]], k: str) -> float | None:
    vals = [r[k] for r in runs if k in r]
    return round(statistics.median(vals), 3) if vals else None


def _summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ready_s": _median(rs, "ready_s"), "first_alert_s": _median(rs, "first_alert_s"),
            "runs": [{k: v for k, v in r.items() if k != "phases"} for r in rs]}


def bench_falconet(name: str, extra: list[str], runs: int, cache_root: Path) -> dict[str, Any]:
    port = _free_port()
    args = ["run", "-v", "-c", str(REPO / "falconet.yaml"), "-o", f"metrics.port={port}",
            "-o", "json_output=true", *extra]
    cache = cache_root / name
    env = {**os.environ, "FALCONET_BPF_CACHE_DIR": str(cache)}
    result: dict[str, Any] = {"args": args}
    with _Trigger():
        for mode in ("cold", "warm"):
            rs = []
            for _ in range(runs):
                if mode == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                rs.append(timed_start([*FALCONET, *args], env, READY))
            result[mode] = _summary(rs)
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            # this environment compiles every Python module at each start (no .pyc); an
            # installed engine has them: measure warm starts with a private bytecode cache too
            pyc_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            pyc_env["PYTHONPYCACHEPREFIX"] = str(cache_root / f"pyc-{name}")
            timed_start([*FALCONET, *args], pyc_env, READY)        # fills the bytecode cache
            result["warm_with_pyc"] = _summary([timed_start([*FALCONET, *args], pyc_env, READY)
                                                for _ in range(runs)])
        prof = [sys.executable, __file__, "--profile-child", "--", *args]
        shutil.rmtree(cache, ignore_errors=True)
        cold = timed_start(prof, env, READY)
        warm = timed_start(prof, env, READY)
    result["breakdown"] = {"cold": cold.get("phases"), "warm": warm.get("phases")}
    return result


def bench_falco(rules: str, runs: int) -> dict[str, Any]:
    if not FALCO_RUN.is_file():
        return {"skipped": f"no Falco binary at {FALCO_RUN}"}
    cmd = [str(FALCO_RUN), "-r", rules, "-o", "json_output=true"]
    with _Trigger():
        rs = [timed_start(cmd, dict(os.environ), None) for _ in range(runs)]
    ok = [r for r in rs if "first_alert_s" in r]
    if not ok:
        return {"skipped": "Falco did not start here", "error": rs[-1].get("error")}
    return {"first_alert_s": _median(ok, "first_alert_s"), "runs": rs}


# ------------------------------------------------------------------------------- profiled child
def profile_child(argv: list[str]) -> int:
    """Run ``falconet <argv>`` with timers around the start-up steps; print them as one JSON
    line on stderr when the engine announces it is ready, then exit."""
    t_start = time.monotonic()
    marks: list[tuple[str, float, float]] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        f = getattr(owner, attr)

        def timed(*a: Any, **k: Any) -> Any:
            t = time.monotonic()
            try:
                return f(*a, **k)
            finally:
                marks.append((label, t - t_start, time.monotonic() - t))
        setattr(owner, attr, timed)

    from falconet import cli  # noqa: PLC0415
    from falconet.app import engine  # noqa: PLC0415
    from falconet.app import load_plugins as lp  # noqa: PLC0415
    from falconet.collector import bccloader, bpfcache, bpfproc, program  # noqa: PLC0415
    marks.append(("imports", 0.0, time.monotonic() - t_start))
    wrap(engine.App, "load_plugins", "load_plugins")
    wrap(engine.App, "load_ruleset", "load_rules")
    wrap(engine.App, "build_pipeline", "build_pipeline")
    wrap(engine.App, "start_metrics", "metrics_server")
    wrap(lp, "start_plugins", "start_plugins")
    wrap(bccloader, "check_prerequisites", "collector_prerequisites")
    wrap(bpfcache, "kernel_offsets", "btf_offsets")
    wrap(program, "build", "bpf_program_text")
    wrap(bpfproc, "compile_in_child", "bpf_compile_child")
    wrap(bpfproc, "load_in_child", "bpf_bcc_child_load")
    wrap(bpfcache, "read", "bpf_cache_read")
    wrap(bpfcache, "load_entry", "bpf_load_attach")
    wrap(bpfcache, "write", "bpf_cache_write")
    announce = engine.announce

    def ready(app: Any, s: Any) -> None:
        now = time.monotonic() - t_start
        phases: dict[str, float] = {}
        for label, _at, dur in marks:
            phases[label] = round(phases.get(label, 0.0) + dur, 3)
        phases["ready_in_process"] = round(now, 3)
        phases["cache"] = dict(bpfcache.STATS)     # type: ignore[assignment]
        print(PHASES + json.dumps(phases), file=sys.stderr, flush=True)
        announce(app, s)
        os._exit(0)                         # the breakdown is all this run is for
    engine.announce = ready                 # type: ignore[assignment]
    sys.argv = ["falconet", *argv]
    return int(cli.main() or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--profile-child"]:
        return profile_child(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-falco", action="store_true")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print(json.dumps({"skipped": "needs root (eBPF)"}))
        return 0
    stable = _stable_rules()
    out: dict[str, Any] = {"runs": a.runs, "kernel": os.uname().release,
                           "ncpu": os.cpu_count(), "loadavg_at_start": os.getloadavg()[0],
                           "python_dont_write_bytecode": bool(
                               os.environ.get("PYTHONDONTWRITEBYTECODE"))}
    with tempfile.TemporaryDirectory(prefix="falconet-bench-startup-") as tmp:
        out["default"] = bench_falconet("default", [], a.runs, Path(tmp))
        if stable:
            out["stable"] = bench_falconet("stable", ["--rules", stable], a.runs, Path(tmp))
        else:
            out["stable"] = {"skipped": "Falco's stable rules not found"}
    if stable and not a.no_falco:
        out["falco"] = bench_falco(stable, a.runs)
        f = out["falco"].get("first_alert_s")
        w = out["stable"]["warm"]["first_alert_s"] if "warm" in out["stable"] else None
        if f and w:
            out["warm_first_alert_vs_falco"] = round(w / f, 3)
    out["falco_reference_ready_s"] = "1.7-2.2 (issue 18, measured on an earlier kernel)"
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
