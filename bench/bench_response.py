#!/usr/bin/env python3
"""Response latency benchmark (live, root); prints JSON.

A real ``falconet run`` (eBPF collector, default rules, container and response plugins) with
two policies, measured idle and under load (processes hammering open/close):

- ``kill``: an attacker process connects to a mining-pool port (the default Critical rule
  ``Connection to Mining Pool Port``) and then spins a tight loop that counts iterations into
  shared memory. Reported: latency from the connect event's timestamp to the SIGKILL having been
  sent (``latency_ms`` of the audit record), p50/p99/max, and how many loop iterations the
  attacker completed after its triggering syscall (what a userspace response lets through).
  Goal: p99 < 20 ms idle.
- ``freeze``: ``docker exec`` of a miner command line in a running container (``Crypto Miner
  Launched``); latency from the exec event's timestamp to the container's cgroup reported
  frozen. The bench thaws it between rounds.

Each phase reports the 1-minute load average it ran at: on a shared machine "idle" is only as
idle as the neighbours let it be.

usage: bench_response.py [--rounds N] [--freeze-rounds M] [--load-procs K]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI_RT_DIR", "/tmp/falconet-ci")
IMAGE = os.environ.get("TEST_IMAGE", "docker.io/library/busybox-local:latest").removeprefix(
    "docker.io/library/")
DOCKER_SOCK = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
MINER_PORTS = (45700, 45560, 14433, 9332, 8899, 5730, 3357)
TOK = secrets.token_hex(4)

ATTACKER = """
import mmap, os, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR)
view = memoryview(mmap.mmap(fd, 8)).cast("Q")
s = socket.socket()
s.setblocking(False)
try:
    s.connect(("127.0.0.1", int(sys.argv[2])))     # the triggering syscall
except BlockingIOError:
    pass
n = 0
while True:
    n += 1
    view[0] = n
"""
#: CPU load: spinners that make no syscalls (the engine competes for CPU, not for events)
CPU_LOAD = "while True:\n    pass\n"
#: event load: ~2000 open/close pairs per second per process (the engine has events to chew)
EVENT_LOAD = ("import os, time\nwhile True:\n    for _ in range(20):\n"
              "        os.close(os.open('/etc/hostname', os.O_RDONLY))\n    time.sleep(0.01)\n")


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 3)


def summary(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": pct(xs, 0.5), "p99": pct(xs, 0.99),
            "max": round(max(xs), 3) if xs else None,
            "mean": round(statistics.fmean(xs), 3) if xs else None}


def listener() -> tuple[socket.socket, int]:
    for port in MINER_PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.listen(512)
        return s, port
    raise SystemExit("no mining-pool port of the default list is free on 127.0.0.1")


class Engine:
    def __init__(self, tmp: Path, container: str | None) -> None:
        self.audit = tmp / "audit.jsonl"
        pol = [{"name": "bench-kill", "allow_host": True, "dedup_seconds": 0,
                "breaker": {"max_targets": 100000, "window_seconds": 1},
                "match": {"rules": ["Connection to Mining Pool Port"],
                          "condition": f"proc.cmdline contains fnt-bench-{TOK}"},
                "actions": [{"action": "kill"}]}]
        if container:
            pol.append({"name": "bench-freeze", "dedup_seconds": 0,
                        "breaker": {"max_targets": 100000, "window_seconds": 1},
                        "match": {"rules": ["Crypto Miner Launched"],
                                  "condition": f"container.id = {container[:12]}"},
                        "actions": [{"action": "freeze"}]})
        cfg = {"plugins": {"container": {"docker_socket": DOCKER_SOCK},
                           "response": {"audit_log": str(self.audit)}},
               "outputs": {"stdout": {"enabled": False}}, "responses": pol}
        (tmp / "falconet.yaml").write_text(json.dumps(cfg))
        self.err = tmp / "stderr.txt"
        exe = Path(sys.executable).parent / "falconet"
        self.proc = subprocess.Popen([str(exe), "run", "-c", str(tmp / "falconet.yaml"),
                                      "--no-metrics"], cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.err.open("w"))
        self._seen = 0

    def records(self) -> list[dict]:
        if not self.audit.exists():
            return []
        return [json.loads(x) for x in self.audit.read_text().splitlines() if x.strip()]

    def wait_record(self, pred, timeout: float = 10.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.records():
                if pred(r):
                    return r
            if self.proc.poll() is not None:
                raise SystemExit(f"falconet exited: {self.err.read_text()[-2000:]}")
            time.sleep(0.01)
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def one_kill(eng: Engine, tmp: Path, port: int) -> tuple[float, int] | None:
    counter = tmp / f"n-{secrets.token_hex(3)}"
    counter.write_bytes(b"\0" * 8)
    p = subprocess.Popen([sys.executable, "-c", ATTACKER, str(counter), str(port),
                          f"fnt-bench-{TOK}"], stdin=subprocess.DEVNULL)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None
    n = int.from_bytes(counter.read_bytes()[:8], "little")
    counter.unlink()
    rec = eng.wait_record(lambda r: r.get("policy") == "bench-kill" and r.get("result") == "done"
                          and r.get("target", {}).get("pid") == p.pid, 5)
    return (rec["latency_ms"], n) if rec else None


def thaw_all(eng: Engine) -> None:
    """Thaw every cgroup a bench freeze touched (a late freeze must not wedge the next exec)."""
    for r in eng.records():
        undo = r.get("undo") if r.get("policy") == "bench-freeze" else None
        if isinstance(undo, dict):
            f = "freezer.state" if undo["kind"] == "v1" else "cgroup.freeze"
            try:
                Path(undo["dir"], f).write_text("THAWED" if undo["kind"] == "v1" else "0")
            except OSError:
                pass


def one_freeze(eng: Engine, name: str) -> float | None:
    """``name``: the container's name (docker exec); its id is in the policy."""
    before = {r.get("id") for r in eng.records()}
    try:
        subprocess.run(["docker", "exec", name, "/bin/true",
                        "stratum+tcp://pool.minexmr.com:4444"],
                       check=False, capture_output=True, timeout=30)
        rec = eng.wait_record(lambda r: r.get("policy") == "bench-freeze"
                              and r.get("result") == "done" and r.get("id") not in before, 15)
    except subprocess.TimeoutExpired:
        rec = None
    finally:
        thaw_all(eng)
    return rec["latency_ms"] if rec else None


