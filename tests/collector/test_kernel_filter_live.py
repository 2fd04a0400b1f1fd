"""The rule-derived kernel filter in the real kernel: what no rule can match is not emitted, the
closes of the fds it dropped are not either, and everything that might matter still is.

A hand-written plan stands for what :mod:`falconet.rules.kfilter` derives (its own tests cover
the derivation); here the BPF side is checked against the decision procedure
:func:`falconet.kfilter.open_passes` on the same opens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import need_bcc
from falconet.kfilter import Clause, FilterPlan, TypeFilter

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

READ_SENSITIVE = Clause(any_path=False, exact=frozenset({"/etc/shadow", "/etc/hostname"}),
                        prefixes=frozenset({"/etc/ssh/"}), need_read=True, need_write=False,
                        need_success=True)
WRITE_ETC = Clause(any_path=False, exact=frozenset(), prefixes=frozenset({"/etc/"}),
                   need_read=False, need_write=True, need_success=True)
PLAN = FilterPlan(types={t: TypeFilter(t, (READ_SENSITIVE, WRITE_ETC))
                         for t in ("open", "openat", "openat2", "creat")},
                  unfiltered={}, filter_close=True)

# Each case opens a path (and closes the fd unless told to keep it); the parent looks for the
# marker-tagged events of this child only.
PROBE = textwrap.dedent(r"""
    import os, sys
    d = sys.argv[1]
    def touch(p, flags=os.O_RDONLY, keep=False):
        try:
            fd = os.open(p, flags, 0o600)
        except OSError:
            return -1
        if not keep:
            os.close(fd)
        return fd
    os.chdir(d)
    touch("/etc/hostname")                     # exact name, read: emitted
    touch("/usr/lib/os-release")               # no clause: dropped (path)
    touch("/etc/passwd")                       # read below /etc, not listed: dropped (path)
    touch("/etc/../etc/passwd")                # ".." component: emitted (irregular)
    touch("/etc//passwd")                      # "//": emitted (irregular)
    touch("rel.txt", os.O_WRONLY | os.O_CREAT) # below the cwd d, no rule path: dropped
    touch("../rel.txt", os.O_WRONLY | os.O_CREAT)  # "..": emitted (irregular)
    touch("/etc")                              # a directory: emitted
    touch("/nonexistent-kf")                   # failed, every clause needs success: dropped
    touch(d + "/w.txt", os.O_WRONLY | os.O_CREAT)   # write outside /etc: dropped (path)
    fd = touch("/etc/passwd", keep=True)       # dropped; its close must be dropped too ...
    os.dup2(os.open("/etc/hostname", os.O_RDONLY), fd)   # ... unless dup2 replaced it: emitted
    os.close(fd)
    fd2 = touch("/usr/lib/os-release", keep=True)
    os.close(fd2)                              # close of a dropped open: dropped (untracked_fd)
    # the kernel's path decides too (step 6): the rules see it (falconet.rules.views)
    os.symlink("/etc/hostname", d + "/lnk-host")
    os.symlink("/etc/passwd", d + "/lnk-passwd")
    touch(d + "/lnk-host")                     # requested: no clause; opened: exact: emitted
    touch("/proc/self/root/etc/hostname")      # likewise
    touch(d + "/lnk-passwd")                   # neither path passes: dropped (path)
    # relative (the cwd d's verdict drops both names) or the kernel's path: either passes
    touch("lnk-host")                          # the kernel's path passes: emitted
    touch("lnk-passwd")                        # neither passes: dropped (path)
    print(fd, fd2, flush=True)
