"""The core-state plugin hooks: configure, fields, parsers, start (live bootstrap only), and the
capture_state → restore_state round trip that makes a replay see the live run's state."""

from __future__ import annotations

import json
import os

import pytest
from falconet.api import EngineContext, PluginConfigError
from falconet.events import Event
from falconet.fields.registry import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.plugin_config import configure_by_hand
from falconet.state import plugin as P
from falconet.state.tables import StateTables

#: the plugin instance of each engine (the host makes one per engine)
_PLUGINS: dict[int, P.CoreStatePlugin] = {}


def plug(ctx: EngineContext) -> P.CoreStatePlugin:
    return _PLUGINS.setdefault(id(ctx), P.CoreStatePlugin())


def _engine(live: bool | None = None, config: dict | None = None) -> EngineContext:
    ctx = EngineContext(hostname="h1", fields=FieldRegistry(), metrics=EngineMetrics(),
                        state=StateTables())
    configure_by_hand(plug(ctx), "core-state", config or {}, ctx)
    ctx.fields.register_all(plug(ctx).falconet_fields(ctx))
    if live is not None:
        ctx.extras["falconet.live"] = live
    return ctx


def _run(ctx: EngineContext, events: list[Event]) -> list[Event]:
    (parse,) = plug(ctx).falconet_event_parsers(ctx)
    for e in events:
        parse(e)
    return events


def _workload(pid: int) -> list[Event]:
    ts = 1_700_000_000_000_000_000
    return [
        Event("syscall", "procfork", ts + 1, pid, pid, {"child_tid": 900001, "child_pid": 900001,
                                                         "parent_tid": pid, "parent_pid": pid}),
        Event("syscall", "execve", ts + 2, 900001, 900001,
              {"filename": "/bin/cat", "argv": ["cat", "/etc/shadow"], "comm": "cat",
               "exepath": "/usr/bin/cat", "uid": 0, "gid": 0}, 0),
        Event("syscall", "openat", ts + 3, 900001, 900001,
              {"fd": 3, "dirfd": -100, "name": "/etc/shadow", "flags": 0}, 3),
    ]


FIELDS = ["proc.name", "proc.pname", "proc.cmdline", "proc.pcmdline", "proc.aname", "fd.name",
          "user.name", "proc.exepath", "proc.pexepath", "group.name", "proc.cwd", "proc.tty"]


def _values(ctx: EngineContext, e: Event) -> dict:
    return {f: ctx.fields.resolve(f).extract(e) for f in FIELDS}


def test_live_start_bootstraps_and_replay_from_capture_gives_same_values() -> None:
    live = _engine(live=True)
    plug(live).falconet_start(live)
    me = os.getpid()
    assert live.state.get(me) is not None                    # bootstrapped from /proc
    snap = plug(live).falconet_capture_state(live)
    snap = json.loads(json.dumps(snap))                      # must survive the capture file
    live_vals = _values(live, _run(live, _workload(me))[-1])
    assert live_vals["proc.pname"] == live.state.get(me).comm and live_vals["fd.name"] == "/etc/shadow"
    assert live_vals["user.name"] == "root"

    replay = _engine(live=False)
    plug(replay).falconet_start(replay)
    assert not replay.state.threads                           # replay never reads /proc
    plug(replay).falconet_restore_state("other-plugin", {"threads": []}, replay)   # not ours
    plug(replay).falconet_restore_state("core-state", snap, replay)
    replay_vals = _values(replay, _run(replay, _workload(me))[-1])
    assert replay_vals == live_vals
    assert plug(replay).state.users.frozen


def test_restore_keeps_dead_processes_and_thread_fd_sharing() -> None:
    src = _engine(live=False)
    st = src.state
    from falconet.state.tables import FdInfo, ThreadInfo

    main = ThreadInfo(tid=10, pid=10, comm="srv")
    main.fds[4] = FdInfo(4, "4", "1.2.3.4:5->6.7.8.9:80", l4proto="tcp", sip="1.2.3.4", sport=5,
                         dip="6.7.8.9", dport=80, connected=True)
    st.add(main)
    th = ThreadInfo(tid=11, pid=10, comm="srv-worker")
    th.fds = main.fds
    st.add(th)
    gone = ThreadInfo(tid=20, pid=20, comm="dead", dead=True, exit_ts=5)
    st.add(gone)
    data = json.loads(json.dumps(plug(src).falconet_capture_state(src)))
    dst = _engine(live=False)
    plug(dst).falconet_restore_state("core-state", data, dst)
    t = dst.state.get(11)
    assert t.fds is dst.state.get(10).fds and t.fds[4].dport == 80
    assert dst.state.get(20).dead and (5, 20) in dst.state.dead


