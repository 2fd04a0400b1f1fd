"""The sink against the SDK's in-memory exporters: records, severity, attributes, spans, ids."""

from __future__ import annotations

import pytest
from falconet.priorities import Priority
from falconet_otel import mapping
from falconet_otel.config import resolve_settings
from falconet_otel.sink import OtelSink
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_unit_alerts import T0, make_alert


@pytest.fixture
def sink():
    settings = resolve_settings({"endpoint": "http://127.0.0.1:9", "schedule_delay": 0.01}, env={})
    logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()
    s = OtelSink(settings, hostname="node-a", version="0.1.0",
                 exporters={"logs": logs, "traces": spans})
    s.start()
    s.logs_out, s.spans_out = logs, spans
    yield s
    s.close()


def test_log_record_fields(sink, monkeypatch):
    sink.send(make_alert())
    sink.drain()
    [rec] = sink.logs_out.get_finished_logs()
    lr = rec.log_record
    assert lr.body == "A shell was spawned (user=root proc=4242)"
    assert lr.event_name == "falco.alert"
    assert "event.name" not in lr.attributes
    assert lr.severity_text == "Critical" and lr.severity_number is SeverityNumber.ERROR2
    assert lr.timestamp == T0
    a = lr.attributes
    assert a["security_rule.name"] == "Terminal shell in container"
    assert a["security_rule.category"] == "mitre_execution"
    assert a["security_rule.ruleset.name"] == "falco_rules.yaml"
    assert a["security_rule.description"] == "A shell in a container"
    assert a["security_rule.uuid"] == mapping.rule_uuid("Terminal shell in container")
    assert a["falco.priority"] == "Critical" and a["falco.source"] == "syscall"
    assert list(a["falco.tags"]) == ["T1059", "container", "mitre_execution", "shell"]
    assert a["falco.output_fields.proc.aname[2]"] == "containerd-shim"
    assert a["process.pid"] == 4242 and a["process.parent_pid"] == 4000
    assert a["process.executable.path"] == "/usr/bin/bash"
    assert a["process.command_line"] == "bash -i"
    assert a["process.user.name"] == "root" and a["user.name"] == "root" and a["user.id"] == 0
    assert a["container.id"] == "abc123def456" and a["container.name"] == "web"
    assert a["container.image.name"] == "docker.io/library/nginx"
    assert list(a["container.image.tags"]) == ["1.27"]
    assert a["k8s.pod.name"] == "web-1" and a["k8s.namespace.name"] == "shop"
    assert a["file.path"] == "/etc/shadow"
    res = rec.resource.attributes
    assert res["service.name"] == "falconet" and res["service.version"] == "0.1.0"
    assert res["host.name"] == "node-a" and res["service.instance.id"]


@pytest.mark.parametrize("prio, num", [
    (Priority.EMERGENCY, SeverityNumber.FATAL), (Priority.ALERT, SeverityNumber.ERROR3),
    (Priority.CRITICAL, SeverityNumber.ERROR2), (Priority.ERROR, SeverityNumber.ERROR),
    (Priority.WARNING, SeverityNumber.WARN), (Priority.NOTICE, SeverityNumber.INFO2),
    (Priority.INFORMATIONAL, SeverityNumber.INFO), (Priority.DEBUG, SeverityNumber.DEBUG)])
def test_severity_mapping(sink, prio, num):
    sink.send(make_alert(priority=prio))
    sink.drain()
    [rec] = sink.logs_out.get_finished_logs()
    assert rec.log_record.severity_number is num
    assert rec.log_record.severity_text == prio.label


def test_socket_fd_is_not_a_file_but_network_attrs(sink):
    sink.send(make_alert(**{"fd.name": "10.0.0.1:5000->10.0.0.2:80", "fd.type": "ipv4",
                            "fd.sip": "10.0.0.2", "fd.sport": 80, "fd.cip": "10.0.0.1",
                            "fd.cport": 5000, "fd.l4proto": "TCP"}))
    sink.drain()
    a = sink.logs_out.get_finished_logs()[0].log_record.attributes
    assert "file.path" not in a
    assert (a["server.address"], a["server.port"], a["client.address"], a["client.port"]) == (
        "10.0.0.2", 80, "10.0.0.1", 5000)
    assert a["network.transport"] == "tcp"


def test_process_tree_spans_and_log_link(sink):
    first = make_alert()
    sink.send(first)
    sink.send(make_alert(rule="Read sensitive file untrusted", t=T0 + 1000, lineage=first.lineage))
    sink.drain()
    spans = sink.spans_out.get_finished_spans()
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    # ancestors exported once each; one span per alert on the triggering process
    assert len(by_name["containerd-shim"]) == 1 and len(by_name["sh"]) == 1
    assert len(by_name["bash"]) == 2
    shim, sh = by_name["containerd-shim"][0], by_name["sh"][0]
    trace_ids = {s.context.trace_id for s in spans}
    assert trace_ids == {mapping.trace_id_for("pod:shop/web-1")}
    assert shim.parent is None
    assert sh.parent.span_id == shim.context.span_id
    for b in by_name["bash"]:
        assert b.parent.span_id == sh.context.span_id
        [ev] = b.events
        assert ev.name == "falco.alert" and ev.attributes["security_rule.name"] in (
            "Terminal shell in container", "Read sensitive file untrusted")
        assert b.attributes["process.pid"] == 4242
    assert shim.start_time == T0 - 60_000_000_000
    logs = sink.logs_out.get_finished_logs()
    span_of = {b.events[0].attributes["security_rule.name"]: b for b in by_name["bash"]}
    for rec in logs:
        b = span_of[rec.log_record.attributes["security_rule.name"]]
        assert rec.log_record.trace_id == b.context.trace_id
        assert rec.log_record.span_id == b.context.span_id


@pytest.mark.parametrize("kw, key", [
    ({}, "pod:shop/web-1"),
    ({"pod": None}, "container:abc123def456"),
    ({"pod": None, "container": None}, "host:node-a"),
    ({"pod": None, "container": "host"}, "host:node-a"),
])
def test_workload_key_priority(kw, key):
    assert mapping.workload_key(make_alert(**kw)) == key


def test_no_lineage_uses_output_fields(sink):
    sink.send(make_alert(lineage=[], **{"proc.pname": "sh"}))
    sink.drain()
    spans = {s.name: s for s in sink.spans_out.get_finished_spans()}
    # the parent comes from proc.ppid/proc.pname when there is no lineage
    assert spans["bash"].parent.span_id == spans["sh"].context.span_id
    assert spans["bash"].attributes["process.pid"] == 4242


def test_min_priority_filters(sink):
    sink.min_priority = Priority.WARNING
    sink.send(make_alert(priority=Priority.NOTICE))
    sink.send(make_alert(priority=Priority.ERROR))
    sink.drain()
    assert [r.log_record.severity_text for r in sink.logs_out.get_finished_logs()] == ["Error"]


def test_odd_values_become_valid_attributes(sink):
    sink.send(make_alert(**{"evt.args": b"\x00\xff", "proc.env": {"A": 1}, "proc.aname[3]": None,
                            "evt.rawargs": ["a", None, 2]}))
    sink.drain()
    a = sink.logs_out.get_finished_logs()[0].log_record.attributes
    assert a["falco.output_fields.evt.args"] == "\x00\\xff"
    assert a["falco.output_fields.proc.env"] == "{'A': 1}"
    assert "falco.output_fields.proc.aname[3]" not in a
    assert list(a["falco.output_fields.evt.rawargs"]) == ["a", "2"]
