"""The delivery stage in-process: the real pipeline, the real webhook sink and spool (SQLite),
and a real HTTP receiver on 127.0.0.1 that goes away and comes back; aggregation through the
worker with exact counts."""

from __future__ import annotations

import json
import logging
import subprocess

from conftest import free_port, need_root, wait_until
from delivery_helpers import AlertReceiver
from falconet.alerts import Alert
from falconet.delivery.aggregate import Aggregator
from falconet.delivery.policy import SPOOL_DEFAULTS, OutputPolicy
from falconet.delivery.worker import SpoolingWorker
from falconet.metrics import EngineMetrics
from falconet.outputs.format import Formatter
from falconet.outputs.webhook import WebhookSink
from falconet.pipeline import Pipeline, SinkWorker
from falconet.priorities import Priority

T0 = 1_764_000_000_000_000_000


def alert(i: int, rule: str = "r", ns: str = "prod") -> Alert:
    return Alert(rule, Priority.WARNING, "syscall", ["t"], f"alert {i}",
                 {"n": i, "k8s.ns.name": ns, "evt.time": T0 + i}, T0 + i, "h")


class ListSink:
    def __init__(self, name: str = "list") -> None:
        self.name, self.min_priority, self.alerts = name, Priority.DEBUG, []

    def start(self) -> None: ...
    def send(self, a: Alert) -> None: self.alerts.append(a)
    def flush(self) -> None: ...
    def close(self) -> None: ...


def spooled_pipeline(tmp_path, url: str, metrics: EngineMetrics) -> tuple[Pipeline, WebhookSink]:
    sink = WebhookSink("webhook", url, Formatter(json_output=True), timeout=1.0)
    policy = OutputPolicy(spool=dict(SPOOL_DEFAULTS), state_dir=str(tmp_path / "state"))
    p = Pipeline(None, sinks=[sink], metrics=metrics, policies={"webhook": policy})
    w = p.workers[0]
    assert isinstance(w, SpoolingWorker)
    w.retry_initial = 0.05                  # test speed: retry within tens of milliseconds
    w.retry_max = 0.2
    return p, sink


def test_outage_spools_in_order_then_delivers_everything_once(tmp_path, caplog):
    rx = AlertReceiver(free_port())             # down: nothing listens yet
    m = EngineMetrics()
    p, _ = spooled_pipeline(tmp_path, rx.url, m)
    p.start()
    w = p.workers[0]
    for i in range(300):
        p.dispatch(alert(i))
    wait_until(lambda: w.spool.depth == 300 and w.spooling, 10,
               "all alerts spooled and a failed delivery seen while the receiver is down")
    h = w.health()
    assert h["state"] == "spooling" and h["spool_depth"] == 300 and h["outage_seconds"] >= 0
    assert m.spool_written["webhook"] == 300 and m.output_sent["webhook"] == 0
    wait_until(lambda: m.delivery_retries["webhook"] >= 2, 5, "retries with backoff, counted")
    with caplog.at_level(logging.WARNING, logger="falconet.delivery"):
        rx.start()
        for i in range(300, 400):                # new alerts queue behind the spooled ones
            p.dispatch(alert(i))
        wait_until(lambda: len(rx.alerts) == 400, 20, "every alert delivered")
        wait_until(lambda: w.health()["state"] == "ok", 5, "outage over")
    got = [a["output_fields"]["n"] for a in rx.alerts]
    assert got == list(range(400)), "delivered in order"
    ids = rx.uuids()
    assert len(ids) == 400 and max(ids.values()) == 1, "one distinct uuid per alert, no repeats"
    warnings = [r.getMessage() for r in caplog.records if "delivery restored" in r.getMessage()]
    assert len(warnings) == 1 and "outage of" in warnings[0], warnings
    assert m.output_sent["webhook"] == 400 and w.spool.depth == 0
    p.close()
    rx.stop()


def test_restart_delivers_what_the_previous_engine_left_in_the_spool(tmp_path):
    rx = AlertReceiver(free_port())
    m = EngineMetrics()
    p, _ = spooled_pipeline(tmp_path, rx.url, m)
    p.start()
    for i in range(50):
        p.dispatch(alert(i))
    wait_until(lambda: p.workers[0].spool.depth == 50, 10, "spooled")
    p.close(timeout=1.0)                         # receiver still down: kept on disk
    rx.start()
    m2 = EngineMetrics()
    p2, _ = spooled_pipeline(tmp_path, rx.url, m2)
    p2.start()
    wait_until(lambda: len(rx.alerts) == 50, 10, "left-overs delivered after the restart")
    assert [a["output_fields"]["n"] for a in rx.alerts] == list(range(50))
    p2.close()
    rx.stop()


