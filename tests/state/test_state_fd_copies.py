"""The fd-creating calls besides open/socket/dup (fcntl F_DUPFD*, pipe/pipe2, socketpair,
pidfd_open/pidfd_getfd, the anonymous-inode fds) on hand-built events, and the kernel filter's
replay of what they do to its fd memory (falconet.kfilter.FdTracker)."""

from __future__ import annotations

from falconet.kfilter import FdTracker, FilterPlan
from falconet.state import flags as F
from state_helpers import MiniEngine


def _shell(m: MiniEngine) -> None:
    m.add(tid=300, ptid=1, comm="sh", exe="sh", exepath="/bin/sh", cwd="/tmp", vpid=300)
    m.evt("socket", 300, 3, domain=F.AF_INET, type=F.SOCK_STREAM, proto=0)
    m.evt("connect", 300, 0, fd=3, family=F.AF_INET, sip="10.0.0.5", sport=40000,
          dip="203.0.113.9", dport=4444)


def test_fcntl_dupfd_copies_the_socket_to_the_new_fd() -> None:
    """The reverse-shell evasion: the socket put on 0 with fcntl(F_DUPFD, 0), not dup2."""
    m = MiniEngine()
    _shell(m)
    m.evt("close", 300, 0, fd=0)
    e = m.evt("fcntl", 300, 0, fd=3, cmd=0)                     # F_DUPFD
    assert m.field(e, "fd.num") == 0 and m.field(e, "fd.type") == "ipv4"
    assert m.field(e, "fd.name") == "10.0.0.5:40000->203.0.113.9:4444"
    assert m.field(e, "evt.arg", "cmd") == "F_DUPFD" and m.field(e, "evt.rawarg", "cmd") == 0
    w = m.evt("write", 300, 5, fd=0, size=5, data=b"hello")
    assert m.field(w, "fd.rport") == 4444 and m.field(w, "fd.typechar") == "4"
    # F_DUPFD_CLOEXEC: the copy (not the original) goes away at exec
    c = m.evt("fcntl", 300, 10, fd=3, cmd=1030)
    assert m.field(c, "evt.arg", "cmd") == "F_DUPFD_CLOEXEC" and m.field(c, "fd.num") == 10
    fds = m.tables.get(300).fds
    assert fds[10].flags & F.O_CLOEXEC and not fds[3].flags & F.O_CLOEXEC
    m.evt("execve", 300, 0, filename="/bin/cat", argv=["cat"], comm="cat")
    assert set(m.tables.get(300).fds) == {0, 3}


def test_fcntl_other_commands_and_unknown_sources_leave_no_stale_entry() -> None:
    m = MiniEngine()
    _shell(m)
    g = m.evt("fcntl", 300, 2, fd=3, cmd=3)                      # F_GETFL: returns flags
    assert m.field(g, "fd.num") == 3 and 2 not in m.tables.get(300).fds
    m.tables.get(300).fds[7] = m.tables.get(300).fds[3]         # a stale entry at 7
    e = m.evt("fcntl", 300, 7, fd=99, cmd=0)                     # a copy of an fd we never saw
    assert e.fdinfo is None and 7 not in m.tables.get(300).fds
    f = m.evt("fcntl", 300, -9, fd=3, cmd=0)                     # EBADF... changes nothing
    assert m.field(f, "fd.num") == 3


def test_pipes_socketpairs_and_anonymous_fds() -> None:
    m = MiniEngine()
    _shell(m)
    p = m.evt("pipe2", 300, 0, fd1=5, fd2=6, ino=4242, flags=F.O_CLOEXEC)
    fds = m.tables.get(300).fds
    assert m.field(p, "fd.num") == 5 and m.field(p, "fd.type") == "pipe"
    assert fds[6].name == "pipe:[4242]" and fds[6].ino == 4242 and fds[6].flags & F.O_CLOEXEC
    assert m.field(p, "evt.arg", "flags") == "O_CLOEXEC"
    m.evt("pipe", 300, 0, fd1=7, fd2=8, ino=7)
    assert not fds[8].flags & F.O_CLOEXEC
    sp = m.evt("socketpair", 300, 0, fd1=9, fd2=11, domain=F.AF_UNIX,
               type=F.SOCK_STREAM | F.O_CLOEXEC, proto=0)
    assert m.field(sp, "fd.type") == "unix" and fds[11].typechar == "u"
    assert fds[9].flags & F.O_CLOEXEC
    assert m.field(sp, "evt.arg", "domain") == "AF_UNIX"
    assert m.evt("pipe", 300, -24, fd1=-1, fd2=-1, ino=0).fdinfo is None    # EMFILE
    t = m.evt("timerfd_create", 300, 12, clockid=1, flags=0)
    assert m.field(t, "fd.type") == "timerfd"
    ev = m.evt("eventfd2", 300, 13, initval=0, flags=0)
    assert m.field(ev, "fd.type") == "event"


def test_pidfd_getfd_copies_the_other_processes_fd() -> None:
    m = MiniEngine()
    _shell(m)
    m.add(tid=400, ptid=1, comm="thief", exe="thief", exepath="/tmp/thief", cwd="/", vpid=400)
    o = m.evt("pidfd_open", 400, 5, pid=300, flags=0)
    assert m.field(o, "fd.type") == "pidfd" and m.field(o, "fd.typechar") == "P"
    g = m.evt("pidfd_getfd", 400, 6, pid_fd=5, target_fd=3, flags=0)
    assert m.field(g, "fd.num") == 6 and m.field(g, "fd.rport") == 4444
    stolen = m.tables.get(400).fds[6]
    assert stolen.flags & F.O_CLOEXEC and stolen is not m.tables.get(300).fds[3]
    # a pidfd we never saw open, or an fd the other process does not have: no entry
    m.tables.get(400).fds[7] = stolen
    assert m.evt("pidfd_getfd", 400, 7, pid_fd=99, target_fd=3, flags=0).fdinfo is None
    assert 7 not in m.tables.get(400).fds
    assert m.evt("pidfd_getfd", 400, 8, pid_fd=5, target_fd=42, flags=0).fdinfo is None


class _Evt:
    """What FdTracker.verdict reads of an event."""

    source = "syscall"

    def __init__(self, type_: str, res: int, pid: int = 300, **args: object) -> None:
        self.type, self.res, self.pid, self.tid, self.args = type_, res, pid, pid, args


def test_kernel_filter_replay_forgets_fds_that_fcntl_and_pairs_reuse() -> None:
    """As emit_fcntl and emit_fdpair (kf_fd_reused): a number a filtered open left untracked,
    or with a directory verdict, is forgotten when F_DUPFD* or a pipe/socketpair reuses it, so
    its close reaches userspace; other fcntl commands forget nothing."""
    tr = FdTracker(FilterPlan(types={}, unfiltered={}, filter_close=True))
    for fd in (7, 8, 9, 10):
        tr.untracked.add((300, fd))
        tr.dirs[(300, fd)] = ("/d", "/d")
    tr.verdict(_Evt("fcntl", 7, fd=3, cmd=3))                  # F_GETFL returning 7: no fd
    assert (300, 7) in tr.untracked and (300, 7) in tr.dirs
    tr.verdict(_Evt("fcntl", 7, fd=3, cmd=1030))
    tr.verdict(_Evt("pipe2", 0, fd1=8, fd2=9, ino=1, flags=0))
    tr.verdict(_Evt("pidfd_getfd", 10, pid_fd=4, target_fd=1, flags=0))
    assert not tr.untracked and not tr.dirs
    assert tr.verdict(_Evt("close", 0, fd=7)) is None           # emitted, not untracked_fd
