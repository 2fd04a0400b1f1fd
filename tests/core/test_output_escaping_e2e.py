"""Attacker-controlled text (file names, process names) cannot forge or recolour alert lines:
end to end through the `falconet` command, live from the kernel and from a capture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import need_bcc

FALCONET = [sys.executable, "-m", "falconet"]
#: an ANSI colour, a newline followed by a forged alert, a bell
EVIL = "\x1b[31mRED\n12:00:00.000000000: Emergency forged\x07"
RULES = """\
- rule: QA control characters
  desc: test
  condition: evt.type in (open, openat, openat2, creat) and fd.name startswith /tmp/falconet-qa-ctl
  output: opened (file=%fd.name proc=%proc.name)
  priority: WARNING
"""


def _assert_escaped(stdout: str, n_alerts: int) -> None:
    lines = stdout.splitlines()
    assert len(lines) == n_alerts, lines                 # the newline forged no extra line
    for line in lines:
        assert not any(ord(c) < 0x20 or c == "\x7f" for c in line), repr(line)
        assert "\\u001b[31mRED\\n12:00:00.000000000: Emergency forged\\u0007" in line, line


def test_capture_with_control_characters_replays_escaped(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    cap = tmp_path / "evil.fcap"
    records = [
        {"falconet_capture": 1, "host": "h", "kernel": "k", "start_ns": 1, "engine_version": "x"},
        {"k": "state", "plugin": "core-state",
         "data": {"threads": [{"tid": 7, "pid": 7, "comm": EVIL}]}},
        {"k": "evt", "src": "syscall", "type": "openat", "ts": 5, "tid": 7, "pid": 7,
         "args": {"name": "/tmp/falconet-qa-ctl" + EVIL, "flags": 0, "fd": 3}, "res": 3},
    ]
    cap.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "alerts.txt"
    r = subprocess.run([*FALCONET, "replay", str(cap), "-r", str(rules),
                        "-o", "outputs.file.enabled=true", "-o", "outputs.file.json=false",
                        "-o", f"outputs.file.path={out}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    _assert_escaped(r.stdout, 1)
    assert "proc=\\u001b[31mRED" in r.stdout             # the process name too
    _assert_escaped(out.read_text(), 1)                  # and the text file output


@pytest.mark.root
@pytest.mark.ebpf
def test_live_file_name_with_control_characters_is_escaped(tmp_path: Path) -> None:
    need_bcc()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    eng = subprocess.Popen([*FALCONET, "run", "-r", str(rules), "--no-metrics", "--duration", "60",
                            "-o", "append_output=[]"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(eng.stdout.readline, "")),
                              daemon=True)
    reader.start()
    name = f"/tmp/falconet-qa-ctl{EVIL}"
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not seen:    # until the engine is watching
            fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            os.unlink(name)
            time.sleep(0.2)
        assert seen, "the live engine never alerted"
        eng.send_signal(signal.SIGINT)
        eng.wait(timeout=30)
        reader.join(10)
    finally:
        if eng.poll() is None:
            eng.kill()
        if os.path.exists(name):
            os.unlink(name)
    _assert_escaped("".join(seen), len([x for x in seen if x.strip()]))
