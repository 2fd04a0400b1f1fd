"""The OTel alert sink: one log record per alert, plus process-tree spans (see docs/otel.md).

``send`` runs on the sink's own worker thread (never the hot loop). It encodes the OTLP records
(:mod:`falconet_otel.wire`) and hands them to a :class:`~falconet_otel.shipper.Shipper` per signal,
which batches them into export requests sent by a transport (:mod:`falconet_otel.transport`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from falconet.alerts import Alert
from falconet.priorities import Priority
from falconet.redact import redact_text
from opentelemetry.sdk.resources import Resource

from falconet_otel import mapping, wire
from falconet_otel.config import OtelSettings
from falconet_otel.shipper import Shipper, SignalStats
from falconet_otel.transport import make_transport

log = logging.getLogger("falconet.otel")

SCOPE_NAME = "falconet.otel"
#: process start times older than this before the alert are treated as unknown (not epoch ns)
_MAX_PROCESS_AGE_NS = 366 * 86400 * 10**9
#: how many ancestor process spans we remember having exported (each is exported once)
_EMITTED_CAPACITY = 65536
_WORKLOAD_ATTRS = ("container.id", "container.name", "container.image.name", "k8s.pod.name",
                   "k8s.namespace.name", "k8s.pod.uid")
_SEVERITY = {p: n.value for p, n in mapping.SEVERITY.items()}
_LABEL = {p: p.label for p in Priority}


def resource_attributes(service_name: str, version: str, hostname: str) -> dict[str, Any]:
    """The engine itself: service.*, host.name, k8s.node.name (DaemonSet: env K8S_NODE_NAME),
    merged over OTEL_RESOURCE_ATTRIBUTES by the SDK's resource detection."""
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
    return dict(Resource.create(attrs).attributes)


class OtlpExporter:
    """Wraps a batch of encoded records into one export request and sends it."""

    def __init__(self, signal: str, transport: Any, resource_body: bytes, scope_body: bytes) -> None:
        self.signal = signal
        self.transport = transport
        self._wrap = wire.logs_request if signal == "logs" else wire.traces_request
        self._resource = resource_body
        self._scope = scope_body

    def export(self, batch: list[bytes]) -> bool:
        self.transport.send(self._wrap(self._resource, self._scope, batch))
        return True

    def shutdown(self) -> None:
        self.transport.close()


