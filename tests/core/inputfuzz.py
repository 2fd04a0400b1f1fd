"""Hypothesis strategies and properties for captures from other hosts (what an attacker writes).

Shared by the short test (tests/core/test_capture_fuzz.py, a few seconds in the normal run) and
the long campaign (bench/fuzz_inputs.py, with the rules properties of tests/rules). Properties:

- a capture of events and state whose strings hold any bytes (non-UTF-8 included) replays
  exactly what was written;
- whatever the lines of a capture are, the reader never raises, and every line is accounted
  for exactly once: an event, a state record, a reported malformed line, or blank.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from typing import Any

from falconet.capture import CaptureError, CaptureWriter, read_capture
from falconet.events import Event
from hypothesis import strategies as st

# ------------------------------------------------------------------------------------ captures
#: strings as the engine holds them: any bytes, decoded with surrogateescape (as /proc reads are)
byte_strings = st.binary(max_size=24).map(lambda b: b.decode("utf-8", "surrogateescape"))
any_strings = st.one_of(byte_strings, st.text(max_size=16))
arg_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1), any_strings),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(any_strings, inner, max_size=4)),
    max_leaves=12)


@st.composite
def events(draw: Any) -> Event:
    return Event(draw(st.sampled_from(["syscall", "k8s_audit", "example"])),
                 draw(st.sampled_from(["openat", "execve", "connect", "event"])),
                 draw(st.integers(0, (1 << 63) - 1)), draw(st.integers(0, (1 << 32) - 1)),
                 draw(st.integers(0, (1 << 32) - 1)),
                 draw(st.dictionaries(any_strings, arg_values, max_size=5)),
                 draw(st.one_of(st.none(), st.integers(-(1 << 63), (1 << 63) - 1))),
                 draw(st.one_of(st.none(), arg_values)))


records = st.lists(st.one_of(events(), st.tuples(any_strings, arg_values)), max_size=8)


def check_capture_round_trip(recs: list[Any], gz: bool) -> None:
    """What is written is what is read: events field by field, state records in order."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.fcap.gz" if gz else "c.fcap")
        with CaptureWriter(path, start_ns=1) as w:
            for r in recs:
                if isinstance(r, Event):
                    w.write_event(r)
                else:
                    w.write_state(*r)
        got: list[Any] = []
        problems: list[str] = []
        for e in read_capture(path, on_state=lambda p, data: got.append((p, data)),
                              on_malformed=lambda n, why: problems.append(why)):
            got.append(e)
        assert problems == []
        assert len(got) == len(recs)
        for want, have in zip(recs, got, strict=True):
            if isinstance(want, Event):
                assert isinstance(have, Event) and have.to_dict() == want.to_dict(), (want, have)
            else:
                assert have == want


_FIELDS = ["k", "src", "type", "ts", "tid", "pid", "args", "res", "raw", "plugin", "data"]
_odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                          max_size=2),
    st.sampled_from([1 << 64, -(1 << 63) - 1, 10 ** 30, "evt", "state", "syscall", 7]))


@st.composite
def capture_lines(draw: Any) -> bytes:
    """One line of a hostile capture (no newline inside)."""
    kind = draw(st.integers(0, 6))
    if kind == 0:               # a record with wrongly typed or missing fields
        base: dict[str, Any] = {"k": draw(st.sampled_from(["evt", "state", "x"])),
                                "src": "syscall", "type": "openat", "ts": 1, "plugin": "p"}
        base.update(draw(st.dictionaries(st.sampled_from(_FIELDS), _odd_values, max_size=4)))
        for k in draw(st.lists(st.sampled_from(_FIELDS), max_size=2)):
            base.pop(k, None)
        line = json.dumps(base).encode()
    elif kind == 1:             # deep nesting
        n = draw(st.integers(1, 5000))
        line = draw(st.sampled_from([b"[" * n + b"]" * n, b'{"k":' * n + b"1" + b"}" * n,
                                     b'{"k":"evt","src":"s","type":"t","ts":1,"args":'
                                     + b"[" * n + b"]" * n + b"}"]))
    elif kind == 2:             # random bytes
        line = draw(st.binary(max_size=64))
    elif kind == 3:             # a valid event (with non-UTF-8 bytes, raw or escaped)
        s = draw(byte_strings)
        line = json.dumps({"k": "evt", "src": "syscall", "type": "openat", "ts": 5,
                           "args": {"name": s}}, ensure_ascii=False).encode(
                               "utf-8", draw(st.sampled_from(["surrogateescape",
                                                              "backslashreplace"])))
    elif kind == 4:             # JSON that is not an object, or trailing data
        line = draw(st.sampled_from([b"[]", b"1", b'"x"', b"null", b'{"k":"evt"} x', b"{}"]))
    elif kind == 5:             # a long line
        line = b'{"k":"state","plugin":"p","data":"' + b"a" * draw(st.integers(0, 70_000)) + b'"}'
    else:
        line = b""
    return line.replace(b"\n", b" ")


def check_capture_reader(lines: list[bytes], gz: bool, max_line: int = 1 << 16) -> None:
    """The reader never raises, and accounts for every line once."""
    header = json.dumps({"falconet_capture": 2, "host": "h", "kernel": "k",
                         "start_ns": 0, "engine_version": "0"}).encode()
    data = header + b"\n" + b"".join(line + b"\n" for line in lines)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.fcap")
        with open(path, "wb") as f:
            f.write(gzip.compress(data, compresslevel=1) if gz else data)
        counts = {"events": 0, "states": 0, "malformed": 0}
        try:
            for e in read_capture(path, max_line=max_line,
                                  on_state=lambda p, data: counts.__setitem__(
                                      "states", counts["states"] + 1),
                                  on_malformed=lambda n, why: counts.__setitem__(
                                      "malformed", counts["malformed"] + 1)):
                assert isinstance(e, Event) and type(e.ts) is int and type(e.tid) is int
                counts["events"] += 1
        except CaptureError as e:
            raise AssertionError(f"a capture with a valid header was refused: {e}") from None
    blank = sum(1 for line in lines if not line.strip())
    assert counts["events"] + counts["states"] + counts["malformed"] + blank == len(lines), \
        (counts, blank, len(lines))
