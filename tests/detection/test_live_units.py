"""Fast unit tests of the live-engine plumbing: alert parsing, percentiles, matching, and the
subprocess handling of LiveEngine against a stand-in engine."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from falconet.priorities import Priority
from falconet.simulate.live import LiveEngine, parse_alert_line, parse_iso_ns
from falconet.simulate.runner import _same_container, latency_stats, percentile


def test_parse_iso_ns() -> None:
    assert parse_iso_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert parse_iso_ns("2026-11-28T18:25:01.5Z") == 1795890301_500_000_000


def test_parse_alert_line_prefers_numeric_event_time() -> None:
    line = ('{"rule":"R","priority":"Warning","output":"x","time":"1970-01-01T00:00:01.0Z",'
            '"output_fields":{"evt.time":1500000000,"container.id":"abc"}}')
    a = parse_alert_line(line, 2_000_000_000)
    assert a is not None
    assert (a.rule, a.priority, a.time_ns, a.container_id) == ("R", Priority.WARNING,
                                                               1_500_000_000, "abc")
    assert a.latency_ms == 500.0
    b = parse_alert_line(line.replace('"evt.time":1500000000,', ""), 2_000_000_000)
    assert b is not None and b.time_ns == 1_000_000_000
    assert parse_alert_line("falconet: INFO: hello", 1) is None
    assert parse_alert_line("{not json", 1) is None
    assert parse_alert_line('{"no": "rule"}', 1) is None


def test_percentiles() -> None:
    v = [float(i) for i in range(1, 101)]
    assert percentile(v, 50) == 50.0 and percentile(v, 99) == 99.0 and percentile([], 50) is None
    s = latency_stats([3.0, 1.0, 2.0])
    assert s["n"] == 3 and s["p50"] == 2.0 and s["max"] == 3.0


def test_container_matching() -> None:
    a = parse_alert_line('{"rule":"R","priority":"info","output_fields":'
                         '{"container.id":"0123456789ab"}}', 0)
    assert a is not None
    assert _same_container(a, "0123456789ab" + "c" * 52)
    assert not _same_container(a, "f" * 64)
    assert not _same_container(a, "")
    h = parse_alert_line('{"rule":"R","priority":"info","output_fields":{"container.id":"host"}}',
                         0)
    assert h is not None and _same_container(h, "")


def test_live_engine_reads_alerts_from_a_stand_in(tmp_path: Path) -> None:
    fake = tmp_path / "fake_engine.py"
    fake.write_text(textwrap.dedent("""
        import json, sys, time
        print("falconet: INFO: eBPF collector: 3 event types, 6 tracepoints attached in 0.1s",
              file=sys.stderr, flush=True)
        for i in range(3):
            print(json.dumps({"rule": f"R{i}", "priority": "Notice", "output": f"o{i}",
                              "output_fields": {"evt.time": time.time_ns()}}), flush=True)
        time.sleep(60)
        """))
    eng = LiveEngine(argv=[sys.executable, str(fake)])
    eng.base_argv = [sys.executable, str(fake)]
    eng.start()
    try:
        eng.wait_ready(10)
        a = eng.wait_for(lambda x: x.rule == "R2", time.monotonic() + 10)
        assert a is not None and a.priority == Priority.NOTICE and 0 <= a.latency_ms < 5000
        assert eng.wait_for(lambda x: x.rule == "R9", time.monotonic() + 0.2) is None
    finally:
        rc = eng.stop(timeout=5)
    assert rc is not None and not eng.running()


def test_live_engine_reports_an_engine_that_dies(tmp_path: Path) -> None:
    fake = tmp_path / "dies.py"
    fake.write_text("import sys\nprint('boom: no bcc', file=sys.stderr)\nsys.exit(1)\n")
    eng = LiveEngine(argv=[sys.executable, str(fake)])
    eng.start()
    try:
        eng.wait_ready(10)
    except RuntimeError as e:
        assert "exited" in str(e) and "boom: no bcc" in str(e)
    else:
        raise AssertionError("wait_ready must fail")
    finally:
        eng.stop()


def test_engine_argv_adds_suggested_output_for_explicit_rules() -> None:
    assert "append_output=[{suggested_output: true}]" not in " ".join(LiveEngine().argv)
    argv = LiveEngine(["x.yaml"]).argv
    assert argv[argv.index("--rules") + 1] == "x.yaml"
    assert "append_output=[{suggested_output: true}]" in argv
