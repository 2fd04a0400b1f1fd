"""Issue 11 acceptance (live, eBPF): processes whose argv, executable path, comm and opened file
carry bytes that are not UTF-8 and control, separator and bidi characters, started both before
and after the engine, each produce their alert on stdout (text), in the file (JSON) and at a
webhook (a real receiver on 127.0.0.1), with the bytes escaped; a ``falconet record`` of them
replays (``falconet replay``, JSON on stdout) to the same alerts.

One ``falconet record`` process is the live engine (it alerts like ``run`` and writes the
capture). The rule matches only files in this test's own directory, so other processes on the
host (other tests, attack simulations) cannot add or hide alerts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_bcc, stop_process, wait_until
from falconet.outputs.encoding import field_text
from output_receiver import Receiver

FALCONET = [sys.executable, "-m", "falconet"]
#: invalid UTF-8, an ANSI colour (ESC), NEL (C1), a right-to-left override, a line separator
BAD = b"\xff\xfe\x1b[31m\xc2\x85\xe2\x80\xae\xe2\x80\xa8"
#: the same bytes as every output must show them
BAD_SHOWN = "\\xff\\xfe\\u001b[31m\\u0085\\u202e\\u2028"
#: comm holds at most 15 bytes: a short hostile executable name
EXE_BAD = b"\xff\xfe\x1b\xc2\x85\xe2\x80\xae"
RULES = """\
- rule: Hostile names
  desc: live hardening test (issue 11)
  condition: evt.type in (open, openat, openat2) and fd.name startswith {dir}/target-
  output: hostile open (proc=%proc.name exe=%proc.exepath cmd=%proc.cmdline file=%fd.name)
  priority: WARNING
