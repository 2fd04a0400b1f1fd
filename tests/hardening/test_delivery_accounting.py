"""Issue 11, finding 4: delivery accounting is honest. An alert counts as sent only when the sink
confirmed it; every failure and drop is counted once in /metrics, in the run summary and in the
exit status of ``falconet replay``. Real parts: /dev/full, a tiny tmpfs filled up, a real HTTP
receiver, the OTel plugin against a rejecting receiver."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import need_root, wait_for
from falconet.alerts import Alert
from falconet.api import EngineContext
from falconet.events import Event
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.outputs.format import Formatter
from falconet.outputs.stream import FileSink
from falconet.pipeline import Pipeline
from falconet.priorities import Priority
from falconet.prometheus import EngineCollector
from output_receiver import Receiver
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from run_summary import assert_outputs

FALCONET = [sys.executable, "-m", "falconet"]
RULES = """\
- rule: Accounting
  desc: test
  condition: evt.type = openat and fd.name startswith /tmp/falconet-acct
  output: opened (file=%fd.name)
  priority: WARNING
"""


class EveryEvent:
    """A stand-in ruleset: one alert per event (the rule engine is not what is tested here)."""

    def match(self, evt: Event) -> list[Alert]:
        lineage = [{"pid": evt.pid, "name": "cat", "exepath": "/usr/bin/cat", "cmdline": "cat x",
                    "start_ts": evt.ts - 10},
                   {"pid": 1, "name": "init", "exepath": "/sbin/init", "cmdline": "init",
                    "start_ts": evt.ts - 20}]
        return [Alert("r", Priority.WARNING, "syscall", [], f"alert {evt.num}",
                      {"proc.pid": evt.pid}, evt.ts, "h", lineage=lineage)]

    def event_types(self, source: str) -> None:
        return None


def events(n: int) -> list[Event]:
    return [Event("syscall", "openat", 1_764_000_000_000_000_000 + i, 100 + i, 100 + i)
            for i in range(n)]


def scrape(m: EngineMetrics) -> str:
    reg = CollectorRegistry()
    reg.register(EngineCollector(m, hostname="h"))
    return generate_latest(reg).decode()


@contextlib.contextmanager
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, filled until the kernel answers ENOSPC."""
    need_root()
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC          # the disk is full
        finally:
            os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_file_output_on_dev_full_counts_failures_not_sent() -> None:
    m = EngineMetrics()
    p = Pipeline(EveryEvent(), sinks=[FileSink("file", "/dev/full", Formatter(json_output=True))],
                 metrics=m)
    p.run(events(3))
    p.close()
    assert m.output_sent["file"] == 0
    assert m.output_failures["file"] == 3
    assert 'falconet_output_failures_total{output="file"} 3.0' in scrape(m)


def test_file_output_on_a_full_filesystem_fails_replay(tmp_path: Path) -> None:
    cap = tmp_path / "c.fcap"
    cap.write_text("".join(json.dumps(r) + "\n" for r in [
        {"falconet_capture": 1, "host": "h", "kernel": "k", "start_ns": 1, "engine_version": "x"},
        {"k": "evt", "src": "syscall", "type": "openat", "ts": 5, "tid": 7, "pid": 7,
         "args": {"name": "/tmp/falconet-acct", "flags": 0, "fd": 3}, "res": 3}]))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with full_tmpfs(tmp_path) as mnt:
        out = mnt / "alerts.json"
        r = subprocess.run([*FALCONET, "replay", str(cap), "-r", str(rules), "--no-progress",
                            "-o", "outputs.file.enabled=true", "-o", f"outputs.file.path={out}"],
                           capture_output=True, text=True, timeout=60)
        assert out.exists() and out.stat().st_size == 0     # no torn line either
    assert "Warning opened (file=/tmp/falconet-acct" in r.stdout     # stdout still got it
    assert_outputs(r.stderr, {"file": "0 sent, 1 failed", "stdout": "1 sent"})
    assert "No space left on device" in r.stderr
    assert r.returncode == 1, r.stderr


def test_a_failing_webhook_is_in_the_summary_and_the_exit_status(tmp_path: Path) -> None:
    cap = tmp_path / "c.fcap"
    cap.write_text("".join(json.dumps(r) + "\n" for r in [
        {"falconet_capture": 1, "host": "h", "kernel": "k", "start_ns": 1, "engine_version": "x"},
        *({"k": "evt", "src": "syscall", "type": "openat", "ts": 5 + i, "tid": 7, "pid": 7,
           "args": {"name": "/tmp/falconet-acct", "flags": 0, "fd": 3}, "res": 3}
          for i in range(2))]))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with Receiver(default_status=400) as rx:
        r = subprocess.run([*FALCONET, "replay", str(cap), "-r", str(rules), "--no-progress",
                            "-o", "outputs.webhook.enabled=true",
                            "-o", f"outputs.webhook.url={rx.url}/", "-o", "rule_matching=all"],
                           capture_output=True, text=True, timeout=60)
        assert len(rx.requests) == 2
    assert_outputs(r.stderr, {"stdout": "2 sent", "webhook": "0 sent, 2 failed"})
    assert "exit status 1" in r.stderr and r.returncode == 1


