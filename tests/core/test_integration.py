"""The engine end to end through the `falconet` command: real rule engine, real plugins, real
kernel (record/run), real HTTP metrics endpoint; signals to a replay subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, need_bcc, need_binary, wait_for
from core_capgen import RULES, write_capture

FALCONET = [sys.executable, "-m", "falconet"]


def run(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FALCONET, *args], capture_output=True, text=True, timeout=timeout,
                          **kw)


@pytest.fixture
def rules(tmp_path: Path) -> str:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES)
    return str(p)




def test_replay_json_alerts_with_real_rules(tmp_path: Path, rules: str) -> None:
    cap = str(tmp_path / "c.fcap.gz")
    hits = write_capture(cap, 5000, every=1000)
    r = run("replay", cap, "-r", rules, "--json", "-o", "hostname=testbox")
    assert r.returncode == 0, r.stderr
    alerts = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(alerts) == hits == 5
    a = alerts[0]
    assert a["rule"] == "Core test unlink" and a["priority"] == "Error"
    assert a["hostname"] == "testbox" and a["source"] == "syscall"
    assert a["output_fields"]["evt.arg.name"] == "/tmp/secret-999"
    assert a["output_fields"]["proc.name"] == "cat"
    assert a["time"].endswith("Z") and len(a["time"]) == len("2025-02-10T09:15:40.698757000Z")
    assert "5002 events, 5 alerts (Error: 5), 0 drops" in r.stderr


def test_replay_reports_malformed_lines_and_goes_on(tmp_path: Path, rules: str) -> None:
    cap = str(tmp_path / "bad.fcap")
    write_capture(cap, 2000, every=1000, bad_lines=["{oops", '{"k": "evt", "src": "syscall"}'])
    r = run("replay", cap, "-r", rules)
    assert r.returncode == 1, r.stderr      # everything else replayed, but the file is damaged
    assert r.stdout.count("Secret deleted") == 2
    assert f"{cap}:2004: malformed capture line skipped: invalid JSON" in r.stderr
    assert f"{cap}:2005: malformed capture line skipped: missing key 'type'" in r.stderr
    assert "capture_malformed: 2" in r.stderr
    assert "2 unreadable line(s) skipped: exit status 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_replay_of_a_truncated_gzip_capture_replays_what_is_left_and_exits_1(
        tmp_path: Path, rules: str) -> None:
    cap = tmp_path / "cut.fcap.gz"
    write_capture(str(cap), 20000, every=1000)
    data = cap.read_bytes()
    cap.write_bytes(data[: len(data) // 2])      # a recording killed mid-write
    r = run("replay", str(cap), "-r", rules)
    assert r.returncode == 1, r.stderr
    assert 0 < r.stdout.count("Secret deleted") < 20
    assert "malformed capture line skipped: truncated capture" in r.stderr
    assert "unreadable line(s) skipped: exit status 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_replay_of_a_non_capture_is_a_clear_error(tmp_path: Path, rules: str) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    r = run("replay", str(p), "-r", rules)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(f"falconet: error: {p}:1: not a falconet capture: expected "
                                     'a header line {"falconet_capture": 2, ...}')


def test_bad_rules_file_is_reported_with_location(tmp_path: Path) -> None:
    cap = str(tmp_path / "c.fcap")
    write_capture(cap, 10)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  desc: d\n  condition: evt.type = \n  output: o\n  priority: INFO\n")
    r = run("replay", cap, "-r", str(bad))
    assert r.returncode == 1
    assert f"{bad}:3:" in r.stderr and "error" in r.stderr
    assert "Traceback" not in r.stderr


def test_sigterm_stops_a_replay_cleanly(tmp_path: Path, rules: str) -> None:
    cap = str(tmp_path / "big.fcap")
    write_capture(cap, 400_000, every=50)
    out = tmp_path / "alerts.jsonl"
    p = subprocess.Popen([*FALCONET, "replay", cap, "-r", rules, "--no-progress",
                          "-o", "outputs.stdout.enabled=false", "-o", "outputs.file.enabled=true",
                          "-o", f"outputs.file.path={out}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until alerts are flowing, then stop it mid-file
        assert wait_for(lambda: out.exists() and out.stat().st_size > 0, 15), "no alerts written"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(x)["rule"] == "Core test unlink" for x in lines)
    # stopped early, and every alert it reported was written (drained and flushed)
    summary = [x for x in err.splitlines() if " events, " in x][0]
    n_events = int(summary.split("falconet: ")[1].split(" events")[0])
    n_alerts = int(summary.split(" events, ")[1].split(" alerts")[0])
    assert n_events < 400_002
    assert len(lines) == n_alerts


def test_metrics_served_during_replay_linger(tmp_path: Path, rules: str) -> None:
    cap = str(tmp_path / "c.fcap")
    write_capture(cap, 3000, every=1000)
    port = free_port()
    p = subprocess.Popen([*FALCONET, "replay", cap, "-r", rules, "--metrics-port", str(port),
                          "--linger", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                body = r.read().decode()
        except OSError:
            return None
        # a scrape is not one atomic snapshot (each family is copied in turn while a fast replay
        # runs), so wait until one shows both the last events and the alerts they raised
        done = ('falconet_events_total{source="syscall",type="read"} 2997' in body
                and 'rule_name="Core test unlink"' in body)
        return body if done else None

    try:
        body = wait_for(scrape, 15)
        assert body, "metrics never showed the replayed events and their alerts"
        assert "falcosecurity_falco_rules_matches_total" in body
        p.send_signal(signal.SIGTERM)     # ends the linger early
        p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0


def test_plugin_config_error_disables_plugin_unless_required(tmp_path: Path, rules: str) -> None:
    cap = str(tmp_path / "c.fcap")
    write_capture(cap, 1000, every=1000)
    r = run("replay", cap, "-r", rules, "-o", "plugins.example.messages=nope")
    assert r.returncode == 0, r.stderr
    # one format for every plugin section: where it was written, the key, what was expected
    assert ("plugin 'example' disabled: configure failed: PluginConfigError: -o "
            "plugins.example.messages=nope: error: plugins.example.messages: expected a non-empty "
            "list of strings, got 'nope'") in r.stderr
    assert r.stdout.count("Secret deleted") == 1
    r = run("replay", cap, "-r", rules, "-o", "plugins.example.messages=nope",
            "-o", "plugins.example.required=true")
    assert r.returncode == 1
    assert "falconet: error: required plugin 'example' failed (configure)" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_plugins_list_and_fields(tmp_path: Path) -> None:
    r = run("plugins", "list", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    by = {p["name"]: p for p in d["plugins"]}
    for b in ("core-state", "ebpf", "replay", "outputs"):
        assert by[b]["builtin"], b
    kinds = {k for p in d["plugins"] for k in p["kinds"]}
    assert {"input", "enrichment", "output"} <= kinds
    r = run("fields", "--json")
    names = {f["name"]: f for f in json.loads(r.stdout)}
    assert names["proc.name"]["type"] == "string"
    assert names["example.message"]["sources"] == ["example"]
    r = run("fields", "--source", "example")
    assert "example.times_seen" in r.stdout and "proc.name" not in r.stdout


def test_unavailable_live_source_says_why() -> None:
    r = run("run", "--no-metrics", "--duration", "1", "-o", "collector.ring_buffer_pages=lots")
    assert r.returncode == 1
    assert "plugin 'ebpf' disabled: configure failed" in r.stderr
    assert "unknown event source 'ebpf'" in r.stderr
    assert "Traceback" not in r.stderr


def test_live_record_then_replay_gives_the_same_alerts(tmp_path: Path) -> None:
    need_bcc()
    rules = tmp_path / "shadow.yaml"
    rules.write_text("""\