class OtelSink:
    """An :class:`falconet.api.AlertSink` exporting alerts as OTLP logs and spans."""

    name = "otel"
    #: the engine's output_sent{output="otel"} is counted on confirmed exports (``on_sent``)
    reports_delivery = True

    def __init__(self, settings: OtelSettings, *, hostname: str, version: str,
                 transports: dict[str, Any] | None = None,
                 stats: dict[str, SignalStats] | None = None,
                 on_loss: Callable[[str, int], None] | None = None,
                 on_sent: Callable[[int], None] | None = None) -> None:
        """``transports`` overrides the network transport per signal (tests, benchmarks)."""
        self.settings = settings
        self.min_priority: Priority = settings.min_priority
        self.hostname = hostname
        self._transports = transports or {}
        self.stats = stats if stats is not None else {s: SignalStats(s) for s in settings.targets}
        self._on_loss = on_loss
        self._on_sent = on_sent
        self.resource = resource_attributes(settings.service_name, version, hostname)
        self._resource_body = wire.AttributeEncoder().encode(self.resource, 1)
        self._scope_body = wire.scope(SCOPE_NAME, version)
        self._attrs = wire.AttributeEncoder()
        self._body_parts = wire.AttributeEncoder(cache_size=4096)
        self._logs: Shipper | None = None
        self._traces: Shipper | None = None
        self._emitted: OrderedDict[bytes, None] = OrderedDict()
        self.last_error = ""
        self._exporters: dict[str, OtlpExporter] = {}
        self._shipping = False
        #: spool mode: payloads whose log records were accepted while their spans were not
        #: (a retry then sends only the spans: no duplicate log records within one run)
        self._logs_done: set[bytes] = set()
        #: spool mode: the delivery thread and emit_span share the exporters' connections
        self._export_lock = threading.Lock()
        #: the signal whose losses are the engine's alert drops (one per alert, see shipper.py):
        #: logs when exported (a record per alert), else the traces' alert spans
        self._loss_signal = "logs" if "logs" in settings.targets else "traces"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for signal, target in self.settings.targets.items():
            transport = self._transports.get(signal) or make_transport(target, target.compression)
            self._exporters[signal] = OtlpExporter(signal, transport, self._resource_body,
                                                   self._scope_body)
            self.stats.setdefault(signal, SignalStats(signal))

    def _start_shippers(self) -> None:
        """The batching threads of :meth:`send` (not started when the engine spools this
        output: it calls :meth:`encode`/:meth:`deliver` instead)."""
        self._shipping = True
        for signal, exporter in self._exporters.items():
            shipper = Shipper(exporter, self.stats[signal], batch_size=self.settings.batch_size,
                              queue_size=self.settings.queue_size,
                              schedule_delay=self.settings.schedule_delay, on_loss=self._on_loss,
                              on_sent=self._on_sent)
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
        if not self._shipping:
            for ex in self._exporters.values():
                ex.shutdown()
        self._logs = self._traces = None

    def _shippers(self) -> list[Shipper]:
        return [s for s in (self._logs, self._traces) if s is not None]

    def _flush_timeout(self) -> float:
        # enough for the queue to go out in a few batches to a live collector, bounded for a dead one
        return 2 * max((t.timeout for t in self.settings.targets.values()), default=1.0) + 1.0

    # ------------------------------------------------------------------ per alert
    def send(self, alert: Alert) -> None:
        if not self._shipping:
            self._start_shippers()
        log_record, spans = self._records(alert)
        if self._traces is not None and spans:
            # the alert's own span comes last; it carries the alert's loss count only when no
            # log record does (see shipper.py: one drop per alert, not per record)
            for sp in spans[:-1]:
                self._traces.put(sp, alerts=0)
            self._traces.put(spans[-1], alerts=1 if self._loss_signal == "traces" else 0)
        if self._logs is not None and log_record is not None:
            self._logs.put(log_record)

    def _records(self, alert: Alert) -> tuple[bytes | None, list[bytes]]:
        """The encoded log record and spans of one alert (nothing below ``min_priority``)."""
        if alert.priority > self.min_priority:
            return None, []
        attrs = mapping.alert_attributes(alert)
        parts = self._attrs.parts(attrs)        # encoded once: log record and span event share it
        trace_id = span_id = b""
        spans: list[bytes] = []
        if "traces" in self._exporters or self._traces is not None:
            trace_id, span_id = self._spans(alert, attrs, parts, spans)
        if "logs" not in self._exporters and self._logs is None:
            return None, spans
        return wire.log_record(
            time_ns=alert.time_ns, observed_ns=time.time_ns(),
            severity_number=_SEVERITY[alert.priority], severity_text=_LABEL[alert.priority],
            body=alert.output, attributes=wire.repeated(6, parts),
            event_name=mapping.EVENT_NAME, trace_id=trace_id, span_id=span_id), spans

    # ------------------------------------------------------------------ spool contract
    #: the engine may keep alerts it cannot export in its on-disk spool (docs/outputs.md)
    spool = True

    def encode(self, alert: Alert) -> bytes:
        """One alert's log record and spans, framed (tag byte, 4-byte length, record)."""
        log_record, spans = self._records(alert)
        out = [_frame(b"S", sp) for sp in spans]
        if log_record is not None:
            out.append(_frame(b"L", log_record))
        return b"".join(out)

    def deliver(self, payloads: Sequence[bytes]) -> int:
        """Export a batch synchronously: one logs request, one traces request. Returns
        ``len(payloads)`` when both were accepted, else 0 (the spool retries the batch)."""
        logs: list[bytes] = []
        spans: list[bytes] = []
        for p in payloads:
            for tag, rec in _unframe(p):
                if tag == b"S":
                    spans.append(rec)
                elif p not in self._logs_done:
                    logs.append(rec)
        try:
            with self._export_lock:
                if logs and "logs" in self._exporters:
                    self._exporters["logs"].export(logs)
                    self.stats["logs"].sent += len(logs)
                    self._logs_done.update(payloads)
                if spans and "traces" in self._exporters:
                    self._exporters["traces"].export(spans)
                    self.stats["traces"].sent += len(spans)
        except Exception as e:  # noqa: BLE001 - retried from the spool with backoff
            self.last_error = f"otel export failed: {e}"
            for st in self.stats.values():
                st.batches_failed += 1
            return 0
        self._logs_done.difference_update(payloads)
        return len(payloads)

    def _spans(self, alert: Alert, attrs: dict[str, Any], parts: list[bytes],
               out: list[bytes]) -> tuple[bytes, bytes]:
        """Ancestor spans (each process once), then this alert's span on the triggering process,
        appended to ``out``. Returns the (trace id, span id) the log record is linked to."""
        key = mapping.workload_key(alert)
        tid, alert_sid = mapping.alert_span_ids(alert)
        trace_id = tid.to_bytes(16, "big")
        lineage = alert.lineage or _lineage_from_fields(alert.output_fields)
        workload = {k: attrs[k] for k in _WORKLOAD_ATTRS if k in attrs}
        workload["falconet.workload"] = key
        parent = b""
        for proc in reversed(lineage[1:]):
            sid = mapping.process_span_id(key, proc.get("pid"), proc.get("start_ts")).to_bytes(8, "big")
            if sid not in self._emitted:
                self._remember(sid)
                out.append(wire.span(
                    trace_id=trace_id, span_id=sid, parent_span_id=parent,
                    name=str(proc.get("name") or "process"),
                    start_ns=_start_ns(proc, alert.time_ns), end_ns=alert.time_ns,
                    attributes=self._attrs.encode({**mapping.process_attributes(proc), **workload},
                                                  9)))
            parent = sid
        me = lineage[0] if lineage else {}
        sid = alert_sid.to_bytes(8, "big")
        start = _start_ns(me, alert.time_ns)
        end = max(start, alert.time_ns + self.settings.span_duration_ms * 1_000_000)
        event = wire.span_event(time_ns=alert.time_ns, name=mapping.EVENT_NAME, attributes=wire.repeated(
            3, self._body_parts.parts({"body": alert.output}) + parts))
        severe = alert.priority <= Priority.ERROR
        out.append(wire.span(
            trace_id=trace_id, span_id=sid, parent_span_id=parent, name=str(me.get("name") or alert.rule),
            start_ns=start, end_ns=end,
            attributes=self._attrs.encode({
                **mapping.process_attributes(me), **workload, "security_rule.name": alert.rule,
                **({"falconet.alert.uuid": alert.uuid} if alert.uuid else {}),
                "falco.priority": _LABEL[alert.priority]}, 9),
            events=(event,),
            status_code=wire.STATUS_ERROR if severe else wire.STATUS_UNSET,
            status_message=alert.rule if severe else ""))
        return trace_id, sid

    # ------------------------------------------------------------------ for other plugins
    def span_ids(self, alert: Alert) -> tuple[int, int] | None:
        """``(trace id, span id)`` of the alert's span, or ``None`` when traces are off or the
        alert is below ``min_priority`` (it gets no span)."""
        if (self._traces is None and "traces" not in self._exporters) \
                or alert.priority > self.min_priority:
            return None
        return mapping.alert_span_ids(alert)

    def emit_span(self, *, trace_id: int, span_id: int, parent_span_id: int, name: str,
                  start_ns: int, end_ns: int, attributes: dict[str, Any], error: bool = False,
                  status_message: str = "") -> bool:
        """Export one span another plugin made (the response plugin: one per action, child of
        the alert's span). Thread-safe; ``False`` when traces are off."""
        traces = self._traces
        span = wire.span(
            trace_id=trace_id.to_bytes(16, "big"), span_id=span_id.to_bytes(8, "big"),
            parent_span_id=parent_span_id.to_bytes(8, "big") if parent_span_id else b"",
            name=name, start_ns=start_ns, end_ns=max(start_ns, end_ns),
            attributes=wire.AttributeEncoder().encode(attributes, 9),
            status_code=wire.STATUS_ERROR if error else wire.STATUS_UNSET,
            status_message=status_message if error else "")
        if traces is None:
            exporter = self._exporters.get("traces")
            if exporter is None:
                return False
            # spool mode (no batching threads): one synchronous export, off the hot loop
            try:
                with self._export_lock:
                    exporter.export([span])
            except Exception as e:  # noqa: BLE001 - an action span is best effort
                log.warning("otel: action span not exported: %s", redact_text(str(e)))
                return False
            return True
        traces.put(span, alerts=0)   # not an alert
        return True

    def _remember(self, span_id: bytes) -> None:
        self._emitted[span_id] = None
        if len(self._emitted) > _EMITTED_CAPACITY:
            self._emitted.popitem(last=False)


def _frame(tag: bytes, record: bytes) -> bytes:
    return tag + len(record).to_bytes(4, "big") + record


def _unframe(payload: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 0
    while i + 5 <= len(payload):
        n = int.from_bytes(payload[i + 1:i + 5], "big")
        out.append((payload[i:i + 1], payload[i + 5:i + 5 + n]))
        i += 5 + n
    return out


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
