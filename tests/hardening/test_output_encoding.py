"""Issue 11, findings 1-3 (output side): bytes that are not UTF-8, control, separator and bidi
characters and oversized values never break, hide or inflate an alert in any output; the one
policy is :mod:`falconet.outputs.encoding`. The end-to-end tests run the real ``falconet replay``
with a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from falconet.alerts import Alert
from falconet.config import ConfigError, load_config
from falconet.metrics import EngineMetrics
from falconet.outputs.format import format_json, format_text
from falconet.priorities import Priority
from falconet.prometheus import EngineCollector
from hypothesis import given, settings
from hypothesis import strategies as st
from output_receiver import Receiver
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from run_summary import assert_outputs

FALCONET = [sys.executable, "-m", "falconet"]
#: two bytes that are not UTF-8 (as /proc and captures give them: surrogate escapes), a C1 NEL,
#: a right-to-left override and a line separator
EVIL = "\udcff\udcfeEVIL\x85\u202e\u2028x"
EVIL_SHOWN = "\\xff\\xfeEVIL\\u0085\\u202e\\u2028x"
RULES = """\
- rule: Hostile names
  desc: test
  condition: evt.type in (open, openat) and fd.name startswith /tmp/falconet-hostile
  output: opened (file=%fd.name proc=%proc.name cmd=%proc.cmdline exe=%proc.exepath)
  priority: WARNING
- rule: Long argument
  desc: the condition sees the whole value, the output a bounded one
  condition: evt.type = openat and fd.name = /tmp/falconet-long and proc.cmdline endswith THE-END
  output: long (cmd=%proc.cmdline)
  priority: WARNING
