"""Acceptance, live (root, eBPF, runc; issue 19): `falconet test suites/evasion.yaml`: every
evasive variant raises the upstream stable rule whose intent covers it (Falco's file loaded
unmodified, first) or the default rule where the stable file has none, and the plain variants
still pass; `suites/evasion-stable.yaml`: with only Falco's unmodified stable file loaded (so
the kernel filter is the one derived from it), the stable rules catch the io_uring, path
indirection (symlink, /proc/self/root, bind mount, open_by_handle_at) and name variants."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import FALCO_RULES, REPO, need, need_bcc, need_binary

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]


def _run_suite(falconet_bin: str, suite: str) -> dict:
    need_bcc()
    need_binary("runc")
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    r = subprocess.run([falconet_bin, "test", str(REPO / "suites" / suite), "--json"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.stdout.strip(), f"no report (rc {r.returncode}):\n{r.stderr[-3000:]}"
    report = json.loads(r.stdout)
    bad = [c for c in report["cases"] if c["status"] != "pass"]
    assert not bad, json.dumps(bad, indent=1)
    assert r.returncode == 0
    return report


def test_evasion_suite_detects_every_variant(falconet_bin: str) -> None:
    report = _run_suite(falconet_bin, "evasion.yaml")
    assert len({c["case"] for c in report["cases"]}) >= 20


def test_unmodified_stable_rules_alone_catch_the_variants_they_cover(falconet_bin: str) -> None:
    report = _run_suite(falconet_bin, "evasion-stable.yaml")
    names = {c["case"] for c in report["cases"]}
    assert len(names) >= 14
    for variant in ("symlink", "/proc/self/root", "bind mount", "open_by_handle_at",
                    "io_uring read", "FIXED_FD_INSTALL", "prctl", "exec -a"):
        assert any(variant in n for n in names), variant
