"""The OTel output with its spool against the tests' real OTLP/HTTP receiver (a stand-in for a
collector) that is down, then started, then stopped and started again: every alert's log record
and span arrive, each alert id (``falconet.alert.uuid``) at least once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import free_port, stop_process, wait_until
from delivery_helpers import STORM_RULES, scrape, storm_capture
from otlp_receivers import OtlpHttpReceiver

FALCONET = str(Path(sys.executable).parent / "falconet")


def test_otlp_receiver_stopped_and_restarted_logs_and_spans_all_arrive(tmp_path):
    cap = tmp_path / "storm.fcap"
    storm_capture(str(cap), 3_000)
    (tmp_path / "rules.yaml").write_text(STORM_RULES)
    (tmp_path / "falconet.yaml").write_text("load_plugin_rules: false\n")
    rx = OtlpHttpReceiver(free_port())            # not started: the collector is down
    port = free_port()
    cmd = [FALCONET, "replay", str(cap), "-c", str(tmp_path / "falconet.yaml"),
           "-r", str(tmp_path / "rules.yaml"), "--no-progress", "--rate", "500",
           "--metrics-port", str(port), "-o", "outputs.stdout.enabled=false",
           "-o", f"state_dir={tmp_path / 'state'}", "-o", f"plugins.otel.endpoint={rx.endpoint}",
           "-o", "plugins.otel.protocol=http/protobuf", "-o", "plugins.otel.timeout=0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("OTEL_")})
    try:
        wait_until(lambda: scrape(port).get('falconet_spool_depth{output="otel"}', 0) >= 500,
                   30, "alerts spooled while the collector is down")
        rx.start()
        wait_until(lambda: len(rx.logs) >= 1_000, 30, "export resumed")
        rx.stop()                                 # down again mid-storm
        wait_until(lambda: scrape(port).get('falconet_spool_depth{output="otel"}', 0) >= 200,
                   30, "spooling again")
        rx.start()
        _, err = proc.communicate(timeout=120)
    finally:
        stop_process(proc)
        rx.stop()
    assert proc.returncode == 0, err
    log_ids = Counter(x.attributes.get("falconet.alert.uuid") for x in rx.logs)
    span_ids = Counter(x.attributes.get("falconet.alert.uuid") for x in rx.spans
                       if "falconet.alert.uuid" in x.attributes)
    names = {x.attributes.get("falco.output_fields.evt.arg.name") for x in rx.logs}
    assert len(names) == 3_000 and len(log_ids) == 3_000, "every alert's log record"
    assert set(span_ids) == set(log_ids), "every alert's span, with the same ids"
    dup_logs = sum(n - 1 for n in log_ids.values())
    dup_spans = sum(n - 1 for n in span_ids.values())
    print(f"\notel: 3000 alerts through two outages; duplicates: {dup_logs} log records, "
          f"{dup_spans} spans")
    # (a short outage may be bridged by the transport's own retries within its timeout)
    assert err.count("delivery restored after an outage") >= 1, err
