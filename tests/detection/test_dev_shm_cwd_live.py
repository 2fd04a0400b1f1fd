"""Live (root, eBPF): stable's "Execution from /dev/shm" sees `./x` run from /dev/shm itself.

Its clause `proc.cwd startswith "/dev/shm/" and proc.exe startswith "./"` needs Falco's
`proc.cwd` format, which ends with '/' (issue 17): without it the cwd `/dev/shm` never matched."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest
from conftest import FALCO_RULES, need, need_bcc, need_root

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.slow]


def test_dot_slash_binary_in_dev_shm_raises_the_stable_rule(falconet_bin: str) -> None:
    need_root()
    need_bcc()
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from falconet.simulate.live import LiveEngine  # noqa: PLC0415

    name = f"shm{secrets.token_hex(4)}"      # < 16 chars: proc.name is the comm
    path = f"/dev/shm/{name}"
    shutil.copy("/bin/true", path)
    os.chmod(path, 0o700)
    eng = LiveEngine([str(FALCO_RULES)], argv=[falconet_bin])
    eng.start()
    try:
        eng.wait_ready(90)
        deadline = time.monotonic() + 20
        alert = None
        while alert is None and time.monotonic() < deadline:
            subprocess.run([f"./{name}"], cwd="/dev/shm", check=True, timeout=10)
            alert = eng.wait_for(lambda a: a.rule == "Execution from /dev/shm" and
                                 f"command={name}" in a.output, time.monotonic() + 2)
        assert alert is not None, [a.output for a in eng.alerts if name in a.output]
        assert "proc_cwd=/dev/shm/ " in alert.output
    finally:
        eng.stop(timeout=10)
        os.unlink(path)
