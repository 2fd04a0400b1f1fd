"""Alerts per second through the OTel output (log records + process-tree spans), without loss,
against a local OTLP receiver running in a separate process (as a collector would).

Prints JSON: one entry per protocol and signal set, with alerts/s measured from the first
``send`` until the receiver has counted every record, and the sent/failed/dropped counters
(a result only counts when failed == dropped == 0 and every record arrived).

    .venv/bin/python bench/bench_otel.py [--alerts 20000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "otel"), str(REPO / "tests")]

from falconet.priorities import Priority  # noqa: E402
from falconet_otel.config import resolve_settings  # noqa: E402
from falconet_otel.sink import OtelSink  # noqa: E402
from otel_alerts import make_alert  # noqa: E402
from otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver  # noqa: E402


def _receiver_main(kind: str, port_q, logs, spans, stop) -> None:
    """Child process: a receiver that only counts records (no storage)."""
    base = OtlpHttpReceiver if kind == "http/protobuf" else OtlpGrpcReceiver

    class Counting(base):  # type: ignore[misc, valid-type]
        def add_logs(self, req, headers):
            n = sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
            with logs.get_lock():
                logs.value += n

        def add_spans(self, req, headers):
            n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
            with spans.get_lock():
                spans.value += n

    rx = Counting().start()
    port_q.put(rx.endpoint)
    stop.wait()
    rx.stop()


def alerts(n: int) -> list:
    """Alerts from 50 processes in 10 pods (ancestor spans are exported once per process)."""
    out = []
    for i in range(n):
        pod = f"web-{i % 10}"
        pid = 1000 + i % 50
        a = make_alert(rule=f"rule {i % 7}", priority=list(Priority)[i % 8], pod=pod, pid=pid,
                       t=1_764_000_000_000_000_000)
        a.time_ns += i
        out.append(a)
    return out


def run(protocol: str, traces: bool, items: list) -> dict:
    ctx = mp.get_context("fork")
    logs, spans, stop, port_q = ctx.Value("l", 0), ctx.Value("l", 0), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_receiver_main, args=(protocol, port_q, logs, spans, stop), daemon=True)
    proc.start()
    endpoint = port_q.get(timeout=10)
    settings = resolve_settings({"endpoint": endpoint, "protocol": protocol, "traces": traces,
                                 "timeout": 5}, env={})
    sink = OtelSink(settings, hostname="bench", version="bench")
    sink.start()
    t0 = time.perf_counter()
    for a in items:
        sink.send(a)
    t_send = time.perf_counter() - t0
    sink.drain(60)
    expected_spans = sink.stats["traces"].sent if traces else 0
    deadline = time.monotonic() + 60
    while (logs.value < len(items) or spans.value < expected_spans) and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    stats = {s: {"sent": st.sent, "failed": st.failed, "dropped": st.dropped}
             for s, st in sink.stats.items()}
    sink.close()
    stop.set()
    proc.join(10)
    lossless = logs.value == len(items) and all(
        v["failed"] == 0 and v["dropped"] == 0 for v in stats.values())
    return {"protocol": protocol, "signals": "logs+traces" if traces else "logs",
            "alerts": len(items), "alerts_per_s": round(len(items) / elapsed),
            "send_only_alerts_per_s": round(len(items) / t_send),
            "received_logs": logs.value, "received_spans": spans.value,
            "lossless": lossless, "stats": stats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--alerts", type=int, default=20000)
    args = p.parse_args()
    items = alerts(args.alerts)
    results = [run(proto, traces, items) for proto in ("http/protobuf", "grpc")
               for traces in (False, True)]
    print(json.dumps({"bench": "otel", "goal_alerts_per_s": 5000, "results": results}, indent=2))


if __name__ == "__main__":
    main()
