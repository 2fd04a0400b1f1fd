"""Captures from an attacker's host: non-UTF-8 bytes round-trip exactly (format v2), the reader's
limits (line size, nesting, decompressed size, field types) skip the bad line and replay the rest,
and the writer never writes through a symlink, over a file or with a world-readable mode."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until
from falconet.capture import (
    FORMAT_VERSION,
    MAX_GZIP_RATIO,
    MIN_DECOMPRESSED_LIMIT,
    CaptureWriter,
    MalformedReporter,
    read_capture,
    read_header,
)
from falconet.events import Event
from falconet.metrics import EngineMetrics
from falconet.state.plugin import CoreState
from falconet.state.proc_bootstrap import read_thread
from falconet.state.tables import thread_to_dict

FALCONET = [sys.executable, "-m", "falconet"]
EVIL = b"\xff\xfeEVIL\x80"            # not UTF-8: held as str with surrogate escapes


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def header(version: int = FORMAT_VERSION) -> str:
    return json.dumps({"falconet_capture": version, "host": "h", "kernel": "k", "start_ns": 0,
                       "engine_version": "0"})


def good_event(ts: int = 1) -> str:
    return json.dumps({"k": "evt", "src": "syscall", "type": "openat", "ts": ts, "tid": 7,
                       "pid": 7, "args": {"name": "/etc/shadow"}, "res": 3})


# ------------------------------------------------------------------------ finding 1: bytes
def test_process_with_non_utf8_argv_env_cwd_round_trips_exactly(tmp_path: Path) -> None:
    """A real process whose argv[0], arguments, environment and cwd are not UTF-8, read from
    /proc into the process table, recorded and replayed: the table line is not skipped and every
    byte comes back (v1 wrote raw bytes: the line was invalid UTF-8 and skipped as malformed)."""
    cwd = tmp_path / _s(b"dir-" + EVIL)
    cwd.mkdir()
    exe = os.fsencode(tmp_path) + b"/" + EVIL          # comm comes from this name
    os.symlink("/bin/sh", exe)
    proc = subprocess.Popen([EVIL, b"-c", b"sleep 30; :", b"arg-" + EVIL], executable=exe,
                            env={b"EVIL_" + EVIL: EVIL, b"PATH": b"/usr/bin:/bin"},
                            cwd=os.fsencode(cwd))
    try:
        t = wait_until(lambda: (lambda th: th if th is not None and th.exe == _s(EVIL) else None)(
            read_thread(proc.pid)), 10, what="the process's argv in /proc")
        assert t.args == ["-c", "sleep 30; :", _s(b"arg-" + EVIL)]
        assert t.comm == _s(EVIL)
        assert _s(b"EVIL_" + EVIL + b"=" + EVIL) in t.env
        assert t.cwd.rstrip("/") == str(cwd)
        live = CoreState(None)
        live.tables.add(t)
        path = str(tmp_path / "evil.fcap.gz")
        with CaptureWriter(path, start_ns=1) as w:
            w.write_state("core-state", live.capture())
            w.write_event(Event("syscall", "openat", 2, proc.pid, proc.pid,
                                {"fd": 3, "name": _s(b"/tmp/" + EVIL), "flags": 0}, 3))
    finally:
        proc.kill()
        proc.wait()
    data = gzip.decompress(Path(path).read_bytes())
    data.decode("utf-8")                      # v2 is valid UTF-8 throughout
    assert b"\\udcff\\udcfeEVIL\\udc80" in data
    replayed = CoreState(None)
    problems: list[tuple[int, str]] = []
    evs = list(read_capture(path, on_state=lambda p, d: replayed.restore(d),
                            on_malformed=lambda ln, r: problems.append((ln, r))))
    assert problems == []
    assert thread_to_dict(replayed.tables.threads[proc.pid]) == thread_to_dict(t)
    assert evs[0].args["name"] == _s(b"/tmp/" + EVIL)
    assert os.fsencode(evs[0].args["name"]) == b"/tmp/" + EVIL


def test_replay_alerts_on_a_process_known_only_from_the_recorded_table(tmp_path: Path) -> None:
    """`falconet replay` of a capture whose process table holds a non-UTF-8 command line: the
    table line is restored (v1 skipped it as malformed) and the rule on proc.cmdline fires."""
    t = CoreState(None)
    from falconet.state.tables import ThreadInfo  # noqa: PLC0415
    t.tables.add(ThreadInfo(tid=4242, pid=4242, comm=_s(EVIL), exe=_s(EVIL),
                            exepath="/usr/bin/" + _s(EVIL), args=["--x", _s(b"arg-" + EVIL)],
                            cwd="/tmp/" + _s(EVIL), env=[_s(b"K=" + EVIL)], start_ts=1))
    cap = tmp_path / "t.fcap"
    with CaptureWriter(str(cap), start_ns=1) as w:
        w.write_state("core-state", t.capture())
        w.write_event(Event("syscall", "openat", 10, 4242, 4242,
                            {"fd": 3, "dirfd": -100, "name": "/etc/shadow", "flags": 1,
                             "mode": 0}, 3))
    rules = tmp_path / "r.yaml"
    rules.write_text("- rule: Evil reads shadow\n  desc: d\n  condition: evt.type = openat and "
                     "fd.name = /etc/shadow and proc.cmdline contains EVIL\n  output: evil\n"
                     "  priority: WARNING\n")
    r = subprocess.run([*FALCONET, "replay", str(cap), "-r", str(rules), "--no-progress",
                        "-o", "outputs.stdout.enabled=false"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "falconet: 1 events, 1 alerts" in r.stderr and "0 drops" in r.stderr, r.stderr
    assert "malformed" not in r.stderr


def test_header_is_v2_and_v1_files_with_raw_bytes_still_replay(tmp_path: Path) -> None:
    path = tmp_path / "x.fcap"
    with CaptureWriter(str(path), start_ns=1) as w:
        w.write_event(Event("syscall", "execve", 1, 1, 1, {"argv": [_s(EVIL)],
                                                          "data": b"\x00\xff"}))
    assert read_header(str(path))["falconet_capture"] == 2
    (e,) = read_capture(str(path))
    assert e.args == {"argv": [_s(EVIL)], "data": _s(b"\x00\xff")}
    v1 = tmp_path / "v1.fcap"
    line = b'{"k":"evt","src":"syscall","type":"execve","ts":1,"args":{"argv":["' + EVIL + b'"]}}'
    v1.write_bytes(header(1).encode() + b"\n" + line + b"\n")
    (e,) = read_capture(str(v1))
    assert e.args["argv"] == [_s(EVIL)]


# ------------------------------------------------------------------------ finding 8: reader limits
def _replay(path: Path, **kw) -> tuple[list[Event], EngineMetrics, list[str]]:
    m = EngineMetrics()
    err = io.StringIO()
    rep = MalformedReporter(str(path), m, stream=err, limit=100)
    evs = list(read_capture(str(path), on_malformed=rep, **kw))
    return evs, m, err.getvalue().splitlines()


def test_deeply_nested_line_is_skipped_and_the_rest_replays(tmp_path: Path) -> None:
    path = tmp_path / "deep.fcap"
    path.write_text("\n".join([header(), good_event(1), "[" * 100_000 + "]" * 100_000,
                               '{"k": "state", "plugin": "x", "data": ' + "{\"a\":" * 50_000
                               + "1" + "}" * 50_000 + "}", good_event(2)]) + "\n")
    evs, m, err = _replay(path)
    assert [e.ts for e in evs] == [1, 2]
    assert m.drops["capture_malformed"] == 2
    assert all("nested too deeply" in line for line in err)


def test_overlong_line_is_skipped_in_pieces(tmp_path: Path) -> None:
    import tracemalloc  # noqa: PLC0415

    path = tmp_path / "long.fcap"
    path.write_text(header() + "\n" + good_event(1) + "\n" + '{"k":"evt","x":"' + "a" * 16_000_000
                    + '"}\n' + good_event(2) + "\n")
    tracemalloc.start()
    try:
        evs, m, err = _replay(path, max_line=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [e.ts for e in evs] == [1, 2]
    assert m.drops["capture_malformed"] == 1
    assert err == [f"falconet: {path}:3: malformed capture line skipped: line longer than "
                   f"{1 << 20} bytes: skipped"]
    assert peak < 8 << 20                   # never the 16 MB line at once


def test_wrongly_typed_fields_are_counted_reported_and_skipped(tmp_path: Path) -> None:
    base = json.loads(good_event())
    bad = [("tid", "7"), ("pid", [7]), ("res", 3.0), ("ts", 10 ** 30), ("ts", True),
           ("tid", -5), ("pid", 1 << 40), ("res", 1 << 70), ("args", []), ("src", 5),
           ("type", None), ("ts", 1.5)]
    lines = [header()]
    for key, value in bad:
        lines.append(json.dumps({**base, key: value}))
    lines.append('{"k": "state", "plugin": 42, "data": {}}')
    lines.append(good_event(99))
    path = tmp_path / "types.fcap"
    path.write_text("\n".join(lines) + "\n")
    states: list[str] = []
    m = EngineMetrics()
    err = io.StringIO()
    rep = MalformedReporter(str(path), m, stream=err, limit=100)
    evs = list(read_capture(str(path), on_malformed=rep, on_state=lambda p, d: states.append(p)))
    assert [e.ts for e in evs] == [99]
    assert states == []
    assert m.drops["capture_malformed"] == len(bad) + 1
    out = err.getvalue().splitlines()
    assert out[0].endswith("field 'tid' must be an integer, not a string")
    assert out[1].endswith("field 'pid' must be an integer, not an array")
    assert out[2].endswith("field 'res' must be an integer, not a number")
    assert out[3].endswith("field 'ts' out of range [0, 9223372036854775808)")
    assert out[4].endswith("field 'ts' must be an integer, not a boolean")
    assert out[-1].endswith("state record: 'plugin' must be a string, not an integer")



def test_a_malformed_line_is_reported_briefly_whatever_it_holds(tmp_path: Path) -> None:
    """An unknown record kind of 5 MB was quoted whole in the report (5 MB on stderr per line).
    Second review of issue 11."""
    path = tmp_path / "kind.fcap"
    path.write_text("\n".join([header(), json.dumps({"k": "x" * (5 << 20)}), good_event(7)])
                    + "\n")
    err = io.StringIO()
    rep = MalformedReporter(str(path), EngineMetrics(), stream=err)
    assert [e.ts for e in read_capture(str(path), on_malformed=rep)] == [7]
    out = err.getvalue()
    assert ":2: malformed capture line skipped: unknown record kind 'xxx" in out, out[:300]
    assert len(out) < 500, len(out)


def test_nan_and_infinity_are_not_json(tmp_path: Path) -> None:
    """Python's JSON reader takes NaN and Infinity, which then went out in JSON alerts that
    strict consumers (falcosidekick) refuse. RFC 8259 has no such numbers: the line is
    malformed. Second review of issue 11."""
    base = json.loads(good_event())
    path = tmp_path / "nan.fcap"
    path.write_text("\n".join([header(), json.dumps({**base, "args": {"flags": float("nan")}}),
                               json.dumps({**base, "args": {"mode": float("-inf")}}),
                               good_event(8)]) + "\n")
    err = io.StringIO()
    m = EngineMetrics()
    rep = MalformedReporter(str(path), m, stream=err)
    assert [e.ts for e in read_capture(str(path), on_malformed=rep)] == [8]
    assert m.drops["capture_malformed"] == 2
    assert "not a JSON number: NaN" in err.getvalue(), err.getvalue()

def _gzip_bomb(path: Path, gib: float = 1.0) -> None:
    """A ~1 MB multi-member gzip file expanding to ``gib`` GiB of NUL bytes after a header."""
    member = gzip.compress(b"\0" * (16 << 20), compresslevel=9)
    with path.open("wb") as f:
        f.write(gzip.compress((header() + "\n" + good_event(1) + "\n").encode()))
        for _ in range(int(gib * 64)):
            f.write(member)


def test_gzip_bomb_replay_is_bounded_in_memory_and_time(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.fcap.gz"
    _gzip_bomb(bomb)
    assert bomb.stat().st_size < 2 << 20
    # the peak RSS of this process image: VmHWM (per address space). getrusage's ru_maxrss
    # would carry over the forking parent's peak across exec (Linux keeps it in the signal
    # struct), which in a long pytest run is the test runner's size, not the reader's
    script = ("import sys\n"
              "from falconet.capture import read_capture\n"
              "msgs = []\n"
              "evs = list(read_capture(sys.argv[1], on_malformed=lambda n, r: msgs.append(r)))\n"
              "print(len(evs), msgs[-1])\n"
              "print(next(int(ln.split()[1]) for ln in open('/proc/self/status')\n"
              "           if ln.startswith('VmHWM:')))\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script, str(bomb)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    first, rss_kb = r.stdout.splitlines()
    limit = max(MIN_DECOMPRESSED_LIMIT, MAX_GZIP_RATIO * bomb.stat().st_size)
    assert first.startswith(f"1 decompressed data exceeds {limit} bytes")
    assert int(rss_kb) < 300_000, f"peak RSS {rss_kb} kB"     # the old reader: > 2 GB
    assert time.monotonic() - t0 < 60


def test_replay_of_dev_zero_and_a_bomb_end_cleanly(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = subprocess.run([*FALCONET, "replay", "/dev/zero"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "/dev/zero:1: not a falconet capture" in r.stderr
    assert "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 20
    bomb = tmp_path / "bomb.fcap.gz"
    _gzip_bomb(bomb, 0.5)
    r = subprocess.run([*FALCONET, "replay", str(bomb), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "a gzip bomb?" in r.stderr and "Traceback" not in r.stderr
    assert "capture_malformed: " in r.stderr



def test_force_replaces_only_a_regular_file(tmp_path: Path) -> None:
    """``record --force /dev/null`` unlinked /dev/null and left a regular file in its place (any
    device, FIFO or socket the same). --force replaces a regular file, nothing else. Second
    review of issue 11."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        CaptureWriter(str(fifo), start_ns=1, overwrite=True)
    assert fifo.is_fifo()
    r = subprocess.run([*FALCONET, "record", "--force", "--duration", "0.1", str(fifo)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and fifo.is_fifo()

# ------------------------------------------------------------------------ finding 8: the writer
def test_writer_creates_0600_and_refuses_existing_files_and_symlinks(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "c.fcap"
        CaptureWriter(str(path), start_ns=1).close()
        assert path.stat().st_mode & 0o777 == 0o600
        with pytest.raises(FileExistsError, match="use --force"):
            CaptureWriter(str(path), start_ns=1)
        victim = tmp_path / "victim"
        victim.write_text("precious")
        link = tmp_path / "link.fcap"
        link.symlink_to(victim)
        for overwrite in (False, True):
            with pytest.raises(OSError, match="symbolic link"):
                CaptureWriter(str(link), start_ns=1, overwrite=overwrite)
        assert victim.read_text() == "precious"
        hard = tmp_path / "hard.fcap"
        os.link(victim, hard)
        CaptureWriter(str(hard), start_ns=1, overwrite=True).close()   # cuts the link
        assert victim.read_text() == "precious"
        assert read_header(str(hard))["falconet_capture"] == FORMAT_VERSION
        assert hard.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_record_command_needs_force_and_never_follows_a_symlink(tmp_path: Path) -> None:
    ex = ["--source", "example", "--no-rules", "--no-metrics", "-o", "plugins.example.interval=0",
          "-o", "plugins.example.count=2"]
    cap = tmp_path / "ex.fcap"
    cap.write_text("old")
    r = subprocess.run([*FALCONET, "record", str(cap), *ex], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert f"cannot write {cap}: file exists (use --force to overwrite it)" in r.stderr
    assert cap.read_text() == "old"
    r = subprocess.run([*FALCONET, "record", str(cap), "--force", *ex], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert cap.stat().st_mode & 0o777 == 0o600
    assert len(list(read_capture(str(cap)))) == 2
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link.fcap"
    link.symlink_to(victim)
    r = subprocess.run([*FALCONET, "record", str(link), "--force", *ex], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "is a symbolic link" in r.stderr and "Traceback" not in r.stderr
    assert victim.read_text() == "precious"

