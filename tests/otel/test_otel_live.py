"""The live engine (``falconet run``, eBPF) exports alerts of a real process tree to a real OTLP
receiver: the log record, and spans where the triggering ``cat`` is a child of its ``sh``. Then the
receiver is killed: the engine keeps running and counts failed exports on /metrics; the receiver
comes back on the same port and the next alerts arrive."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request

import pytest
from conftest import free_port, need_bcc, stop_process, wait_for
from otlp_receivers import OtlpHttpReceiver

RULES = """\
- rule: Live marker opened
  desc: a process opened the test's marker file
  condition: evt.type in (open, openat, openat2) and fd.name startswith {prefix}
  output: "marker opened (proc=%proc.name pid=%proc.pid ppid=%proc.ppid file=%fd.name)"
  priority: CRITICAL
  tags: [filesystem, mitre_discovery]
"""


def otel_counter(port: int, signal: str, result: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    m = re.search(rf'^falconet_otel_records_total{{result="{result}",signal="{signal}"}} ([0-9.e+]+)$',
                  body, re.M)
    return float(m.group(1)) if m else 0.0


def wait_events_flowing(port: int, engine: subprocess.Popen, timeout: float = 60) -> None:
    """The collector is attached once the kernel side has produced events (scap_n_evts > 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert engine.poll() is None, engine.stderr.read().decode() if engine.stderr else ""
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
            m = re.search(r"^falcosecurity_scap_n_evts_total ([0-9.e+]+)$", body, re.M)
            if m and float(m.group(1)) > 0:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the live engine never reported kernel events")


@pytest.mark.root
@pytest.mark.ebpf
def test_live_run_exports_process_tree(tmp_path, falconet_bin):
    need_bcc()
    marker = tmp_path / "marker-live"
    marker.write_text("x")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(prefix=str(tmp_path / "marker-")))
    rx = OtlpHttpReceiver().start()
    port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TIMEOUT": "500"}
    engine = subprocess.Popen([falconet_bin, "run", "-r", str(rules), "--metrics-port", str(port),
                               "--duration", "90"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        wait_events_flowing(port, engine)
        sh = subprocess.Popen(["/bin/sh", "-c", f"cat {marker} >/dev/null; cat {marker} >/dev/null"])
        sh.wait(10)
        def linked() -> bool:       # both alerts, and every span their log records point to
            ids = {s.record.span_id for s in rx.spans}
            return len(rx.logs) >= 2 and all(r.record.span_id in ids for r in rx.logs)

        assert rx.wait_for(linked, 20), (len(rx.logs), len(rx.spans))
        logs = list(rx.logs)

        rx.stop()                                           # the collector dies mid-run
        subprocess.run(["/bin/cat", str(marker)], stdout=subprocess.DEVNULL, check=True)
        assert wait_for(lambda: otel_counter(port, "logs", "failed") >= 1, 20, 0.1)
        assert engine.poll() is None                        # ... and the engine goes on
        rx.start()                                          # back on the same port
        n_before = len(rx.logs)
        assert wait_for(lambda: (subprocess.run(["/bin/cat", str(marker)], stdout=subprocess.DEVNULL)
                                 and False) or len(rx.logs) > n_before, 20, 0.1)
        assert otel_counter(port, "logs", "sent") >= 3
    finally:
        stop_process(engine, 20)
        rx.stop()
    logs = [r for r in logs if r.attributes.get("security_rule.name") == "Live marker opened"]
    assert len(logs) == 2
    for r in logs:
        assert (r.record.severity_text, r.record.severity_number) == ("Critical", 18)
        assert r.record.event_name == "falco.alert"
        assert r.attributes["process.executable.name"] == "cat"
        assert r.attributes["process.parent_pid"] == sh.pid
        assert r.attributes["file.path"] == str(marker)
        assert r.resource["service.name"] == "falconet"
    by_id = {s.record.span_id: s for s in rx.spans}
    for r in logs:
        span = by_id[r.record.span_id]                      # the log links to its process span
        assert span.record.name == "cat" and span.record.trace_id == r.record.trace_id
        parent = by_id[span.record.parent_span_id]          # ... whose parent is the shell
        assert parent.record.name == "sh" and parent.attributes["process.pid"] == sh.pid
        grandparent = by_id[parent.record.parent_span_id]   # ... whose parent is this test
        assert grandparent.attributes["process.pid"] == os.getpid()
