"""The sink's OTLP output, decoded with the official opentelemetry-proto classes: log records,
severity, attributes, resource, process-tree spans and trace/span ids."""

from __future__ import annotations

import pytest
from falconet.priorities import Priority
from falconet_otel import mapping
from falconet_otel.config import resolve_settings
from falconet_otel.sink import OtelSink
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otel_unit_alerts import T0, make_alert


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Capture:
    """A transport that keeps the request bytes."""

    def __init__(self):
        self.requests: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.requests.append(body)

    def close(self) -> None:
        pass


class Sink:
    def __init__(self, **cfg):
        settings = resolve_settings({"endpoint": "http://127.0.0.1:9", "schedule_delay": 0.01, **cfg},
                                    env={})
        self.logs_tx, self.spans_tx = Capture(), Capture()
        self.sink = OtelSink(settings, hostname="node-a", version="0.1.0",
                             transports={"logs": self.logs_tx, "traces": self.spans_tx})
        self.sink.start()

    def send(self, *alerts):
        for a in alerts:
            self.sink.send(a)
        assert self.sink.drain(5)

    def logs(self):
        out = []
        for body in self.logs_tx.requests:
            req = ExportLogsServiceRequest.FromString(body)
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    out += [(attrs(rl.resource.attributes), sl.scope, lr) for lr in sl.log_records]
        return out

    def spans(self):
        out = []
        for body in self.spans_tx.requests:
            req = ExportTraceServiceRequest.FromString(body)
            out += [sp for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
        return out


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.sink.close()


def test_log_record_fields(sink):
    sink.send(make_alert())
    [(res, scope, lr)] = sink.logs()
    assert lr.body.string_value == "A shell was spawned (user=root proc=4242)"
    assert lr.event_name == "falco.alert"
    assert (lr.severity_text, lr.severity_number) == ("Critical", 18)
    assert lr.time_unix_nano == T0 and lr.observed_time_unix_nano >= T0
    a = attrs(lr.attributes)
    assert "event.name" not in a
    assert a["security_rule.name"] == "Terminal shell in container"
    assert a["security_rule.category"] == "mitre_execution"
    assert a["security_rule.ruleset.name"] == "falco_rules.yaml"
    assert a["security_rule.description"] == "A shell in a container"
    assert a["security_rule.uuid"] == mapping.rule_uuid("Terminal shell in container")
    assert a["falco.priority"] == "Critical" and a["falco.source"] == "syscall"
    assert a["falco.tags"] == ["T1059", "container", "mitre_execution", "shell"]
    assert a["falco.output_fields.proc.aname[2]"] == "containerd-shim"
    assert a["falco.output_fields.evt.time"] == T0
    assert a["process.pid"] == 4242 and a["process.parent_pid"] == 4000
    assert a["process.executable.path"] == "/usr/bin/bash"
    assert a["process.command_line"] == "bash -i"
    assert a["process.user.name"] == "root" and a["user.name"] == "root" and a["user.id"] == 0
    assert a["container.id"] == "abc123def456" and a["container.name"] == "web"
    assert a["container.image.name"] == "docker.io/library/nginx"
    assert a["container.image.tags"] == ["1.27"]
    assert a["k8s.pod.name"] == "web-1" and a["k8s.namespace.name"] == "shop"
    assert a["file.path"] == "/etc/shadow"
    assert res["service.name"] == "falconet" and res["service.version"] == "0.1.0"
    assert res["host.name"] == "node-a" and res["service.instance.id"]
    assert scope.name == "falconet.otel"


@pytest.mark.parametrize("prio, num", [
    (Priority.EMERGENCY, 21), (Priority.ALERT, 19), (Priority.CRITICAL, 18), (Priority.ERROR, 17),
    (Priority.WARNING, 13), (Priority.NOTICE, 10), (Priority.INFORMATIONAL, 9), (Priority.DEBUG, 5)])
def test_severity_mapping(sink, prio, num):
    sink.send(make_alert(priority=prio))
    [(_, _, lr)] = sink.logs()
    assert (lr.severity_number, lr.severity_text) == (num, prio.label)


def test_socket_fd_is_not_a_file_but_network_attrs(sink):
    sink.send(make_alert(**{"fd.name": "10.0.0.1:5000->10.0.0.2:80", "fd.type": "ipv4",
                            "fd.sip": "10.0.0.2", "fd.sport": 80, "fd.cip": "10.0.0.1",
                            "fd.cport": 5000, "fd.l4proto": "TCP"}))
    a = attrs(sink.logs()[0][2].attributes)
    assert "file.path" not in a
    assert (a["server.address"], a["server.port"], a["client.address"], a["client.port"]) == (
        "10.0.0.2", 80, "10.0.0.1", 5000)
    assert a["network.transport"] == "tcp"


def test_process_tree_spans_and_log_link(sink):
    first = make_alert()
    sink.send(first, make_alert(rule="Read sensitive file untrusted", t=T0 + 1000,
                                lineage=first.lineage))
    spans = sink.spans()
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    # ancestors exported once each; one span per alert on the triggering process
    assert len(by_name["containerd-shim"]) == 1 and len(by_name["sh"]) == 1
    assert len(by_name["bash"]) == 2
    shim, sh = by_name["containerd-shim"][0], by_name["sh"][0]
    assert {s.trace_id for s in spans} == {mapping.trace_id_for("pod:shop/web-1").to_bytes(16, "big")}
    assert shim.parent_span_id == b""
    assert sh.parent_span_id == shim.span_id
    assert shim.start_time_unix_nano == T0 - 60_000_000_000
    for b in by_name["bash"]:
        assert b.parent_span_id == sh.span_id
        [ev] = b.events
        ea = attrs(ev.attributes)
        assert ev.name == "falco.alert" and ev.time_unix_nano in (T0, T0 + 1000)
        assert ea["falco.output_fields.proc.name"] == "bash"
        assert attrs(b.attributes)["process.pid"] == 4242
        assert b.status.code == 2 and b.status.message == ea["security_rule.name"]   # ERROR
        assert b.flags & 0x1                                                          # sampled
    span_of = {attrs(b.events[0].attributes)["security_rule.name"]: b for b in by_name["bash"]}
    for _, _, lr in sink.logs():
        b = span_of[attrs(lr.attributes)["security_rule.name"]]
        assert (lr.trace_id, lr.span_id) == (b.trace_id, b.span_id)


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
    spans = {s.name: s for s in sink.spans()}
    assert spans["bash"].parent_span_id == spans["sh"].span_id
    assert attrs(spans["bash"].attributes)["process.pid"] == 4242


def test_min_priority_filters(sink):
    sink.sink.min_priority = Priority.WARNING
    sink.send(make_alert(priority=Priority.NOTICE), make_alert(priority=Priority.ERROR))
    assert [lr.severity_text for _, _, lr in sink.logs()] == ["Error"]


def test_odd_values_become_valid_attributes(sink):
    sink.send(make_alert(**{"evt.args": b"\x00\xff", "proc.env": {"A": 1}, "proc.aname[3]": None,
                            "evt.rawargs": ["a", None, 2], "evt.res": -2, "evt.ratio": 0.5,
                            "evt.flag": True}))
    a = attrs(sink.logs()[0][2].attributes)
    # the engine's output policy: valid UTF-8, controls and stray bytes escaped
    assert a["falco.output_fields.evt.args"] == "\\u0000\\xff"
    assert a["falco.output_fields.proc.env"] == "{'A': 1}"
    assert "falco.output_fields.proc.aname[3]" not in a
    assert a["falco.output_fields.evt.rawargs"] == ["a", "2"]
    assert a["falco.output_fields.evt.res"] == -2
    assert a["falco.output_fields.evt.ratio"] == 0.5
    assert a["falco.output_fields.evt.flag"] is True


def test_cached_encodings_keep_types_apart(sink):
    # True == 1 == 1.0 in Python: the encoding cache must not mix them up
    sink.send(make_alert(**{"x.v": True}), make_alert(**{"x.v": 1}), make_alert(**{"x.v": 1.0}))
    vals = [attrs(lr.attributes)["falco.output_fields.x.v"] for _, _, lr in sink.logs()]
    assert [type(v) for v in vals] == [bool, int, float]


def test_gzip_config_resolves():
    s = resolve_settings({"endpoint": "http://x:1", "compression": "gzip"}, env={})
    assert s.targets["logs"].compression == "gzip"


def test_long_and_unicode_values_round_trip(sink):
    cmd = "python3 -c '" + "x" * 300 + "' ünïcødé ☃"
    sink.send(make_alert(**{"proc.cmdline": cmd, "evt.big": 2**63 - 1, "evt.neg": -(2**40)}))
    a = attrs(sink.logs()[0][2].attributes)
    assert a["process.command_line"] == cmd
    assert a["falco.output_fields.evt.big"] == 2**63 - 1
    assert a["falco.output_fields.evt.neg"] == -(2**40)
