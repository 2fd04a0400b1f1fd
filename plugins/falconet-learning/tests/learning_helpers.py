"""Synthetic captures and an in-process engine with the learning plugin (real SQLite, real
rules engine, real replay source; no containers: host profiles are keyed by executable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from falconet.app import App
from falconet.capture import CaptureWriter
from falconet.config import load_config
from falconet.events import Event
from falconet_learning import plugin

S = 1_000_000_000
T0 = 1_764_000_000 * S
NOOP_RULES = """\
- rule: Learning test noop
  desc: never matches
  condition: evt.type = kill and proc.name = never-such-process
  output: noop
  priority: DEBUG
"""


class Cap:
    """Builds a capture: processes forked from pid 1 and their syscalls."""

    def __init__(self, path: Path) -> None:
        self.w = CaptureWriter(str(path), host="learnhost", kernel="6.18.0", start_ns=T0)
        self.w.__enter__()
        self.next_fd = 10

    def spawn(self, ts: int, parent: int, pid: int, exe: str, argv: list[str] | None = None) -> None:
        self.w.write_event(Event("syscall", "procfork", ts, parent, parent,
                                 {"child_tid": pid, "child_pid": pid, "parent_tid": parent,
                                  "parent_pid": parent}))
        name = exe.rsplit("/", 1)[-1]
        self.w.write_event(Event("syscall", "execve", ts + 1, pid, pid,
                                 {"filename": exe, "argv": argv or [name], "cwd": "/",
                                  "exepath": exe, "uid": 0, "gid": 0, "comm": name[:15]}, 0))

    def open(self, ts: int, pid: int, path: str, flags: int = 0) -> None:
        self.next_fd += 1
        self.w.write_event(Event("syscall", "openat", ts, pid, pid,
                                 {"fd": self.next_fd, "dirfd": -100, "name": path,
                                  "flags": flags, "mode": 0}, self.next_fd))

    def connect(self, ts: int, pid: int, ip: str, port: int) -> None:
        self.next_fd += 1
        fd = self.next_fd
        self.w.write_event(Event("syscall", "socket", ts, pid, pid,
                                 {"domain": 2, "type": 1, "proto": 6}, fd))
        self.w.write_event(Event("syscall", "connect", ts + 1, pid, pid,
                                 {"fd": fd, "family": 2, "dip": ip, "dport": port,
                                  "sip": "127.0.0.1", "sport": 40000 + fd,
                                  "tuple": f"127.0.0.1:{40000 + fd}->{ip}:{port}"}, 0))

    def close(self) -> None:
        self.w.__exit__(None, None, None)


def run_replay(tmp: Path, capture: Path, state_dir: Path, *opts: str,
               rules: list[str] | None = None, engine: list[Any] | None = None
               ) -> list[dict[str, Any]]:
    """Replay ``capture`` with the learning plugin; returns the alerts (JSON) it raised (and
    appends the ``App`` to ``engine`` when given)."""
    out = tmp / f"alerts-{len(list(tmp.glob('alerts-*')))}.jsonl"
    noop = tmp / "noop_rules.yaml"
    noop.write_text(NOOP_RULES)
    cfg = load_config(None, ["outputs.stdout.enabled=false", "outputs.file.enabled=true",
                             f"outputs.file.path={out}", f"plugins.learning.state_dir={state_dir}",
                             "plugins.learning.quarantine_seconds=0",
                             # these tests cover file learning too (off by default)
                             "plugins.learning.files=true", *opts])
    app = App(cfg, source_name="replay", entry_points=False,
              extra_plugins=[("learning", plugin)])
    app.load_plugins()
    assert not app.host.failures, app.host.failures
    app.load_ruleset(rules or [str(noop)])
    app.build_pipeline()
    if engine is not None:
        engine.append(app)
    rc = app.run("replay", {"path": str(capture), "progress": False,
                            "restore_state": lambda p, d: app.host.restore_state(p, d, app.ctx)})
    assert rc == 0
    return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