"""
UNSAFE = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
          *range(0x2066, 0x206A), 0x061C, 0x200E, 0x200F]


def _capture(path: Path, *, argv: list[str], comm: str, exe: str, file: str) -> None:
    """A v1 capture (JSON lines; ``\\udcff`` escapes are how a non-UTF-8 byte reads back)."""
    records = [
        {"falconet_capture": 1, "host": "h", "kernel": "k", "start_ns": 1, "engine_version": "x"},
        {"k": "evt", "src": "syscall", "type": "procfork", "ts": 2, "tid": 99, "pid": 99,
         "args": {"child_tid": 100, "child_pid": 100, "parent_tid": 99, "parent_pid": 99}},
        {"k": "evt", "src": "syscall", "type": "execve", "ts": 3, "tid": 100, "pid": 100, "res": 0,
         "args": {"filename": exe, "argv": argv, "cwd": "/tmp", "exepath": exe, "uid": 0,
                  "gid": 0, "comm": comm}},
        {"k": "evt", "src": "syscall", "type": "openat", "ts": 5, "tid": 100, "pid": 100,
         "args": {"name": file, "flags": 0, "fd": 3}, "res": 3},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _replay(tmp_path: Path, cap: Path, *opts: str) -> subprocess.CompletedProcess[bytes]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return subprocess.run([*FALCONET, "replay", str(cap), "-r", str(rules), "--no-progress",
                           "-o", "append_output=[]", *opts], capture_output=True, timeout=120)


def _assert_clean_text(data: bytes) -> str:
    """Valid UTF-8 whose lines (split on \\n only) hold no unsafe character."""
    text = data.decode("utf-8")                       # strict: valid UTF-8 or this raises
    for ch in text.replace("\n", ""):
        assert ord(ch) not in UNSAFE and not 0xD800 <= ord(ch) <= 0xDFFF, repr(text)
    return text


def alert(output: str = "x", **fields: object) -> Alert:
    return Alert("r", Priority.WARNING, "syscall", [], output, dict(fields), 5, "h")


# ------------------------------------------------------------------------ finding 1
def test_non_utf8_bytes_reach_stdout_json_file_and_webhook(tmp_path: Path) -> None:
    cap = tmp_path / "hostile.fcap"
    _capture(cap, argv=["cat" + EVIL, "arg" + EVIL], comm="c" + EVIL, exe="/tmp/x" + EVIL,
             file="/tmp/falconet-hostile" + EVIL)
    out = tmp_path / "alerts.json"
    with Receiver() as rx:
        r = _replay(tmp_path, cap, "-o", "outputs.file.enabled=true", "-o", f"outputs.file.path={out}",
                    "-o", "outputs.webhook.enabled=true", "-o", f"outputs.webhook.url={rx.url}/h")
        assert r.returncode == 0, r.stderr
        text = _assert_clean_text(r.stdout)
        assert text.count("\n") == 1, text            # one alert, one line
        for what in ("file=/tmp/falconet-hostile", "proc=c", "cmd=c", " arg", "exe=/tmp/x"):
            assert what + EVIL_SHOWN in text, (what, text)
        (line,) = _assert_clean_text(out.read_bytes()).splitlines()
        (req,) = rx.requests
    for body in (line.encode(), req[2]):
        d = json.loads(_assert_clean_text(body))
        assert d["output_fields"]["fd.name"] == "/tmp/falconet-hostile" + EVIL_SHOWN
        assert d["output_fields"]["proc.name"] == "c" + EVIL_SHOWN
        assert EVIL_SHOWN in d["output"]
    summary = r.stderr.decode()
    assert_outputs(summary, {"file": "1 sent", "stdout": "1 sent", "webhook": "1 sent"})
    assert "failed" not in summary

    rj = _replay(tmp_path, cap, "--json")             # JSON on stdout
    assert rj.returncode == 0, rj.stderr
    d = json.loads(_assert_clean_text(rj.stdout))
    assert d["output_fields"]["proc.exepath"] == "/tmp/x" + EVIL_SHOWN


def test_json_of_raw_plugin_values_is_valid_utf8() -> None:
    """Values the formatter did not see (a plugin's alert, ``append_output`` extra fields) are
    bounded when serialised: bytes, surrogates, nested lists, odd keys."""
    a = alert("msg" + EVIL, **{"raw": b"\xff\x00ok", "s": EVIL, "l": [EVIL, 1, None],
                               "k" + EVIL: True})
    a.rule, a.hostname, a.tags = "rule" + EVIL, "host" + EVIL, ["t" + EVIL]
    line = format_json(a)
    d = json.loads(_assert_clean_text(line.encode()))
    assert d["output_fields"] == {"raw": "\\xff\\u0000ok", "s": EVIL_SHOWN,
                                  "l": [EVIL_SHOWN, 1, None], "k" + EVIL_SHOWN: True}
    assert d["rule"] == "rule" + EVIL_SHOWN and d["hostname"] == "host" + EVIL_SHOWN
    assert d["tags"] == ["t" + EVIL_SHOWN]


def test_prometheus_scrape_survives_hostile_label_values() -> None:
    m = EngineMetrics()
    m.alerts[("rule" + EVIL, int(Priority.WARNING), "syscall")] += 1
    m.output_sent["out" + EVIL] += 1
    reg = CollectorRegistry()
    reg.register(EngineCollector(m, hostname="host" + EVIL))
    text = _assert_clean_text(generate_latest(reg))
    # the exposition format escapes the backslash of our escape once more
    assert 'rule="rule\\\\xff\\\\xfeEVIL\\\\u0085' in text


def test_otel_strings_are_valid_utf8() -> None:
    from falconet_otel import wire  # noqa: PLC0415
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: PLC0415

    kv = KeyValue.FromString(wire.key_value("k" + EVIL, "v" + EVIL))   # a strict protobuf parse
    assert kv.key == "k" + EVIL_SHOWN and kv.value.string_value == "v" + EVIL_SHOWN
    assert AnyValue.FromString(wire.any_value(["a" + EVIL])).array_value.values[0].string_value \
        == "a" + EVIL_SHOWN



def test_otel_integers_beyond_int64_stay_valid_protobuf() -> None:
    """A capture's args are not range-checked: an integer of 2**100 was a 15-byte varint, which
    makes the collector reject the whole batch (every other alert in it too). It is sent as its
    decimal text. Second review of issue 11."""
    from falconet_otel import wire  # noqa: PLC0415
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue  # noqa: PLC0415

    for v in (1 << 100, -(1 << 70), 1 << 63):
        assert AnyValue.FromString(wire.any_value(v)).string_value == str(v)
    for v in ((1 << 63) - 1, -(1 << 63), -5, 0):
        assert AnyValue.FromString(wire.any_value(v)).int_value == v
    assert AnyValue.FromString(wire.any_value([1 << 100])).array_value.values[0].string_value \
        == str(1 << 100)

# ------------------------------------------------------------------------ finding 2
@pytest.mark.parametrize("cp", UNSAFE, ids=lambda cp: f"U+{cp:04X}")
def test_every_control_separator_and_bidi_character_is_escaped(cp: int) -> None:
    ch = chr(cp)
    esc = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}.get(cp, f"\\u{cp:04x}")
    line = format_text(alert(f"a{ch}b"))
    assert line.endswith(f"a{esc}b"), line
    d = json.loads(format_json(alert(f"a{ch}b", f=f"a{ch}b")))
    assert d["output_fields"]["f"] == f"a{esc}b" and d["output"].endswith(f"a{esc}b")


def test_printable_text_is_left_alone() -> None:
    from falconet.outputs.encoding import bound, escape_text  # noqa: PLC0415

    s = "plain ünïcode 日本 \\ already-escaped \\xff emoji \U0001f600 zwj \u200d"
    assert escape_text(s) == s and bound(s, 4096) == s


# ------------------------------------------------------------------------ finding 3
def test_long_values_are_bounded_in_output_but_whole_for_conditions(tmp_path: Path) -> None:
    cap = tmp_path / "long.fcap"
    big = "A" * 1_000_000 + "THE-END"
    _capture(cap, argv=["cat", big], comm="cat", exe="/usr/bin/cat", file="/tmp/falconet-long")
    out = tmp_path / "alerts.json"
    r = _replay(tmp_path, cap, "-o", "outputs.file.enabled=true", "-o", f"outputs.file.path={out}",
                "-o", "output_max_field_len=200")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "long (cmd=cat AAAA" in text             # the rule matched: it saw THE-END
    assert "THE-END" not in text
    # 1,000,011 characters of "cat <big>": 200 shown (marker included), the rest counted
    assert re.search(r"…\[truncated 9998\d\d chars\]\)$", text.strip()), text[-60:]
    assert len(text) < 400, len(text)
    d = json.loads(out.read_text())
    cmd = d["output_fields"]["proc.cmdline"]
    assert len(cmd) <= 200 and cmd.endswith(" chars]")
    assert len(out.read_bytes()) < 2000

    r = _replay(tmp_path, cap)                        # the default limit: 4096 characters
    assert "…[truncated" in r.stdout.decode() and len(r.stdout) < 5000


def test_output_max_field_len_is_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("hostname: h\noutput_max_field_len: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    assert f"{cfg}:2:1: error: output_max_field_len: expected an integer >= 64" in str(e.value)
    assert load_config(None)["output_max_field_len"] == 4096


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=600),
       st.integers(64, 300))
def test_bound_is_safe_short_and_idempotent(s: str, limit: int) -> None:
    from falconet.outputs.encoding import bound, escape_text  # noqa: PLC0415

    b = bound(s, limit)
    assert len(b) <= limit
    b.encode("utf-8")
    assert all(ord(c) not in UNSAFE for c in b)
    assert bound(b, limit) == b
    if len(escape_text(s)) <= limit:
        assert b == escape_text(s)
    else:                          # the escaped prefix, never cut inside an escape, and its count
        m = re.search(r"…\[truncated (\d+) chars\]$", b)
        assert m, b
        dropped = int(m.group(1))
        assert 0 < dropped <= len(s)
        assert b[:m.start()] == escape_text(s[:len(s) - dropped])