def test_incremental_records_add_threads_without_clearing() -> None:
    ctx = _engine(live=False)
    ctx.state.add(__import__("falconet.state.tables", fromlist=["ThreadInfo"]).ThreadInfo(tid=1, pid=1))
    plug(ctx).falconet_restore_state("core-state", {"threads": [{"tid": 5, "pid": 5, "comm": "x"}]},
                                     ctx)
    assert ctx.state.get(1) is not None and ctx.state.get(5).comm == "x"


def test_live_unknown_tid_is_emitted_into_the_recording() -> None:
    ctx = _engine(live=True, config={"bootstrap": False})
    records: list = []
    ctx.state_writer = lambda plugin, data: records.append((plugin, data))
    plug(ctx).falconet_start(ctx)
    assert not ctx.state.threads
    _run(ctx, [Event("syscall", "close", 1, os.getpid(), os.getpid(), {"fd": 1000}, -9)])
    assert records and records[0][0] == "core-state"
    assert records[0][1]["threads"][0]["pid"] == os.getpid()
    assert not records[0][1].get("snapshot")


def test_config_limits_and_errors() -> None:
    ctx = _engine(config={"max_threads": 1000, "max_dead": 10, "dead_grace_seconds": 0.5})
    assert (ctx.state.max_threads, ctx.state.max_dead, ctx.state.dead_grace_ns) == (1000, 10, 500_000_000)
    for bad, msg in (({"max_threads": 0}, "positive integer"), ({"max_threads": "x"}, "positive"),
                     ({"bootstrap": "yes"}, "true or false"), ({"nope": 1}, "unknown key")):
        with pytest.raises(PluginConfigError, match=msg):
            configure_by_hand(P.CoreStatePlugin(), "core-state", bad,
                              EngineContext(hostname="h", fields=FieldRegistry()))


def test_table_gauge_registered() -> None:
    ctx = _engine()
    ctx.state.add(__import__("falconet.state.tables", fromlist=["ThreadInfo"]).ThreadInfo(tid=1, pid=1))
    assert ctx.metrics.gauges["state_table_entries"]() == {"threads": 1.0, "fds": 0.0}


def test_sweep_marks_vanished_processes_dead_and_sweeper_stops() -> None:
    import subprocess
    import sys

    from falconet.state.tables import ThreadInfo

    ctx = _engine(live=True, config={"bootstrap": False, "sweep_seconds": 0.05})
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    old = 1
    gone = ThreadInfo(tid=p.pid, pid=p.pid, comm="gone", start_ts=old)
    alive = ThreadInfo(tid=os.getpid(), pid=os.getpid(), comm="me", start_ts=old)
    young = ThreadInfo(tid=p.pid + 100000, pid=p.pid + 100000, start_ts=__import__("time").time_ns())
    for t in (gone, alive, young):
        ctx.state.add(t)
    st = plug(ctx).state
    plug(ctx).falconet_start(ctx)                    # live: starts the sweeper thread
    try:
        import time

        deadline = time.monotonic() + 5
        # the sweeper marks the entry, then counts it: wait for the count, not only the mark
        while not (gone.dead and st.swept >= 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone.dead and not alive.dead and not young.dead
        assert st.swept >= 1 and (gone.exit_ts, gone.tid) in ctx.state.dead
    finally:
        plug(ctx).falconet_stop(ctx)
    assert st._sweeper is None


def test_container_users_read_live_only_and_replay_uses_the_capture() -> None:
    """A replay's pids are not this host's processes: its container tables come from the
    capture and /proc is never read; a live start reads them (issue 17)."""
    live = _engine(live=True)
    plug(live).falconet_start(live)
    cu = plug(live).state_for(live).users.containers
    assert cu is not None and cu.frozen is False
    cu.load({"c1": {"users": {"0": ["root", "/root", "/bin/sh"]}, "groups": {"0": "root"}}})
    cu.frozen = False                       # as live: load() is the replay path
    snap = json.loads(json.dumps(plug(live).falconet_capture_state(live)))
    assert snap["container_users"]["c1"]["users"]["0"] == ["root", "/root", "/bin/sh"]
    replay = _engine(live=False)
    plug(replay).falconet_start(replay)
    rcu = plug(replay).state_for(replay).users.containers
    assert rcu is not None and rcu.frozen is True
    assert rcu.user("c2", os.getpid(), 0) is None and rcu.reads == 0      # never reads /proc
    plug(replay).falconet_restore_state("core-state", snap, replay)
    assert rcu.user("c1", 1, 0) == ("root", "/root", "/bin/sh")
