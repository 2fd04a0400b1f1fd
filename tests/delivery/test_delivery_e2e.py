"""Acceptance of issue 14 with real processes: ``falconet replay`` (a paced alert storm) with the
webhook output and its on-disk spool, a real HTTP receiver on 127.0.0.1 that is down and comes
back, SIGKILL mid-outage and a restart, routing by namespace and aggregation with exact counts
in ``/metrics``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, stop_process, wait_until
from delivery_helpers import (
    STORM_RULES,
    AlertReceiver,
    healthz,
    routed_capture,
    scrape,
    spooled_names,
    storm_capture,
)
from otlp_receivers import OtlpHttpReceiver

#: the test virtualenv's console script (``falconet_bin`` of conftest is a fixture)
FALCONET = str(Path(sys.executable).parent / "falconet")


def engine(tmp: Path, cap: str, rx_url: str, *, rate: float | None, port: int,
           extra: tuple[str, ...] = ()) -> subprocess.Popen:
    rules = tmp / "rules.yaml"
    rules.write_text(STORM_RULES)
    cfg = tmp / "falconet.yaml"           # the host's /etc/falconet must not leak in
    cfg.write_text("load_plugin_rules: false\n")
    cmd = [FALCONET, "replay", cap, "-c", str(cfg), "-r", str(rules), "--no-progress",
           "--metrics-port", str(port), "-o", "outputs.stdout.enabled=false",
           "-o", "outputs.webhook.enabled=true", "-o", f"outputs.webhook.url={rx_url}",
           "-o", "outputs.webhook.timeout=2", "-o", f"state_dir={tmp / 'state'}", *extra]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": ""})


def duplicates(rx: AlertReceiver) -> int:
    return sum(n - 1 for n in rx.uuids().values())


@pytest.mark.slow
def test_receiver_down_for_the_first_60s_of_a_20000_alert_storm(tmp_path):
    names = storm_capture(str(tmp_path / "storm.fcap"), 20_000)
    rx = AlertReceiver(free_port())
    port = free_port()
    t0 = time.monotonic()
    proc = engine(tmp_path, str(tmp_path / "storm.fcap"), rx.url, rate=20_000 / 75, port=port)
    try:
        health = wait_until(lambda: (h := healthz(port)).get("status") == "degraded" and h,
                            30, "/healthz degraded while the webhook spools")
        out = health["outputs"]["webhook"]
        assert out["state"] == "spooling" and out["spool_depth"] > 0, out
        m = scrape(port)
        assert m['falconet_spool_depth{output="webhook"}'] > 0
        assert m['falconet_spool_bytes{output="webhook"}'] > 0
        assert m['falconet_spool_oldest_age_seconds{output="webhook"}'] >= 0
        assert m['falconet_spool_written_total{output="webhook"}'] > 0
        assert m['falconet_output_delivery_retries_total{output="webhook"}'] >= 1
        # the outage: 60 s from the start of the storm (a duration, not a condition to poll)
        time.sleep(max(0.0, 60 - (time.monotonic() - t0)))
        depth_at_restore = scrape(port).get('falconet_spool_depth{output="webhook"}', 0)
        rx.start()
        _, err = proc.communicate(timeout=240)
    finally:
        stop_process(proc)
        rx.stop()
    assert proc.returncode == 0, err
    got = rx.names()
    missing = [n for n in names if n not in got]
    assert not missing, f"{len(missing)} alerts never arrived, e.g. {missing[:3]}"
    ids = rx.uuids()
    assert len(ids) == 20_000, "one distinct id per alert"
    dup = duplicates(rx)
    print(f"\nstorm: 20000 alerts, {depth_at_restore:.0f} spooled when the receiver came back, "
          f"{dup} duplicates")
    assert dup == 0, "no duplicates without a crash"
    restored = re.findall(r"delivery restored after an outage of ([\d.]+) s", err)
    assert len(restored) == 1 and float(restored[0]) >= 50, err
    assert "20000 alerts" in err and ", 0 drops" in err, err


def test_sigkill_mid_outage_then_restart_delivers_everything_spooled(tmp_path):
    a_names = storm_capture(str(tmp_path / "a.fcap"), 8_000, prefix="a")
    b_names = storm_capture(str(tmp_path / "b.fcap"), 300, prefix="b")
    rx = AlertReceiver(free_port())
    port = free_port()
    proc = engine(tmp_path, str(tmp_path / "a.fcap"), rx.url, rate=1_000, port=port)
    try:
        wait_until(lambda: scrape(port).get('falconet_spool_depth{output="webhook"}', 0) >= 2_000,
                   30, "2000 alerts in the spool")
        h = healthz(port)
        assert h["status"] == "degraded" and h["outputs"]["webhook"]["state"] == "spooling", h
        alerts_before = scrape(port).get("falconet_alerts_total{priority=\"Error\","
                                         "rule=\"Delivery storm\",source=\"syscall\"}", 0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop_process(proc)
    assert proc.returncode == -signal.SIGKILL
    db = tmp_path / "state" / "spool" / "webhook.db"
    spooled = spooled_names(str(db))
    assert len(spooled) >= 2_000
    # write-ahead in order: what is durable is exactly the first alerts, with no gap
    assert list(spooled) == a_names[:len(spooled)]
    rx.start()
    port2 = free_port()
    proc = engine(tmp_path, str(tmp_path / "b.fcap"), rx.url, rate=300, port=port2)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        stop_process(proc)
        rx.stop()
    assert proc.returncode == 0, err
    assert "undelivered alert(s) in the spool from a previous run" in err
    by_name = {a["output_fields"]["evt.arg.name"]: a["uuid"] for a in rx.alerts}
    lost = [n for n in spooled if n not in by_name]
    assert not lost, f"{len(lost)} spooled alerts not delivered after the restart"
    assert all(by_name[n] == u for n, u in spooled.items()), "the same ids after the restart"
    assert all(n in by_name for n in b_names)
    a_got = [n for n in by_name if n.startswith("/tmp/storm-a-")]
    print(f"\nkill -9: {alerts_before:.0f}+ alerts made before the kill, {len(spooled)} durable "
          f"in the spool, all delivered after the restart ({len(a_got)} A alerts); "
          f"{duplicates(rx)} duplicates")
    assert duplicates(rx) == 0


def test_alerts_of_a_namespace_go_only_to_the_output_that_matches_them(tmp_path):
    cap = tmp_path / "ns.fcap"
    routed_capture(str(cap), 50)
    rx = AlertReceiver(free_port()).start()
    otlp = OtlpHttpReceiver().start()
    out_file = tmp_path / "prod.json"
    conf = tmp_path / "routes.yaml"
    conf.write_text(f"""\
