#!/usr/bin/env python3
"""Cost and effect of the rule-derived kernel filter and of I/O-buffer tracing, per syscall.

The kernel's own BPF stats (``run_time_ns``/``run_cnt`` per program, as in
``bench_collector_kernel.py``) give the in-kernel cost of the ``sys_exit`` dispatcher and the
handler it tail-calls, per traced syscall, independent of scheduling noise; the collector's
``C_EVENTS`` counter gives how many records reached the ring per operation. A consumer thread
frees the rings without decoding, so nothing is lost and Python costs nothing here.

Workloads (each in a child process, ``--ops`` operations):

- ``open_close``: ``close(open("/usr/lib/os-release"))``, a read no stable rule can match;
- ``open_close_sensitive``: the same of ``/etc/shadow``, which "Read sensitive file untrusted"
  needs (never filtered);
- ``write_devnull``: 64-byte ``write`` to /dev/null (not a socket);
- ``send_plain`` / ``send_stratum``: 64-byte ``send`` on a loopback TCP connection of an HTTP
  line / of a Stratum ``mining.subscribe`` line.

Configurations: the collector with the stable rules' open types and no filter (``unfiltered``),
with the filter derived from the stable rules (``filtered``), with a plan whose one clause
reads ``/etc/shadow`` by ``cat`` only (``named``: the workload's interpreter is not ``cat``,
so even the sensitive read drops, reason ``process``), and with ``write``/``sendto``
traced for a rule that needs ``evt.buffer`` (the default rules' "Cryptominer Stratum Protocol")
without and with its I/O filter. Then, through the whole engine (``falconet run`` with the
default rules, which trace ``write``), a tight loop of ``--engine-writes`` writes to /dev/null:
kernel drops and the engine's CPU.

Needs root and bcc. Prints JSON. Usage: ``sudo .venv/bin/python bench/bench_kernel_filter.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_collector_kernel import enable_stats, new_ids, prog_stats  # noqa: E402
from falconet.collector.btf import BTF  # noqa: E402
from falconet.collector.source import CollectorConfig, EbpfSource  # noqa: E402
from falconet.kfilter import Clause, FilterPlan, IoFilter, TypeFilter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "open_close": "p = '/usr/lib/os-release'\nfor _ in range(n): close(open(p, O_RDONLY))",
    "open_close_sensitive": "p = '/etc/shadow'\nfor _ in range(n): close(open(p, O_RDONLY))",
    "write_devnull": "fd = open('/dev/null', O_WRONLY); b = b'x' * 64\n"
                     "for _ in range(n): write(fd, b)",
    "send_plain": "import socket\ns = socket.create_connection(('127.0.0.1', PORT)); "
                  "b = b'GET / HTTP/1.1 ' + b'x' * 49\nfor _ in range(n): s.send(b)",
    "send_stratum": "import socket\ns = socket.create_connection(('127.0.0.1', PORT)); "
                    "b = b'{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": []}' + "
                    "b' ' * 12\nfor _ in range(n): s.send(b)",
}
OPEN_TYPES = frozenset({"openat", "open", "openat2", "creat", "close", "execve", "execveat",
                        "clone", "clone3", "fork", "vfork", "procfork", "procexit", "chdir",
                        "fchdir", "setuid", "setgid", "setresuid", "setresgid"})
IO_TYPES = OPEN_TYPES | {"write", "sendto", "sendmsg", "writev", "socket", "connect"}


def _sink() -> tuple[socket.socket, int]:
    """A loopback listener that reads and discards everything."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: [None for _ in iter(lambda: c.recv(1 << 16),
                                                                  b"")], daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def run_workload(kind: str, ops: int, port: int) -> None:
    setup, _, loop = WORKLOADS[kind].replace("PORT", str(port)).rpartition("\n")
    code = (f"from os import open, close, write, O_RDONLY, O_WRONLY\nn = {ops}\n{setup}\n{loop}\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def stable_plan() -> FilterPlan | None:
    """The plan the engine derives from Falco's stable rules (None when they are not here)."""
    from falconet import upstream  # noqa: PLC0415
    from falconet.app import App  # noqa: PLC0415
    from falconet.config import load_config  # noqa: PLC0415
    path = upstream.falco_rules_path()
    if path is None or not os.path.exists(path):
        return None
    app = App(load_config(None, []))
    app.load_plugins()
    app.load_ruleset([str(path)])
    return app.kernel_filter_plan()


def named_plan() -> FilterPlan:
    """``open_read and fd.name = /etc/shadow and proc.name = cat``, on every open type."""
    c = Clause(any_path=False, exact=frozenset({"/etc/shadow"}), prefixes=frozenset(),
               need_read=True, need_write=False, need_success=False, names=frozenset({"cat"}))
    return FilterPlan({t: TypeFilter(t, (c,)) for t in ("open", "openat", "openat2", "creat")},
                      {}, True)


def dispatcher_stats(offs: dict[str, int], ids: set[int]) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of our sys_exit dispatcher (its name is cut to 15 bytes; the
    handlers it tail-calls are accounted to it)."""
    t = c = 0
    for pid, (n, rt, rc) in prog_stats(offs).items():
        if pid in ids and n.startswith("falconet_sys"):
            t, c = t + rt, c + rc
    return t, c


def measure(plan: FilterPlan | None, types: frozenset[str], kinds: list[str], ops: int,
            port: int, offs: dict[str, int]) -> dict:
    src = EbpfSource(CollectorConfig())
    old = set(prog_stats(offs))
    src.start(types, plan=plan)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            for ring in src.rings.rings:
                for _ in ring.records(1 << 16):
                    pass
            time.sleep(0.001)
    th = threading.Thread(target=drain, daemon=True)
    th.start()
    out: dict[str, dict] = {}
    try:
        ids = new_ids(offs, old)
        time.sleep(0.3)
        for kind in kinds:
            ev0 = src.read_counters().events
            t0, c0 = dispatcher_stats(offs, ids)
            run_workload(kind, ops, port)
            t1, c1 = dispatcher_stats(offs, ids)
            ev1 = src.read_counters().events
            out[kind] = {"kernel_ns_per_op": round((t1 - t0) / ops, 1),
                         "records_per_op": round((ev1 - ev0) / ops, 3)}
        src.poll_stats()
        out["kernel_drops"] = {"n": src.read_counters().drops}
    finally:
        stop.set()
        th.join(2)
        src.close()
    return out


def engine_writes(n: int) -> dict:
    """The whole engine with the default rules (write traced for the Stratum rule): a tight
    loop of ``n`` 64-byte writes to /dev/null; kernel drops, filtered counts, engine CPU."""
    port = 18000 + os.getpid() % 1000
    env = dict(os.environ)
    p = subprocess.Popen([str(ROOT / ".venv/bin/falconet"), "run", "-c", str(ROOT / "falconet.yaml"),
                          "--metrics-port", str(port)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert p.stderr is not None
    for line in p.stderr:
        if "watching" in line:
            break
    time.sleep(1)

    def cpu() -> float:
        with open(f"/proc/{p.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    c0 = cpu()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import os\nfd = os.open('/dev/null', os.O_WRONLY)\n"
                    f"b = b'x' * 64\nfor _ in range({n}): os.write(fd, b)"], check=True)
    wall = time.perf_counter() - t0
    time.sleep(1.5)
    import urllib.request  # noqa: PLC0415
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    c1 = cpu()
    p.send_signal(signal.SIGINT)
    p.wait(30)
    drops = sum(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("falcosecurity_scap_n_drops_total"))
    filtered = {line.split("{", 1)[1].split("}")[0]: float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("falconet_kernel_filtered_events_total{")}
    return {"writes": n, "writes_per_s": round(n / wall), "kernel_drops": drops,
            "engine_cpu_s": round(c1 - c0, 2), "filtered": filtered}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--engine-writes", type=int, default=1_000_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (eBPF)"}))
        sys.exit(2)
    b = BTF.load()
    offs = {k: b.offset("bpf_prog_info", k) for k in ("name", "run_time_ns", "run_cnt")}
    offs["size"] = b.struct_size("bpf_prog_info")
    srv, port = _sink()
    stats_fd = enable_stats()
    plan = stable_plan()
    io_filters = {t: IoFilter(t, True, (b"mining.s", b"mining.a")) for t in
                  ("write", "sendto", "sendmsg", "writev")}
    kinds_open = ["open_close", "open_close_sensitive"]
    kinds_io = ["write_devnull", "send_plain", "send_stratum"]
    try:
        res = {
            "loadavg": os.getloadavg()[0],
            "stable_rules_plan": ("Falco's stable rules not found (set FALCONET_FALCO_RULES)"
                                  if plan is None else plan.describe()),
            "open_unfiltered": measure(None, OPEN_TYPES, kinds_open + kinds_io[:1], args.ops,
                                       port, offs),
            "open_filtered": (None if plan is None else
                              measure(plan, OPEN_TYPES, kinds_open, args.ops, port, offs)),
            "open_filtered_named": measure(named_plan(), OPEN_TYPES, kinds_open, args.ops,
                                           port, offs),
            "io_traced_unfiltered": measure(None, IO_TYPES, kinds_io, args.ops, port, offs),
            "io_traced_filtered": measure(FilterPlan({}, {}, False, io=io_filters), IO_TYPES,
                                          kinds_io, args.ops, port, offs),
        }
    finally:
        os.close(stats_fd)
        srv.close()
    res["engine_default_rules_write_loop"] = engine_writes(args.engine_writes)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
