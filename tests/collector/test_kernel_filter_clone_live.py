"""The kernel filter's child-return drop in the real kernel (``FilterPlan.child_clones``): a
new task's own return from clone/fork (res 0) is not emitted when the plan says no rule or
plugin reads that type, and is counted; the parent's return and ``procfork`` always are, and
without the plan entry the child's return is emitted as before."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import need_bcc
from falconet.kfilter import CLONE_TYPES, FilterPlan

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

#: forks three children (os.fork: clone in the child and the parent); each exits at once
PROBE = textwrap.dedent(r"""
    import os
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        kids.append(pid)
    for k in kids:
        os.waitpid(k, 0)
    print(" ".join(map(str, kids)), flush=True)
""")

TYPES = {"clone", "clone3", "fork", "vfork", "execve"}


def _run_probe(plan: FilterPlan | None):
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    m = EngineMetrics()
    c = LiveCollector(TYPES, metrics=m, kernel_filter=plan)
    try:
        p = subprocess.Popen([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, text=True)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0
        kids = [int(x) for x in out.split()]
        for k in kids:      # a child's exit is its last event: once seen, its events are in
            c.wait_for(lambda e, k=k: e.type == "procexit" and e.pid == k, what="a child's exit")
        c.wait_for(lambda e: e.type == "procexit" and e.pid == p.pid, what="the probe's exit")
        c.source.poll_stats()
        ours = {p.pid, *kids}
        evs = c.matching(lambda e: e.pid in ours and e.type in CLONE_TYPES | {"procfork"})
        return p.pid, kids, evs, dict(m.kernel_filtered)
    finally:
        c.close()


def test_child_returns_are_dropped_and_counted():
    need_bcc()
    plan = FilterPlan(types={}, unfiltered={}, filter_close=False, child_clones=CLONE_TYPES)
    parent, kids, evs, filtered = _run_probe(plan)
    forks = {e.args["child_pid"] for e in evs if e.type == "procfork" and e.pid == parent}
    assert set(kids) <= forks
    returns = {e.res for e in evs if e.type in CLONE_TYPES and e.pid == parent}
    assert set(kids) <= returns               # the parent's returns all pass
    assert not [e for e in evs if e.type in CLONE_TYPES and e.pid in kids]
    assert sum(n for (t, why), n in filtered.items() if why == "child") >= len(kids)


def test_without_the_plan_entry_child_returns_are_emitted():
    need_bcc()
    plan = FilterPlan(types={}, unfiltered={}, filter_close=False)
    _parent, kids, evs, filtered = _run_probe(plan)
    child_returns = {e.pid for e in evs if e.type in CLONE_TYPES and e.res == 0}
    assert set(kids) <= child_returns
    assert not [k for k in filtered if k[1] == "child"]
