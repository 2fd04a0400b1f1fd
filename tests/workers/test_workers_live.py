"""A capture recorded from the real kernel (several processes, fork children redirecting an
inherited socket onto stdin/stdout) replays with the same alerts on 1 and on 2 workers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, need_bcc, wait_for

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.slow]

RULES = str(REPO / "rules" / "falconet_rules.yaml")
WORKLOAD = """
import os, socket, sys
port = int(sys.argv[1])
kids = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        try:
            open('/etc/shadow').read()
        except OSError:
            pass
        s = socket.create_connection(('127.0.0.1', port))
        c = os.fork()
        if c == 0:                       # the child redirects the socket it inherited
            os.dup2(s.fileno(), 0)
            os.dup2(s.fileno(), 1)
            os._exit(0)
        os.waitpid(c, 0)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
"""


def _alerts(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        if line.strip():
            d = json.loads(line)
            d.pop("uuid", None)
            out.append(d)
    return out


def test_recorded_multi_process_capture_replays_the_same_on_two_workers(tmp_path: Path) -> None:
    need_bcc()
    exe = str(Path(sys.executable).parent / "falconet")
    cap = str(tmp_path / "live.fcap")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            pass                          # closed at the end
    threading.Thread(target=accept, daemon=True).start()
    rec = subprocess.Popen([exe, "record", cap, "-r", RULES, "--no-metrics", "--json",
                            "--duration", "120"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    errs: list[str] = []
    readers = [threading.Thread(target=lambda: seen.extend(iter(rec.stdout.readline, "")),
                                daemon=True),
               threading.Thread(target=lambda: errs.extend(iter(rec.stderr.readline, "")),
                                daemon=True)]
    for t in readers:
        t.start()

    def trigger() -> bool:
        subprocess.run([sys.executable, "-c", WORKLOAD, str(port)], check=True, timeout=60)
        return sum("Reverse Shell Redirect" in x for x in seen) >= 12

    try:
        assert wait_for(lambda: any("watching" in e for e in errs), timeout=120), errs
        assert wait_for(trigger, timeout=90, step=0.2), "the live run never alerted"
        rec.send_signal(signal.SIGTERM)
        rec.wait(timeout=30)
        for t in readers:
            t.join(10)
    finally:
        listener.close()
        for c in accepted:
            c.close()
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, "".join(errs)
    base = [exe, "replay", cap, "-r", RULES, "--no-progress", "--json"]
    one = subprocess.run([*base, "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    expected = _alerts(one.stdout)
    assert sum(a["rule"] == "Reverse Shell Redirect" for a in expected) >= 12
    for key in ("lineage", "tgid"):
        two = subprocess.run([*base, "--workers", "2", "--partition-key", key],
                             capture_output=True, text=True, timeout=300)
        assert two.returncode == 0, two.stderr
        assert "workers: 2 (0: " in two.stderr
        assert _alerts(two.stdout) == expected, key
