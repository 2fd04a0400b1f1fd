"""Live (eBPF): events from several CPUs' rings reach the engine in timestamp order even when
the rings are behind. The engine is stopped (SIGSTOP) while a busy process on CPU 0 opens
thousands of files and a quiet one on CPU 1 opens a few, spread over the same time; when it
resumes, each read takes at most ``batch`` records per ring, so the quiet ring's whole backlog
comes with the busy ring's first batch. The capture ``falconet record`` writes (in the order
the rules saw the events) must still be in timestamp order (falconet.collector.merge)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from conftest import need, need_bcc, stop_process, wait_until

FALCONET = [sys.executable, "-m", "falconet"]
BUSY, QUIET = 12_000, 40

WORKLOAD = textwrap.dedent("""\
    import os, sys, time
    d, busy, quiet = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    r, w = os.pipe()
    kids = []
    for cpu, n, pause in ((0, busy, 0.0), (1, quiet, 0.002)):
        pid = os.fork()
        if pid == 0:
            os.sched_setaffinity(0, {cpu})
            os.read(r, 1)                                  # both start together
            p = os.path.join(d, "busy" if cpu == 0 else "quiet")
            for _ in range(n):
                os.close(os.open(p, os.O_RDONLY | os.O_CREAT, 0o600))
                if pause:
                    time.sleep(pause)
            os._exit(0)
        kids.append(pid)
    os.write(w, b"xx")
    for pid in kids:
        assert os.waitpid(pid, 0)[1] == 0
    print(" ".join(map(str, kids)), flush=True)
""")


def test_backlogged_rings_are_merged_in_timestamp_order(tmp_path: Path) -> None:
    need_bcc()
    need(len(os.sched_getaffinity(0)) >= 2,
         "needs 2 CPUs (one ring each) to have more than one ring to merge")
    d = tmp_path / f"merge-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""\
- rule: Merge test open
  desc: opens in this test's directory
  condition: evt.type = openat and fd.name startswith {d}/
  output: "merge test %proc.pid %fd.name"
  priority: DEBUG
""")
    cap = tmp_path / "cap.jsonl"
    err = tmp_path / "stderr.txt"
    eng = subprocess.Popen(
        [*FALCONET, "record", str(cap), "-r", str(rules), "--no-metrics", "--duration", "120",
         "-o", "outputs.stdout.enabled=false", "-o", "collector.ring_buffer_pages=4096",
         "-o", "collector.workers=1"],
        stdout=subprocess.DEVNULL, stderr=err.open("w"), stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "falconet: watching" in err.read_text() or eng.poll() is not None,
                   90, "the engine to watch")
        assert eng.poll() is None, err.read_text()[-3000:]
        os.kill(eng.pid, signal.SIGSTOP)
        try:
            w = subprocess.run([sys.executable, "-c", WORKLOAD, str(d), str(BUSY), str(QUIET)],
                               capture_output=True, text=True, timeout=120, check=True)
        finally:
            os.kill(eng.pid, signal.SIGCONT)
        pids = {int(p) for p in w.stdout.split()}

        def ours() -> list[dict]:
            out = []
            for line in cap.read_text().splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue                           # the line being written
                if e.get("k") == "evt" and e.get("pid") in pids and e.get("type") == "openat":
                    out.append(e)
            return out
        wait_until(lambda: len(ours()) >= BUSY + QUIET, 60, "every open in the capture")
    finally:
        stop_process(eng, 30)
    opens = ours()
    assert len(opens) == BUSY + QUIET
    ts = [e["ts"] for e in opens]
    late = sum(1 for a, b in zip(ts, ts[1:], strict=False) if b < a)
    assert late == 0, f"{late} opens came after a later one"
