"""Synthesis end to end on the real kernel, runtimes and engine (root, bcc, runc/docker).

The acceptance sweep on a representative subset of suites/default.yaml (host, runc and docker
contexts; files, processes, syscalls): each action recorded live, a rule synthesised against
the live recording of the benign workload (recorded once per session), then a fresh live engine
must raise the rule on the action performed again in fresh containers, and no synthesised rule
on a fresh run of the benign workload. The full suite runs as ``bench/bench_authoring.py``
(several minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from falconet.authoring.sweep import sweep

from tests.conftest import REPO, need_bcc

SUBSET = ["read_shadow host", "ptrace_attach host", "memfd_exec host",
          "symlink_sensitive_file runc", "shell_history_tamper runc", "write_below_bin docker"]


def test_synthesized_rules_fire_live_and_stay_quiet_on_the_benign_workload(
        tmp_path: Path, benign_recording: str) -> None:
    need_bcc()
    rep = sweep(str(REPO / "suites" / "default.yaml"), str(tmp_path), benign=benign_recording,
                only=SUBSET)
    cases = {c.key: c for c in rep.positive}
    assert set(cases) == set(SUBSET)
    bad = {k: (c.status, c.reason, c.rule and c.rule["condition"]) for k, c in cases.items()
           if c.status != "ok"}
    assert not bad, bad
    for c in cases.values():
        assert c.live_fired and c.benign_alerts == 0
        assert c.synth_seconds < 5, (c.key, c.synth_seconds)
    # what the report shows: complete rules that load
    rules = yaml.safe_load(rep.rules_yaml())
    assert all({"rule", "desc", "condition", "output", "priority", "tags"} <= set(r) for r in rules)


def test_synthesize_simulate_redis_lua_injection(tmp_path: Path, benign_recording: str) -> None:
    """The docs/authoring.md worked example, as the command line runs it."""
    need_bcc()
    out = tmp_path / "redis.yaml"
    p = subprocess.run([sys.executable, "-m", "falconet", "rules", "synthesize", "--simulate",
                        "redis_lua_injection", "--negative", benign_recording, "--name",
                        "Redis Lua Script Injection", "--write", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PROVEN: Redis Lua Script Injection" in p.stdout
    rule = yaml.safe_load(out.read_text())[0]
    assert rule["rule"] == "Redis Lua Script Injection" and rule["priority"] == "WARNING"
    assert "falconet_synthesized" in rule["tags"]
    assert out.stat().st_mode & 0o777 == 0o600
    # the written rule loads with the default rules
    v = subprocess.run([sys.executable, "-m", "falconet", "rules", "validate",
                        str(REPO / "rules"), str(out)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
