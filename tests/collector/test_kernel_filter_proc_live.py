"""The kernel filter's ``proc.name`` terms in the real kernel: a clause naming processes is live
only for an open of a process whose exec-time name (the comm of its last execve, which
userspace keeps as ``proc.name``) is listed; prctl(PR_SET_NAME) changes neither side.

Two copies of the interpreter under distinct names (exec through a symlink names the process
after the link) write below a unique directory; the plan passes writes there by one of them.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest
from conftest import need_bcc
from falconet.kfilter import Clause, FilterPlan, TypeFilter, open_passes

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

PROBE = textwrap.dedent(r"""
    import ctypes, os, sys
    d, tag, rename = sys.argv[1], sys.argv[2], sys.argv[3]
    if rename:
        # the thread's comm changes; proc.name (the exec's) does not
        ctypes.CDLL(None).prctl(15, rename.encode(), 0, 0, 0)
    os.close(os.open(f"{d}/{tag}.txt", os.O_WRONLY | os.O_CREAT, 0o600))
""")


def _plan(d: str) -> FilterPlan:
    w = Clause(any_path=False, exact=frozenset(), prefixes=frozenset({d + "/"}),
               need_read=False, need_write=True, need_success=False,
               names=frozenset({"kfname-yes"}))
    return FilterPlan(types={t: TypeFilter(t, (w,)) for t in ("open", "openat", "creat")},
                      unfiltered={}, filter_close=True)


def test_only_the_named_process_s_opens_pass_and_the_drops_are_counted(tmp_path):
    need_bcc()
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    d = str(tmp_path)
    real = os.path.realpath(subprocess.check_output(
        ["python3", "-c", "import sys; print(sys.executable)"], text=True).strip())
    for name in ("kfname-yes", "kfname-no"):
        os.symlink(real, os.path.join(d, name))
    m = EngineMetrics()
    plan = _plan(d)
    c = LiveCollector({"openat", "open", "creat", "close", "execve", "prctl"}, metrics=m,
                      kernel_filter=plan)
    try:
        runs = [("kfname-yes", "yes", ""), ("kfname-no", "no", ""),
                ("kfname-yes", "yes-renamed", "other"), ("kfname-no", "no-renamed", "kfname-yes")]
        pids = {}
        for exe, tag, rename in runs:
            p = subprocess.Popen([os.path.join(d, exe), "-I", "-S", "-c", PROBE, d, tag, rename])
            assert p.wait(30) == 0
            pids[tag] = p.pid
        for pid in pids.values():
            c.wait_for(lambda e, pid=pid: e.type == "procexit" and e.pid == pid,
                       what="the probe's exit")
        seen = {tag: [e for e in c.matching(lambda e, pid=pid: e.pid == pid and
                                            e.type in ("open", "openat", "creat") and
                                            str(e.args.get("name", "")).startswith(d))]
                for tag, pid in pids.items()}
        assert [e.args["name"] for e in seen["yes"]] == [f"{d}/yes.txt"]
        assert [e.args["name"] for e in seen["yes-renamed"]] == [f"{d}/yes-renamed.txt"]
        assert seen["no"] == [] and seen["no-renamed"] == []
        # the exec reported the names the kernel tested; the decision procedure agrees
        for tag, pid in pids.items():
            [ex] = c.matching(lambda e, pid=pid: e.pid == pid and e.type == "execve" and
                              e.res == 0)
            comm = ex.args["comm"]
            assert comm == ("kfname-yes" if tag.startswith("yes") else "kfname-no")
            flags = os.O_WRONLY | os.O_CREAT
            want = None if tag.startswith("yes") else "process"
            assert open_passes(plan.types["openat"], f"{d}/{tag}.txt", flags, 3, False,
                               comm=comm) == want
        c.source.poll_stats()
        got = dict(m.kernel_filtered)
        assert got.get(("openat", "process"), 0) >= 2, got
    finally:
        c.close()
