"""Alerts through the OTel plugin (its hooks, configured by OTEL_* variables) to a real OTLP
receiver over HTTP/protobuf and gRPC: log records, severity, attributes, resource, spans, linking."""

from __future__ import annotations

import importlib.metadata as md
import urllib.request

import pytest
from falconet.api import EngineContext
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.plugins import PluginHost
from falconet.priorities import Priority
from falconet.prometheus import MetricsServer
from falconet_otel import mapping
from falconet_otel import plugin as otel_plugin
from otel_alerts import T0, make_alert
from otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from prometheus_client.parser import text_string_to_metric_families

RECEIVERS = {"http/protobuf": OtlpHttpReceiver, "grpc": OtlpGrpcReceiver}


@pytest.fixture(params=sorted(RECEIVERS))
def receiver(request, monkeypatch):
    rx = RECEIVERS[request.param]().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", request.param)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=team%20a")
    monkeypatch.setenv("K8S_NODE_NAME", "node-7")
    yield rx
    rx.stop()


def engine_ctx() -> EngineContext:
    return EngineContext(hostname="node-a", fields=FieldRegistry(), metrics=EngineMetrics())


def test_plugin_is_an_entry_point():
    eps = {ep.name: ep.value for ep in md.entry_points(group="falconet")}
    assert eps.get("otel") == "falconet_otel.plugin"


def test_off_without_endpoint_says_so_once(monkeypatch, caplog):
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    ctx = engine_ctx()
    p = otel_plugin.OtelPlugin()          # one instance per engine
    p.falconet_configure({}, ctx)
    with caplog.at_level("INFO", logger="falconet"):
        assert p.falconet_alert_sinks(ctx) is None
        assert not caplog.records      # nothing said while only building (rules validate, ...)
        p.falconet_start(ctx)
        p.falconet_start(ctx)
    lines = [r.getMessage() for r in caplog.records if "otel" in r.getMessage()]
    assert len(lines) == 1 and "off" in lines[0]


def test_alerts_arrive_as_logs_and_spans(receiver):
    ctx = engine_ctx()
    p = otel_plugin.OtelPlugin()          # one instance per engine
    p.falconet_configure({"timeout": 2}, ctx)
    [sink] = p.falconet_alert_sinks(ctx)
    sink.start()
    first = make_alert()
    sink.send(first)
    sink.send(make_alert(rule="Read sensitive file untrusted", priority=Priority.WARNING,
                         t=T0 + 10, lineage=first.lineage))
    sink.send(make_alert(rule="Host rule", priority=Priority.EMERGENCY, pod=None, container=None,
                         pid=77, t=T0 + 20))
    sink.close()
    assert receiver.wait_for(lambda: len(receiver.logs) == 3 and len(receiver.spans) == 7), (
        len(receiver.logs), len(receiver.spans))

    logs = {r.attributes["security_rule.name"]: r for r in receiver.logs}
    crit = logs["Terminal shell in container"]
    lr = crit.record
    assert lr.body.string_value == first.output
    assert lr.event_name == "falco.alert"
    assert "event.name" not in crit.attributes
    assert (lr.severity_text, lr.severity_number) == ("Critical", 18)
    assert (logs["Read sensitive file untrusted"].record.severity_number,
            logs["Host rule"].record.severity_number) == (13, 21)
    assert lr.time_unix_nano == T0
    a = crit.attributes
    assert a["security_rule.category"] == "mitre_execution"
    assert a["security_rule.ruleset.name"] == "falco_rules.yaml"
    assert a["falco.tags"] == ["T1059", "container", "mitre_execution", "shell"]
    assert a["falco.output_fields.proc.aname[2]"] == "containerd-shim"
    assert (a["process.pid"], a["process.parent_pid"]) == (4242, 4000)
    assert a["process.executable.path"] == "/usr/bin/bash"
    assert a["process.command_line"] == "bash -i"
    assert a["user.name"] == "root"
    assert (a["container.id"], a["k8s.pod.name"], a["k8s.namespace.name"]) == (
        "abc123def456", "web-1", "shop")
    assert a["file.path"] == "/etc/shadow"
    res = crit.resource
    assert res["service.name"] == "falconet" and res["host.name"] == "node-a"
    assert res["k8s.node.name"] == "node-7" and res["service.version"] and res["service.instance.id"]
    assert crit.headers.get("x-tenant") == "team a"

    # spans: one trace per workload; ancestors once; the alert is an event on the process span
    spans = receiver.spans
    pod_trace = mapping.trace_id_for("pod:shop/web-1").to_bytes(16, "big")
    host_trace = mapping.trace_id_for("host:node-a").to_bytes(16, "big")
    assert {s.record.trace_id for s in spans} == {pod_trace, host_trace}
    pod_spans = [s.record for s in spans if s.record.trace_id == pod_trace]
    names = sorted(s.name for s in pod_spans)
    assert names == ["bash", "bash", "containerd-shim", "sh"]
    by_id = {s.span_id: s for s in pod_spans}
    for s in pod_spans:
        if s.name == "bash":
            assert by_id[s.parent_span_id].name == "sh"
            assert by_id[by_id[s.parent_span_id].parent_span_id].name == "containerd-shim"
            assert [e.name for e in s.events] == ["falco.alert"]
    # the log record carries the trace and span id of its alert's process span
    for r in receiver.logs:
        sp = next(s.record for s in spans if s.record.span_id == r.record.span_id)
        assert sp.trace_id == r.record.trace_id
        ev = {kv.key for kv in sp.events[0].attributes}
        assert "security_rule.name" in ev and "falco.output_fields.proc.name" in ev
    assert sink.stats["logs"].sent == 3 and sink.stats["logs"].failed == 0


def test_export_counters_on_metrics_endpoint(receiver):
    """The plugin's falconet_metrics hook: records sent are served on /metrics."""
    host = PluginHost({"otel": {"timeout": 2}}, builtins=[], entry_points=False,
                      extra=[("otel", otel_plugin)])
    host.load()
    ctx = engine_ctx()
    host.configure(ctx)
    [(_, [sink])] = host.call(host.hook.falconet_alert_sinks, engine=ctx)
    srv = MetricsServer(ctx, ctx.metrics, host, port=0)
    srv.start()
    try:
        sink.start()
        lineage = make_alert().lineage
        for i in range(5):
            sink.send(make_alert(t=T0 + i, lineage=lineage))
        assert sink.drain(10)
        body = urllib.request.urlopen(srv.url + "/metrics", timeout=5).read().decode()
    finally:
        sink.close()
        srv.stop()
    samples = {(s.name, s.labels.get("signal"), s.labels.get("result")): s.value
               for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert samples[("falconet_otel_records_total", "logs", "sent")] == 5
    assert samples[("falconet_otel_records_total", "traces", "sent")] == 7   # 2 ancestors + 5
    assert samples[("falconet_otel_records_total", "logs", "failed")] == 0
    assert samples[("falconet_otel_queue_depth", "logs", None)] == 0


def test_gzip_compression(receiver):
    ctx = engine_ctx()
    p = otel_plugin.OtelPlugin()          # one instance per engine
    p.falconet_configure({"compression": "gzip", "traces": False}, ctx)
    [sink] = p.falconet_alert_sinks(ctx)
    sink.start()
    sink.send(make_alert())
    sink.close()
    assert receiver.wait_for(lambda: len(receiver.logs) == 1, 5)
    assert receiver.logs[0].attributes["security_rule.name"] == "Terminal shell in container"
    if isinstance(receiver, OtlpHttpReceiver):
        assert receiver.logs[0].headers.get("content-encoding") == "gzip"
