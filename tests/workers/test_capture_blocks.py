"""The raw-record reader of the partitioned replay keeps read_capture's framing checks."""

from __future__ import annotations

import gzip
from pathlib import Path

from falconet.capture import StateRecord, decode_record, read_capture_blocks

HEADER = b'{"falconet_capture": 2, "host": "h", "kernel": "k", "start_ns": 1}\n'
EVT = b'{"src":"syscall","type":"read","ts":5,"tid":7,"pid":7,"args":{"fd":1},"res":1,"k":"evt"}'


def _lines(path: str, **kw: object) -> tuple[list[tuple[int, bytes]], list[tuple[int, str]]]:
    bad: list[tuple[int, str]] = []
    out = [(first + i, line) for first, block in read_capture_blocks(
        path, on_malformed=lambda n, r: bad.append((n, r)), **kw)  # type: ignore[arg-type]
        for i, line in enumerate(block)]
    return out, bad


def test_blocks_number_lines_across_block_edges(tmp_path: Path) -> None:
    p = tmp_path / "c.fcap"
    p.write_bytes(HEADER + b"\n".join([EVT] * 50) + b"\n")
    lines, bad = _lines(str(p), block=100)          # blocks end mid-line
    assert not bad
    assert [n for n, _ in lines] == list(range(2, 52))
    assert all(line == EVT for _, line in lines)
    evt = decode_record(lines[0][1])
    assert evt is not None and not isinstance(evt, StateRecord) and evt.type == "read"


def test_an_over_long_line_is_reported_and_skipped(tmp_path: Path) -> None:
    p = tmp_path / "c.fcap"
    p.write_bytes(HEADER + EVT + b"\n" + b"x" * 5000 + b"\n" + EVT + b"\n")
    lines, bad = _lines(str(p), block=512, max_line=1000)
    assert [n for n, line in lines if line] == [2, 4]
    assert bad == [(3, "line longer than 1000 bytes: skipped")]


def test_a_truncated_gzip_capture_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "c.fcap.gz"
    data = gzip.compress(HEADER + b"\n".join([EVT] * 2000) + b"\n")
    p.write_bytes(data[: len(data) // 2])
    lines, bad = _lines(str(p))
    assert bad and "truncated capture" in bad[-1][1]
    assert all(line == EVT for _, line in lines[:-1])


def test_decode_record_says_what_is_wrong() -> None:
    assert decode_record(b"   ") is None
    for line, why in ((b"not json", "invalid JSON"), (b'{"k":"zz"}', "unknown record kind"),
                      (b'{"k":"evt","src":"s","type":"t","ts":"1"}', "field 'ts'")):
        try:
            decode_record(line)
        except ValueError as e:
            assert why in str(e)
        else:
            raise AssertionError(line)
