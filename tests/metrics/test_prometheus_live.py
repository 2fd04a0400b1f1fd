"""A real Prometheus server scrapes Falconet's /metrics while the engine runs, and its HTTP API
returns the Falco-compatible and Falconet series with the expected labels and values."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from conftest import need_binary
from falconet.alerts import Alert
from falconet.api import EngineContext
from falconet.events import Event
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.pipeline import Pipeline
from falconet.priorities import Priority
from falconet.prometheus import MetricsServer
from prom_server import Prometheus, free_port

pytestmark = pytest.mark.prometheus

T0 = 1_764_000_000_000_000_000
RULE = "Read shadow"
TAGS = ["T1003.008", "filesystem", "mitre_credential_access"]


class ShadowRule:
    """Stand-in ruleset for the in-process run: openat of /etc/shadow is Critical."""

    def match(self, evt: Event) -> list[Alert]:
        if evt.type != "openat" or evt.args.get("name") != "/etc/shadow":
            return []
        return [Alert(RULE, Priority.CRITICAL, "syscall", TAGS, "shadow read", {}, evt.ts, "h")]

    def event_types(self, source):
        return None


def value(result) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_prometheus_scrapes_running_pipeline(tmp_path):
    prom_bin = need_binary("prometheus")
    metrics = EngineMetrics()
    ctx = EngineContext(hostname="node-live", fields=FieldRegistry(), metrics=metrics)
    pipeline = Pipeline(ShadowRule(), metrics=metrics)
    srv = MetricsServer(ctx, metrics, None, port=0)
    srv.start()
    prom = Prometheus(prom_bin, tmp_path, [f"127.0.0.1:{srv.port}"])
    stop = threading.Event()

    def events():
        i = 0
        while not stop.is_set():          # the engine keeps running while Prometheus scrapes
            i += 1
            name = "/etc/shadow" if i % 10 == 0 else "/tmp/x"
            yield Event("syscall", "openat", T0 + i, 1, 1, {"name": name})
            if i % 1000 == 0:
                time.sleep(0.01)
            if i == 20000:                # then the counts stay put so they can be compared
                while not stop.is_set():
                    yield None
                    time.sleep(0.01)

    runner = threading.Thread(target=pipeline.run, args=(events(),), daemon=True)
    runner.start()
    try:
        prom.wait_ready()
        r = prom.wait_query(
            f'falcosecurity_falco_rules_matches_total{{rule_name="{RULE}"}}',
            lambda res: res and float(res[0]["value"][1]) == 2000)
        assert r[0]["metric"] == {
            "__name__": "falcosecurity_falco_rules_matches_total", "job": "falconet",
            "instance": f"127.0.0.1:{srv.port}", "rule_name": RULE, "priority": "2",
            "source": "syscall", "tag_T1003_008": "true", "tag_filesystem": "true",
            "tag_mitre_credential_access": "true"}
        assert value(prom.query(f'falconet_alerts_total{{rule="{RULE}",priority="Critical",'
                                f'source="syscall"}}')) == 2000
        assert value(prom.query('falconet_events_total{source="syscall",type="openat"}')) == 20000
        assert value(prom.query('falcosecurity_evt_hostname_info{hostname="node-live"}')) == 1
        assert value(prom.query("falcosecurity_falco_version_info")) == 1
        assert value(prom.query('up{job="falconet"}')) == 1
        assert value(prom.query("falconet_rule_eval_seconds_count")) > 0
        assert value(prom.query("falcosecurity_falco_memory_rss_bytes")) > 1e6
    finally:
        stop.set()
        runner.join(5)
        prom.stop()
        srv.stop()


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
    engine = subprocess.Popen(
        [falconet_bin, "replay", str(cap), "-r", str(rules), "--metrics-port", str(port),
         "--linger", "60", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    prom = Prometheus(prom_bin, tmp_path, [f"127.0.0.1:{port}"])
    try:
        prom.wait_ready()
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
        engine.terminate()
        try:
            engine.wait(10)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()
