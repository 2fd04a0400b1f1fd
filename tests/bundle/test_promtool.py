"""Prometheus alerting rules and configs checked by the real tools: promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bundle_support import PROM_RULES, PROM_RULES_TEST, REPO
from conftest import need_binary


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_check_rules() -> None:
    promtool = need_binary("promtool")
    r = run([promtool, "check", "rules", str(PROM_RULES)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 11 rules found" in r.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = need_binary("promtool")
    r = run([promtool, "test", "rules", PROM_RULES_TEST.name], cwd=PROM_RULES_TEST.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """A wrong threshold must make the unit tests fail: they test behaviour, not just syntax."""
    promtool = need_binary("promtool")
    shutil.copy(PROM_RULES_TEST, tmp_path / PROM_RULES_TEST.name)
    broken = PROM_RULES.read_text().replace("drop_ratio:rate5m > 0.01", "drop_ratio:rate5m > 0.5")
    assert broken != PROM_RULES.read_text()
    (tmp_path / PROM_RULES.name).write_text(broken)
    r = run([promtool, "test", "rules", PROM_RULES_TEST.name], cwd=tmp_path)
    assert r.returncode != 0 and "FalconetEventDropRateHigh" in r.stdout + r.stderr


def test_promtool_check_compose_prometheus_config() -> None:
    promtool = need_binary("promtool")
    r = run([promtool, "check", "config", "--syntax-only", str(REPO / "prometheus" / "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


def test_amtool_check_alertmanager_config() -> None:
    amtool = need_binary("amtool")
    r = run([amtool, "check-config", str(REPO / "prometheus" / "alertmanager.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
