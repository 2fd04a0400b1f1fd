"""Pieces the engine benchmarks share: Prometheus scrapes, process-tree CPU from /proc, the
compiled load generator, and the two engines under test (``falconet run`` and upstream Falco)
as subprocesses with one interface.

Used by ``bench_vs_falco.py`` (side by side) and ``bench_collector.py`` (Falconet alone). No
third-party imports: the pure parts are unit-tested (tests/bench/).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
C_DIR = Path(__file__).resolve().parent / "c"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET = "/etc/hostname"        # the benign file every open+close workload reads

#: series both engines export under Falco's names (Falconet keeps them for Falco dashboards)
KERNEL_EVENTS = "falcosecurity_scap_n_evts_total"
KERNEL_DROPS = "falcosecurity_scap_n_drops_total"

_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN|[+-]Inf)(?:\s+\d+)?$")


# ----------------------------------------------------------------------------- /metrics
def parse_prometheus(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition, keyed ``name{labels}`` (``name`` without labels);
    repeated keys are summed. Comments and unparsable lines are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m:
            key = m.group(1) + (m.group(2) or "")
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def metric_total(samples: dict[str, float], name: str) -> float:
    """Sum of every series of ``name`` (all label sets)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def scrape(port: int, timeout: float = 2.0) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return parse_prometheus(r.read().decode("utf-8", "replace"))


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- /proc
def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()       # comm may contain spaces and parens


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds utime+stime, RSS bytes) of one process (all its threads)."""
    f = _stat_fields(pid)
    cpu = (int(f[11]) + int(f[12])) / CLK_TCK
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return cpu, rss


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, each with the children it has reaped
    (utime+stime+cutime+cstime), so helpers the engine starts and waits for (bcc's compiler
    child, future workers) count once. A descendant that exits unreaped by the tree is lost."""
    cpu = {pid: sum(int(x) for x in f[11:15]) / CLK_TCK for pid, f in _process_tree(root).items()}
    return sum(cpu.values())