def phase(eng: Engine, tmp: Path, port: int, rounds: int, freeze_rounds: int,
          container: str | None) -> dict:
    lat, iters, misses = [], [], 0
    for _ in range(rounds):
        r = one_kill(eng, tmp, port)
        if r is None:
            misses += 1
            continue
        lat.append(r[0])
        iters.append(float(r[1]))
        time.sleep(0.05)
    out = {"kill": {"latency_ms": summary(lat),
                    "attacker_iterations_after_syscall": summary(iters), "missed": misses}}
    if container:
        fl = [x for x in (one_freeze(eng, container) for _ in range(freeze_rounds))
              if x is not None]
        out["freeze"] = {"latency_ms": summary(fl), "missed": freeze_rounds - len(fl)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--freeze-rounds", type=int, default=10)
    ap.add_argument("--load-procs", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (eBPF, cgroups)")
    tmp = Path(tempfile.mkdtemp(prefix="falconet-bench-response-"))
    lsock, port = listener()
    name = None
    if shutil.which("docker") and os.path.exists(DOCKER_SOCK):
        name = f"fnt-bench-{TOK}"
        cp = subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", IMAGE,
                             "sh", "-c", "while :; do sleep 1; done"], capture_output=True,
                            text=True, timeout=60, check=False)
        cid = cp.stdout.strip() if cp.returncode == 0 else None
        if cid is None:
            name = None
    eng = Engine(tmp, cid if name else None)
    loads: list[subprocess.Popen] = []
    try:
        # ready: the first attacker that gets killed (the probes attach in a few seconds)
        deadline = time.monotonic() + 90
        while one_kill(eng, tmp, port) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the engine never acted")
        result: dict = {"port": port, "rounds": args.rounds, "cpus": os.cpu_count(),
                        "idle": {"loadavg_1m": os.getloadavg()[0], **phase(
                            eng, tmp, port, args.rounds, args.freeze_rounds, name)}}
        for label, prog in (("cpu_load", CPU_LOAD), ("event_load", EVENT_LOAD)):
            loads = [subprocess.Popen([sys.executable, "-c", prog], stdin=subprocess.DEVNULL)
                     for _ in range(args.load_procs)]
            time.sleep(1.0)
            try:
                result[label] = {"load_procs": args.load_procs,
                                 "loadavg_1m": os.getloadavg()[0], **phase(
                                     eng, tmp, port, args.rounds, args.freeze_rounds, name)}
            finally:
                for p in loads:
                    p.kill()
                    p.wait()
            loads = []
        result["goal_kill_p99_idle_ms"] = 20
        print(json.dumps(result, indent=2))
    finally:
        for p in loads:
            p.kill()
        eng.stop()
        lsock.close()
        if name:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
