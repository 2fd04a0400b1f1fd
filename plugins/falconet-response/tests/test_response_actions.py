"""First-party actions against real processes of this host: ``kill`` through a pidfd with the
start-time check (a recycled PID is refused), process groups, the guard; ``capture`` writes a
replayable capture file (0600) of the alert's process tree, before and after the alert; param
checking; freeze's refusal of host processes and of cgroups not named after the container."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from falconet.alerts import Alert
from falconet.capture import read_capture
from falconet.events import Event
from falconet.priorities import Priority
from falconet.state.tables import ThreadInfo
from falconet_response import procfs
from falconet_response.actions.base import ActionParamError, Target
from falconet_response.actions.capture import CaptureAction, EventRing
from falconet_response.actions.cgroup import FreezeAction, container_cgroup
from falconet_response.actions.process import KillAction, container_init
from falconet_response.engine import Scheduler

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def target(pid: int | None, start_ts: int | None = None, cid: str | None = None) -> Target:
    return Target(pid, start_ts, cid, "docker" if cid else None, None, None, None,
                  f"pid:{pid}:{start_ts}")


def alert(ts: int | None = None) -> Alert:
    return Alert("r", Priority.CRITICAL, "syscall", [], "out", {}, ts or time.time_ns(), "h")


def wait_dead(p: subprocess.Popen, timeout: float = 5.0) -> int | None:
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture
def child():
    p = subprocess.Popen(SLEEPER, stdin=subprocess.DEVNULL)
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


def test_kill_hits_the_process_whose_start_time_matches(child) -> None:
    st = procfs.stat(child.pid)
    assert st is not None
    out = KillAction().run(target(child.pid, st.start_ns), alert(), {"signal": signal.SIGKILL})
    assert out.result == "done" and out.detail == f"SIGKILL pid {child.pid}"
    assert wait_dead(child) == -signal.SIGKILL


def test_a_recycled_pid_is_never_hit(child) -> None:
    st = procfs.stat(child.pid)
    assert st is not None
    # the alert's process started an hour before the live process that now has its PID
    old = KillAction().run(target(child.pid, st.start_ns - 3600 * 10**9), alert(), {})
    # no recorded start time: a process that started after the alert's event is not it
    late = KillAction().run(target(child.pid, None), alert(st.start_ns - 10**9), {})
    assert (old.result, late.result) == ("skipped", "skipped")
    assert "now names another process" in old.detail
    assert child.poll() is None


def test_kill_of_an_exited_process_is_skipped() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    out = KillAction().run(target(p.pid, None), alert(), {})
    assert out.result == "skipped"


def test_process_group_kill_spares_guarded_members() -> None:
    leader = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "subprocess.Popen([sys.executable, '-c', 'import time; "
                               "time.sleep(60)'])\ntime.sleep(60)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        members: list[int] = []
        while len(members) < 2 and time.monotonic() < deadline:
            members = [int(n) for n in os.listdir("/proc") if n.isdigit()
                       and (s := procfs.stat(int(n))) is not None and s.pgid == leader.pid]
            time.sleep(0.02)
        assert len(members) == 2, members
        other = next(m for m in members if m != leader.pid)
        kill = KillAction(guard=lambda pid: "guarded" if pid == other else None)
        st = procfs.stat(leader.pid)
        out = kill.run(target(leader.pid, st.start_ns if st else None), alert(),
                       kill.check_params({"target": "process_group"}))
        assert out.result == "done" and f"spared protected [{other}]" in out.detail
        assert wait_dead(leader) == -signal.SIGKILL
        assert procfs.stat(other) is not None          # the guarded member lives
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_container_init_of_a_host_process_is_skipped(child) -> None:
    assert container_init(child.pid) is None
    out = KillAction().run(target(child.pid, None, cid="c0ffee"), alert(),
                           {"target": "container_init", "signal": 9})
    assert out.result == "skipped"


@pytest.mark.parametrize("params, why", [
    ({"target": "everyone"}, "target: expected one of process, process_group, container_init"),
    ({"signal": "NOPE"}, "signal: expected a signal name like KILL or TERM"),
    ({"sig": 9}, "unknown parameter 'sig'"),
])
def test_kill_params_are_checked(params: dict, why: str) -> None:
    with pytest.raises(ActionParamError, match=why):
        KillAction().check_params(params)


def test_freeze_refuses_host_processes_and_foreign_cgroups(child) -> None:
    f = FreezeAction()
    assert f.run(target(child.pid), alert(), {}).result == "skipped"
    # the test process's cgroups are not named after this (made-up) container: never frozen
    assert container_cgroup(child.pid, "f" * 64) is None
    assert f.check_params({"ttl": 5}) == {"ttl": 5.0}
    with pytest.raises(ActionParamError, match="ttl: expected a number of seconds"):
        f.check_params({"ttl": 0})
    bad = f.undo({"kind": "v1", "dir": "/sys/fs/cgroup/freezer", "container_id": "x" * 64})
    assert bad.result == "failed"


def _evt(pid: int, ts: int, etype: str = "openat", cid: str = "", ptid: int = 0) -> Event:
    e = Event("syscall", etype, ts, tid=pid, pid=pid, args={"name": f"/f{pid}"}, res=3)
    e.thread = ThreadInfo(tid=pid, pid=pid, ptid=ptid, container_id=cid)
    return e


def test_capture_writes_the_tree_before_and_after(tmp_path: Path) -> None:
    ring, sched = EventRing(1000), Scheduler()
    sched.start()
    cap = CaptureAction(ring, str(tmp_path / "caps"), sched.call_later)
    os.makedirs(tmp_path / "caps", mode=0o700)
    now = time.time_ns()
    for i, (pid, ptid) in enumerate([(10, 1), (11, 10), (99, 1), (10, 1)]):
        ring.parse(_evt(pid, now - 10**9 + i, ptid=ptid))
    ring.parse(_evt(10, now - 60 * 10**9))           # outside before_seconds: left out
    params = cap.check_params({"seconds": 0.2, "before_seconds": 5})
    out = cap.run(target(10), alert(now), params)
    assert out.result == "done" and "3 events before" in out.detail
    ring.parse(_evt(12, now + 1, ptid=11))   # a child of the tree joins after the alert
    ring.parse(_evt(98, now + 2))
    deadline = time.monotonic() + 5
    while not cap.written and time.monotonic() < deadline:
        time.sleep(0.02)
    sched.stop()
    (path,) = cap.written
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    pids = [e.pid for e in read_capture(path)]
    assert pids == [10, 11, 10, 12]
    assert ring.followers == []


def test_capture_of_a_container_selects_its_events(tmp_path: Path) -> None:
    ring, sched = EventRing(100), Scheduler()
    cap = CaptureAction(ring, str(tmp_path), sched.call_later)
    now = time.time_ns()
    ring.parse(_evt(5, now - 5, cid="a" * 64))
    ring.parse(_evt(6, now - 4, cid="b" * 64))
    out = cap.run(target(5, cid="a" * 64), alert(now), cap.check_params({"seconds": 0}))
    assert "1 events before" in out.detail
    no_ring = CaptureAction(None, str(tmp_path), sched.call_later)
    assert no_ring.run(target(5), alert(), {}).result == "failed"
