"""The simulator's CLI and its handling of missing contexts (no root needed)."""

from __future__ import annotations

import json
import subprocess

import pytest
from falconet.simulate.actions import ACTIONS
from falconet.simulate.contexts import ContextPool
from falconet.simulate.runner import run_action


def test_unavailable_context_is_skipped_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with ContextPool() as pool:
        r = run_action(pool, "shell_in_container", "docker")
    assert r.status == "skipped" and "docker is not installed" in r.reason


def test_simulate_cli_list_and_json(falconet_bin: str) -> None:
    r = subprocess.run([falconet_bin, "simulate", "--list", "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    listed = {a["action"]: a for a in json.loads(r.stdout)}
    assert set(listed) == set(ACTIONS)
    assert listed["reverse_shell"]["rule"] == "Reverse Shell Redirect"
    r = subprocess.run([falconet_bin, "simulate", "no_such_action"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "unknown action" in r.stderr and "Traceback" not in r.stderr
