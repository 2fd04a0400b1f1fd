"""Each action is an OTel span, child of the alert's span in the same trace, whichever of the
OTel sink and the response worker handles the alert first. The real OTel sink encodes the spans;
they are decoded with the official opentelemetry-proto classes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from falconet.alerts import Alert
from falconet.priorities import Priority
from falconet_otel.config import resolve_settings
from falconet_otel.sink import OtelSink
from falconet_response.actions.base import Outcome
from falconet_response.audit import AuditLog
from falconet_response.engine import ResponseEngine
from falconet_response.policy import compile_policies
from falconet_response.safety import Protection
from falconet_response.telemetry import span_emitter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_response_engine import REG


class Capture:
    def __init__(self) -> None:
        self.requests: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.requests.append(body)

    def close(self) -> None:
        pass


class Fails:
    name = "fails"
    reversible = False

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def run(self, target, alert, params) -> Outcome:
        return Outcome("failed", "no such container")

    def undo(self, data) -> Outcome:
        return Outcome("skipped")


def spans(tx: Capture) -> list[Any]:
    out = []
    for body in tx.requests:
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            for ss in rs.scope_spans:
                out += list(ss.spans)
    return out


@pytest.mark.parametrize("otel_first", [True, False])
def test_action_spans_are_children_of_the_alert_span(tmp_path: Path, otel_first: bool) -> None:
    settings = resolve_settings({"endpoint": "http://127.0.0.1:9", "schedule_delay": 0.01},
                                env={})
    logs, traces = Capture(), Capture()
    sink = OtelSink(settings, hostname="node-a", version="0.1.0",
                    transports={"logs": logs, "traces": traces})
    sink.start()
    pols = compile_policies([{"name": "p", "actions": [{"action": "fails"}]}], REG,
                            {"fails": Fails()})
    eng = ResponseEngine(pols, audit=AuditLog(str(tmp_path / "audit.jsonl")),
                         protection=Protection(engine_pid=1_000_000_000),
                         spans=span_emitter(sink))
    a = Alert("r", Priority.CRITICAL, "syscall", [], "boom", {"proc.pid": 4242,
              "container.id": "abc123def456"}, time.time_ns(), "node-a",
              lineage=[{"pid": 4242, "name": "sh", "start_ts": time.time_ns() - 10**9}])
    for consumer in ((sink, eng) if otel_first else (eng, sink)):
        consumer.send(a)
    assert sink.drain(5)
    sink.close()
    by_name = {s.name: s for s in spans(traces)}
    alert_span, action = by_name["sh"], by_name["response fails"]
    assert action.trace_id == alert_span.trace_id
    assert action.parent_span_id == alert_span.span_id
    assert action.status.code == 2 and action.status.message == "no such container"
    attrs = {kv.key: kv.value.string_value for kv in action.attributes}
    assert attrs["falconet.response.policy"] == "p"
    assert attrs["falconet.response.result"] == "failed"
    (rec,) = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert rec["trace_id"] == alert_span.trace_id.hex()
    assert rec["span_id"] == action.span_id.hex()
    assert rec["parent_span_id"] == alert_span.span_id.hex()
