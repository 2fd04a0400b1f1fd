"""A live engine under test: ``falconet run --json`` as a subprocess, its alerts collected.

Alerts are read line by line on a thread and stamped with the time they were received, so the
detection latency of a case is ``received - event time`` (the event time is the kernel's
timestamp the alert carries).
"""

from __future__ import annotations

import calendar
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falconet.priorities import Priority
from falconet.simulate.private_hosts import wrap, write_hosts_file

#: a stderr line that says the collector's probes are attached (falconet.collector.source)
READY_MARKERS = ("tracepoints attached",)


@dataclass
class ReceivedAlert:
    """One alert line of the engine, as received."""

    rule: str
    priority: Priority
    output: str
    output_fields: dict[str, Any]
    time_ns: int          # event time (kernel timestamp, ns since the epoch)
    received_ns: int      # when this process read the line
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return (self.received_ns - self.time_ns) / 1e6

    @property
    def container_id(self) -> str:
        v = self.output_fields.get("container.id")
        return "" if v in (None, "host") else str(v)


def parse_iso_ns(text: str) -> int:
    """``2026-11-28T18:25:01.123456789Z`` → ns since the epoch (UTC)."""
    text = text.strip().rstrip("Z")
    if text.endswith("+0000") or text.endswith("+00:00"):
        text = text.rsplit("+", 1)[0]
    main, _, frac = text.partition(".")
    secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def parse_alert_line(line: str, received_ns: int) -> ReceivedAlert | None:
    """Parse one JSON alert line (Falco's json_output format); ``None`` for non-alert lines."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        d = json.loads(line)
        rule = d["rule"]
        prio = Priority.parse(d.get("priority", "debug"))
    except (ValueError, KeyError, TypeError):
        return None
    fields = d.get("output_fields") or {}
    t = fields.get("evt.rawtime")
    if not isinstance(t, int) or isinstance(t, bool):
        t = fields.get("evt.time")
    if not isinstance(t, int) or isinstance(t, bool):
        try:
            t = parse_iso_ns(d["time"])
        except (KeyError, ValueError, TypeError):
            t = received_ns
    return ReceivedAlert(rule=rule, priority=prio, output=str(d.get("output", "")),
                         output_fields=fields, time_ns=t, received_ns=received_ns, raw=d)


def falconet_argv() -> list[str]:
    """How to start this installation's ``falconet`` (the console script beside our Python, so
    the engine's process is named ``falconet``)."""
    script = Path(sys.executable).parent / "falconet"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "falconet"]


class LiveEngine:
    """``falconet run --json`` with the given rules; alerts in :attr:`alerts`. ``hosts``
    (name -> address) are resolved by the engine only: it runs in a private mount namespace with
    its own /etc/hosts (:mod:`falconet.simulate.private_hosts`; root)."""

    def __init__(self, rules: Sequence[str] | None = None, extra_args: Sequence[str] = (),
                 argv: Sequence[str] | None = None, hosts: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.rules = list(rules or [])
        self.env = dict(env or {})          # added to the engine's environment
        self.hosts = dict(hosts or {})
        self._hosts_file: str | None = None
        self.extra_args = list(extra_args)
        self.base_argv = list(argv) if argv else falconet_argv()
        self.alerts: list[ReceivedAlert] = []
        self.proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()
        self._stderr_lines: list[str] = []
        self._stderr_file = tempfile.NamedTemporaryFile(prefix="falconet-test-", suffix=".log",
                                                        delete=False)
        self._threads: list[threading.Thread] = []
        self.ready_reason = ""

    @property
    def argv(self) -> list[str]:
        argv = [*self.base_argv, "run", "--json", "-v", "--no-metrics"]
        for r in self.rules:
            argv += ["--rules", r]
        if self.rules:
            # Rules written for Falco (stable) leave container fields out of their outputs and
            # rely on Falco's default `append_output: [suggested_output: true]`; do the same so
            # alerts carry container.id. Falconet's default rules name those fields themselves.
            argv += ["-o", "append_output=[{suggested_output: true}]"]
        return argv + self.extra_args

    def start(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        argv = self.argv
        try:
            if self.hosts:
                self._hosts_file = write_hosts_file(self.hosts)
                argv = wrap(argv, self._hosts_file)     # RuntimeError without `unshare`
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, bufsize=1, env=env,
                                         start_new_session=True)
        except (OSError, RuntimeError):
            if self._hosts_file is not None:
                os.unlink(self._hosts_file)
                self._hosts_file = None
            raise
        for target in (self._read_stdout, self._read_stderr):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            a = self.parse(line, time.time_ns())
            if a is not None:
                with self._cond:
                    self.alerts.append(a)
                    self._cond.notify_all()

    def parse(self, line: str, received_ns: int) -> ReceivedAlert | None:
        """One stdout line as an alert (``None``: not one); an engine of another kind may
        override it."""
        return parse_alert_line(line, received_ns)

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr_file.write(line.encode())
            self._stderr_file.flush()
            with self._cond:
                self._stderr_lines.append(line.rstrip("\n"))
                del self._stderr_lines[:-200]
                self._cond.notify_all()

    @property
    def stderr_tail(self) -> str:
        with self._cond:
            return "\n".join(self._stderr_lines[-20:])

    @property
    def log_path(self) -> str:
        return self._stderr_file.name

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0,
                   canary: Callable[[str], None] | None = None) -> None:
        """Block until the collector reports its probes attached, then (with ``canary``) until
        an alert caused by the canary arrives. ``canary(token)`` performs a behaviour whose
        alert output contains ``token``. Raises ``RuntimeError`` with the engine's stderr."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(m in ln for ln in self._stderr_lines for m in READY_MARKERS):
                if not self.running():
                    raise RuntimeError(f"the engine exited (rc {self.proc.returncode if self.proc else '?'})"
                                       f":\n{self.stderr_tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"the engine did not report ready within {timeout:.0f}s:\n"
                                       f"{self.stderr_tail}")
                self._cond.wait(min(left, 0.2))
        self.ready_reason = "collector attached"
        if canary is None:
            return
        # end to end: an event must make it through the whole pipeline
        token = f"falconet-canary-{secrets.token_hex(4)}"
        canary_deadline = min(deadline, time.monotonic() + 15)
        while time.monotonic() < canary_deadline:
            canary(token)
            if self.wait_for(lambda a: token in a.output, time.monotonic() + 1.0) is not None:
                self.ready_reason = "canary alert received"
                return
        self.ready_reason = "collector attached (no canary alert: the rules do not cover it)"

    def wait_for(self, pred: Callable[[ReceivedAlert], bool], deadline: float,
                 start: int = 0) -> ReceivedAlert | None:
        """The first alert (from index ``start``) matching ``pred``, waiting until ``deadline``
        (a ``time.monotonic()`` value)."""
        i = start
        with self._cond:
            while True:
                while i < len(self.alerts):
                    if pred(self.alerts[i]):
                        return self.alerts[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or not self.running():
                    return None
                self._cond.wait(min(left, 0.1))

    def snapshot(self) -> list[ReceivedAlert]:
        with self._cond:
            return list(self.alerts)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for t in self._threads:
            t.join(2)
        self._stderr_file.close()
        if self._hosts_file is not None:
            os.unlink(self._hosts_file)
            self._hosts_file = None
        return self.proc.returncode

    def __enter__(self) -> LiveEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
