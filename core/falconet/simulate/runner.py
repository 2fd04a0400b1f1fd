"""Run simulator actions, and run suites against a live engine.

:func:`run_actions` performs actions and reports what happened (``falconet simulate``).
:func:`run_suite` performs each case of a suite while a :class:`~falconet.simulate.live.LiveEngine`
watches, and matches the alerts it receives: right rule, inside the action's time window, from the
action's container (for container cases), with the expected priority and output fields.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from falconet.simulate.actions import ActionError, get_action
from falconet.simulate.contexts import ContextPool, ContextUnavailable, HostContext
from falconet.simulate.live import LiveEngine, ReceivedAlert
from falconet.simulate.suite import Case, Suite

#: an alert's event time may precede our clock reading by this much (clock conversion jitter)
WINDOW_SLACK_NS = 10_000_000
#: "expect: nothing" cases first let the previous case's events settle for this long
NOTHING_SETTLE_S = 0.1
#: after warming up the containers: the container plugin looks metadata up in the background
#: on a container's first event (as Falco's does), so fields like container.privileged are
#: <NA> for the first few milliseconds of a new container's life
WARMUP_SETTLE_S = 0.5
#: how long "expect: nothing" cases wait for late alerts
NOTHING_GRACE_S = 1.0


@dataclass
class ActionResult:
    action: str
    context: str
    status: str                 # done | skipped | failed | n/a (the kernel cannot do it)
    reason: str = ""
    container_id: str = ""
    start_ns: int = 0
    end_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_action(pool: ContextPool, name: str, where: str | None = None,
               privileged: bool | None = None) -> ActionResult:
    """Perform one action in its (or the given) context; never raises for expected failures."""
    act = get_action(name)
    kind = where or act.where[0]
    priv = act.privileged if privileged is None else privileged
    res = ActionResult(action=name, context=kind + (" (privileged)" if priv else ""),
                       status="skipped")
    if kind not in act.where:
        res.reason = f"cannot run in {kind} (supported: {', '.join(act.where)})"
        return res
    na = act.not_applicable()
    if na:
        res.status, res.reason = "n/a", na
        return res
    try:
        ctx = pool.get(kind, priv)
    except ContextUnavailable as e:
        res.reason = str(e)
        return res
    res.container_id = ctx.container_id
    res.start_ns = time.time_ns()
    try:
        act.run(ctx)
        res.status = "done"
    except ActionError as e:
        res.status, res.reason = "failed", str(e)
    except (subprocess.SubprocessError, OSError) as e:
        res.status, res.reason = "failed", f"{type(e).__name__}: {e}"
    res.end_ns = time.time_ns()
    return res


def run_actions(names: Iterable[str], where: str | None = None, privileged: bool | None = None,
                on_result: Callable[[ActionResult], None] | None = None) -> list[ActionResult]:
    out = []
    with ContextPool() as pool:
        for n in names:
            r = run_action(pool, n, where, privileged)
            out.append(r)
            if on_result:
                on_result(r)
    return out


# ----------------------------------------------------------------------------------- suites

@dataclass
class CaseResult:
    case: Case
    status: str                  # pass | fail | skip | n/a
    reason: str = ""
    alert: ReceivedAlert | None = None
    context: str = ""
    container_id: str = ""
    duration_s: float = 0.0

    @property
    def latency_ms(self) -> float | None:
        return self.alert.latency_ms if self.alert is not None else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"case": self.case.name, "action": self.case.action,
                             "where": self.context, "status": self.status,
                             "reason": self.reason, "container_id": self.container_id[:12],
                             "duration_s": round(self.duration_s, 3)}
        if self.case.expect.nothing:
            d["expect"] = "nothing"
        else:
            d["expect"] = self.case.expect.rule
        if self.alert is not None:
            d["alert"] = {"rule": self.alert.rule, "priority": self.alert.priority.label,
                          "output": self.alert.output, "time_ns": self.alert.time_ns}
            d["latency_ms"] = round(self.alert.latency_ms, 3)
        return d


@dataclass
class SuiteReport:
    suite: str
    rules: list[str]
    results: list[CaseResult] = field(default_factory=list)
    ready: str = ""

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def latencies_ms(self) -> list[float]:
        return sorted(r.latency_ms for r in self.results
                      if r.status == "pass" and r.latency_ms is not None)

    def latency_summary(self) -> dict[str, float | int | None]:
        return latency_stats(self.latencies_ms)

    @property
    def ok(self) -> bool:
        return self.count("fail") == 0

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "rules": self.rules, "engine_ready": self.ready,
                "passed": self.count("pass"), "failed": self.count("fail"),
                "skipped": self.count("skip"), "not_applicable": self.count("n/a"),
                "latency_ms": self.latency_summary(),
                "cases": [r.to_dict() for r in self.results]}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_stats(values: list[float]) -> dict[str, float | int | None]:
    v = sorted(values)

    def r(x: float | None) -> float | None:
        return round(x, 3) if x is not None else None

    return {"n": len(v), "p50": r(percentile(v, 50)), "p90": r(percentile(v, 90)),
            "p99": r(percentile(v, 99)), "max": r(v[-1] if v else None),
            "min": r(v[0] if v else None)}


def _same_container(alert: ReceivedAlert, container_id: str) -> bool:
    got = alert.container_id
    if not container_id:
        return got == ""
    return bool(got) and (container_id.startswith(got) or got.startswith(container_id))


def _field_mismatches(alert: ReceivedAlert, want: dict[str, str]) -> list[str]:
    bad = []
    for k, v in want.items():
        got = alert.output_fields.get(k)
        if got is None or str(got) != v:
            bad.append(f"{k}={got!r} (expected {v!r})")
    return bad


def run_case(engine: LiveEngine, pool: ContextPool, case: Case, timeout: float,
             claimed: set[int] | None = None) -> CaseResult:
    """Run one case. ``claimed`` holds the alerts earlier cases matched (by ``id``): an alert
    proves one case only."""
    claimed = set() if claimed is None else claimed
    if case.expect.nothing:
        time.sleep(NOTHING_SETTLE_S)
    # alerts received before the action started cannot be about it
    first = len(engine.snapshot())
    t_start = time.monotonic()
    res = run_action(pool, case.action, case.where, case.privileged)
    out = CaseResult(case=case, status="skip", context=res.context,
                     container_id=res.container_id)
    if res.status == "skipped":
        out.reason = res.reason
        return out
    if res.status == "n/a":
        out.status, out.reason = "n/a", res.reason
        return out
    if res.status == "failed":
        out.status, out.reason = "fail", f"action failed: {res.reason}"
        return out
    lo, hi = res.start_ns - WINDOW_SLACK_NS, res.end_ns + WINDOW_SLACK_NS
    if case.expect.nothing:
        lo = res.start_ns   # never blame this case for what happened before it

    def in_window(a: ReceivedAlert) -> bool:
        return lo <= a.time_ns <= hi and _same_container(a, res.container_id)

    exp = case.expect
    if exp.nothing:
        time.sleep(NOTHING_GRACE_S)   # no signal exists for "no alert will come": bounded wait
        noise = [a for a in engine.snapshot()[first:] if in_window(a)]
        out.duration_s = time.monotonic() - t_start
        if noise:
            out.status = "fail"
            out.alert = noise[0]
            out.reason = f"expected no alert, got {len(noise)}: " + "; ".join(
                f"{a.rule} ({a.priority.label})" for a in noise[:3])
        else:
            out.status = "pass"
        return out

    deadline = time.monotonic() + timeout
    alert = engine.wait_for(lambda a: a.rule == exp.rule and in_window(a) and id(a) not in claimed,
                            deadline, start=first)
    out.duration_s = time.monotonic() - t_start
    if alert is None:
        out.status = "fail"
        same_rule = [a for a in engine.snapshot() if a.rule == exp.rule
                     and lo <= a.time_ns <= hi]
        others = [a for a in engine.snapshot()[first:] if in_window(a)]
        if not engine.running():
            out.reason = "the engine exited"
        elif same_rule:
            out.reason = (f"'{exp.rule}' fired for container '{same_rule[0].container_id or 'host'}'"
                          f", expected '{res.container_id[:12] or 'host'}'")
        else:
            out.reason = f"no '{exp.rule}' alert within {timeout:g}s" + (
                f" (got: {', '.join(sorted({a.rule for a in others}))}; first: "
                f"{others[0].output[:300]})" if others else "")
        return out
    claimed.add(id(alert))
    out.alert = alert
    problems = []
    if exp.priority is not None and alert.priority != exp.priority:
        problems.append(f"priority {alert.priority.label} (expected {exp.priority.label})")
    problems += _field_mismatches(alert, exp.output_fields)
    if problems:
        out.status, out.reason = "fail", "; ".join(problems)
    else:
        out.status = "pass"
    return out


def host_canary(token: str) -> None:
    """Read /etc/shadow with ``cat`` on the host, with ``token`` in the command line: both the
    default rules and Falco's stable rules alert on it and print the command line."""
    HostContext().exec(["cat", "/etc/shadow", f"/nonexistent/{token}"], timeout=5)


def warm_up(pool: ContextPool, contexts: Iterable[tuple[str, bool]]) -> None:
    """Start the containers a suite needs and let the engine learn their metadata."""
    started = False
    for kind, privileged in sorted(contexts):
        try:
            pool.get(kind, privileged).exec(["true"])
            started = True
        except ContextUnavailable:
            pass   # its cases report the reason
    if started:
        time.sleep(WARMUP_SETTLE_S)


def run_suite(suite: Suite, engine: LiveEngine, *, timeout: float | None = None,
              only: Iterable[str] | None = None,
              on_result: Callable[[CaseResult], None] | None = None) -> SuiteReport:
    """Run the cases of ``suite`` (all, or those named in ``only``) against a started engine."""
    report = SuiteReport(suite=suite.name, rules=engine.rules, ready=engine.ready_reason)
    cases = suite.select(only)
    with ContextPool() as pool:
        warm_up(pool, {(c.where, c.privileged) for c in cases if c.where != "host"})
        claimed: set[int] = set()
        for case in cases:
            r = run_case(engine, pool, case, timeout or suite.timeout, claimed)
            report.results.append(r)
            if on_result:
                on_result(r)
    return report
