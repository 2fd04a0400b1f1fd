"""The policy engine with a recording action: evaluation order and ``continue``, dry_run, dedup,
rate limits, the circuit breaker (internal alert, re-arm), protected targets (checked against
this host's real /proc: pid 1, kthreadd, the test process itself), failures counted and logged
once, ttl undo, the audit log (0600, no symlinks), ``falconet respond`` list/undo, metrics."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from falconet.alerts import Alert
from falconet.config import load_config
from falconet.fields.core_fields import core_field_defs
from falconet.fields.registry import FieldDef, FieldRegistry, FieldType
from falconet.priorities import Priority
from falconet.state.tables import StateTables
from falconet_response.actions.base import ActionParamError, Outcome, Target
from falconet_response.audit import AuditError, AuditLog, actions_with_state, open_private
from falconet_response.cli import undo_by_id
from falconet_response.engine import BREAKER_RULE, ResponseEngine, Scheduler, Settings
from falconet_response.policy import BreakerSpec, PolicyError, compile_policies
from falconet_response.safety import Protection
from falconet_response.target import resolve_target
from falconet_response.telemetry import ResponseCollector
from prometheus_client import CollectorRegistry, generate_latest


def registry() -> FieldRegistry:
    reg = FieldRegistry()
    reg.register_all(core_field_defs(StateTables(), None, "h", None))
    for name in ("container.id", "container.full_id", "container.type", "k8s.ns.name",
                 "k8s.pod.name", "k8s.pod.uid"):
        reg.register(FieldDef(name, FieldType.STRING, name, lambda _a: (lambda e: None)))
    return reg


REG = registry()


class Recorder:
    """An action that records its runs; ``fail`` makes it return failed, ``boom`` raise."""

    reversible = True

    def __init__(self, name: str = "rec", fail: bool = False, boom: bool = False) -> None:
        self.name, self.fail, self.boom = name, fail, boom
        self.runs: list[Target] = []
        self.undone: list[dict] = []

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if set(params) - {"ttl", "x"}:
            raise ActionParamError(f"unknown parameter '{sorted(params)[0]}'")
        return dict(params)

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if self.boom:
            raise RuntimeError("kaput")
        self.runs.append(target)
        if self.fail:
            return Outcome("failed", "no luck")
        return Outcome("done", f"ran on {target.key}", {"key": target.key})

    def undo(self, data: dict[str, Any]) -> Outcome:
        self.undone.append(data)
        return Outcome("done", "reverted")


def alert(cid: str | None = "c0ffee", pid: int | None = 4242, rule: str = "r",
          prio: Priority = Priority.CRITICAL, **fields: Any) -> Alert:
    f: dict[str, Any] = {"proc.pid": pid, "container.id": cid or "host", **fields}
    return Alert(rule, prio, "syscall", ["t"], "out", f, time.time_ns(), "h")


def engine(tmp_path: Path, policies: list[dict], actions: dict[str, Any],
           protection: Protection | None = None, **kw: Any) -> ResponseEngine:
    pols = compile_policies(policies, REG, actions)
    eng = ResponseEngine(pols, audit=AuditLog(str(tmp_path / "audit.jsonl")),
                         protection=protection or Protection(engine_pid=1_000_000_000), **kw)
    eng.start()
    return eng


def audit(tmp_path: Path) -> list[dict]:
    p = tmp_path / "audit.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


# ------------------------------------------------------------------------------------ policies
def test_policy_errors_are_reported_at_their_yaml_position(tmp_path: Path) -> None:
    p = tmp_path / "falconet.yaml"
    p.write_text("responses:\n"
                 "  - name: a\n"
                 "    match: {priority: '>=Critical', rule: x}\n"
                 "    actions: [{action: nope}, {action: rec, y: 1}]\n"
                 "    dry_run: maybe\n"
                 "    colour: red\n"
                 "  - name: a\n"
                 "    actions: []\n")
    items = load_config(str(p))["responses"]
    with pytest.raises(PolicyError) as e:
        compile_policies(items, REG, {"rec": Recorder()})
    assert e.value.problems == [
        f"{p}:3:37: error: policy 'a': match: unknown key 'rule' (allowed: rules, tags, "
        "priority, condition)",
        f"{p}:4:24: error: policy 'a': unknown action 'nope' (available: rec)",
        f"{p}:4:31: error: policy 'a': action 'rec': unknown parameter 'y'",
        f"{p}:5:14: error: policy 'a': dry_run: expected true or false, got 'maybe'",
        f"{p}:6:5: error: responses: unknown key 'colour' (allowed: name, match, actions, "
        "continue, dry_run, allow_host, rate_limit, dedup_seconds, breaker)",
        f"{p}:7:11: error: responses: policy 'a' is already defined at {p}:2:11",
        f"{p}:8:14: error: policy 'a': expected 'actions:', a non-empty list of {{action: "
        "<name>, <parameter>: <value>...}",
    ]


def test_policies_run_top_to_bottom_and_continue(tmp_path: Path) -> None:
    a, b, c = Recorder("a"), Recorder("b"), Recorder("c")
    eng = engine(tmp_path, [
        {"name": "p1", "match": {"condition": "proc.pid = 1"}, "actions": [{"action": "a"}]},
        {"name": "p2", "match": {"priority": ">=Critical"}, "actions": [{"action": "b"}],
         "continue": True},
        {"name": "p3", "actions": [{"action": "c"}]},
        {"name": "p4", "actions": [{"action": "a"}]},
    ], {"a": a, "b": b, "c": c})
    eng.send(alert())
    assert (len(a.runs), len(b.runs), len(c.runs)) == (0, 1, 1)   # p3 does not continue
    eng.send(alert(prio=Priority.WARNING, cid="other"))
    assert (len(a.runs), len(b.runs), len(c.runs)) == (0, 1, 2)
    assert eng.counts[("p2", "b", "done")] == 1 and eng.counts[("p3", "c", "done")] == 2


def test_dry_run_records_would_have_acted_and_runs_nothing(tmp_path: Path) -> None:
    rec = Recorder()
    eng = engine(tmp_path, [{"name": "shadow", "actions": [{"action": "rec"}],
                             "dry_run": True}], {"rec": rec})
    eng.send(alert())
    assert rec.runs == [] and eng.counts[("shadow", "rec", "dry_run")] == 1
    (r,) = audit(tmp_path)
    assert r["result"] == "dry_run" and r["dry_run"] and r["target"]["container_id"] == "c0ffee"


def test_dedup_per_target_and_rate_limit(tmp_path: Path) -> None:
    rec = Recorder()
    eng = engine(tmp_path, [{"name": "p", "actions": [{"action": "rec"}], "dedup_seconds": 60,
                             "rate_limit": {"max": 2, "per_seconds": 60}}], {"rec": rec})
    for cid in ("a", "a", "b", "c", "d"):
        eng.send(alert(cid=cid))
    assert [t.container_id for t in rec.runs] == ["a", "b"]
    assert eng.counts[("p", "rec", "deduplicated")] == 1
    assert eng.counts[("p", "rec", "rate_limited")] == 2


def test_breaker_disarms_raises_an_internal_alert_and_rearms(tmp_path: Path) -> None:
    rec, raised = Recorder(), []
    eng = engine(tmp_path, [{"name": "p", "actions": [{"action": "rec"}], "dedup_seconds": 0,
                             "breaker": {"max_targets": 2, "window_seconds": 60}}],
                 {"rec": rec}, inject_alert=raised.append)
    for cid in ("a", "b", "a", "c", "d", "e"):
        eng.send(alert(cid=cid))
    assert [t.container_id for t in rec.runs] == ["a", "b", "a"]
    assert eng.disarmed() == ["p"] and eng.counts[("p", "rec", "disarmed")] == 3
    (a,) = raised
    assert a.rule == BREAKER_RULE and a.priority == Priority.CRITICAL and "'p'" in a.output
    eng.send(a)                      # our own alarm names no target: nothing is hit
    assert len(rec.runs) == 3
    assert eng.rearm(by="cli") == ["p"] and eng.disarmed() == []
    eng.send(alert(cid="f"))
    assert rec.runs[-1].container_id == "f"
    kinds = [(r["type"], r.get("state")) for r in audit(tmp_path) if r["type"] == "breaker"]
    assert kinds == [("breaker", "open"), ("breaker", "rearmed")]


def test_protected_targets_are_never_handed_to_actions(tmp_path: Path) -> None:
    rec = Recorder()
    prot = Protection(condition=lambda a: a.output_fields.get("k8s.ns.name") == "kube-system",
                      engine_pid=os.getpid())
    eng = engine(tmp_path, [{"name": "p", "actions": [{"action": "rec"}], "allow_host": True,
                             "dedup_seconds": 0}], {"rec": rec}, protection=prot)
    hosts = engine(tmp_path / "h", [{"name": "h", "actions": [{"action": "rec"}],
                                     "dedup_seconds": 0}], {"rec": rec}, protection=prot)
    child = os.fork()
    if child == 0:           # a child of the "engine" (this test process)
        time.sleep(5)
        os._exit(0)
    try:
        for a in (alert(pid=1), alert(pid=2), alert(pid=os.getpid()), alert(pid=child),
                  alert(**{"k8s.ns.name": "kube-system"})):
            eng.send(a)
        hosts.send(alert(cid=None, pid=4242))
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
    assert rec.runs == []
    why = [r["detail"] for r in audit(tmp_path) if r["result"] == "protected"]
    assert why == ["pid 1", "a kernel thread", "the engine itself", "a child of the engine",
                   "matches the protected condition"]
    assert [r["detail"] for r in audit(tmp_path / "h")] == [
        "host process (the policy does not set allow_host)"]


def test_failures_are_counted_logged_once_and_never_fatal(tmp_path: Path, caplog) -> None:
    bad, boom, good = Recorder("bad", fail=True), Recorder("boom", boom=True), Recorder("good")
    eng = engine(tmp_path, [{"name": "p", "actions": [{"action": "bad"}, {"action": "boom"},
                                                      {"action": "good"}],
                             "dedup_seconds": 0}], {"bad": bad, "boom": boom, "good": good})
    with caplog.at_level(logging.WARNING, logger="falconet.response"):
        for cid in ("a", "b", "c"):
            eng.send(alert(cid=cid))
    assert len(good.runs) == 3
    assert eng.counts[("p", "bad", "failed")] == 3 and eng.counts[("p", "boom", "failed")] == 3
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("action bad failed" in m for m in msgs) == 1
    assert sum("action boom failed" in m and "kaput" in m for m in msgs) == 1


def test_ttl_undoes_by_itself_and_undo_by_id(tmp_path: Path) -> None:
    rec = Recorder()
    eng = engine(tmp_path, [{"name": "p", "actions": [{"action": "rec", "ttl": 0.05}],
                             "dedup_seconds": 0}], {"rec": rec})
    eng.send(alert(cid="a"))
    deadline = time.monotonic() + 5
    while not rec.undone and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.undone == [{"key": "container:a"}]
    acts = actions_with_state(str(tmp_path / "audit.jsonl"))
    assert acts[0]["undone"]["by"] == "ttl"
    code, msg = undo_by_id(str(tmp_path / "audit.jsonl"), acts[0]["id"], {"rec": rec}, "cli")
    assert code == 1 and "already undone" in msg
    eng.scheduler.stop()

    eng2 = engine(tmp_path / "2", [{"name": "p", "actions": [{"action": "rec"}]}], {"rec": rec})
    eng2.send(alert(cid="b"))
    path = str(tmp_path / "2" / "audit.jsonl")
    rid = actions_with_state(path)[0]["id"]
    assert undo_by_id(path, "nope", {"rec": rec}, "cli")[0] == 1
    code, msg = undo_by_id(path, rid, {"rec": rec}, "cli")
    assert code == 0 and "reverted" in msg and rec.undone[-1] == {"key": "container:b"}
    assert actions_with_state(path)[0]["undone"]["by"] == "cli"


def test_audit_log_is_private_and_never_follows_a_symlink(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "d" / "audit.jsonl"))
    log.write({"type": "action", "id": "x"})
    st = os.stat(tmp_path / "d" / "audit.jsonl")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700
    (tmp_path / "victim").write_text("keep\n")
    os.symlink(tmp_path / "victim", tmp_path / "d" / "evil.jsonl")
    with pytest.raises(AuditError):
        open_private(str(tmp_path / "d" / "evil.jsonl"), os.O_WRONLY | os.O_APPEND)
    evil = AuditLog(str(tmp_path / "d" / "evil.jsonl"))
    evil.write({"type": "action"})
    assert evil.write_errors == 1 and (tmp_path / "victim").read_text() == "keep\n"


def test_target_resolution() -> None:
    a = alert(cid="abc", pid=7)
    a.match_fields = {"container.full_id": "abc" * 10, "k8s.pod.uid": "u-1",
                      "container.type": "docker"}
    a.lineage = [{"pid": 7, "start_ts": 123}]
    t = resolve_target(a)
    assert (t.pid, t.start_ts, t.container_id, t.container_runtime, t.key) == (
        7, 123, "abc" * 10, "docker", "pod:u-1")
    h = resolve_target(alert(cid=None, pid=9))
    assert h.container_id is None and h.key == "pid:9:None"


def test_metrics_counter_and_armed_gauge(tmp_path: Path) -> None:
    rec = Recorder()
    eng = engine(tmp_path, [{"name": "p", "actions": [{"action": "rec"}]}], {"rec": rec},
                 settings=Settings(BreakerSpec(1, 60)))
    eng.send(alert(cid="a"))
    eng.send(alert(cid="b"))
    reg = CollectorRegistry()
    reg.register(ResponseCollector(lambda: eng))
    text = generate_latest(reg).decode()
    assert 'falconet_response_actions_total{action="rec",policy="p",result="done"} 1.0' in text
    assert 'falconet_response_actions_total{action="rec",policy="p",result="disarmed"} 1.0' in text
    assert 'falconet_response_policy_armed{policy="p"} 0.0' in text


def test_scheduler_runs_callbacks_in_time_order() -> None:
    s, out = Scheduler(), []
    s.start()
    s.call_later(0.06, lambda: out.append("b"))
    s.call_later(0.01, lambda: out.append("a"))
    deadline = time.monotonic() + 5
    while len(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    assert out == ["a", "b"]


def _falconet(*args: str, cwd: Path) -> Any:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    exe = str(Path(sys.executable).parent / "falconet")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "FALCONET_CONFIG": str(cwd / "none.yaml")})


def test_respond_command_lists_undoes_and_reports_a_missing_engine(tmp_path: Path) -> None:
    """`falconet respond` comes from the plugin through the falconet_commands hook."""
    (tmp_path / "none.yaml").write_text(
        f"plugins: {{response: {{audit_log: {tmp_path / 'a' / 'audit.jsonl'}}}}}\n")
    rec = Recorder()
    eng = engine(tmp_path / "a", [{"name": "p", "actions": [{"action": "rec"}]}], {"rec": rec})
    eng.send(alert(cid="abc"))
    rid = actions_with_state(str(tmp_path / "a" / "audit.jsonl"))[0]["id"]
    r = _falconet("respond", "list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert rid in r.stdout and "container:abc" in r.stdout and f"undo {rid}" in r.stdout
    r = _falconet("respond", "list", "--json", cwd=tmp_path)
    assert json.loads(r.stdout.splitlines()[0])["id"] == rid
    r = _falconet("respond", "undo", rid, cwd=tmp_path)          # 'rec' is not installed
    assert r.returncode == 1 and "action 'rec' is not available" in r.stderr
    r = _falconet("respond", "rearm", cwd=tmp_path)
    assert r.returncode == 1 and "no running engine" in r.stderr and "Traceback" not in r.stderr
    r = _falconet("respond", "list", "-o", "plugins.response.breaker=3", cwd=tmp_path)
    assert r.returncode == 2 and "plugins.response.breaker: expected" in r.stderr