load_plugin_rules: false
plugins:
  otel:                      # a plugin's sink: its match: sits in the plugin's section
    endpoint: {otlp.endpoint}
    protocol: http/protobuf
    traces: false
    match: {{condition: k8s.ns.name = prod-web, priority: ">=Error"}}
outputs:
  stdout: {{enabled: false}}
  file:
    enabled: true
    path: {out_file}
    match: {{condition: 'k8s.ns.name startswith "prod-"'}}
  webhook:
    enabled: true
    url: {rx.url}
    match: {{condition: k8s.ns.name = dev-api, rules: [Delivery storm]}}
""")
    rules = tmp_path / "rules.yaml"
    rules.write_text(STORM_RULES)
    port = free_port()
    proc = subprocess.run([FALCONET, "replay", str(cap), "-c", str(conf), "-r", str(rules),
                           "--no-progress", "-o", f"state_dir={tmp_path / 'state'}"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    rx.stop()
    otlp.stop()
    assert proc.returncode == 0, proc.stderr
    del port
    to_otel = [x.attributes["falco.output_fields.evt.arg.name"] for x in otlp.logs]
    assert sorted(to_otel) == sorted(f"/tmp/storm-prod-web-{i}" for i in range(50))
    to_file = [json.loads(line)["output_fields"]["evt.arg.name"]
               for line in out_file.read_text().splitlines()]
    to_hook = [a["output_fields"]["evt.arg.name"] for a in rx.alerts]
    assert sorted(to_file) == sorted(f"/tmp/storm-prod-web-{i}" for i in range(50))
    assert sorted(to_hook) == sorted(f"/tmp/storm-dev-api-{i}" for i in range(50)), proc.stderr


def test_thousand_identical_alerts_first_plus_summary_with_exact_metrics(tmp_path):
    cap = tmp_path / "same.fcap"
    storm_capture(str(cap), 1_000)
    rx = AlertReceiver(free_port()).start()
    port = free_port()
    proc = engine(tmp_path, str(cap), rx.url, rate=None, port=port,
                  extra=("-o", "outputs.webhook.aggregate={window: 1h, by: [proc.name]}",
                         "--linger", "60"))
    try:
        wait_until(lambda: len(rx.alerts) == 2, 60, "the first alert and one summary")
        m = wait_until(lambda: (s := scrape(port)).get(
            'falconet_output_summaries_total{output="webhook"}') == 1 and s, 10, "metrics")
    finally:
        stop_process(proc)
        rx.stop()
    first, summ = rx.alerts
    assert "falconet.count" not in first["output_fields"]
    f = summ["output_fields"]
    assert f["falconet.count"] == 999
    assert f["falconet.first_time"] < f["falconet.last_time"]
    assert summ["uuid"] != first["uuid"]
    assert m['falconet_output_aggregated_total{output="webhook"}'] == 999
    assert m['falconet_output_sent_total{output="webhook"}'] == 2
    sent, summaries = m['falconet_output_sent_total{output="webhook"}'], 1
    assert sent - summaries + 999 == 1_000, "counts add up exactly"


def test_spool_byte_bound_drops_the_oldest_and_counts_each_exactly(tmp_path):
    cap = tmp_path / "storm.fcap"
    storm_capture(str(cap), 2_000)
    rx = AlertReceiver(free_port())                   # down for the whole run
    port = free_port()
    proc = engine(tmp_path, str(cap), rx.url, rate=None, port=port,
                  extra=("-o", "outputs.webhook.spool={max_bytes: 100KiB}",
                         "-o", "outputs.webhook.queue_size=100000", "--linger", "60"))
    try:
        # written == 2000 can be scraped while the last bound enforcement is between its two
        # counters (the engine-wide drop, then the output's): a scrape is not a transaction,
        # so wait until they agree; if a drop were counted twice or not at all they never would
        def settled(s):
            return (s.get('falconet_spool_written_total{output="webhook"}') == 2_000
                    and s.get('falconet_output_drops_total{output="webhook"}')
                    == s.get('falconet_drops_total{cause="spool_full"}') and s)
        m = wait_until(lambda: settled(scrape(port)), 60,
                       "every alert written to the spool, each drop counted")
    finally:
        stop_process(proc)
    depth = m['falconet_spool_depth{output="webhook"}']
    dropped = m['falconet_drops_total{cause="spool_full"}']
    assert 0 < depth < 2_000 and m['falconet_spool_bytes{output="webhook"}'] <= 100 * 1024
    assert depth + dropped == 2_000, "every alert is either in the spool or counted as dropped"
    assert m['falconet_output_drops_total{output="webhook"}'] == dropped
    # the oldest went first: what is left is the newest, in order
    left = list(spooled_names(str(tmp_path / "state" / "spool" / "webhook.db")))
    assert left == [f"/tmp/storm-a-{i}" for i in range(2_000 - len(left), 2_000)]
