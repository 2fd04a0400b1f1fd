"""The OTel alert sink: one log record per alert, plus process-tree spans (see docs/otel.md).

``send`` runs on the sink's own worker thread (never the hot loop). It builds the records and hands
them to a :class:`~falconet_otel.shipper.Shipper` per signal, which batches them to the collector.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert
from falconet.priorities import Priority
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from falconet_otel import mapping
from falconet_otel.config import OtelSettings, SignalTarget
from falconet_otel.shipper import Shipper, SignalStats

log = logging.getLogger("falconet.otel")

SCOPE_NAME = "falconet.otel"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
#: process start times older than this before the alert are treated as unknown (not epoch ns)
_MAX_PROCESS_AGE_NS = 366 * 86400 * 10**9
#: how many ancestor process spans we remember having exported (each is exported once)
_EMITTED_CAPACITY = 65536


def make_exporter(target: SignalTarget) -> Any:
    """The OTLP exporter for one signal (gRPC or HTTP/protobuf), with a short timeout."""
    # the exporters log every failed batch; the shipper reports failures itself, rate-limited
    logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
    headers = dict(target.headers) or None
    if target.protocol == "grpc":
        # grpc's C core logs connection churn (GOAWAY on a collector restart) at INFO to stderr
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        if target.signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as Grpc
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
        return Grpc(endpoint=target.endpoint, insecure=target.insecure, headers=headers,
                    timeout=target.timeout)
    if target.signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Http
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    return Http(endpoint=target.endpoint, headers=headers, timeout=target.timeout)


def make_resource(service_name: str, version: str, hostname: str) -> Resource:
    """The engine itself: service.*, host.name and k8s.node.name (DaemonSet: env K8S_NODE_NAME)."""
    attrs: dict[str, Any] = {
        "service.name": service_name,
        "service.version": version,
        "service.instance.id": str(uuid.uuid4()),
        "host.name": hostname or socket.gethostname(),
        "os.type": "linux",
    }
    node = os.environ.get("K8S_NODE_NAME")
    if node:
        attrs["k8s.node.name"] = node
    return Resource.create(attrs)


class OtelSink:
    """An :class:`falconet.api.AlertSink` exporting alerts as OTLP logs and spans."""

    name = "otel"

    def __init__(self, settings: OtelSettings, *, hostname: str, version: str,
                 exporters: dict[str, Any] | None = None,
                 stats: dict[str, SignalStats] | None = None,
                 on_loss: Callable[[str, int], None] | None = None) -> None:
        """``exporters`` overrides the OTLP exporters per signal (tests, benchmarks)."""
        self.settings = settings
        self.min_priority: Priority = settings.min_priority
        self.hostname = hostname
        self._exporters = exporters
        self.stats = stats if stats is not None else {s: SignalStats(s) for s in settings.targets}
        self._on_loss = on_loss
        self._resource = make_resource(settings.service_name, version, hostname)
        self._scope = InstrumentationScope(SCOPE_NAME, version)
        self._logs: Shipper | None = None
        self._traces: Shipper | None = None
        self._emitted: OrderedDict[int, None] = OrderedDict()
        self._seq = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for signal in self.settings.targets:
            exporter = (self._exporters or {}).get(signal) or make_exporter(self.settings.targets[signal])
            stats = self.stats.setdefault(signal, SignalStats(signal))
            shipper = Shipper(exporter, stats, batch_size=self.settings.batch_size,
                              queue_size=self.settings.queue_size,
                              schedule_delay=self.settings.schedule_delay, on_loss=self._on_loss)
            if signal == "logs":
                self._logs = shipper
            else:
                self._traces = shipper

    def flush(self) -> None:
        """Called by the sink worker whenever its queue runs empty: export soon, never wait here
        (waiting would stall the worker on every quiet moment and defeat batching)."""
        for sh in self._shippers():
            sh.kick()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything handed to the sink was exported or failed (tests, shutdown)."""
        t = self._flush_timeout() if timeout is None else timeout
        return all([sh.flush(t) for sh in self._shippers()])

    def close(self) -> None:
        for sh in self._shippers():
            sh.shutdown(self._flush_timeout())
        self._logs = self._traces = None

    def _shippers(self) -> list[Shipper]:
        return [s for s in (self._logs, self._traces) if s is not None]

    def _flush_timeout(self) -> float:
        # enough for the queue to go out in a few batches to a live collector, bounded for a dead one
        return 2 * max((t.timeout for t in self.settings.targets.values()), default=1.0) + 1.0

    # ------------------------------------------------------------------ per alert
    def send(self, alert: Alert) -> None:
        if alert.priority > self.min_priority:
            return
        attrs = mapping.alert_attributes(alert)
        trace_id = span_id = 0
        if self._traces is not None:
            trace_id, span_id = self._send_spans(alert, attrs)
        if self._logs is not None:
            self._logs.put(self._log_record(alert, attrs, trace_id, span_id))

    def _log_record(self, alert: Alert, attrs: dict[str, Any], trace_id: int,
                    span_id: int) -> ReadableLogRecord:
        ctx = None
        if trace_id:
            ctx = set_span_in_context(NonRecordingSpan(SpanContext(trace_id, span_id, False, _SAMPLED)))
        record = LogRecord(timestamp=alert.time_ns, observed_timestamp=time.time_ns(), context=ctx,
                           severity_text=alert.priority.label,
                           severity_number=mapping.SEVERITY[alert.priority],
                           body=alert.output, attributes=attrs, event_name=mapping.EVENT_NAME)
        return ReadableLogRecord(log_record=record, resource=self._resource,
                                 instrumentation_scope=self._scope)

    def _send_spans(self, alert: Alert, attrs: dict[str, Any]) -> tuple[int, int]:
        """Ancestor spans (each process once), then this alert's span on the triggering process.
        Returns the (trace id, span id) the log record is linked to."""
        assert self._traces is not None
        key = mapping.workload_key(alert)
        trace_id = mapping.trace_id_for(key)
        lineage = alert.lineage or _lineage_from_fields(alert.output_fields)
        workload = {k: attrs[k] for k in _WORKLOAD_ATTRS if k in attrs}
        workload["falconet.workload"] = key
        parent_id: int | None = None
        for proc in reversed(lineage[1:]):
            sid = mapping.process_span_id(key, proc.get("pid"), proc.get("start_ts"))
            if sid not in self._emitted:
                self._remember(sid)
                self._traces.put(self._span(
                    name=str(proc.get("name") or "process"), trace_id=trace_id, span_id=sid,
                    parent_id=parent_id, start=_start_ns(proc, alert.time_ns), end=alert.time_ns,
                    attributes={**mapping.process_attributes(proc), **workload}))
            parent_id = sid
        me = lineage[0] if lineage else {}
        self._seq += 1
        sid = mapping.alert_span_id(key, me.get("pid"), me.get("start_ts"), alert.time_ns, alert.rule,
                                    self._seq)
        end = alert.time_ns + self.settings.span_duration_ms * 1_000_000
        span_attrs = {**mapping.process_attributes(me), **workload,
                      "security_rule.name": alert.rule, "falco.priority": alert.priority.label}
        event = SpanEvent(mapping.EVENT_NAME, attributes={"body": alert.output, **attrs},
                          timestamp=alert.time_ns)
        severe = alert.priority <= Priority.ERROR
        self._traces.put(self._span(
            name=str(me.get("name") or alert.rule), trace_id=trace_id, span_id=sid, parent_id=parent_id,
            start=_start_ns(me, alert.time_ns), end=end, attributes=span_attrs, events=(event,),
            status=Status(StatusCode.ERROR, alert.rule) if severe else Status(StatusCode.UNSET)))
        return trace_id, sid

    def _span(self, *, name: str, trace_id: int, span_id: int, parent_id: int | None, start: int,
              end: int, attributes: dict[str, Any], events: tuple[SpanEvent, ...] = (),
              status: Status | None = None) -> ReadableSpan:
        parent = SpanContext(trace_id, parent_id, False, _SAMPLED) if parent_id else None
        return ReadableSpan(name=name, context=SpanContext(trace_id, span_id, False, _SAMPLED),
                            parent=parent, resource=self._resource, attributes=attributes,
                            events=events, kind=SpanKind.INTERNAL, start_time=start,
                            end_time=max(end, start), instrumentation_scope=self._scope,
                            status=status or Status(StatusCode.UNSET))

    def _remember(self, span_id: int) -> None:
        self._emitted[span_id] = None
        if len(self._emitted) > _EMITTED_CAPACITY:
            self._emitted.popitem(last=False)


_WORKLOAD_ATTRS = ("container.id", "container.name", "container.image.name", "k8s.pod.name",
                   "k8s.namespace.name", "k8s.pod.uid")


def _start_ns(proc: dict[str, Any], alert_ns: int) -> int:
    """A process's start time, or the alert time when unknown or not plausible epoch nanoseconds."""
    try:
        ts = int(proc.get("start_ts") or 0)
    except (TypeError, ValueError):
        return alert_ns
    if ts <= 0 or ts > alert_ns or alert_ns - ts > _MAX_PROCESS_AGE_NS:
        return alert_ns
    return ts


def _lineage_from_fields(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """Without ``alert.lineage``: the triggering process (and parent pid) from the output fields."""
    pid = fields.get("proc.pid")
    name = fields.get("proc.name")
    if pid is None and name is None:
        return []
    me = {"pid": pid, "name": name, "exepath": fields.get("proc.exepath"),
          "cmdline": fields.get("proc.cmdline")}
    ppid = fields.get("proc.ppid")
    if ppid is None:
        return [me]
    return [me, {"pid": ppid, "name": fields.get("proc.pname")}]
