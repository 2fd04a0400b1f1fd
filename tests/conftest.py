"""Shared test helpers.

Policy (DEVELOPERS.md): in CI (``CI=true``, root) the eBPF, container and Prometheus tests must run.
Use :func:`need` instead of ``pytest.skip``: outside CI it skips and says why; in CI a missing
prerequisite is a failure, so a broken setup can never pass as green.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FALCO_RULES = SHARED / "falco" / "falco_rules.yaml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (in CI) unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI prerequisite missing: {reason}", pytrace=False)
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (eBPF and container runtimes)")


def need_bcc() -> None:
    need_root()
    try:
        from falconet.collector.bccloader import import_bcc  # noqa: PLC0415
        import_bcc()
        ok = True
    except Exception as e:  # noqa: BLE001 - any failure means "no bcc here"
        ok, why = False, str(e)
    need(ok, "bcc is not importable" + ("" if ok else f": {why}"))


def need_binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"'{name}' is not installed (make test installs it)")
    return path or ""


@pytest.fixture
def falco_rules_path() -> Path:
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing (../shared/falco/falco_rules.yaml)")
    return FALCO_RULES


@pytest.fixture
def falconet_bin() -> str:
    """The installed ``falconet`` console script of the test virtualenv."""
    p = Path(sys.executable).parent / "falconet"
    return str(p) if p.exists() else "falconet"
