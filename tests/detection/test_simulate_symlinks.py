"""`falconet simulate` runs as root: a symlink planted beforehand at any path its actions write
must never redirect a write or a `chmod u+s` (issue 11, finding 10). The probe plants one at
every fixed path the old actions used (host and runc containers), runs the actions for real, and
reports each victim's state; it runs in a private mount namespace with its own /tmp and /dev/shm
(see simulate_symlink_probe.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_binary, need_root

pytestmark = [pytest.mark.root, pytest.mark.containers]

PROBE = Path(__file__).with_name("simulate_symlink_probe.py")


def test_planted_symlinks_never_redirect_a_write() -> None:
    need_root()
    need_binary("runc")
    unshare = need_binary("unshare")
    sys.path.insert(0, str(PROBE.parent))
    try:
        import simulate_symlink_probe as probe  # noqa: PLC0415
    finally:
        sys.path.remove(str(PROBE.parent))
    p = subprocess.run([unshare, "--mount", "--propagation", "private", "--",
                        sys.executable, str(PROBE)], capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    expected = {f"{where} {path}": probe.DIR_UNTOUCHED if kind == "dir" else probe.FILE_UNTOUCHED
                for where, links in (("host", probe.HOST_LINKS), ("runc", probe.CONTAINER_LINKS),
                                     ("runc (privileged)", probe.CONTAINER_LINKS))
                for path, kind in links}
    touched = {k: v for k, v in report["victims"].items() if v != expected[k]}
    assert not touched, f"followed a planted symlink: {touched}"
    assert set(report["victims"]) == set(expected)
    assert "error" not in report, report["error"]
    # and the actions really ran (they did not just refuse to work)
    not_done = {k: v for k, v in report["actions"].items() if v != "done"}
    assert not not_done, not_done
    assert not report["left_in_tmp"], report["left_in_tmp"]
