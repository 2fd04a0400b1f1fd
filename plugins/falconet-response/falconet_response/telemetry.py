"""The audit trail beyond the log: ``falconet_response_actions_total{policy,action,result}``
and one OTel span per action, child of the alert's span (same trace) when the OTel plugin is
loaded and exports traces (it publishes its sink as ``engine.extras["falconet.otel.spans"]``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from falconet.alerts import Alert
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from falconet_response.actions.base import Outcome

OTEL_EXTRA = "falconet.otel.spans"


class ResponseCollector:
    """Reads the engine's counters at scrape time (no work per action beyond a dict update)."""

    def __init__(self, engine: Callable[[], Any]) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        eng = self.engine()
        c = CounterMetricFamily("falconet_response_actions", "Response actions by policy, "
                                "action and result (done, failed, skipped, dry_run, protected, "
                                "deduplicated, rate_limited, disarmed)",
                                labels=["policy", "action", "result"])
        g = GaugeMetricFamily("falconet_response_policy_armed", "1 while a response policy is "
                              "armed, 0 once its circuit breaker opened", labels=["policy"])
        if eng is not None:
            for (p, a, r), n in sorted(dict(eng.counts).items()):
                c.add_metric([p, a, r], n)
            for name, st in eng.states.items():
                g.add_metric([name], 0.0 if st.breaker.open else 1.0)
        yield c
        yield g

    def describe(self) -> list[Any]:
        return []


def _span_id(text: str) -> int:
    n = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    return n or 1


def span_emitter(otel: Any) -> Callable[..., dict[str, Any]]:
    """``emit(alert, policy, action, outcome, start_ns, end_ns)`` -> ids for the audit record."""
    def emit(alert: Alert, policy: str, action: str, out: Outcome, start_ns: int,
             end_ns: int) -> dict[str, Any]:
        ids = otel.span_ids(alert)
        if ids is None:
            return {}
        trace_id, parent = ids
        sid = _span_id(f"falconet-response|{parent}|{policy}|{action}|{start_ns}")
        otel.emit_span(trace_id=trace_id, span_id=sid, parent_span_id=parent,
                       name=f"response {action}", start_ns=start_ns, end_ns=end_ns,
                       attributes={"falconet.response.policy": policy,
                                   "falconet.response.action": action,
                                   "falconet.response.result": out.result,
                                   "falconet.response.detail": out.detail,
                                   "security_rule.name": alert.rule},
                       error=out.result == "failed", status_message=out.detail)
        return {"trace_id": f"{trace_id:032x}", "span_id": f"{sid:016x}",
                "parent_span_id": f"{parent:016x}"}
    return emit