"""


def shown(raw: bytes) -> str:
    """What the output policy makes of raw bytes (as /proc and the kernel give them)."""
    return field_text(raw.decode("utf-8", "surrogateescape"))


def no_unsafe(text: str) -> None:
    for ch in text.replace("\n", ""):
        cp = ord(ch)
        assert not (cp < 0x20 or 0x7F <= cp < 0xA0 or 0xD800 <= cp < 0xE000
                    or cp in (0x2028, 0x2029) or 0x202A <= cp <= 0x202E
                    or 0x2066 <= cp <= 0x2069), repr(text)


class Actor:
    """A copy of /bin/sh under a hostile name, with a hostile argv, that opens a hostile path."""

    def __init__(self, d: Path, tag: bytes) -> None:
        root = os.fsencode(d)
        self.exe = root + b"/" + tag + EXE_BAD
        shutil.copyfile("/bin/sh", self.exe)
        os.chmod(self.exe, 0o755)
        self.target = root + b"/target-" + tag + BAD
        with open(self.target, "wb"):
            pass
        self.arg = b"arg-" + tag + BAD
        self.comm = (tag + EXE_BAD)[:15]

    def expected(self) -> dict[str, str]:
        """The output fields every alert of this actor must carry (escaped)."""
        return {"fd.name": shown(self.target), "proc.exepath": shown(self.exe)}


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(f"/tmp/falconet-hostile-{uuid.uuid4().hex[:10]}")
    d.mkdir(mode=0o700)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.root
@pytest.mark.ebpf
@pytest.mark.slow
def test_hostile_names_alert_on_every_output_live_and_in_replay(workdir: Path) -> None:
    need_bcc()
    rules = workdir / "rules.yaml"
    rules.write_text(RULES.format(dir=workdir))
    before, after = Actor(workdir, b"b"), Actor(workdir, b"a")
    fifo = workdir / "go"
    os.mkfifo(fifo, 0o600)
    alerts_file = workdir / "alerts.json"
    cap = workdir / "hostile.fcap"
    # started before the engine: the engine learns it from /proc; it opens its target when told
    early = subprocess.Popen([before.exe, b"-c", b'read x < "$1"; : < "$2"', before.arg,
                              os.fsencode(fifo), before.target])
    with Receiver() as rx:
        eng = subprocess.Popen(
            [*FALCONET, "record", str(cap), "-r", str(rules), "--no-metrics", "--duration", "120",
             "-o", "append_output=[]", "-o", "outputs.file.enabled=true",
             "-o", f"outputs.file.path={alerts_file}", "-o", "outputs.webhook.enabled=true",
             "-o", f"outputs.webhook.url={rx.url}/falco"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [threading.Thread(target=lambda s=s, b=b: b.extend(iter(s.readline, b"")),
                                    daemon=True) for s, b in ((eng.stdout, out), (eng.stderr, err))]
        for t in readers:
            t.start()
        try:
            wait_until(lambda: any(b"falconet: watching" in line for line in err) or
                       eng.poll() is not None, 90, "the engine to watch")
            assert eng.poll() is None, b"".join(err).decode(errors="replace")
            with open(fifo, "w") as f:                 # the early process opens its target now
                f.write("go\n")
            late = subprocess.run([after.exe, b"-c", b': < "$1"', after.arg, after.target],
                                  timeout=30)
            assert late.returncode == 0 and early.wait(30) == 0

            def lines() -> list[dict]:
                if not alerts_file.exists():
                    return []
                return [json.loads(x) for x in alerts_file.read_text().splitlines()]

            def have_both(found: list[dict]) -> bool:
                names = {a["output_fields"].get("fd.name") for a in found}
                return {shown(before.target), shown(after.target)} <= names

            wait_until(lambda: have_both(lines()), 30, "both alerts in the file output")
            wait_until(lambda: have_both([json.loads(r[2]) for r in rx.requests]), 30,
                       "both alerts at the webhook")
        finally:
            stop_process(eng, 30)
            if early.poll() is None:
                early.kill()
            for t in readers:
                t.join(10)
        bodies = [r[2].decode("utf-8") for r in rx.requests]     # strict UTF-8
    hooked = [json.loads(b) for b in bodies]
    for b in bodies:
        no_unsafe(b)
    stderr = b"".join(err).decode(errors="replace")
    assert eng.returncode == 0, stderr
    assert "failed" not in stderr.split("outputs:")[-1], stderr    # nothing lost on the way out

    # ------------------------------------------------------------------ live: every output
    text = b"".join(out).decode("utf-8")                 # strict UTF-8
    no_unsafe(text)
    file_alerts = lines()
    no_unsafe(alerts_file.read_text())
    for actor in (before, after):
        exp = actor.expected()
        assert f"file={exp['fd.name']}" in text, (exp, text)
        assert f"proc={shown(actor.comm)}" in text or f"proc={shown(actor.exe.rsplit(b'/', 1)[1])}" \
            in text, text
        assert shown(actor.arg) in text
        for where, found in (("file", file_alerts), ("webhook", hooked)):
            mine = [a for a in found if a["output_fields"].get("fd.name") == exp["fd.name"]]
            assert mine, (where, exp, found)
            for a in mine:
                assert a["output_fields"]["proc.exepath"] == exp["proc.exepath"], (where, a)
                assert shown(actor.arg) in a["output_fields"]["proc.cmdline"], (where, a)
                assert BAD_SHOWN in a["output"]

    # ------------------------------------------------------------------ record -> replay
    r = subprocess.run([*FALCONET, "replay", str(cap), "-r", str(rules), "--json", "--no-progress",
                        "-o", "append_output=[]"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    replayed = [json.loads(x) for x in r.stdout.decode("utf-8").splitlines()]

    def key(a: dict) -> tuple:
        f = a["output_fields"]
        return (a["rule"], f["fd.name"], f["proc.exepath"], f["proc.cmdline"], f["proc.name"],
                f["evt.time"], a["output"])
    assert sorted(map(key, replayed)) == sorted(map(key, file_alerts))
