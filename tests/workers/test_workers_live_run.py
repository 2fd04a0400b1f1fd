"""``falconet run`` on the real kernel with ``collector.workers: 2``: each worker reads its own
rings, fork children stay with the worker that holds the fds they inherit, the alerts are those
of one worker, a worker that dies stops the engine (no orphans), and a rules reload reaches the
workers and the kernel filter."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import need_bcc, wait_for
from falconet.workers.partition import _mix
from workers_helpers import REDIRECTING_CHILDREN, Engine, Listener

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.slow]

TAG = f"i18live{os.getpid()}"
#: a root: started before the engine (so the kernel hashes its tgid to a worker), it waits for a
#: line on stdin, then reads a sensitive file, connects, and forks a child that redirects the
#: inherited socket onto stdin/stdout and execs a shell on it (fd inheritance across fork)
ROOT = """
import os, socket, sys
port = int(sys.argv[1])
sys.stdin.readline()
try:
    open('/etc/shadow').read()
except OSError:
    pass
s = socket.create_connection(('127.0.0.1', port))
""" + REDIRECTING_CHILDREN + """
print('done', flush=True)
"""


def roots(port: int, per_worker: int = 2, n: int = 2) -> list[subprocess.Popen[str]]:
    """Root processes, ``per_worker`` owned by each of ``n`` workers (by the kernel's hash)."""
    got: dict[int, list[subprocess.Popen[str]]] = {w: [] for w in range(n)}
    spare = []
    for _ in range(64):
        if all(len(v) >= per_worker for v in got.values()):
            break
        p = subprocess.Popen([sys.executable, "-c", ROOT, str(port), TAG], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        w = _mix(p.pid) % n
        (got[w] if len(got[w]) < per_worker else spare).append(p)
    for p in spare:
        p.kill()
        p.wait()
    out = [p for v in got.values() for p in v]
    assert len(out) == per_worker * n, "no roots for every worker"
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def mine(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if TAG in json.dumps(a.get("output_fields", {}))]


def normalized(alerts: list[dict[str, Any]], port: int) -> Counter[tuple[str, str, str]]:
    """What must not depend on the worker count: rule, process and connection (the client's
    ephemeral port, pids and times differ between two runs)."""
    out: Counter[tuple[str, str, str]] = Counter()
    for a in alerts:
        f = a.get("output_fields", {})
        fd = str(f.get("fd.name", ""))
        fd = re.sub(r"^[^>]*->", "*->", fd)      # the client side, as the kernel knew it
        out[(a["rule"], str(f.get("proc.name")), fd)] += 1
    return out


def workload(engine: Engine, rs: list[subprocess.Popen[str]], want: int = 16
             ) -> list[dict[str, Any]]:
    """Let the roots run; wait for their Reverse Shell Redirect alerts (2 per child)."""
    for p in rs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in rs:
        assert p.stdout.readline().strip() == "done"
        p.wait(timeout=30)

    def enough() -> bool:
        return sum(a["rule"] == "Reverse Shell Redirect" for a in mine(engine.alerts())) >= want
    assert wait_for(enough, timeout=60, step=0.2), (
        [(a["rule"], a.get("output_fields", {}).get("fd.name")) for a in mine(engine.alerts())],
        engine.err[-5:])
    time.sleep(1.0)          # the merge's bounded delay and any late duplicate
    return mine(engine.alerts())


def summary_counts(err: list[str]) -> list[tuple[int, int]]:
    """``(events, alerts)`` per worker from the run's summary line."""
    line = next(x for x in err if "workers: 2 live" in x)
    return [(int(a), int(b)) for a, b in re.findall(r"\d+: (\d+) events, (\d+) alerts", line)]


@pytest.mark.parametrize("key", ["lineage", "cgroup"])
def test_two_live_workers_alert_as_one_with_inherited_fds(key: str) -> None:
    """Under each live ``collector.partition``: ``lineage`` keeps the children on their
    parent's worker, ``cgroup`` keeps this host's processes (one cgroup) together."""
    need_bcc()
    lst = Listener()
    try:
        results = {}
        for n in (1, 2):
            rs = roots(lst.port)          # before the engine: roots, hashed to both workers
            eng = Engine(n, "-o", f"collector.partition={key}")
            try:
                got = workload(eng, rs)
            finally:
                rc = eng.stop()
                for p in rs:
                    if p.poll() is None:
                        p.kill()
            assert rc == 0, "".join(eng.err)
            results[n] = normalized(got, lst.port)
            if n == 2 and key != "cgroup":
                # every worker's ring is used: each owns roots, and each returned their alerts
                counts = summary_counts(eng.err)
                assert len(counts) == 2 and all(ev > 0 and al > 0 for ev, al in counts), eng.err
        redirects = {k: v for k, v in results[2].items() if k[0] == "Reverse Shell Redirect"}
        # the child's fd 0/1 is the socket it inherited: its worker holds its parent's fd table
        assert sum(redirects.values()) == 16
        assert all(k[2] == f"*->127.0.0.1:{lst.port}" for k in redirects), redirects
        assert results[2] == results[1]
    finally:
        lst.close()


def test_a_dead_worker_stops_the_engine_and_leaves_no_orphan() -> None:
    need_bcc()
    eng = Engine(2)
    workers = list(eng.workers)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    rc = eng.proc.wait(timeout=60)
    eng.stop()
    assert rc == 1, "".join(eng.err)
    assert any("worker 1 exited" in e for e in eng.err), eng.err
    assert wait_for(lambda: not any(alive(p) for p in workers), timeout=10)


def test_sigterm_and_sigkill_of_the_engine_stop_every_worker() -> None:
    need_bcc()
    eng = Engine(2)
    workers = list(eng.workers)
    assert eng.stop(signal.SIGTERM) == 0, "".join(eng.err)
    assert not any(alive(p) for p in workers)
    assert any("workers: 2 live" in e for e in eng.err), eng.err
    eng = Engine(2)
    workers = list(eng.workers)
    eng.proc.kill()                   # no handler runs: PR_SET_PDEATHSIG ends the workers
    eng.stop()
    assert wait_for(lambda: not any(alive(p) for p in workers), timeout=10)


def test_rules_reload_reaches_the_workers_and_the_kernel_filter(tmp_path: Path) -> None:
    need_bcc()
    rules = tmp_path / "rules.yaml"
    target = tmp_path / "canary-after-reload"
    target.write_text("x")
    rule = """
- rule: {name}
  desc: test
  condition: evt.type in (open, openat, openat2) and fd.name = "{path}"
  output: opened (file=%fd.name pid=%proc.pid)
  priority: WARNING
"""
    rules.write_text(rule.format(name="Before", path=str(tmp_path / "nothing")))
    eng = Engine(2, rules=str(rules))
    try:
        rules.write_text(rule.format(name="After", path=str(target)))
        eng.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: any("rules reloaded" in e for e in eng.err), timeout=60), eng.err
        time.sleep(1.0)                # the workers load the rules on their loop

        def opened() -> bool:
            target.read_text()
            return any(a["rule"] == "After" for a in eng.alerts())
        assert wait_for(opened, timeout=30, step=0.3), (eng.alerts(), eng.err)
    finally:
        assert eng.stop() == 0, "".join(eng.err)
