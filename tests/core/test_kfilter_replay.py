"""The soundness replay: a capture replayed with the kernel filter applied in userspace
(`falconet replay --kernel-filter`: the same decision and fd tracking as the kernel) raises
exactly the alerts of the plain replay, on Falco's stable rules and the default rules, and
counts what it filtered (summary and metrics)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import FALCO_RULES, REPO, need
from kfilter_capgen import write_capture

BASE = ["-o", "plugins.learning.enabled=false", "-o", "plugins.otel.enabled=false"]


def replay(cap: str, rules: list[str], *extra: str) -> tuple[list[dict], str]:
    cmd = [sys.executable, "-m", "falconet", "replay", cap, "--json", "--no-progress", *BASE]
    for r in rules:
        cmd += ["-r", r]
    p = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    alerts = []
    for line in p.stdout.splitlines():
        if line.strip():
            a = json.loads(line)
            a.pop("uuid", None)
            alerts.append(a)
    return alerts, p.stderr


def filtered(stderr: str) -> int:
    m = re.search(r", (\d+) filtered in the kernel \(", stderr)
    return int(m.group(1)) if m else 0


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> str:
    return write_capture(str(tmp_path_factory.mktemp("kf") / "kf.fcap.gz"))


def rule_sets(tmp: str) -> dict[str, list[str]]:
    off = f"{tmp}/setuid-off.yaml"
    with open(off, "w") as f:
        f.write("- rule: Setuid or Setgid Bit Set\n  enabled: false\n  override:\n    enabled: replace\n")
    named = f"{tmp}/named.yaml"
    with open(named, "w") as f:         # proc.name terms: the exec-time names of the capture
        f.write(NAMED_RULES)
    return {"stable": [str(FALCO_RULES)], "default": [str(REPO / "rules")],
            "default-setuid-off": [str(REPO / "rules"), off], "named": [named]}


NAMED_RULES = """\
- rule: Pager or cat reads below etc
  desc: d
  condition: >
    evt.type in (open, openat, openat2, creat) and evt.is_open_read = true and
    fd.name startswith /etc/ and proc.name in (cat, less)
  output: "%proc.name read %fd.name"
  priority: warning
- rule: Python writes
  desc: d
  condition: evt.type in (open, openat, openat2, creat) and evt.is_open_write = true and proc.name = python3
  output: "%proc.name wrote %fd.name"
  priority: warning
"""


@pytest.mark.parametrize("which,expect_filtered", [("stable", True), ("default", True),
                                                   ("default-setuid-off", True), ("named", True)])
def test_same_alerts_with_the_kernel_filter(capture: str, tmp_path, which: str,
                                            expect_filtered: bool) -> None:
    if which == "stable":
        need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    rules = rule_sets(str(tmp_path))[which]
    plain, err_plain = replay(capture, rules)
    kf, err_kf = replay(capture, rules, "--kernel-filter")
    assert plain, "the capture raises alerts"
    assert kf == plain
    assert filtered(err_plain) == 0
    n = filtered(err_kf)
    assert (n > 0) is expect_filtered, err_kf
    if which == "stable":
        # every stable rule the capture aims at fired
        rules_hit = {a["rule"] for a in plain}
        assert {"Read sensitive file untrusted", "Clear Log Activities",
                "Directory traversal monitored file read"} <= rules_hit
        assert "openat/path:" in err_kf and "close/untracked_fd:" in err_kf
        events = [int(m) for m in re.findall(r"falconet: (\d+) events", err_plain + err_kf)]
        assert events[0] == events[1] + n        # filtered events never reach the pipeline
    if which == "named":
        assert {a["rule"] for a in plain} == {"Pager or cat reads below etc", "Python writes"}
        assert "openat/process:" in err_kf


def test_filtered_events_are_metrics_not_drops(capture: str) -> None:
    """In process, as `falconet replay --kernel-filter` runs: the filtered counts land in
    EngineMetrics.kernel_filtered and the Prometheus family, the drops stay 0."""
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from falconet.app import App
    from falconet.config import load_config
    from falconet.prometheus import EngineCollector

    app = App(load_config(None, [*BASE[1::2], "outputs.stdout.enabled=false"]),
              source_name="replay")
    app.load_plugins()
    app.load_ruleset([str(FALCO_RULES)])
    app.build_pipeline()
    app.run("replay", {"path": capture, "progress": False,
                       "kernel_filter": app.kernel_filter_plan(force=True)})
    kf = dict(app.metrics.kernel_filtered)
    assert kf[("openat", "path")] > 0 and kf[("close", "untracked_fd")] > 0
    assert app.losses() == 0
    fams = {f.name: f for f in EngineCollector(app.metrics, hostname="h").collect()}
    fam = fams["falconet_kernel_filtered_events"]
    got = {(s.labels["type"], s.labels["reason"]): s.value for s in fam.samples
           if s.name.endswith("_total")}
    assert got == {k: float(v) for k, v in kf.items()}
    assert "filtered in the kernel (" in app.summary()
