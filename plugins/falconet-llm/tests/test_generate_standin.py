"""`falconet rules generate` end to end with the real `openai` client against a STAND-IN chat
completions server with scripted answers (tests/standin_server.py). No real model runs in CI:
these tests prove the loop (prompt contents, feedback of every validation failure, bounded
rounds, the final proof), not a model's skill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from standin_server import StandInChatServer, free_port, process_capture, unlinks

BROKEN = """Here is the rule:
```yaml
- rule: Secret file deleted
  desc: a secret was deleted
  condition: spawned_proc and evt.type = unlinkat and proc.nam = cat
  output: "deleted %evt.arg.name (process=%proc.name)"
  priority: WARNING
```
"""
FIXED = """```yaml
- rule: Secret file deleted
  desc: a secret below /tmp/secret was deleted by cat
  condition: evt.type = unlinkat and evt.arg.name startswith /tmp/secret and proc.name = cat
  output: "deleted %evt.arg.name (process=%proc.name cmdline=%proc.cmdline)"
  priority: WARNING
  tags: [filesystem]
```
"""


@pytest.fixture
def evidence(tmp_path: Path) -> tuple[str, str]:
    pos = process_capture(str(tmp_path / "pos.fcap"), "cat", unlinks("/tmp/secret-", 3))
    neg = process_capture(str(tmp_path / "neg.fcap"), "rm", unlinks("/tmp/secret-old-", 5),
                          pid=200)
    return pos, neg


def _generate(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run([sys.executable, "-m", "falconet", "rules", "generate",
                           "--prompt", "cat deleting secrets below /tmp/secret",
                           "-o", f"plugins.llm.base_url={url}", "-o", "plugins.llm.model=standin",
                           *extra], capture_output=True, text=True, timeout=180, env=env)


def test_errors_are_fed_back_until_the_rule_is_proven(evidence: tuple[str, str]) -> None:
    with StandInChatServer([BROKEN, FIXED], free_port()) as srv:
        p = _generate(srv.url, "--positive", evidence[0], "--negative", evidence[1])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PROVEN: Secret file deleted" in p.stdout
    assert "round 1: unknown_field" in p.stdout and "round 2: proven" in p.stdout
    assert len(srv.requests) == 2
    first = srv.requests[0]["body"]
    assert first["model"] == "standin"
    system = first["messages"][0]["content"]
    # the model is told the fields (with types), the macros and lists in scope, the evidence
    assert "proc.name (string)" in system and "falconet_spawned_process" in system
    assert "falconet_shell_binaries" in system
    assert "unlinkat" in first["messages"][1]["content"]
    feedback = srv.requests[1]["body"]["messages"][-1]["content"]
    assert "Undefined macro 'spawned_proc'" in feedback
    assert "unknown field 'proc.nam'" in feedback
    assert ":3:14:" in feedback          # the load error's file:line:col
    assert srv.requests[1]["body"]["messages"][-2]["role"] == "assistant"


def test_rounds_are_bounded(evidence: tuple[str, str]) -> None:
    with StandInChatServer([BROKEN], free_port()) as srv:
        p = _generate(srv.url, "--positive", evidence[0], "--rounds", "2")
    assert len(srv.requests) == 2
    assert p.returncode == 4, p.stdout + p.stderr      # unknown_field: the last failure


def test_without_evidence_the_rule_is_validated_and_said_unproven() -> None:
    with StandInChatServer([FIXED], free_port()) as srv:
        p = _generate(srv.url)
    assert p.returncode == 9, p.stdout + p.stderr
    assert "UNPROVEN" in p.stdout and len(srv.requests) == 1


def test_an_unreachable_server_is_one_clear_error() -> None:
    p = _generate(f"http://127.0.0.1:{free_port()}/v1")
    assert p.returncode == 1
    assert "backend 'openai'" in p.stderr and "Traceback" not in p.stderr
