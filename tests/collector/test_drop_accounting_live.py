"""Every event the kernel loses is counted once, and the counts reach /metrics and the summary.

A ring buffer of one page that nobody reads overflows for a controlled workload (chroot calls
on a unique path: an event type hardly anything else on the host makes), so the number of
events lost is known: delivered + dropped must equal what the kernel tried to emit, and, when
nothing else on the host made one in the window, what the workload generated.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from conftest import REPO, free_port, need_bcc

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

#: chroot calls on a path that does not exist: each fails (ENOENT) and is emitted all the same
WORKLOAD = ("import os, sys\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    try:\n"
            "        os.chroot(sys.argv[1])\n"
            "    except OSError:\n"
            "        pass\n")


def _drain(it) -> list:
    """Every record the rings hold now (the loop yields None once they are empty, then again
    after its linger polls)."""
    got, idle = [], 0
    deadline = time.monotonic() + 10
    while idle < 3 and time.monotonic() < deadline:
        e = next(it)
        if e is None:
            idle += 1
        else:
            idle = 0
            got.append(e)
    return got


def test_ring_overflow_delivered_plus_dropped_equals_generated(tmp_path):
    need_bcc()
    from falconet.collector.source import CollectorConfig, EbpfSource  # noqa: PLC0415
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    n = 3000
    path = f"/nonexistent-falconet-drop-{uuid.uuid4().hex}"
    src = EbpfSource(CollectorConfig(ring_buffer_pages=1, bpf_cache=False))
    metrics = EngineMetrics()
    src._metrics = metrics
    src.start(frozenset({"chroot"}))
    it = src._loop()
    try:
        # nobody reads while the workload runs: the one-page rings fill after ~30 records
        p = subprocess.run([sys.executable, "-c", WORKLOAD, path, str(n)], check=True)
        del p
        events = _drain(it)
        src.poll_stats()
        s = src.stats
        ours = [e for e in events if e.args.get("path") == path]
        dropped = s.drops_by_category["dir_file"]
        assert 0 < len(ours) < n and dropped > 0
        # exact: every record the kernel tried to emit was delivered or counted as dropped
        assert s.events == len(events) + dropped
        assert s.drops == dropped and not any(s.lost.values()) and s.no_enter == 0
        if len(ours) == len(events):        # nothing else on the host made a chroot
            assert len(ours) + dropped == n
        else:
            assert len(ours) + dropped >= n
        # ... and the metrics say the same, once
        assert metrics.drops["kernel_dir_file"] == dropped
        assert metrics.kernel_drops == dropped
        assert metrics.kernel_events == s.events
        assert sum(v for k, v in metrics.drops.items() if k.startswith("kernel_")) == dropped
    finally:
        src.close()
        it.close()


RULES = """\
- rule: Drop test chroot
  desc: a chroot of the drop test's unique path
  condition: evt.type = chroot and evt.arg.path = "{path}"
  output: "chroot %evt.arg.path"
  priority: NOTICE
"""


def _metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(lab) + r"\}" if lab else "") + r"\s+(\S+)$"
    m = re.search("^" + pat, text, re.M)
    return float(m.group(1)) if m else 0.0


def test_engine_stopped_drops_show_in_metrics_and_summary(falconet_bin, tmp_path):
    """`falconet run` with one-page rings, stopped (SIGSTOP) while the workload runs: the lost
    chroots are in falconet_drops_total{cause="kernel_dir_file"}, in
    falcosecurity_scap_n_drops_total, and in the summary line, with the same numbers."""
    need_bcc()
    path = f"/nonexistent-falconet-drop-{uuid.uuid4().hex}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(path=path))
    out = tmp_path / "alerts.jsonl"
    port = free_port()
    env = {**os.environ, "FALCONET_BPF_CACHE_DIR": os.environ.get("FALCONET_BPF_CACHE_DIR",
                                                                  str(tmp_path / "bpfcache"))}
    with open(out, "w") as fh:
        eng = subprocess.Popen([falconet_bin, "run", "--json", "--duration", "120",
                                "--rules", str(rules), "--metrics-port", str(port),
                                "-o", "collector.ring_buffer_pages=1",
                                "-o", "collector.workers=1"],
                               stdout=fh, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        # ready: a first chroot of ours came through (the rule matched it)
        deadline = time.monotonic() + 60
        while not out.read_text().strip():
            assert eng.poll() is None, eng.stderr.read() if eng.stderr else ""
            assert time.monotonic() < deadline, "engine not ready within 60 s"
            subprocess.run([sys.executable, "-c", WORKLOAD, path, "1"], check=True)
            time.sleep(0.2)
        eng.send_signal(signal.SIGSTOP)
        try:
            subprocess.run([sys.executable, "-c", WORKLOAD, path, "3000"], check=True)
        finally:
            eng.send_signal(signal.SIGCONT)
        # the drops reach /metrics at the next stats tick (once a second)
        deadline = time.monotonic() + 15
        while _metric(port, "falconet_drops_total", cause="kernel_dir_file") == 0:
            assert time.monotonic() < deadline, "no kernel_dir_file drops on /metrics"
            time.sleep(0.2)
        exported = _metric(port, "falconet_drops_total", cause="kernel_dir_file")
        assert _metric(port, "falcosecurity_scap_n_drops_total") >= exported > 0
    finally:
        eng.send_signal(signal.SIGINT)
        try:
            _o, err = eng.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            eng.kill()
            _o, err = eng.communicate()
    assert eng.returncode == 0, err[-2000:]
    line = [x for x in err.splitlines() if x.startswith("falconet: ")][-1]
    m = re.search(r"kernel_dir_file: (\d+)", line)
    assert m, line
    assert int(m.group(1)) >= exported
    alerts = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    ours = sum(1 for a in alerts if a["rule"] == "Drop test chroot")
    # every chroot of ours was alerted on or lost (other dir_file events may have been lost too)
    assert ours + int(m.group(1)) >= 3000
    assert ours < 3000 + 60 * 5
