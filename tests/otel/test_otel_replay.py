"""``falconet replay`` (a real engine subprocess) exports its alerts to a real OTLP receiver
configured only through the standard OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from falconet_otel import mapping
from otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver

T0 = 1_764_000_000_000_000_000
RULES = """\
- rule: Read shadow
  desc: a process read /etc/shadow
  condition: evt.type=openat and fd.name=/etc/shadow
  output: "shadow read (proc=%proc.name pid=%proc.pid ppid=%proc.ppid file=%fd.name)"
  priority: CRITICAL
  tags: [filesystem, mitre_credential_access, T1003.008]
- rule: Tmp write
  desc: a process opened a file in /tmp
  condition: evt.type=openat and fd.name startswith /tmp/
  output: "tmp open (proc=%proc.name file=%fd.name)"
  priority: NOTICE
  tags: [filesystem]
"""


def write_capture(path) -> None:
    """sh (pid 200) forks 201 which execs cat, which reads /etc/shadow and opens /tmp/x."""
    lines = [{"falconet_capture": 1, "host": "caphost", "kernel": "6.18.0", "start_ns": T0,
              "engine_version": "0.63.0"}]

    def ev(t, typ, tid, args, res=0):
        lines.append({"k": "evt", "src": "syscall", "type": typ, "ts": T0 + t, "tid": tid,
                      "pid": tid, "args": args, "res": res})

    ev(1, "execve", 200, {"filename": "/bin/sh", "argv": ["sh", "-c", "cat /etc/shadow"],
                          "cwd": "/root", "exepath": "/bin/sh", "uid": 0, "gid": 0, "comm": "sh"})
    ev(2, "procfork", 200, {"child_tid": 201, "child_pid": 201, "parent_tid": 200, "parent_pid": 200})
    ev(3, "execve", 201, {"filename": "/usr/bin/cat", "argv": ["cat", "/etc/shadow"], "cwd": "/root",
                          "exepath": "/usr/bin/cat", "uid": 0, "gid": 0, "comm": "cat"})
    ev(4, "openat", 201, {"dirfd": -100, "name": "/etc/shadow", "flags": 0, "mode": 0}, res=3)
    ev(5, "openat", 201, {"dirfd": -100, "name": "/tmp/x", "flags": 0, "mode": 0}, res=4)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


@pytest.mark.parametrize("rx_cls, proto", [(OtlpHttpReceiver, "http/protobuf"),
                                           (OtlpGrpcReceiver, "grpc")], ids=["http", "grpc"])
def test_replay_exports_logs_and_spans(tmp_path, falconet_bin, rx_cls, proto):
    cap, rules = tmp_path / "cap.fcap", tmp_path / "rules.yaml"
    write_capture(cap)
    rules.write_text(RULES)
    rx = rx_cls().start()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": proto, "FALCONET_HOSTNAME": "replay-host",
           "K8S_NODE_NAME": "node-9"}
    try:
        r = subprocess.run([falconet_bin, "replay", str(cap), "-r", str(rules), "--no-progress"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        # the engine flushed its outputs before exiting: everything is already here
        assert rx.wait_for(lambda: len(rx.logs) == 2, 5), (len(rx.logs), r.stderr)
    finally:
        rx.stop()
    logs = {x.attributes["security_rule.name"]: x for x in rx.logs}
    shadow = logs["Read shadow"]
    lr = shadow.record
    assert lr.event_name == "falco.alert"
    assert (lr.severity_text, lr.severity_number) == ("Critical", 18)
    assert (logs["Tmp write"].record.severity_text, logs["Tmp write"].record.severity_number) == (
        "Notice", 10)
    assert lr.time_unix_nano == T0 + 4
    assert "shadow read (proc=cat pid=201 ppid=200 file=/etc/shadow)" in lr.body.string_value
    a = shadow.attributes
    assert a["security_rule.ruleset.name"].endswith("rules.yaml")
    assert a["security_rule.description"] == "a process read /etc/shadow"
    assert a["security_rule.category"] == "mitre_credential_access"
    assert a["falco.output_fields.proc.name"] == "cat"
    assert (a["process.pid"], a["process.parent_pid"], a["file.path"]) == (201, 200, "/etc/shadow")
    assert a["process.executable.path"] == "/usr/bin/cat"
    assert shadow.resource["service.name"] == "falconet"
    assert shadow.resource["k8s.node.name"] == "node-9"

    # one trace for the host workload; cat's alert spans are children of sh's span
    spans = [s.record for s in rx.spans]
    host = shadow.resource["host.name"]
    trace = mapping.trace_id_for(f"host:{a['falco.hostname']}").to_bytes(16, "big")
    assert {s.trace_id for s in spans} == {trace}, host
    by_id = {s.span_id: s for s in spans}
    cat_spans = [s for s in spans if s.name == "cat"]
    assert len(cat_spans) == 2
    for s in cat_spans:
        assert by_id[s.parent_span_id].name == "sh"
        assert s.events[0].name == "falco.alert"
    assert [s.name for s in spans].count("sh") == 1
    assert lr.trace_id == trace and by_id[lr.span_id].name == "cat"
