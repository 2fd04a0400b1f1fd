"""`falconet run` with the eBPF source and Falco's stable rules sees a real `cat /etc/shadow`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FALCO_RULES, REPO, free_port, need, need_bcc, need_binary

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.slow]


def _kernel_events(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
        m = re.search(r"^falcosecurity_scap_n_evts_total\s+(\S+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


@contextlib.contextmanager
def _live_engine(falconet_bin: str, out: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``falconet run --json`` writing alerts to ``out``; yields once the kernel side delivers
    events (seen on /metrics), stops it with SIGINT and checks the clean exit afterwards."""
    port = free_port()
    with open(out, "w") as fh:
        eng = subprocess.Popen([falconet_bin, "run", "--json", "--duration", "90",
                                "--metrics-port", str(port), *args],
                               stdout=fh, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:
            assert eng.poll() is None, eng.stderr.read()
            try:
                ready = _kernel_events(port) > 0
            except OSError:
                pass
            time.sleep(0.2)
        assert ready, "engine did not start within 60 s"
        yield eng
    finally:
        eng.send_signal(signal.SIGINT)
        try:
            _out, err = eng.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            eng.kill()
            _out, err = eng.communicate()
    assert eng.returncode == 0, err[-2000:]


def test_run_alerts_on_reading_etc_shadow(falconet_bin, tmp_path):
    need_bcc()
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    out = tmp_path / "alerts.jsonl"
    with _live_engine(falconet_bin, out, "--rules", str(FALCO_RULES)):
        me = Path("/proc/self/comm").read_text().strip()
        alert = None
        deadline = time.monotonic() + 20
        while alert is None and time.monotonic() < deadline:
            subprocess.run(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, check=True)
            time.sleep(0.3)
            for line in out.read_text().splitlines():
                a = json.loads(line)
                if a["rule"] == "Read sensitive file untrusted":
                    alert = a
                    break
        assert alert is not None, out.read_text()[-2000:]
        f = alert["output_fields"]
        assert f["proc.name"] == "cat" and f["fd.name"] == "/etc/shadow"
        assert f["proc.pname"] == me
        assert f["proc.cmdline"] == "cat /etc/shadow"
        assert f["user.name"] == "root" and alert["priority"] == "Warning"


def test_run_without_root_says_what_is_missing(falconet_bin):
    """As an unprivileged user: a one-line reason and a non-zero exit, no traceback."""
    setpriv = need_binary("setpriv")
    need(os.geteuid() == 0, "needs root to switch to an unprivileged user")
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", falconet_bin,
                        "run", "--rules", str(FALCO_RULES), "--duration", "1", "--no-metrics"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode != 0
    assert "cannot start event source 'ebpf': the eBPF collector needs root" in r.stderr
    assert "Traceback" not in r.stderr


def test_engine_start_does_not_report_its_own_bpf_loads(falconet_bin, tmp_path):
    """The loader child's BPF_PROG_LOAD calls happen before the syscall dispatcher is attached,
    so starting the engine raises no "BPF Program Loaded by Unexpected Process" alert (the rule
    itself is exercised by the detection suite)."""
    need_bcc()
    out = tmp_path / "alerts.jsonl"
    with _live_engine(falconet_bin, out):      # the default rules
        pass
    rules = [json.loads(line)["rule"] for line in out.read_text().splitlines()]
    assert "BPF Program Loaded by Unexpected Process" not in rules, rules
