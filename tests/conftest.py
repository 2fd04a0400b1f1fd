"""Shared test helpers.

Policy (DEVELOPERS.md): in CI (``CI=true``, root) the eBPF, container and Prometheus tests must run.
Use :func:`need` instead of ``pytest.skip``: outside CI it skips and says why; in CI a missing
prerequisite is a failure, so a broken setup can never pass as green.

Also the small helpers every test folder needs (``wait_for``, ``free_port``, ``stop_process``):
one copy here instead of one per folder. A plugin's own tests keep their own (they stand alone).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falconet.upstream import FALCO_RULES_ENV, falco_rules_path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: the one external test input: $FALCONET_FALCO_RULES (default ../shared/falco/falco_rules.yaml)
FALCO_RULES = falco_rules_path()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Engines the tests start keep their state (learning profiles...) in a directory of this test
# session, never in the host's /var/lib/falconet: one test's learning must not change another's
# verdicts, nor a CI run the next one's.
os.environ.setdefault("FALCONET_STATE_DIR", tempfile.mkdtemp(prefix="falconet-test-state-"))


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
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing (set {FALCO_RULES_ENV})")
    return FALCO_RULES


@pytest.fixture
def falconet_bin() -> str:
    """The installed ``falconet`` console script of the test virtualenv."""
    p = Path(sys.executable).parent / "falconet"
    return str(p) if p.exists() else "falconet"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``proc`` if it still runs and wait ``timeout`` s for it to exit, then kill
    it: a test's ``finally`` must neither leave an engine or server behind nor hang on one."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Poll ``cond()`` every ``step`` s until it returns something truthy and return that; at the
    deadline return its last (falsy) value, for the caller's ``assert ..., why``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "the condition",
               interval: float = 0.02) -> Any:
    """Like :func:`wait_for`, but raise ``AssertionError`` naming ``what`` at the deadline. An
    exception from ``cond`` (a server not up yet) counts as "not yet" and is named if it was the
    last outcome."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last_exc = None
        except Exception as e:  # noqa: BLE001 - keep polling; report the last error
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)