def test_receiver_refusing_an_alert_for_good_is_a_counted_drop_not_a_stuck_spool(tmp_path):
    rx = AlertReceiver(free_port()).start()
    rx.status = 400
    m = EngineMetrics()
    p, _ = spooled_pipeline(tmp_path, rx.url, m)
    p.start()
    for i in range(5):
        p.dispatch(alert(i))
    wait_until(lambda: m.output_failures["webhook"] == 5, 10, "each refusal counted once")
    assert not m.drops and m.output_sent["webhook"] == 0
    assert p.workers[0].spool.depth == 0
    rx.status = 200
    p.dispatch(alert(5))
    wait_until(lambda: len(rx.alerts) == 1, 10)
    p.close()
    rx.stop()


def test_json_output_carries_the_uuid(tmp_path):
    a = alert(1)
    a.uuid = "00000000-0000-8000-8000-000000000001"
    assert json.loads(Formatter(json_output=True)(a))["uuid"] == a.uuid


def test_thousand_identical_alerts_become_first_plus_one_summary_of_999():
    m = EngineMetrics()
    sink = ListSink()
    policy = OutputPolicy(aggregate={"window": 0.5, "by": ["k8s.ns.name"]})
    p = Pipeline(None, sinks=[sink], metrics=m, policies={"list": policy})
    p.start()
    for i in range(1000):
        p.dispatch(alert(i))
    p.dispatch(alert(0, ns="dev"))               # another group: sent at once
    wait_until(lambda: len(sink.alerts) == 3, 5, "first, other group, then the summary")
    first, other, summary = sink.alerts
    assert first.output_fields["n"] == 0 and other.output_fields["k8s.ns.name"] == "dev"
    f = summary.output_fields
    assert f["falconet.count"] == 999
    assert (f["falconet.first_time"], f["falconet.last_time"]) == (T0 + 1, T0 + 999)
    assert "999 more alert(s)" in summary.output and summary.uuid and summary.uuid != first.uuid
    assert m.output_aggregated["list"] == 999 and m.output_summaries["list"] == 1
    assert m.output_sent["list"] == 3
    # exact: alerts sent one by one + what summaries stand for = alerts the output took
    assert m.output_sent["list"] - m.output_summaries["list"] + m.output_aggregated["list"] == 1001
    p.close()


def test_open_windows_are_summarised_at_shutdown():
    m = EngineMetrics()
    sink = ListSink()
    p = Pipeline(None, sinks=[sink], metrics=m,
                 policies={"list": OutputPolicy(aggregate={"window": 3600.0, "by": []})})
    p.start()
    for i in range(10):
        p.dispatch(alert(i))
    p.close()
    assert [a.output_fields.get("falconet.count") for a in sink.alerts] == [None, 9]


def test_aggregator_groups_by_rule_and_fields_and_reopens_after_the_window():
    agg = Aggregator(10.0, ("k8s.ns.name",))
    assert agg.admit(alert(1), 0.0) is True
    assert agg.admit(alert(2), 1.0) is False
    assert agg.admit(alert(3, rule="other"), 1.0) is True
    assert agg.admit(alert(4, ns="dev"), 1.0) is True
    assert agg.due(5.0) == []
    [s] = agg.due(10.0)
    assert s.output_fields["falconet.count"] == 1
    assert agg.admit(alert(5), 11.0) is True          # a new window
    internal = alert(6)
    internal.source = "internal"
    assert agg.admit(internal, 11.5) and agg.admit(internal, 11.6)


def test_a_match_that_rejects_is_counted_and_not_sent():
    m = EngineMetrics()
    sink = ListSink()
    pol = OutputPolicy(matcher=lambda a: a.output_fields["k8s.ns.name"] == "prod")
    p = Pipeline(None, sinks=[sink], metrics=m, policies={"list": pol})
    assert type(p.workers[0]) is SinkWorker
    p.start()
    p.dispatch(alert(1))
    p.dispatch(alert(2, ns="dev"))
    p.close()
    assert [a.output_fields["n"] for a in sink.alerts] == [1]
    assert m.output_unmatched["list"] == 1


def test_a_full_disk_under_the_spool_counts_every_alert_it_could_not_keep(tmp_path):
    need_root()
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    try:
        m = EngineMetrics()
        sink = WebhookSink("webhook", AlertReceiver(free_port()).url, Formatter(json_output=True))
        p = Pipeline(None, sinks=[sink], metrics=m, policies={"webhook": OutputPolicy(
            spool={**SPOOL_DEFAULTS, "max_bytes": 1 << 30}, state_dir=str(mnt))})
        p.start()
        big = "x" * 4000
        for i in range(400):                       # ~1.6 MB of alerts into 256 KiB
            a = alert(i)
            a.output_fields["big"] = big
            p.dispatch(a)
        wait_until(lambda: m.spool_written["webhook"] + m.drops["spool_write_error"] == 400, 20,
                   "every alert written or counted")
        assert m.drops["spool_write_error"] > 0 and m.spool_written["webhook"] > 0
        assert m.output_drops["webhook"] == m.drops["spool_write_error"]
        p.close(timeout=1.0)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
