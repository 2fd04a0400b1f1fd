"""A real Prometheus server scrapes Falconet's /metrics while the engine runs, and its HTTP API
returns the Falco-compatible and Falconet series with the expected labels and values."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import free_port, need_bcc, need_binary, stop_process
from prometheus_server import Prometheus

pytestmark = pytest.mark.prometheus

T0 = 1_764_000_000_000_000_000
RULE = "Read shadow"


def value(result) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


CAPTURE_RULES = """\
- rule: Read shadow
  desc: a process read /etc/shadow
  condition: evt.type=openat and fd.name=/etc/shadow
  output: "shadow read (proc=%proc.name pid=%proc.pid file=%fd.name)"
  priority: CRITICAL
  tags: [filesystem, mitre_credential_access, T1003.008]
"""


def write_capture(path, n_reads: int) -> None:
    lines = [{"falconet_capture": 1, "host": "caphost", "kernel": "6.18.0", "start_ns": T0,
              "engine_version": "0.63.0"}]

    def ev(t, typ, tid, args, res=0):
        lines.append({"k": "evt", "src": "syscall", "type": typ, "ts": T0 + t, "tid": tid,
                      "pid": tid, "args": args, "res": res})

    ev(1, "procfork", 200, {"child_tid": 201, "child_pid": 201, "parent_tid": 200, "parent_pid": 200})
    ev(2, "execve", 201, {"filename": "/usr/bin/cat", "argv": ["cat", "/etc/shadow"], "cwd": "/root",
                          "exepath": "/usr/bin/cat", "uid": 0, "gid": 0, "comm": "cat"})
    for i in range(n_reads):
        ev(10 + i, "openat", 201, {"dirfd": -100, "name": "/etc/shadow", "flags": 0, "mode": 0},
           res=3)
        ev(10 + i, "openat", 201, {"dirfd": -100, "name": "/tmp/other", "flags": 0, "mode": 0},
           res=4)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_prometheus_scrapes_falconet_replay(tmp_path, falconet_bin):
    """``falconet replay --metrics-port --linger``: the real engine, scraped by real Prometheus."""
    prom_bin = need_binary("prometheus")
    cap, rules = tmp_path / "cap.fcap", tmp_path / "rules.yaml"
    write_capture(cap, 25)
    rules.write_text(CAPTURE_RULES)
    port = free_port()
    prom = Prometheus(prom_bin, tmp_path, [f"127.0.0.1:{port}"], scrape_interval="1s")
    engine = subprocess.Popen(
        [falconet_bin, "replay", str(cap), "-r", str(rules), "--metrics-port", str(port),
         "--linger", "60", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        r = prom.wait_query(f'falcosecurity_falco_rules_matches_total{{rule_name="{RULE}"}}',
                            lambda res: bool(res) or engine.poll() is not None)
        assert engine.poll() is None, engine.stderr.read().decode()
        assert float(r[0]["value"][1]) == 25
        m = r[0]["metric"]
        assert (m["priority"], m["source"], m["tag_T1003_008"], m["tag_mitre_credential_access"]) == (
            "2", "syscall", "true", "true")
        assert value(prom.query(f'falconet_alerts_total{{rule="{RULE}",priority="Critical"}}')) == 25
        assert value(prom.query('falconet_events_total{source="syscall",type="openat"}')) == 50
        assert value(prom.query('falcosecurity_evt_hostname_info')) == 1
        assert value(prom.query('falconet_rules_loaded{source="syscall"}')) >= 1
    finally:
        prom.stop()
        stop_process(engine, 10)


LIVE_RULES = """\
- rule: Live marker opened
  desc: a process opened the test's marker file
  condition: evt.type in (open, openat, openat2) and fd.name startswith {prefix}
  output: "marker opened (proc=%proc.name pid=%proc.pid file=%fd.name)"
  priority: WARNING
  tags: [filesystem, mitre_discovery, T1083]
"""


@pytest.mark.root
@pytest.mark.ebpf
def test_prometheus_scrapes_live_engine(tmp_path, falconet_bin):
    """``falconet run`` (eBPF): Prometheus scrapes it while it runs; a process opens a marker file
    three times and the match counters say so."""
    need_bcc()
    prom_bin = need_binary("prometheus")
    marker = tmp_path / "marker-live"
    marker.write_text("x")
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE_RULES.format(prefix=str(tmp_path / "marker-")))
    port = free_port()
    prom = Prometheus(prom_bin, tmp_path, [f"127.0.0.1:{port}"], scrape_interval="1s")
    engine = subprocess.Popen([falconet_bin, "run", "-r", str(rules), "--metrics-port", str(port),
                               "--duration", "90"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        prom.wait_query("falcosecurity_scap_n_evts_total", lambda r: bool(r) and float(
            r[0]["value"][1]) > 0 or engine.poll() is not None, timeout=60)
        assert engine.poll() is None, engine.stderr.read().decode()
        for _ in range(3):
            with open(marker) as f:
                f.read()
        r = prom.wait_query('falcosecurity_falco_rules_matches_total{rule_name="Live marker opened"}',
                            lambda res: bool(res) and float(res[0]["value"][1]) >= 3)
        assert float(r[0]["value"][1]) == 3
        labels = r[0]["metric"]
        assert (labels["priority"], labels["source"], labels["tag_T1083"],
                labels["tag_mitre_discovery"]) == ("4", "syscall", "true", "true")
        assert value(prom.query('falconet_alerts_total{rule="Live marker opened",'
                                'priority="Warning",source="syscall"}')) == 3
        assert value(prom.query('sum(falconet_events_total{source="syscall"})')) > 0
        assert value(prom.query('falconet_state_table_entries{table="threads"}')) > 10
        assert value(prom.query('falconet_rules_loaded{source="syscall"}')) >= 1
        assert value(prom.query('up{job="falconet"}')) == 1
    finally:
        prom.stop()
        stop_process(engine, 20)
