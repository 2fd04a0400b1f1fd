"""fd-consuming calls on fds whose open the kernel filter dropped: the live state reads the
path back from /proc (kept in the hidden ``fdpath`` arg, so recordings replay the same), and
the replay's emulation of the filter supplies what the live read would have found."""

from __future__ import annotations

import os

from falconet.events import Event
from falconet.kfilter import FdTracker
from falconet.state.parser import StateParser
from falconet.state.tables import StateTables
from kfhelp import Engine, open_event, rule


def _fchmod(pid: int, fd: int, args: dict | None = None) -> Event:
    return Event("syscall", "fchmod", 2, pid, pid, {"fd": fd, "mode": 0o4755, **(args or {})}, 0)


def test_live_state_reads_an_unknown_fd_back_from_proc(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    live = StateParser(StateTables(), live=True)
    live(_fchmod(os.getpid(), -1))          # the process is known (its fds read at that point)
    fd = os.open(path, os.O_RDONLY)         # ... and this one is opened after: unknown
    try:
        e = _fchmod(os.getpid(), fd)
        live(e)
        assert e.fdinfo is not None and e.fdinfo.name == str(path)
        assert e.args["fdpath"] == str(path)             # recorded for the replay
        replay = StateParser(StateTables())
        again = _fchmod(os.getpid(), fd, {"fdpath": str(path)})
        replay(again)
        assert again.fdinfo is not None and again.fdinfo.name == str(path)
        never = _fchmod(os.getpid(), fd)
        StateParser(StateTables())(never)                 # replay never reads /proc
        assert never.fdinfo is None and "fdpath" not in never.args
    finally:
        os.close(fd)


def test_replay_emulation_supplies_the_path_of_a_dropped_open():
    e = Engine()
    text = (rule("evt.type in (open, openat) and fd.name = /etc/shadow and evt.is_open_read = true",
                 name="o")
            + rule("evt.type = fchmod and evt.rawres >= 0", name="s", output="file=%fd.name"))
    plan = e.plan(text)
    assert "openat" in plan.types
    tr = FdTracker(plan)
    op = open_event("openat", "/tmp/suid-shell", res=5, pid=9)
    assert tr.verdict(op) == "path"
    ch = _fchmod(9, 5)
    assert tr.verdict(ch) is None and ch.args["fdpath"] == "/tmp/suid-shell"
    e.parser(ch)
    assert ch.fdinfo is not None and ch.fdinfo.name == "/tmp/suid-shell"