""")


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    need_bcc()
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    m = EngineMetrics()
    c = LiveCollector({"openat", "open", "close", "dup2", "dup3", "execve"},
                      metrics=m, kernel_filter=PLAN)
    d = tmp_path_factory.mktemp("kf")
    p = subprocess.Popen([sys.executable, "-c", PROBE, str(d)], stdout=subprocess.PIPE,
                         text=True)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    fd, fd2 = (int(x) for x in out.split())
    # its exit is the last event of the child: once seen, all its events are in
    c.wait_for(lambda e: e.type == "procexit" and e.pid == p.pid, what="the probe's exit")
    yield c, m, str(d), fd, fd2, p.pid
    c.close()


def _opens(c, pid):
    return [e.args["name"] for e in c.matching(lambda e: e.pid == pid and e.type == "openat")]


def test_opens_no_rule_can_match_are_not_emitted(filtered):
    c, m, d, fd, fd2, pid = filtered
    names = _opens(c, pid)
    for emitted in ("/etc/hostname", "/etc/../etc/passwd", "/etc//passwd", "../rel.txt",
                    "/etc", d + "/lnk-host", "/proc/self/root/etc/hostname", "lnk-host"):
        assert emitted in names, (emitted, names)
    for dropped in ("/usr/lib/os-release", "/etc/passwd", "/nonexistent-kf", d + "/w.txt",
                    "rel.txt", d + "/lnk-passwd", "lnk-passwd"):
        assert dropped not in names, (dropped, names)
    resolved = {e.args["name"]: e.args.get("resolved")
                for e in c.matching(lambda e: e.pid == pid and e.type == "openat")}
    assert resolved[d + "/lnk-host"] == resolved["/proc/self/root/etc/hostname"] == \
        resolved["lnk-host"] == "/etc/hostname"


def test_the_directory_open_carries_its_file_type(filtered):
    c, m, d, _fd, _fd2, pid = filtered
    etc = c.matching(lambda e: e.pid == pid and e.type == "openat" and
                     e.args.get("name") == "/etc")
    host = c.matching(lambda e: e.pid == pid and e.type == "openat" and
                      e.args.get("name") == "/etc/hostname")
    assert etc and host
    assert {e.args["ftype"] & 3 for e in etc} == {3} and {e.args["ftype"] & 3 for e in host} == {1}
    assert {e.args["ftype"] >> 4 for e in etc} == {0o040000}     # S_IFDIR


def test_closes_of_dropped_fds_are_dropped_but_not_after_dup2(filtered):
    c, m, d, fd, fd2, pid = filtered
    closes = [e.args["fd"] for e in c.matching(lambda e: e.pid == pid and e.type == "close")]
    # fd: its open was dropped, but dup2 put a known file there, so its close is emitted
    assert fd in closes
    dups = c.matching(lambda e: e.pid == pid and e.type == "dup2")
    assert any(e.args["newfd"] == fd for e in dups)
    # after its exec, every emitted close is of an fd userspace was told about (an emitted
    # open or dup2 of that number before it), or one it inherited (0, 1, 2); before the exec,
    # subprocess closes the fds the child inherited from pytest, which the filter never saw
    known: set[int] = {0, 1, 2}
    evs = c.matching(lambda e: e.pid == pid and e.type in ("execve", "openat", "dup2", "close"))
    execs = [i for i, e in enumerate(evs) if e.type == "execve"]
    assert execs
    for e in evs[execs[-1] + 1:]:
        if e.type == "close":
            assert e.args["fd"] in known, (e, known)
            known.discard(e.args["fd"])
        elif e.res is not None and e.res >= 0:
            known.add(e.res)


def test_filtered_events_are_counted_by_type_and_reason(filtered):
    c, m, *_ = filtered
    c.source.poll_stats()
    got = dict(m.kernel_filtered)
    assert got.get(("openat", "path"), 0) >= 4
    assert got.get(("openat", "failed"), 0) >= 1
    assert got.get(("close", "untracked_fd"), 0) >= 1
    assert m.kernel_drops == 0          # filtered is not dropped


def test_the_kernel_agrees_with_the_decision_procedure(filtered):
    """Every open of the probe the kernel emitted passes open_passes, and every path it dropped
    fails it (same flags, result and file type)."""
    from falconet.kfilter import open_passes  # noqa: PLC0415
    c, m, d, _fd, _fd2, pid = filtered
    tf = PLAN.types["openat"]
    for e in c.matching(lambda e: e.pid == pid and e.type == "openat"):
        assert open_passes(tf, e.args["name"], e.args["flags"], e.res,
                           bool(e.args["ftype"] & 2), e.args.get("resolved") or "") is None, e
    assert open_passes(tf, "/usr/lib/os-release", os.O_RDONLY, 3, False) == "path"
    assert open_passes(tf, d + "/lnk-passwd", os.O_RDONLY, 3, False, "/etc/passwd") == "path"
    assert open_passes(tf, "/nonexistent-kf", os.O_RDONLY, -2, False) == "failed"


def test_a_reload_replaces_the_running_filter(tmp_path):
    """set_kernel_filter (rules reload): the new plan's paths pass, the old plan's no longer
    do; a path the new plan drops is counted."""
    need_bcc()
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    m = EngineMetrics()
    c = LiveCollector({"openat", "close"}, metrics=m, kernel_filter=PLAN)
    try:
        other = Clause(any_path=False, exact=frozenset({"/usr/lib/os-release"}),
                       prefixes=frozenset(), need_read=True, need_write=False,
                       need_success=True)
        c.source.set_kernel_filter(FilterPlan(types={"openat": TypeFilter("openat", (other,))},
                                              unfiltered={}, filter_close=True))
        code = ("import os\nfor p in ('/usr/lib/os-release', '/etc/hostname'):\n"
                "    os.close(os.open(p, os.O_RDONLY))\n")
        p = subprocess.Popen([sys.executable, "-c", code])
        assert p.wait(30) == 0
        c.wait_for(lambda e: e.type == "procexit" and e.pid == p.pid, what="the child's exit")
        names = [e.args["name"] for e in c.matching(lambda e: e.pid == p.pid and
                                                     e.type == "openat")]
        assert "/usr/lib/os-release" in names and "/etc/hostname" not in names
    finally:
        c.close()


#: fds a dropped open left, closed by close_range (not traced: the kernel's memory of them
#: stays), then reused by fcntl(F_DUPFD) and pipe2: their closes must reach userspace
REUSE = textwrap.dedent(r"""
    import ctypes, fcntl, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    def dropped_then_gone():
        fd = os.open("/usr/lib/os-release", os.O_RDONLY)     # no clause: dropped
        assert libc.syscall(436, fd, fd, 0) == 0             # close_range: untraced
        return fd
    s = socket.socket()                                     # before: it takes no freed number
    a = dropped_then_gone()
    assert fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, a) == a    # the socket's copy on that number
    os.close(a)
    b = dropped_then_gone()
    r, w = os.pipe()
    assert b in (r, w)
    os.close(b)
    print(a, b, flush=True)
