"""proc.is_exe_upper_layer against a real overlayfs mount: a binary copied into the merged view
(lands in the upper layer) vs one that comes from the lower layer, as a container image would."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need, need_binary, need_root
from falconet.state import overlay
from falconet.state.proc_bootstrap import read_thread
from state_helpers import MiniEngine


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator[Path]:
    need_root()
    busybox = need_binary("busybox")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    shutil.copy(busybox, lower / "lowerbin")
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                       capture_output=True, text=True)
    need(r.returncode == 0, f"cannot mount overlayfs: {r.stderr.strip()}")
    overlay.clear_cache()
    try:
        shutil.copy(busybox, merged / "dropped")          # written after "start": upper layer
        yield merged
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)
        overlay.clear_cache()


def _spawn(path: Path) -> subprocess.Popen:
    p = subprocess.Popen(["sleep", "30"], executable=str(path))   # busybox: argv[0] = applet
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:               # wait until the exec is done
        try:
            if os.readlink(f"/proc/{p.pid}/exe") == str(path):
                return p
        except OSError:
            pass
        time.sleep(0.01)
    return p


def test_dropped_binary_is_upper_layer_image_binary_is_not(overlay_mount: Path) -> None:
    assert (overlay_mount.parent / "upper" / "dropped").exists()
    dropped, lowerbin = _spawn(overlay_mount / "dropped"), _spawn(overlay_mount / "lowerbin")
    try:
        t_up = read_thread(dropped.pid)
        t_low = read_thread(lowerbin.pid)
        assert t_up is not None and t_low is not None
        assert t_up.exepath == str(overlay_mount / "dropped")
        assert t_up.exe_upper_layer is True
        assert t_low.exe_upper_layer is False
        # the live parser derives the flag at exec when the collector does not report it
        m = MiniEngine(live=True)
        m.add(tid=dropped.pid, comm="sh")
        e = m.evt("execve", dropped.pid, 0, filename=str(overlay_mount / "dropped"),
                  argv=["sleep", "30"], exepath=str(overlay_mount / "dropped"))
        assert m.field(e, "proc.is_exe_upper_layer") is True
        assert "EXE_UPPER_LAYER" in m.field(e, "evt.arg", "flags")
        assert m.field(e, "proc.exe_ino") == (overlay_mount / "dropped").stat().st_ino
    finally:
        for p in (dropped, lowerbin):
            p.kill()
            p.wait()
