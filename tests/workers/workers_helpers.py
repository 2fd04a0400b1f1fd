"""Run a replay in-process with N workers and read back what the one output stage wrote."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from conftest import wait_for
from falconet.app import App
from falconet.capture import CaptureWriter
from falconet.config import load_config
from falconet.events import Event
from falconet.state.tables import FdInfo, ThreadInfo, thread_to_dict

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RULES = str(REPO / "rules" / "falconet_rules.yaml")
EXE = str(Path(sys.executable).parent / "falconet")
CID = "ab" * 32


def replay(capture: str, rules: str, workers: int, out_dir: str, *, extra: list[Any] = (),
           config: list[str] = (), **options: Any) -> tuple[int, App, list[dict[str, Any]]]:
    """(exit code, the app, the alerts the file output wrote, uuid removed, in order).
    ``config``: more ``-o`` overrides."""
    out = os.path.join(out_dir, f"alerts-{workers}-{len(os.listdir(out_dir))}.json")
    cfg = load_config(None, ["outputs.stdout.enabled=false", "outputs.file.enabled=true",
                             f"outputs.file.path={out}", "outputs.file.json=true",
                             "metrics.enabled=false", *config])
    app = App(cfg, source_name="replay", extra_plugins=list(extra))
    app.load_plugins()
    app.load_ruleset([rules])
    app.build_pipeline()
    opts = {"path": capture, "progress": False, "workers": workers,
            "restore_state": lambda plugin, data: app.host.restore_state(plugin, data, app.ctx),
            **options}
    rc = app.run("replay", opts)
    alerts = []
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                d.pop("uuid", None)
                alerts.append(d)
    return rc, app, alerts


def process(pid: int, comm: str, *, container: bool = True, cwd: str = "/srv") -> ThreadInfo:
    t = ThreadInfo(tid=pid, pid=pid, ptid=1, comm=comm, exe=f"/usr/bin/{comm}",
                   exepath=f"/usr/bin/{comm}", cwd=cwd, cgroup_id=77,
                   container_id=CID if container else "", start_ts=1)
    for fd in (0, 1, 2):
        t.fds[fd] = FdInfo(fd, "f", "/dev/null", "/dev/null", 2)
    return t


class Script:
    """Writes a capture event by event (timestamps increase by 1 µs)."""

    def __init__(self, path: str, procs: list[ThreadInfo]) -> None:
        self.w = CaptureWriter(path, host="h", kernel="6.1", start_ns=1)
        self.w.write_state("core-state", {"version": 1, "snapshot": True,
                                          "threads": [thread_to_dict(t) for t in procs]})
        self.ts = 1_000_000

    def __call__(self, typ: str, pid: int, args: dict[str, Any], res: int | None = 0) -> None:
        self.ts += 1000
        self.w.write_event(Event("syscall", typ, self.ts, pid, pid, {**args, "cgroup_id": 77},
                                 res))

    def fork(self, parent: int, child: int) -> None:
        self("procfork", parent, {"child_tid": child, "child_pid": child, "parent_tid": parent,
                                  "parent_pid": parent, "child_comm": "sh"}, None)
        self("clone", parent, {"child_tid": child, "child_pid": child, "flags": 17}, child)
        self("clone", child, {"child_tid": 0, "child_pid": 0, "flags": 17}, 0)

    def close(self) -> None:
        self.w.close()


class Listener:
    """A local TCP server that accepts and holds every connection (closed at the end)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                self.accepted.append(self.sock.accept()[0])
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


#: Python run in a process that holds a connected socket ``s``: two children, each putting the
#: inherited socket on stdin and stdout (two "Reverse Shell Redirect" alerts) and exec'ing a
#: shell that exits at once
REDIRECTING_CHILDREN = """
for _ in range(2):
    c = os.fork()
    if c == 0:
        os.dup2(s.fileno(), 0)
        os.dup2(s.fileno(), 1)
        os.execv('/bin/sh', ['sh', '-c', 'exit 0'])
    os.waitpid(c, 0)
"""


class Engine:
    """``falconet run`` in the background, its alerts (JSON lines) and stderr collected."""

    def __init__(self, workers: int, *extra: str, rules: str = DEFAULT_RULES) -> None:
        self.proc = subprocess.Popen([EXE, "run", "-r", rules, "--json", "--no-metrics",
                                      "-o", f"collector.workers={workers}", "--duration", "180",
                                      *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=lambda: self.out.extend(iter(self.proc.stdout.readline, "")),
                             daemon=True),
            threading.Thread(target=lambda: self.err.extend(iter(self.proc.stderr.readline, "")),
                             daemon=True)]
        for t in self._readers:
            t.start()
        assert wait_for(lambda: any("watching" in e for e in self.err) or
                        self.proc.poll() is not None, timeout=180), self.err
        assert self.proc.poll() is None, "".join(self.err)
        self.workers = children(self.proc.pid)

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in list(self.out) if x.strip()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for t in self._readers:
            t.join(10)
        return rc


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]
