"""Extra per-event cost of metrics on the hot path (goal: < 1 µs per event), plus scrape cost.

Measures the exact metric operations ``falconet.pipeline.Pipeline.run`` does per event, with the
same local-variable binding: the events counter (``counts[(source, type)] += 1``) and the sampled
rule-latency observation (two ``perf_counter`` calls and ``observe_latency`` on 1 event in
``LATENCY_SAMPLE_MASK + 1``). The cost is (loop with metrics) - (the same loop without), per event.
Then the full ``Pipeline.run`` on a no-op ruleset, and the time to render one /metrics scrape of
a busy engine (it runs on the HTTP thread, not the hot loop). Prints JSON.

    .venv/bin/python bench/bench_metrics.py [--events 2000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from falconet.api import EngineContext
from falconet.events import Event
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.pipeline import LATENCY_SAMPLE_MASK, Pipeline
from falconet.prometheus import MetricsServer

TYPES = ["openat", "execve", "connect", "close", "read", "write", "clone", "accept"]


def make_events(n: int) -> list[Event]:
    return [Event("syscall", TYPES[i % len(TYPES)], i, 1, 1) for i in range(n)]


def no_match(evt: Event) -> list:
    return []


def loop_without(events: list[Event]) -> float:
    match = no_match
    t0 = time.perf_counter()
    n = 0
    for evt in events:
        n += 1
        evt.num = n
        alerts = match(evt)
        if alerts:
            pass
    return time.perf_counter() - t0


def loop_with(events: list[Event], m: EngineMetrics) -> float:
    match = no_match
    counts = m.events
    observe = m.observe_latency
    perf = time.perf_counter
    mask = LATENCY_SAMPLE_MASK
    t0 = time.perf_counter()
    n = 0
    for evt in events:
        n += 1
        evt.num = n
        counts[(evt.source, evt.type)] += 1
        if n & mask:
            alerts = match(evt)
        else:
            t1 = perf()
            alerts = match(evt)
            observe(perf() - t1)
        if alerts:
            pass
    return time.perf_counter() - t0


class NoRules:
    def match(self, evt):
        return []

    def event_types(self, source):
        return None


def busy_metrics() -> EngineMetrics:
    m = EngineMetrics()
    for r in range(200):
        m.alerts[(f"rule {r}", r % 8, "syscall")] += r + 1
        m.rule_tags[f"rule {r}"] = ["container", "mitre_execution", f"T10{r % 90}.00{r % 9}"]
    for t in range(300):
        m.events[("syscall", f"type{t}")] += t
    for c in ("kernel_buffer", "output_queue_full", "parser_error"):
        m.drop(c, 3)
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    events = make_events(args.events)
    base, withm = [], []
    for _ in range(args.repeat):
        base.append(loop_without(events))
        withm.append(loop_with(events, EngineMetrics()))
    b, w = statistics.median(base), statistics.median(withm)
    per_event_ns = (w - b) / len(events) * 1e9

    pl = Pipeline(NoRules(), metrics=EngineMetrics())
    t0 = time.perf_counter()
    pl.run(iter(events))
    run_ns = (time.perf_counter() - t0) / len(events) * 1e9

    m = busy_metrics()
    srv = MetricsServer(EngineContext(hostname="bench", fields=FieldRegistry(), metrics=m), m, None,
                        port=0)
    from prometheus_client.exposition import generate_latest  # noqa: PLC0415
    generate_latest(srv.registry)
    t0 = time.perf_counter()
    for _ in range(50):
        body = generate_latest(srv.registry)
    scrape_ms = (time.perf_counter() - t0) / 50 * 1e3
    print(json.dumps({
        "bench": "metrics", "events": len(events), "goal_ns_per_event": 1000,
        "metrics_cost_ns_per_event": round(per_event_ns, 1),
        "loop_without_metrics_ns_per_event": round(b / len(events) * 1e9, 1),
        "loop_with_metrics_ns_per_event": round(w / len(events) * 1e9, 1),
        "latency_sample_every": LATENCY_SAMPLE_MASK + 1,
        "pipeline_run_noop_rules_ns_per_event": round(run_ns, 1),
        "scrape_ms_200_rules_300_types": round(scrape_ms, 2), "scrape_bytes": len(body),
        "ok": per_event_ns < 1000,
    }, indent=2))


if __name__ == "__main__":
    main()
