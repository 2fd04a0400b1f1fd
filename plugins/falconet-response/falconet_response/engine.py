"""The policy engine: an alert sink (own bounded queue and worker thread, never the hot loop)
that evaluates the policies top to bottom and runs their actions within the safety model, with
an audit record, a counter and an OTel span per action."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from falconet.alerts import Alert
from falconet.priorities import Priority

from falconet_response.actions.base import Action, Outcome, Target
from falconet_response.audit import AuditLog, new_id
from falconet_response.policy import BreakerSpec, Policy
from falconet_response.safety import Breaker, Dedup, LogOnce, Protection, RateLimiter
from falconet_response.target import resolve_target, target_dict

log = logging.getLogger("falconet.response")

BREAKER_RULE = "Falconet response circuit breaker open"


class Scheduler:
    """One daemon thread running callbacks at a time (ttl thaws, the end of captures)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._seq = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="falconet-response-timer",
                                            daemon=True)
            self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cv:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), self._seq, fn))
            self._cv.notify()

    def pending(self) -> int:
        return len(self._heap)

    def stop(self, run_due: bool = True) -> None:
        """Stop; with ``run_due``, run what is queued now (captures get closed, ttl thaws are
        *not* run early: a frozen container stays frozen until undone)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cv.wait(timeout)
                if self._stop:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - one callback never stops the timer
                log.warning("response: scheduled task failed: %s", e)


@dataclass
class PolicyState:
    policy: Policy
    breaker: Breaker
    dedup: Dedup
    limiter: RateLimiter | None = None


@dataclass
class Settings:
    breaker: BreakerSpec = field(default_factory=lambda: BreakerSpec(20, 60.0))
    failure_log_seconds: float = 60.0


class ResponseEngine:
    """The ``response`` sink. ``inject_alert`` raises the breaker's internal alert; ``spans``
    (optional) emits the OTel span of each action, child of the alert's span."""

    min_priority = Priority.DEBUG

    def __init__(self, policies: list[Policy], *, audit: AuditLog, protection: Protection,
                 settings: Settings | None = None, scheduler: Scheduler | None = None,
                 inject_alert: Callable[[Alert], None] | None = None,
                 spans: Any = None, hostname: str = "") -> None:
        self.name = "response"
        self.settings = settings or Settings()
        self.audit = audit
        self.protection = protection
        self.scheduler = scheduler or Scheduler()
        self.inject_alert = inject_alert
        self.spans = spans
        self.hostname = hostname
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.log_once = LogOnce(log, self.settings.failure_log_seconds)
        self._lock = threading.Lock()
        self.set_policies(policies)

    def set_policies(self, policies: list[Policy]) -> None:
        """Install compiled policies (the sink exists before the field registry is complete:
        policies are compiled later, at ``falconet_alert_fields``)."""
        self.states: dict[str, PolicyState] = {}
        for p in policies:
            self.states[p.name] = PolicyState(
                p, Breaker(p.breaker or self.settings.breaker), Dedup(p.dedup_seconds),
                RateLimiter(p.rate_limit) if p.rate_limit else None)
        self.policies = policies
        self.actions: dict[str, Action] = {s.name: s.action for p in policies for s in p.steps}
        #: the pipeline queues only alerts of these rules (None: every rule)
        self.rules: frozenset[str] | None = None
        if policies and all(p.match.rules for p in policies):
            self.rules = frozenset().union(*(p.match.rules or () for p in policies))

    # ------------------------------------------------------------------ sink protocol
    def start(self) -> None:
        self.scheduler.start()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.scheduler.stop()
        self.audit.close()

    def send(self, alert: Alert) -> None:
        # our own breaker alarm passes too (a notification policy may forward it): it names
        # no process or container, so only allow_host policies see it and nothing is hit
        target = resolve_target(alert)
        for p in self.policies:
            if not p.match(alert):
                continue
            self.handle(self.states[p.name], alert, target)
            if not p.cont:
                break

    # ------------------------------------------------------------------ one policy
    def _count(self, policy: str, action: str, result: str) -> None:
        with self._lock:
            self.counts[(policy, action, result)] += 1

    def _count_all(self, p: Policy, result: str) -> None:
        for s in p.steps:
            self._count(p.name, s.name, result)

    def handle(self, st: PolicyState, alert: Alert, target: Target) -> None:
        p = st.policy
        why = self.protection.reason(target, alert, p)
        if why is not None:
            self._count_all(p, "protected")
            self._audit(p, None, alert, target, Outcome("protected", why), None)
            return
        if st.breaker.open:
            self._count_all(p, "disarmed")
            return
        if not st.dedup.first(p.name, target.key):
            self._count_all(p, "deduplicated")
            return
        if not st.breaker.admit(target.key):
            self._count_all(p, "disarmed")
            self._tripped(p, alert)
            return
        if st.limiter is not None and not st.limiter.allow():
            self._count_all(p, "rate_limited")
            self.log_once((p.name, "rate_limit"), f"policy '{p.name}': rate limit reached "
                          f"({p.rate_limit.max if p.rate_limit else 0} per "
                          f"{p.rate_limit.per_seconds if p.rate_limit else 0:g}s), alerts are "
                          "counted, not acted on")
            return
        for step in p.steps:
            start = time.time_ns()
            if p.dry_run:
                out = Outcome("dry_run", f"would have run {step.name}")
            else:
                try:
                    out = step.action.run(target, alert, dict(step.params))
                    if not isinstance(out, Outcome):
                        out = Outcome("failed", f"action returned {type(out).__name__}")
                except Exception as e:  # noqa: BLE001 - a failing action is counted, never fatal
                    out = Outcome("failed", f"{type(e).__name__}: {e}"[:300])
            self._count(p.name, step.name, out.result)
            if out.result == "failed":
                self.log_once((p.name, step.name), f"policy '{p.name}': action {step.name} "
                              f"failed on {target.key}: {out.detail}")
            rid = self._audit(p, step, alert, target, out, start)
            ttl = step.params.get("ttl")
            if out.undo is not None and ttl and out.result == "done":
                undo: dict[str, Any] = out.undo

                def thaw(r: str = rid, a: Action = step.action, d: dict[str, Any] = undo) -> None:
                    self.undo_now(r, a, d, "ttl")
                self.scheduler.call_later(float(ttl), thaw)

    def _audit(self, p: Policy, step: Any, alert: Alert, target: Target, out: Outcome,
               start_ns: int | None) -> str:
        rid = new_id()
        done = time.time_ns()
        rec: dict[str, Any] = {
            "type": "action", "id": rid, "policy": p.name,
            "action": step.name if step is not None else None, "result": out.result,
            "detail": out.detail, "dry_run": p.dry_run, "target": target_dict(target),
            "rule": alert.rule, "priority": alert.priority.label, "alert_time_ns": alert.time_ns,
            "done_ns": done, "latency_ms": round((done - alert.time_ns) / 1e6, 3),
            # event -> this action started: collector, rules, queue, earlier actions
            "started_ms": round(((start_ns or done) - alert.time_ns) / 1e6, 3),
            "reversible": bool(step is not None and step.action.reversible
                               and out.undo is not None),
            "undo": out.undo,
        }
        if step is not None and step.params.get("ttl"):
            rec["ttl"] = step.params["ttl"]
        if self.spans is not None and step is not None:
            try:
                rec.update(self.spans(alert, p.name, step.name, out, start_ns or done, done))
            except Exception as e:  # noqa: BLE001 - tracing never stops a response
                self.log_once((p.name, "otel"), f"OTel span failed: {e}")
        self.audit.write(rec)
        return rid

    def undo_now(self, rid: str, action: Action, data: dict[str, Any], by: str) -> Outcome:
        try:
            out = action.undo(data)
        except Exception as e:  # noqa: BLE001
            out = Outcome("failed", f"{type(e).__name__}: {e}"[:300])
        self._count("undo", action.name, out.result)
        self.audit.write({"type": "undo", "of": rid, "action": action.name, "by": by,
                          "result": out.result, "detail": out.detail})
        return out

    # ------------------------------------------------------------------ breaker
    def _tripped(self, p: Policy, alert: Alert) -> None:
        spec = p.breaker or self.settings.breaker
        msg = (f"response policy '{p.name}' disarmed: more than {spec.max_targets} distinct "
               f"targets within {spec.window_seconds:g}s (re-arm with SIGHUP or "
               f"`falconet respond rearm`)")
        log.error("response: %s", msg)
        self.audit.write({"type": "breaker", "policy": p.name, "state": "open",
                          "detail": msg, "rule": alert.rule})
        if self.inject_alert is not None:
            a = Alert(BREAKER_RULE, Priority.CRITICAL, "internal", ["falconet", "response"],
                      msg, {"response.policy": p.name, "evt.time": time.time_ns()},
                      time.time_ns(), self.hostname, "A response policy's circuit breaker "
                      "opened", "falconet")
            try:
                self.inject_alert(a)
            except Exception as e:  # noqa: BLE001
                log.warning("response: cannot raise the breaker alert: %s", e)

    def rearm(self, policy: str | None = None, by: str = "SIGHUP") -> list[str]:
        done = []
        for name, st in self.states.items():
            if (policy is None or policy == name) and st.breaker.rearm():
                done.append(name)
                self.audit.write({"type": "breaker", "policy": name, "state": "rearmed",
                                  "by": by})
        if done:
            log.warning("response: re-armed %s (%s)", ", ".join(done), by)
        return done

    def disarmed(self) -> list[str]:
        return [n for n, st in self.states.items() if st.breaker.open]