- rule: Core test shadow read
  desc: test
  condition: evt.type in (open, openat, openat2) and fd.name = /etc/shadow and proc.name = cat
  output: Shadow read (file=%fd.name proc=%proc.name parent=%proc.pname cmd=%proc.cmdline)
  priority: WARNING
  tags: [test]
""")
    cap = str(tmp_path / "live.fcap.gz")
    rec = subprocess.Popen([*FALCONET, "record", cap, "-r", str(rules), "--no-metrics",
                            "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(rec.stdout.readline, "")),
                              daemon=True)
    reader.start()

    def trigger() -> bool:
        subprocess.run(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, check=True)
        return any("Shadow read" in x for x in seen)

    try:
        assert wait_for(trigger, timeout=30, step=0.2), "the live run never alerted"
        rec.send_signal(signal.SIGTERM)
        err = rec.stderr.read()
        rec.wait(timeout=30)
        reader.join(10)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, err
    live = [x.rstrip("\n") for x in seen if x.strip()]
    assert live and all("proc=cat" in x for x in live)
    r = run("replay", cap, "-r", str(rules))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == live


def test_ebpf_source_that_cannot_start_says_why_without_traceback() -> None:
    need_bcc()
    setpriv = need_binary("setpriv")
    drop = "-sys_admin,-bpf,-perfmon"
    r = subprocess.run([setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", "--", *FALCONET,
                        "run", "--no-metrics", "--duration", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "falconet: error: cannot start event source 'ebpf': " in r.stderr
    assert "Traceback" not in r.stderr


def test_plugin_source_record_then_replay(tmp_path: Path) -> None:
    """A plugin's live source recorded with `record --source`, replayed through the same rule."""
    cap = str(tmp_path / "ex.fcap")
    rules = tmp_path / "ex.yaml"
    rules.write_text("""\
- rule: Example URL
  desc: url in an example message
  condition: example.message contains "http://"
  output: URL (msg=%example.message seq=%example.seq)
  priority: NOTICE
  source: example
""")
    ex = ["-o", "plugins.example.interval=0", "-o", "plugins.example.count=4",
          "-o", 'plugins.example.messages=[hi, "get http://a"]']
    live = run("record", cap, "--source", "example", "--no-metrics", "-r", str(rules), *ex)
    assert live.returncode == 0, live.stderr
    assert "4 events recorded" in live.stderr
    replay = run("replay", cap, "-r", str(rules))
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == live.stdout
    assert replay.stdout.count("URL (msg=get http://a") == 2
