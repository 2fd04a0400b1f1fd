"""Recording evidence live: a `falconet record --no-rules` engine runs while a simulator action,
a command, or the benign workload runs; the capture's focus (container or process tree, time
window) is written beside it (:mod:`.focus`), so only the behaviour counts as evidence.

Needs root and the eBPF collector (as ``falconet record``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from falconet.authoring.focus import Focus, save_focus
from falconet.simulate.live import falconet_argv

#: scripts/benign-workload.py of this checkout (or installation)
BENIGN_WORKLOAD = Path(__file__).resolve().parents[3] / "scripts" / "benign-workload.py"
#: `falconet record` prints this once its live source is attached (app.App.run)
READY_MARKER = "falconet: watching"
READY_TIMEOUT_S = 120.0
#: after the behaviour: let the collector drain its ring buffer into the capture
SETTLE_S = 0.5


class RecordError(RuntimeError):
    """Recording failed (the message carries the recorder's last stderr lines)."""


class Recorder:
    """``falconet record PATH --no-rules`` as a subprocess, ready when its probes attached."""

    def __init__(self, path: str, extra_args: Sequence[str] = ()) -> None:
        self.path = path
        self.argv = [*falconet_argv(), "record", path, "--no-rules", "--no-metrics",
                     *extra_args]
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.append(line.rstrip("\n"))
            del self._lines[:-50]
            if READY_MARKER in line:
                self._ready.set()
        self._ready.set()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(READY_TIMEOUT_S) or self.proc.poll() is not None:
            self.stop()
            raise RecordError("the recorder did not start:\n" + "\n".join(self._lines[-10:]))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            time.sleep(SETTLE_S)
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def action_focus(res: Any, recorder_pid: int, label: str) -> Focus:
    """The focus of one performed simulator action (an ``ActionResult``)."""
    if res.container_id:
        return Focus(container_id=res.container_id[:12], start_ns=res.start_ns,
                     end_ns=res.end_ns, label=label)
    # host: the processes this process started for it (never itself, never the recorder)
    return Focus(roots=[os.getpid()], exclude_roots=[recorder_pid], start_ns=res.start_ns,
                 end_ns=res.end_ns, label=label)


def record_actions(path: str, actions: Sequence[tuple[str, str | None] | tuple[str, str | None, bool | None]]
                   ) -> list[tuple[Any, Focus]]:
    """Perform simulator actions ``(name, context or None[, privileged])`` while one recorder
    runs; returns each action's result and focus."""
    from falconet.simulate.contexts import ContextPool  # noqa: PLC0415 - root-only machinery
    from falconet.simulate.runner import run_action, warm_up  # noqa: PLC0415

    out = []
    with ContextPool() as pool, Recorder(path) as rec:
        kinds = set()
        from falconet.simulate.actions import get_action  # noqa: PLC0415
        for name, where, *priv in actions:
            act = get_action(name)
            kind = where or act.where[0]
            if kind != "host":
                kinds.add((kind, act.privileged if not priv or priv[0] is None else priv[0]))
        warm_up(pool, kinds)
        for name, where, *priv in actions:
            res = run_action(pool, name, where, priv[0] if priv else None)
            out.append((res, action_focus(res, rec.pid, f"{name}@{res.context}")))
    return out


def record_action(path: str, name: str, where: str | None = None) -> Focus:
    """``--simulate ACTION``: perform it live while recording; writes the focus sidecar."""
    [(res, focus)] = record_actions(path, [(name, where)])
    if res.status != "done":
        raise RecordError(f"action {name} ({res.context}) was not performed: {res.status}: "
                          f"{res.reason}")
    save_focus(path, focus)
    return focus


def record_command(path: str, argv: Sequence[str], container: str | None = None,
                   timeout: float = 60) -> Focus:
    """``--record -- CMD``: run ``argv`` (in a throwaway ``container`` context: runc or docker)
    while recording; writes the focus sidecar."""
    if container:
        from falconet.simulate.contexts import make_context  # noqa: PLC0415
        ctx = make_context(container)
        ctx.check()
        ctx.start()
        try:
            with Recorder(path):
                start = time.time_ns()
                ctx.exec(list(argv), timeout=timeout)
                focus = Focus(container_id=ctx.container_id[:12], start_ns=start,
                              end_ns=time.time_ns(), label=" ".join(argv))
        finally:
            ctx.stop()
    else:
        with Recorder(path) as rec:
            start = time.time_ns()
            p = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
            p.wait(timeout)
            focus = Focus(roots=[p.pid], include_roots=True, exclude_roots=[rec.pid],
                          start_ns=start, end_ns=time.time_ns(), label=" ".join(argv))
    save_focus(path, focus)
    return focus


def record_benign(path: str, script: Path = BENIGN_WORKLOAD, timeout: float = 900) -> Focus:
    """The default negative evidence: the benign workload, recorded."""
    if not script.exists():
        raise RecordError(f"no benign workload at {script}: pass --negative CAPTURE")
    return record_command(path, [sys.executable, str(script)], timeout=timeout)
