"""Live (eBPF): a child's first calls are never evaluated before its parent's fork, even when
they land in another CPU's ring while the engine is between two rings' reads
(falconet.collector.merge, the bound of a read's start).

Each of many processes connects to a local listener and forks two children that put the
inherited socket on stdin and stdout (``dup2``) and exec a shell that exits at once. Busy loops
on every CPU keep the engine's reads slow and the children migrating. A child seen before its
fork is unknown to the state; by the time ``/proc`` is read it has exited, so it has no fd table,
its ``dup2`` has no socket, and "Reverse Shell Redirect" stays silent. Every child's two
redirects must alert. Without the bound, 2 runs in 6 (with 50 parents) lost 2 of 200 alerts;
with it, every run of 11 (8 with 100 parents) alerted every redirect. One worker: the single
loop's merge (collector.source); the live workers' loop shares it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import need, need_bcc, wait_for
from workers_helpers import REDIRECTING_CHILDREN, Engine, Listener

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

PARENTS = 100
TAG = f"forkorder{os.getpid()}"
PARENT = """
import os, socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
""" + REDIRECTING_CHILDREN


def test_children_that_redirect_an_inherited_socket_at_once_all_alert() -> None:
    need_bcc()
    need(len(os.sched_getaffinity(0)) >= 2, "needs 2 CPUs (one ring each) for a child's "
         "calls to land in another ring than its fork")
    lst = Listener()
    eng = Engine(1)
    hogs: list[subprocess.Popen[bytes]] = []

    def redirects() -> int:
        return sum(1 for a in eng.alerts() if a["rule"] == "Reverse Shell Redirect" and
                   TAG in str(a.get("output_fields", {}).get("proc.cmdline")))
    want = 4 * PARENTS
    try:
        hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"])
                for _ in range(len(os.sched_getaffinity(0)))]
        parents = [subprocess.Popen([sys.executable, "-c", PARENT, str(lst.port), TAG])
                   for _ in range(PARENTS)]
        for p in parents:
            assert p.wait(timeout=60) == 0
        wait_for(lambda: redirects() >= want, 60, 0.2)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        rc = eng.stop()
        lst.close()
    assert rc == 0, "".join(eng.err)
    assert redirects() == want, (f"{redirects()} of {want} redirects alerted", eng.err[-2:])
