"""Property test (hypothesis): whatever a watched process puts in a field (argv, comm, exe path,
cwd, a file name: any str, including lone surrogates U+DC80-U+DCFF from bytes that are not UTF-8,
C0/C1 controls, bidi controls, U+2028/U+2029, very long values), rendering it through a real rule
output (the real loader and core fields) and then through the output formatters (text and JSON,
``falconet/outputs/format.py``) and the stdout and file sinks never raises, and what they write is
valid UTF-8, one line per alert, without a raw control character.

Issue 11, findings 1-3; the policy is ``falconet.outputs.encoding`` (docs/outputs.md).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from falconet.alerts import Alert
from falconet.events import Event
from falconet.fields.core_fields import core_field_defs
from falconet.fields.registry import FieldRegistry
from falconet.outputs.format import Formatter
from falconet.outputs.stream import FileSink, StreamSink
from falconet.rules import load_rules_text
from falconet.state.tables import FdInfo, StateTables, ThreadInfo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: a short budget for `make test`; bench/ may run the same property longer
BUDGET = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck),
                  report_multiple_bugs=False)

#: characters that must never reach an output raw
LONE_SURROGATES = [chr(c) for c in range(0xDC80, 0xDD00)]
C0 = [chr(c) for c in range(0x20)] + ["\x7f"]
C1 = [chr(c) for c in range(0x80, 0xA0)]
SEPARATORS = ["\u2028", "\u2029"]
BIDI = [chr(c) for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
FORBIDDEN = frozenset(C0 + C1 + SEPARATORS + BIDI) | {chr(c) for c in range(0xD800, 0xE000)}

_special = st.sampled_from(LONE_SURROGATES + C0 + C1 + SEPARATORS + BIDI)
_piece = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),   # any code point, Cs included
    st.text(_special, min_size=1, max_size=10),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
_short = st.lists(_piece, max_size=6).map("".join)
#: up to 256 k characters: a value repeated (a huge argv entry)
_long = st.tuples(_short.filter(bool), st.integers(1000, 256 * 1024)).map(
    lambda t: (t[0] * (t[1] // len(t[0]) + 1))[:t[1]])
VALUES = st.one_of(_short, _short, _short, _long)

RULE = """\
- rule: Fuzzed fields
  desc: every process-controlled field of an open in the output
  condition: evt.type = openat
  output: >
    file=%fd.name name=%proc.name exe=%proc.exepath cmd=%proc.cmdline cwd=%proc.cwd
    arg0=%proc.args
  priority: warning
"""


@pytest.fixture(scope="module")
def ruleset():
    reg = FieldRegistry()
    reg.register_all(core_field_defs(StateTables()))
    res = load_rules_text(RULE, reg, append_output=[])
    assert res.ok, [str(m) for m in res.errors]
    return res.ruleset


def _event(comm: str, exepath: str, args: list[str], cwd: str, path: str) -> Event:
    t = ThreadInfo(tid=4242, pid=4242, comm=comm, exe=comm, exepath=exepath, args=args, cwd=cwd)
    e = Event("syscall", "openat", 1_700_000_000 * 10**9, tid=4242, pid=4242,
              args={"fd": 3, "name": path}, res=3)
    e.thread = t
    e.fdinfo = FdInfo(num=3, name=path)
    return e


def _check_lines(raw: bytes, n: int) -> list[str]:
    text = raw.decode("utf-8")                       # strict: raises on invalid UTF-8
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert len(lines) == n, f"{n} alerts wrote {len(lines)} lines"
    for line in lines:
        bad = sorted({f"U+{ord(c):04X}" for c in line if c in FORBIDDEN})
        assert not bad, f"raw control characters {bad} in {line[:200]!r}"
    return lines



@BUDGET
@given(comm=VALUES, exepath=VALUES, args=st.lists(VALUES, max_size=3), cwd=VALUES, path=VALUES)
def test_any_field_value_gives_clean_utf8_lines(ruleset, tmp_path_factory, comm: str, exepath: str,
                                                args: list[str], cwd: str, path: str) -> None:
    [alert] = ruleset.match(_event(comm, exepath, args, cwd, path))
    assert isinstance(alert, Alert)
    out = io.BytesIO()
    # like a real stdout: UTF-8, strict (an unencodable character raises)
    stream = io.TextIOWrapper(out, encoding="utf-8", errors="strict", newline="\n")
    sinks = [StreamSink("stdout", Formatter(json_output=False), stream=stream),
             StreamSink("stdout-json", Formatter(json_output=True), stream=stream)]
    for sink in sinks:
        sink.start()
        sink.send(alert)
        sink.flush()
    text_line, json_line = _check_lines(out.getvalue(), 2)
    json.loads(json_line)                             # valid JSON
    # a short printable ASCII value is shown as it is (escaping only touches what it must)
    if path and len(path) < 200 and all(" " <= c <= "~" for c in path):
        assert f"file={path}" in text_line

    f: Path = tmp_path_factory.mktemp("fuzz") / "alerts.json"
    file_sink = FileSink("file", str(f), Formatter(json_output=True))
    file_sink.start()
    try:
        file_sink.send(alert)
        file_sink.send(alert)
        file_sink.flush()
    finally:
        file_sink.close()
    for line in _check_lines(f.read_bytes(), 2):
        json.loads(line)