""")


def test_fds_reused_by_fcntl_or_a_pipe_are_tracked_again():
    """kf_fd_reused: an fd number made by fcntl(F_DUPFD*) or pipe2 is forgotten by the kernel
    filter's fd memory, so the close of the socket copy or the pipe end on it is emitted, not
    dropped as the close of the filtered open that once had the number."""
    need_bcc()
    from live_collector import LiveCollector  # noqa: PLC0415
    c = LiveCollector({"openat", "close", "connect"}, kernel_filter=PLAN)
    try:
        assert c.source.all_fcntl is False
        p = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True,
                           check=True)
        a, b = map(int, p.stdout.split())
        pid = c.wait_for(lambda e: e.type == "pipe2" and b in (e.args["fd1"], e.args["fd2"]),
                         what="pipe2").pid
        fc = c.wait_for(lambda e: e.type == "fcntl" and e.pid == pid and e.res == a,
                        what="fcntl F_DUPFD")
        assert fc.args["cmd"] == 0
        for fd in (a, b):
            c.wait_for(lambda e, fd=fd: e.type == "close" and e.pid == pid
                       and e.args["fd"] == fd and e.ts > fc.ts, what=f"close of {fd}")
        # the dropped opens' own closes never happened (close_range): nothing else of ours
        assert not c.matching(lambda e: e.type == "fcntl" and e.pid == pid and e.args["cmd"] != 0)
    finally:
        c.close()