def _process_tree(root: int) -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` fields of ``root`` and its live descendants, by pid."""
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stats[int(d)] = _stat_fields(int(d))
        except (OSError, ValueError):
            continue                                   # exited while we looked
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, f in stats.items():
            if int(f[1]) in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: stats[pid] for pid in tree if pid in stats}


def tree_runtime_s(root: int) -> float:
    """Seconds on a CPU of every live thread of ``root`` and its live descendants, from
    ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds, not clock ticks): the idle figure is a
    few ticks in a minute, so tick-rounded ``stat`` times cannot rank two idle engines. Threads
    that exit in the window are lost, so only for windows in which the engine starts none."""
    total_ns = 0
    for pid in _process_tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total_ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total_ns / 1e9


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# ----------------------------------------------------------------------------- C helpers
def build_c(source: Path, out_dir: Path, shared: bool = False) -> Path:
    """Compile ``source`` with gcc into ``out_dir`` (a temporary directory of the run)."""
    out = out_dir / (source.stem + (".so" if shared else ""))
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(out), str(source)]
    if shared:
        cmd[1:1] = ["-shared", "-fPIC"]
        cmd.append("-ldl")
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError("gcc not found: the benchmark compiles its C helpers") from None
    if res.returncode != 0:
        raise RuntimeError(f"gcc failed on {source}:\n{res.stderr[-2000:]}")
    return out


@dataclass
class GenResult:
    pairs: int
    seconds: float
    missed: int

    @property
    def rate(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


def parse_gen_line(line: str) -> GenResult:
    kv = dict(p.split("=", 1) for p in line.split())
    return GenResult(int(kv["pairs"]), float(kv["seconds"]), int(kv["missed"]))


class LoadGen:
    """The compiled ``bench/c/loadgen.c``."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def _run(self, *args: str) -> GenResult:
        out = subprocess.run([str(self.binary), *args], check=True, capture_output=True, text=True)
        return parse_gen_line(out.stdout.strip().splitlines()[-1])

    def pace(self, rate: float, seconds: float, procs: int = 2, path: str = TARGET
             ) -> dict[str, float]:
        """``rate`` open+close pairs/s split over ``procs`` processes for ``seconds``."""
        ps = [subprocess.Popen([str(self.binary), "pace", str(rate / procs), str(seconds), path],
                               stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        res = []
        for p in ps:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"loadgen exited {p.returncode}")
            res.append(parse_gen_line(out.strip().splitlines()[-1]))
        pairs = sum(r.pairs for r in res)
        return {"pairs": pairs, "pairs_per_s": pairs / seconds,
                "missed": sum(r.missed for r in res)}

    def loop(self, n: int, path: str = TARGET) -> GenResult:
        return self._run("loop", str(n), path)

    def forkexec(self, n: int, prog: str = "/bin/true") -> GenResult:
        return self._run("forkexec", str(n), prog)


# ----------------------------------------------------------------------------- engines
FALCONET_READY = "falconet: watching (source"
FALCO_OPENING = "Opening 'syscall' source with modern BPF probe"
#: why Falco 0.44.1 does not start on some kernels (bench/c/falco_sigdeliver_shim.c)
FALCO_SIGDELIVER_FAILURE = "prog 'signal_deliver': BPF program load failed"


@dataclass
class EngineSpec:
    """How to start one engine: its command, environment, and how it says it is ready."""
    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    #: stderr line prefix/substring that means "attached"; None: the first kernel event counted
    ready_line: str | None = None
    marks: tuple[str, ...] = ()                 # other stderr lines whose time is reported


class EngineRun:
    """One started engine. ``ready()`` waits for attachment; ``stop()`` sends SIGINT and waits."""

    def __init__(self, spec: EngineSpec, stdout_path: Path) -> None:
        self.spec = spec
        self._out = open(stdout_path, "wb")       # noqa: SIM115 - closed in stop()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(spec.cmd, stdout=self._out, stderr=subprocess.PIPE,
                                     env={**os.environ, **spec.env}, cwd=REPO)
        self.lines: list[str] = []
        self.marks: dict[str, float] = {}
        self._ready_line = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.monotonic() - self.t0
            if len(self.lines) < 5000:
                self.lines.append(line)
            for m in (*self.spec.marks, self.spec.ready_line or ""):
                if m and m in line and m not in self.marks:
                    self.marks[m] = round(now, 3)
            if self.spec.ready_line and self.spec.ready_line in line:
                self._ready_line.set()

    def counters(self) -> dict[str, float]:
        s = scrape(self.spec.port)
        return {"kernel_events": metric_total(s, KERNEL_EVENTS),
                "kernel_drops": metric_total(s, KERNEL_DROPS)}

    def ready(self, timeout: float = 180.0, poke: Callable[[], None] | None = None) -> float:
        """Seconds from start to attached: the ready line, else the first kernel event counted
        in /metrics (the kernel side increments it, so the probe is attached). Then also waits
        until /metrics answers, so counters can be read."""
        deadline = self.t0 + timeout
        at: float | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise EngineFailed(self.spec.name, self.proc.returncode, self.tail(), self.lines)
            if self.spec.ready_line:
                if at is None and self._ready_line.wait(0.02):
                    at = self.marks.get(self.spec.ready_line, time.monotonic() - self.t0)
                if at is not None:
                    try:
                        self.counters()
                        return at
                    except OSError:
                        pass
            else:
                if poke:
                    poke()
                try:
                    if self.counters()["kernel_events"] > 0:
                        return round(time.monotonic() - self.t0, 3)
                except OSError:
                    pass
                time.sleep(0.05)
        raise EngineFailed(self.spec.name, None, f"not ready in {timeout:.0f} s\n{self.tail()}",
                           self.lines)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def rss_bytes(self) -> int:
        return proc_usage(self.proc.pid)[1]

    def runtime_seconds(self) -> float:
        return tree_runtime_s(self.proc.pid)

    def tail(self, n: int = 15) -> str:
        keep = [ln for ln in self.lines if ln.strip() and not ln[:1].isdigit() and
                not ln.startswith((";", " ", "\t"))]           # skip verifier dumps
        return "\n".join(keep[-n:])

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGINT and wait (a clean shutdown, as a user's Ctrl-C); SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self._out.close()
        return self.proc.returncode


class EngineFailed(RuntimeError):
    def __init__(self, name: str, rc: int | None, tail: str, lines: list[str]) -> None:
        super().__init__(f"{name} failed (exit {rc}): {tail}")
        self.name, self.rc, self.tail_text, self.lines = name, rc, tail, lines


def falconet_spec(rules: Path, port: int, options: tuple[str, ...] = ()) -> EngineSpec:
    """``falconet run`` as ``make run`` starts it (``-c falconet.yaml``: a user's defaults), only
    the rules changed: Falco's stable file instead of the default rules, plugin rule packs off,
    plus ``options`` (``key=value`` settings, each passed as ``-o``). Alerts as JSON lines on
    stdout (to a file of the run)."""
    exe = REPO / ".venv" / "bin" / "falconet"
    return EngineSpec(
        name="falconet", port=port, ready_line=FALCONET_READY,
        cmd=[str(exe), "run", "-c", str(REPO / "falconet.yaml"), "--rules", str(rules),
             "-o", "load_plugin_rules=false", *(w for o in options for w in ("-o", o)),
             "--json", "--metrics-port", str(port)])


def falco_spec(run_sh: Path, rules: Path, port: int, work: Path, shim: Path | None,
               options: tuple[str, ...] = ()) -> EngineSpec:
    """Upstream Falco through its ``run.sh`` (its configuration, modern_ebpf) with the stable
    rules, alerts as JSON to ``work/falco-alerts.json``, its Prometheus endpoint on
    127.0.0.1:``port``, and ``options`` (``key=value``, each passed as ``-o``)."""
    env = {"LD_PRELOAD": str(shim)} if shim else {}
    return EngineSpec(
        name="falco", port=port, ready_line=None, marks=(FALCO_OPENING,), env=env,
        cmd=[str(run_sh), "-r", str(rules), *(w for o in options for w in ("-o", o)),
             "-o", "json_output=true",
             "-o", "file_output.enabled=true", "-o", "file_output.keep_alive=true",
             "-o", f"file_output.filename={work / 'falco-alerts.json'}",
             "-o", "stdout_output.enabled=false",
             "-o", "metrics.enabled=true", "-o", "metrics.output_rule=false",
             "-o", "webserver.enabled=true", "-o", "webserver.prometheus_metrics_enabled=true",
             "-o", "webserver.listen_address=127.0.0.1", "-o", f"webserver.listen_port={port}"])


def falco_shim(work: Path) -> Path:
    """The compiled LD_PRELOAD shim (bench/c/falco_sigdeliver_shim.c) in ``work``."""
    return build_c(C_DIR / "falco_sigdeliver_shim.c", work, shared=True)


def falco_needs_shim(failure: EngineFailed) -> bool:
    """Whether Falco stopped for the one reason the shim works around (its signal_deliver
    program refused by this kernel's verifier)."""
    return any(FALCO_SIGDELIVER_FAILURE in ln for ln in failure.lines)


def find_falco() -> tuple[Path | None, str]:
    """(run.sh, "") or (None, why): ``$FALCONET_FALCO_BIN`` (the falco-bin directory or its
    run.sh), else ../shared/falco-bin/run.sh next to the checkout's parent."""
    env = os.environ.get("FALCONET_FALCO_BIN")
    cands = [Path(env)] if env else [REPO.parent / "shared" / "falco-bin"]
    for c in cands:
        run_sh = c / "run.sh" if c.is_dir() else c
        if run_sh.is_file() and os.access(run_sh, os.X_OK):
            return run_sh, ""
    where = env or str(cands[0])
    return None, f"no Falco binary: {where}/run.sh not found (set $FALCONET_FALCO_BIN)"


def temp_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o700)
    return d


def remove_tree(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)
