"""Acceptance, live (root, eBPF, runc): `falconet test suites/evasion.yaml` (issue 19): every
evasive variant raises the upstream stable rule whose intent covers it (Falco's file loaded
unmodified) or the default rule where the stable file has none; the plain variants still pass."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import FALCO_RULES, REPO, need, need_bcc, need_binary

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]


def test_evasion_suite_detects_every_variant(falconet_bin: str) -> None:
    need_bcc()
    need_binary("runc")
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    r = subprocess.run([falconet_bin, "test", str(REPO / "suites" / "evasion.yaml"), "--json"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.stdout.strip(), f"no report (rc {r.returncode}):\n{r.stderr[-3000:]}"
    report = json.loads(r.stdout)
    bad = [c for c in report["cases"] if c["status"] != "pass"]
    assert not bad, json.dumps(bad, indent=1)
    assert r.returncode == 0
    names = {c["case"] for c in report["cases"]}
    assert len(names) >= 20