def test_a_sink_that_cannot_start_counts_each_alert_it_missed(tmp_path: Path) -> None:
    m = EngineMetrics()
    sink = FileSink("file", str(tmp_path / "no" / "such" / "dir.json"), Formatter())
    p = Pipeline(EveryEvent(), sinks=[sink], metrics=m)
    p.run(events(4))
    p.close()
    assert m.output_failures["file"] == 4 and m.output_sent["file"] == 0


def test_a_buffering_sink_is_sent_only_once_its_flush_returned() -> None:
    class Buffering:
        name = "buffering"

        def __init__(self) -> None:
            self.buffer: list[Alert] = []
            self.fail = True

        def start(self) -> None: ...

        def send(self, alert: Alert) -> None:
            self.buffer.append(alert)

        def flush(self) -> None:
            if self.fail:
                raise OSError(28, "No space left on device")
            self.buffer.clear()

        def close(self) -> None: ...

    m = EngineMetrics()
    sink = Buffering()
    p = Pipeline(EveryEvent(), sinks=[sink], metrics=m)
    p.run(events(5))
    assert wait_for(lambda: m.output_failures["buffering"] == 5, 5)
    assert m.output_sent["buffering"] == 0
    sink.fail = False
    p.run(events(2))
    p.close()
    assert m.output_sent["buffering"] == 2 and m.output_failures["buffering"] == 5


def run_otel(rx: Receiver, n: int, timeout: float) -> tuple[Any, EngineMetrics]:
    """``n`` alerts through the real OTel plugin's sink to ``rx`` (OTLP/HTTP), drained."""
    from falconet_otel import plugin as otel_plugin  # noqa: PLC0415

    m = EngineMetrics()
    ctx = EngineContext(hostname="h", fields=FieldRegistry(), metrics=m)
    plugin = otel_plugin.OtelPlugin()               # one instance per engine
    plugin.falconet_configure({"endpoint": rx.url, "protocol": "http/protobuf",
                               "timeout": timeout, "schedule_delay": 0.05}, ctx)
    [sink] = plugin.falconet_alert_sinks(ctx)
    p = Pipeline(EveryEvent(), sinks=[sink], metrics=m)
    p.run(events(n))
    p.close()
    return sink, m


def test_otel_logs_and_traces_lost_for_one_alert_are_one_drop() -> None:
    with Receiver(default_status=400) as rx:          # rejects every export, at once
        sink, m = run_otel(rx, 3, 0.5)
        assert {r[0] for r in rx.requests} == {"/v1/logs", "/v1/traces"}
    stats = sink.stats
    assert stats["logs"].failed == 3 and stats["traces"].failed == 6   # 3 records, 6 spans lost
    assert sum(m.drops.values()) == 3, dict(m.drops)                   # ... for 3 alerts
    assert m.drops["otel_logs_export_failed"] == 3
    assert m.output_sent["otel"] == 0                # handed to the exporter is not sent


def test_otel_alerts_count_as_sent_once_the_collector_accepted_them() -> None:
    with Receiver() as rx:                            # accepts every export (HTTP 200)
        _sink, m = run_otel(rx, 4, 2.0)
    assert m.output_sent["otel"] == 4 and sum(m.drops.values()) == 0


def test_run_summary_lists_every_output(tmp_path: Path) -> None:
    from falconet.app import App  # noqa: PLC0415
    from falconet.config import load_config  # noqa: PLC0415

    app = App(load_config(None, ["outputs.stdout.enabled=false"]), entry_points=False)
    app.metrics.drop("output_queue_full")
    app.metrics.output_drops["webhook"] += 1
    app.metrics.output_sent["file"] += 2
    app.metrics.output_failures["file"] += 1
    line = app.summary()
    assert line.endswith("1 drops (output_queue_full: 1); outputs: file 2 sent, 1 failed; "
                         "webhook 0 sent, 1 dropped"), line
    assert app.losses() == 2


def test_record_on_a_full_filesystem_says_the_capture_is_incomplete(tmp_path: Path) -> None:
    """A capture that cannot be written (ENOSPC) ended in an OSError traceback at close, after
    a summary counting the events as recorded. Second review of issue 11."""
    with full_tmpfs(tmp_path) as mnt:
        cap = mnt / "c.fcap"
        r = subprocess.run([*FALCONET, "record", str(cap), "--source", "example", "--no-rules",
                            "--no-metrics", "-o", "plugins.example.interval=0",
                            "-o", "plugins.example.count=50"],
                           capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr
    assert f"falconet: error: {cap}: the capture is incomplete: No space left on device" \
        in r.stderr, r.stderr
    assert "events recorded" not in r.stderr, r.stderr
