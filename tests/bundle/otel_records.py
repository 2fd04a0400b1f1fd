"""Real OTLP output of the falconet-otel plugin for the bundle tests: a few alerts sent through the
plugin's sink and its OTLP/HTTP exporter to a local receiver, decoded from the wire."""

from __future__ import annotations

import base64
import time
from typing import Any

from bundle_support import OtlpHttpReceiver, wait_for
from falconet.alerts import Alert
from falconet.priorities import Priority

HOST = "bundle-host"
T0 = 1_764_300_000_000_000_000
CONTAINER_ID = "a" * 64


def sample_alerts() -> list[Alert]:
    """A Critical alert in a Kubernetes pod, a Warning one in a plain container, a Notice on the host."""
    k8s_fields = {"evt.time": T0, "proc.name": "cat", "proc.pid": 4242, "proc.ppid": 4200,
                  "proc.cmdline": "cat /etc/shadow", "fd.name": "/etc/shadow",
                  "container.id": CONTAINER_ID[:12], "container.name": "web",
                  "container.image.repository": "nginx", "container.image.tag": "1.27",
                  "k8s.ns.name": "shop", "k8s.pod.name": "web-0"}
    return [
        Alert("Read Shadow File", Priority.CRITICAL, "syscall", ["filesystem", "mitre_credential_access"],
              "Shadow file opened (file=/etc/shadow proc=cat container=web)", k8s_fields, T0, HOST,
              desc="A process read /etc/shadow", ruleset="falconet_rules.yaml",
              lineage=[{"pid": 4242, "name": "cat", "exepath": "/usr/bin/cat", "cmdline": "cat /etc/shadow",
                        "start_ts": T0 - 10**9},
                       {"pid": 4200, "name": "bash", "exepath": "/bin/bash", "cmdline": "bash",
                        "start_ts": T0 - 5 * 10**9}]),
        Alert("Tmp File Opened", Priority.WARNING, "syscall", ["filesystem"],
              "Tmp file opened (file=/tmp/x proc=sh container=batch)",
              {"evt.time": T0 + 1, "proc.name": "sh", "proc.pid": 5000, "fd.name": "/tmp/x",
               "container.id": "b" * 12, "container.name": "batch"}, T0 + 1000, HOST),
        Alert("Program Executed", Priority.NOTICE, "syscall", ["process"],
              "Program executed (proc=ls)", {"evt.time": T0 + 2, "proc.name": "ls", "proc.pid": 6000,
                                              "container.id": "host"}, T0 + 2000, HOST),
    ]


class Exported:
    """What the receiver got: log records and spans, decoded."""

    def __init__(self, receiver: OtlpHttpReceiver) -> None:
        self.receiver = receiver
        self.logs = receiver.log_records()        # (resource, scope, LogRecord pb)
        self.spans = receiver.span_records()       # (resource, Span pb)

    def logs_request_json(self) -> dict[str, Any]:
        """The logs as one OTLP/JSON ExportLogsServiceRequest, as the collector's otlp_http
        exporter with ``encoding: json`` sends them (hex ids, integer enums, int64 as strings)."""
        from google.protobuf.json_format import MessageToDict  # noqa: PLC0415
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: PLC0415
            ExportLogsServiceRequest,
        )
        merged: dict[str, Any] = {"resourceLogs": []}
        for path, body in list(self.receiver.bodies):
            if path == "/v1/logs":
                d = MessageToDict(ExportLogsServiceRequest.FromString(body), use_integers_for_enums=True)
                merged["resourceLogs"].extend(d.get("resourceLogs", []))
        for rl in merged["resourceLogs"]:
            for sl in rl.get("scopeLogs", []):
                for rec in sl.get("logRecords", []):
                    for key in ("traceId", "spanId"):
                        if key in rec:
                            rec[key] = base64.b64decode(rec[key]).hex()
        return merged


def export_sample_alerts() -> Exported:
    # the plugin is installed by `make test`; a missing plugin must fail, not skip
    import falconet_otel.config as settings_mod  # noqa: PLC0415
    import falconet_otel.sink as sink_mod  # noqa: PLC0415
    receiver = OtlpHttpReceiver()
    try:
        settings = settings_mod.resolve_settings({"endpoint": receiver.url, "schedule_delay": 0.05}, env={})
        sink = sink_mod.OtelSink(settings, hostname=HOST, version="0.1.0")
        sink.start()
        alerts = sample_alerts()
        for a in alerts:
            sink.send(a)
        sink.flush()
        wait_for(lambda: len(receiver.log_records()) >= len(alerts) and receiver.span_records(), 10,
                 "the OTel plugin's logs and spans at the local OTLP receiver")
        sink.close()
        time.sleep(0)      # let the server threads finish their last responses
        return Exported(receiver)
    finally:
        receiver.stop()
