"""The safety model (docs/response.md): protected targets, rate limits, the circuit breaker and
deduplication. Everything here runs on the response worker, never the hot loop."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert

from falconet_response import procfs
from falconet_response.actions.base import Target
from falconet_response.policy import BreakerSpec, Policy, RateLimit


class Protection:
    """Targets no policy can hit, whatever it matches: PID 1, kernel threads, the engine and
    its children, host processes unless the policy sets ``allow_host``, and alerts matching the
    configured ``protected`` condition (``k8s.ns.name in (kube-system)``)."""

    def __init__(self, condition: Callable[[Alert], bool] | None = None,
                 engine_pid: int | None = None, proc: str = procfs.PROC) -> None:
        self.condition = condition
        self.engine_pid = engine_pid or os.getpid()
        self.proc = proc

    def reason(self, target: Target, alert: Alert, policy: Policy) -> str | None:
        """Why ``target`` must not be touched, or ``None``."""
        if self.condition is not None and self.condition(alert):
            return "matches the protected condition"
        if target.container_id is None and not policy.allow_host:
            return "host process (the policy does not set allow_host)"
        pid = target.pid
        if pid is None:
            return None
        if pid == 1:
            return "pid 1"
        if pid == self.engine_pid:
            return "the engine itself"
        lineage = [p.get("pid") for p in alert.lineage or []]
        if self.engine_pid in lineage:
            return "a child of the engine"
        st = procfs.stat(pid, self.proc)
        if st is not None:
            if st.kernel_thread:
                return "a kernel thread"
            if self.engine_pid in procfs.ancestors(pid, self.proc):
                return "a child of the engine"
        return None

    def pid_protected(self, pid: int) -> str | None:
        """For actions that pick further pids (process group, container init)."""
        if pid <= 1:
            return "pid 1"
        if pid == self.engine_pid:
            return "the engine itself"
        st = procfs.stat(pid, self.proc)
        if st is not None and st.kernel_thread:
            return "a kernel thread"
        if self.engine_pid in procfs.ancestors(pid, self.proc):
            return "a child of the engine"
        return None


class RateLimiter:
    """At most ``max`` runs of a policy per ``per_seconds`` (sliding window)."""

    def __init__(self, spec: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self.times: deque[float] = deque()

    def allow(self) -> bool:
        now = self.clock()
        while self.times and now - self.times[0] >= self.spec.per_seconds:
            self.times.popleft()
        if len(self.times) >= self.spec.max:
            return False
        self.times.append(now)
        return True


class Breaker:
    """Disarms a policy when it would act on more than ``max_targets`` distinct targets within
    ``window_seconds`` (a storm: a bad rule or policy, or an attacker provoking mass action).
    Stays open until :meth:`rearm` (SIGHUP or ``falconet respond rearm``)."""

    def __init__(self, spec: BreakerSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self.seen: dict[str, float] = {}
        self.tripped_at: float | None = None
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self.tripped_at is not None

    def admit(self, key: str) -> bool:
        """Record ``key``; ``False`` when the breaker is (or just became) open."""
        with self._lock:
            if self.tripped_at is not None:
                return False
            now = self.clock()
            w = self.spec.window_seconds
            self.seen = {k: t for k, t in self.seen.items() if now - t < w}
            self.seen[key] = now
            if len(self.seen) > self.spec.max_targets:
                self.tripped_at = now
                return False
            return True

    def rearm(self) -> bool:
        with self._lock:
            was = self.tripped_at is not None
            self.tripped_at = None
            self.seen.clear()
            return was


class Dedup:
    """One run per (action, target) within the policy's ``dedup_seconds``."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic,
                 capacity: int = 100_000) -> None:
        self.seconds = seconds
        self.clock = clock
        self.capacity = capacity
        self.last: dict[tuple[str, str], float] = {}

    def first(self, action: str, key: str) -> bool:
        if self.seconds <= 0:
            return True
        now = self.clock()
        k = (action, key)
        t = self.last.get(k)
        if t is not None and now - t < self.seconds:
            return False
        if len(self.last) >= self.capacity:
            self.last = {x: v for x, v in self.last.items() if now - v < self.seconds}
        self.last[k] = now
        return True


class LogOnce:
    """A failing action is logged once per ``seconds`` per (policy, action); every failure is
    still counted."""

    def __init__(self, log: Any, seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.seconds, self.clock = log, seconds, clock
        self.last: dict[tuple[str, str], float] = {}
        self.suppressed: dict[tuple[str, str], int] = {}

    def __call__(self, key: tuple[str, str], message: str) -> None:
        now = self.clock()
        t = self.last.get(key)
        if t is not None and now - t < self.seconds:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return
        n = self.suppressed.pop(key, 0)
        self.last[key] = now
        more = f" ({n} more failures since the last message)" if n else ""
        self.log.warning("response: %s%s", message, more)
