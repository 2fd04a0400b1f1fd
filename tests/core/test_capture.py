"""Capture format v2 (v1 still read): round trip (plain and gzip), state records in order, malformed lines."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from falconet.capture import (
    FORMAT_VERSION,
    CaptureError,
    CaptureWriter,
    MalformedReporter,
    ReplaySource,
    read_capture,
    read_header,
)
from falconet.events import Event
from falconet.metrics import EngineMetrics


def sample_events() -> list[Event]:
    return [
        Event("syscall", "execve", 1_000, 7, 7, {"filename": "/bin/cat", "argv": ["cat", "x"],
                                                 "cwd": "/", "uid": 0}, 0),
        Event("syscall", "openat", 2_000, 7, 7, {"fd": 3, "name": "/etc/shadow", "flags": 1}, 3),
        Event("k8s_audit", "event", 3_000, raw={"verb": "create"}),
        Event("syscall", "procexit", 4_000, 7, 7, {"status": 0}),
    ]


@pytest.mark.parametrize("name", ["x.fcap", "x.fcap.gz"])
def test_round_trip_with_state_in_order(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    evs = sample_events()
    with CaptureWriter(path, host="h1", kernel="6.18.0", start_ns=5) as w:
        w.write_state("core-state", {"threads": [{"tid": 7}]})
        w.write_event(evs[0])
        w.write_event(evs[1])
        w.write_state("container", {"id": "abc", "name": "web"})
        w.write_event(evs[2])
        w.write_event(evs[3])
    raw = Path(path).read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    h = read_header(path)
    assert h == {"falconet_capture": FORMAT_VERSION, "host": "h1", "kernel": "6.18.0",
                 "start_ns": 5, "engine_version": h["engine_version"]}
    order: list[str] = []
    got = []
    for e in read_capture(path, on_state=lambda p, d: order.append(f"state:{p}")):
        order.append(f"evt:{e.type}")
        got.append(e)
    assert order == ["state:core-state", "evt:execve", "evt:openat", "state:container",
                     "evt:event", "evt:procexit"]
    assert [e.to_dict() for e in got] == [e.to_dict() for e in evs]


def test_gzip_is_detected_by_magic_not_name(tmp_path: Path) -> None:
    plain = tmp_path / "a.fcap"
    with CaptureWriter(str(plain), start_ns=1) as w:
        w.write_event(sample_events()[1])
    odd = tmp_path / "compressed-but-no-suffix"
    odd.write_bytes(gzip.compress(plain.read_bytes()))
    assert [e.type for e in read_capture(str(odd))] == ["openat"]


def test_malformed_lines_are_reported_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.fcap"
    good = json.dumps({"k": "evt", "src": "syscall", "type": "openat", "ts": 1, "args": {}})
    path.write_text("\n".join([
        json.dumps({"falconet_capture": 1, "host": "h", "kernel": "k", "start_ns": 0,
                    "engine_version": "0"}),
        good,
        "{not json",
        json.dumps({"k": "evt", "src": "syscall", "ts": 2}),                      # no type
        json.dumps({"k": "evt", "src": "syscall", "type": "x", "ts": "soon"}),     # ts not int
        json.dumps({"k": "mystery"}),
        "",
        good,
    ]) + "\n")
    m = EngineMetrics()
    err = io.StringIO()
    rep = MalformedReporter(str(path), m, stream=err)
    evs = list(read_capture(str(path), on_malformed=rep))
    assert len(evs) == 2
    assert m.drops["capture_malformed"] == 4
    lines = err.getvalue().splitlines()
    assert lines[0].startswith(f"falconet: {path}:3: malformed capture line skipped: invalid JSON")
    assert lines[1] == f"falconet: {path}:4: malformed capture line skipped: missing key 'type'"
    assert lines[2] == (f"falconet: {path}:5: malformed capture line skipped: field 'ts' must be "
                        "an integer, not a string")
    assert lines[3] == f"falconet: {path}:6: malformed capture line skipped: unknown record kind 'mystery'"


def test_malformed_reports_are_rate_limited(tmp_path: Path) -> None:
    path = tmp_path / "junk.fcap"
    path.write_text('{"falconet_capture": 1}\n' + "junk\n" * 100)
    m = EngineMetrics()
    err = io.StringIO()
    rep = MalformedReporter(str(path), m, stream=err, limit=5)
    assert list(read_capture(str(path), on_malformed=rep)) == []
    rep.summary()
    out = err.getvalue().splitlines()
    assert len(out) == 5 + 1 + 1
    assert m.drops["capture_malformed"] == 100
    assert out[-1].endswith("100 malformed lines skipped in total")


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.fcap.gz"
    with CaptureWriter(str(path), start_ns=1) as w:
        for i in range(2000):
            w.write_event(Event("syscall", "read", i + 1, 1, 1, {"fd": i}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    problems: list[tuple[int, str]] = []
    n = sum(1 for _ in read_capture(str(path), on_malformed=lambda ln, r: problems.append((ln, r))))
    assert 0 < n < 2000
    assert any("truncated" in r for _, r in problems)


def test_not_a_capture_and_unsupported_version(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("hello\n")
    with pytest.raises(CaptureError, match=r"x.txt:1: not a falconet capture"):
        read_header(str(p))
    p.write_text('{"falconet_capture": 99}\n')
    with pytest.raises(CaptureError, match="unsupported capture format version 99"):
        ReplaySource().open({"path": str(p)})
    with pytest.raises(CaptureError, match="cannot open capture"):
        ReplaySource().open({"path": str(tmp_path / "missing")})


def test_replay_source_close_stops_iteration(tmp_path: Path) -> None:
    path = tmp_path / "many.fcap"
    with CaptureWriter(str(path), start_ns=1) as w:
        for i in range(10000):
            w.write_event(Event("syscall", "read", i + 1, 1, 1, {}))
    src = ReplaySource()
    it = src.open({"path": str(path)})
    n = 0
    for _ in it:
        n += 1
        if n == 10:
            src.close()
    assert n < 2048


def test_progress_bar_on_large_files(tmp_path: Path, monkeypatch, capsys) -> None:
    import falconet.capture as cap
    monkeypatch.setattr(cap, "PROGRESS_MIN_BYTES", 1)
    path = tmp_path / "p.fcap"
    with CaptureWriter(str(path), start_ns=1) as w:
        for i in range(3000):
            w.write_event(Event("syscall", "read", i + 1, 1, 1, {}))
    assert sum(1 for _ in read_capture(str(path), stop=lambda: False, progress=True)) == 3000
    err = capsys.readouterr().err
    assert "\rreplay [" in err and "%" in err
    # the bar does not depend on a stop callback
    assert sum(1 for _ in read_capture(str(path), progress=True)) == 3000
    assert "\rreplay [" in capsys.readouterr().err
    # not a terminal and not asked for: no bar
    assert sum(1 for _ in read_capture(str(path), stop=lambda: False)) == 3000
    assert capsys.readouterr().err == ""


def test_trailing_garbage_and_non_objects_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "g.fcap"
    good = json.dumps({"k": "evt", "src": "syscall", "type": "read", "ts": 1})
    path.write_text('{"falconet_capture": 1}\n' + good + " trailing\n" + "[1, 2]\n" + good + "\n")
    problems: list[tuple[int, str]] = []
    evs = list(read_capture(str(path), on_malformed=lambda ln, r: problems.append((ln, r))))
    assert len(evs) == 1
    assert [ln for ln, _ in problems] == [2, 3]
    assert "extra data after the record" in problems[0][1]


def test_replay_rate_paces_events() -> None:
    """``--rate``: 2,048 events at 20,000/s take at least ~0.1 s; unpaced they take far less."""
    import time as _time  # noqa: PLC0415

    from falconet.capture import _paced  # noqa: PLC0415
    from falconet.events import Event  # noqa: PLC0415

    events = [Event("syscall", "openat", i) for i in range(2048)]
    t0 = _time.monotonic()
    assert list(_paced(iter(events), 20000.0)) == events
    assert _time.monotonic() - t0 >= 0.09


def test_evt_cpu_replays_and_older_captures_replay_without_it(tmp_path: Path) -> None:
    """``cpu`` travels with the other args; a capture written before the collector read it
    (this line is what such a recorder wrote) still replays, with ``evt.cpu`` missing."""
    from falconet.fields.registry import FieldRegistry  # noqa: PLC0415
    from falconet.state.fields import core_field_defs  # noqa: PLC0415

    reg = FieldRegistry()
    reg.register_all(core_field_defs(hostname="h"))
    cpu = reg.resolve("evt.cpu")
    new = str(tmp_path / "new.fcap")
    with CaptureWriter(new, host="h", kernel="6.18.0", start_ns=1) as w:
        w.write_event(Event("syscall", "close", 5, 7, 7, {"fd": 3, "cgroup_id": 1, "cpu": 1}, 0))
    old = tmp_path / "old.fcap"
    old.write_text('{"falconet_capture": 2, "host": "h", "kernel": "6.18.0", "start_ns": 1, '
                   '"engine_version": "0.63.0"}\n'
                   '{"k": "evt", "src": "syscall", "type": "close", "ts": 5, "tid": 7, "pid": 7, '
                   '"args": {"fd": 3, "cgroup_id": 1}, "res": 0}\n')
    assert [cpu.extract(e) for e in read_capture(new)] == [1]
    assert [cpu.extract(e) for e in read_capture(str(old))] == [None]
