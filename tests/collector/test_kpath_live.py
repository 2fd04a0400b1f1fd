"""The kernel path walk against the real kernel (issue 19): proc.exepath from exe_file, the
path an open really reached (fd.resolved_name) and open_by_handle_at's path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import need, need_bcc

pytestmark = [pytest.mark.root, pytest.mark.ebpf]


@pytest.fixture(scope="module")
def live():
    need_bcc()
    from live_collector import LiveCollector  # noqa: PLC0415
    c = LiveCollector({"openat", "open_by_handle_at"})
    need(bool(c.source.built and any(t == "kpath_progs" for t, _i, _f in c.source.built.tails)),
         "the kernel BTF lacks the walk's types")
    yield c
    c.close()


def test_exepath_is_the_kernels_executable_even_for_a_process_that_is_gone(live, tmp_path):
    fake = tmp_path / "sshd"
    shutil.copy("/bin/true", fake)
    p = subprocess.run([str(fake)], check=True)
    del p
    link = tmp_path / "viaalink"
    link.symlink_to("/bin/true")
    subprocess.run([str(link)], check=True)
    e = live.wait_for(lambda e: e.type == "execve" and e.args["filename"] == str(fake),
                      what="exec of the copy")
    # the process exited before its record was decoded: /proc could not have said this
    assert e.args["exepath"] == str(fake) and e.args["comm"] == "sshd"
    e2 = live.wait_for(lambda e: e.type == "execve" and e.args["filename"] == str(link),
                       what="exec through a symlink")
    assert e2.args["exepath"] == os.path.realpath("/bin/true")


def test_opens_carry_the_path_the_kernel_opened(live, tmp_path):
    (tmp_path / "real").write_text("x")
    (tmp_path / "innocent").symlink_to(tmp_path / "real")
    code = (f"import os\nfor p in ({str(tmp_path / 'innocent')!r}, "
            f"'/proc/self/root' + {str(tmp_path / 'real')!r}, {str(tmp_path / 'real')!r}):\n"
            "    os.close(os.open(p, os.O_RDONLY))\n"
            f"os.chdir({str(tmp_path)!r})\nos.close(os.open('innocent', os.O_RDONLY))\n")
    p = subprocess.run([sys.executable, "-c", code], check=True)
    del p
    real = str(tmp_path / "real")
    for name in (str(tmp_path / "innocent"), "/proc/self/root" + real, real, "innocent"):
        e = live.wait_for(lambda e, n=name: e.type == "openat" and e.args["name"] == n,
                          what=f"open of {name}")
        assert e.args["resolved"] == real, name
    bad = live.matching(lambda e: e.type == "openat" and e.args["name"] == "/nonexistent-x")
    assert bad == []


def test_open_by_handle_at_reports_the_opened_path(live):
    code = ("import sys\nsys.path.insert(0, 'core/falconet/simulate')\nimport payload\n"
            "payload.open_by_handle('/etc/hostname')\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    e = live.wait_for(lambda e: e.type == "open_by_handle_at" and e.res >= 0,
                      what="open_by_handle_at")
    assert e.args["path"] == os.path.realpath("/etc/hostname") and e.args["fd"] == e.res


def test_a_bind_mount_of_etc_is_named_by_the_files_real_path(live, tmp_path):
    (tmp_path / "view").mkdir()
    # a private mount namespace: the bind mount never exists outside the child
    subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                    f"mount --bind /etc {tmp_path}/view && cat {tmp_path}/view/hostname"],
                   check=True, capture_output=True)
    e = live.wait_for(lambda e: e.type == "openat"
                      and e.args["name"] == f"{tmp_path}/view/hostname", what="bind-mounted open")
    assert e.args["resolved"] == os.path.realpath("/etc/hostname")
