"""The state parser on hand-built event sequences: fork → exec → open → connect → dup → close → exit."""

from __future__ import annotations

from falconet.state import flags as F
from state_helpers import SEC, MiniEngine

O_RDONLY_CLOEXEC = F.O_CLOEXEC


def _host(m: MiniEngine) -> None:
    m.add(tid=1, ptid=0, comm="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd",
          cwd="/", sid=1, vpid=1)
    m.add(tid=100, ptid=1, comm="sshd", exe="sshd:", exepath="/usr/sbin/sshd", cwd="/", sid=100,
          vpid=100)
    m.add(tid=150, ptid=100, comm="bash", exe="-bash", exepath="/usr/bin/bash", cwd="/home/alice",
          uid=1000, gid=1000, euid=1000, egid=1000, loginuid=1000, tty=34816, sid=150, vpgid=150,
          vpid=150, cap_effective=0, start_ts=m.ts - 60 * SEC)


def test_fork_exec_open_connect_dup_close_exit() -> None:
    m = MiniEngine()
    _host(m)
    fork = m.evt("procfork", 150, None, child_tid=200, child_pid=200, parent_tid=150,
                 parent_pid=150, cgroup_id=77)
    child = m.tables.get(200)
    assert fork.thread.pid == 150 and child is not None
    assert (child.ptid, child.cwd, child.uid, child.comm, child.cgroup_id) == (150, "/home/alice",
                                                                                1000, "bash", 77)
    # clone exit in the parent: nothing new, the child exists
    m.evt("clone", 150, 200, child_tid=200, child_pid=200, flags=0x1200011)
    assert len([t for t in m.tables.threads.values() if t.pid == 200]) == 1

    ex = m.evt("execve", 200, 0, filename="/usr/bin/cat", argv=["cat", "/etc/shadow"],
               comm="cat", exepath="/usr/bin/cat", uid=1000, gid=1000, loginuid=1000, tty=34816,
               sid=150, cgroup_id=77, cap_effective=(1 << 21))
    assert m.field(ex, "proc.name") == "cat"
    assert m.field(ex, "proc.exe") == "cat"
    assert m.field(ex, "proc.args") == "/etc/shadow"
    assert m.field(ex, "proc.cmdline") == "cat /etc/shadow"
    assert m.field(ex, "proc.exepath") == "/usr/bin/cat"
    assert m.field(ex, "proc.pname") == "bash"
    assert m.field(ex, "proc.pexepath") == "/usr/bin/bash"
    assert m.field(ex, "proc.pcmdline") == "bash"
    assert m.field(ex, "proc.aname", "2") == "sshd"
    assert m.field(ex, "proc.aname", "3") == "systemd"
    assert m.field(ex, "proc.aname", "4") is None
    assert m.field(ex, "proc.aname", "0") == "cat"
    assert m.field(ex, "proc.aname") == ("bash", "sshd", "systemd")
    assert m.field(ex, "proc.apid") == (150, 100, 1)
    assert m.field(ex, "proc.ppid") == 150
    assert m.field(ex, "proc.sname") == "bash"
    assert m.field(ex, "proc.loginshellid") == 150
    assert m.field(ex, "proc.tty") == 34816
    assert m.field(ex, "user.loginuid") == 1000
    assert m.field(ex, "thread.cap_effective") == "CAP_SYS_ADMIN"
    assert m.field(ex, "evt.arg", "flags") == "0"        # replay, no exe flags in the event
    ex2 = m.evt("execve", 200, 0, filename="/tmp/x", argv=["x"], exe_writable=True,
                exe_upper_layer=True, exe_ino=5)
    assert m.field(ex2, "evt.arg", "flags") == "EXE_WRITABLE|EXE_UPPER_LAYER"
    assert m.field(ex2, "proc.is_exe_upper_layer") is True and m.field(ex2, "proc.exe_ino") == 5
    ex3 = m.evt("execve", 200, 0, filename="/bin/y", argv=["y"], exe_on_overlay=True,
                exe_upper_layer=False)
    assert m.field(ex3, "evt.arg", "flags") == "EXE_LOWER_LAYER"
    ex = m.evt("execve", 200, 0, filename="/usr/bin/cat", argv=["cat", "/etc/shadow"],
               comm="cat", exepath="/usr/bin/cat", exe_upper_layer=False, exe_writable=False)

    op = m.evt("openat", 200, 3, fd=3, dirfd=-100, name="../../etc/./shadow",
               flags=O_RDONLY_CLOEXEC, mode=0)
    assert m.field(op, "fd.name") == "/etc/shadow"
    assert m.field(op, "fd.nameraw") == "../../etc/./shadow"
    assert m.field(op, "fd.directory") == "/etc"
    assert m.field(op, "fd.filename") == "shadow"
    assert (m.field(op, "fd.num"), m.field(op, "fd.typechar"), m.field(op, "fd.type")) == (3, "f", "file")
    assert m.field(op, "evt.is_open_read") is True
    assert m.field(op, "evt.is_open_write") is False
    assert m.field(op, "evt.arg", "flags") == "O_RDONLY|O_CLOEXEC"
    assert m.field(op, "evt.rawarg", "flags") == O_RDONLY_CLOEXEC
    assert m.field(op, "evt.arg", "dirfd") == "AT_FDCWD"
    assert m.field(op, "evt.arg", "fd") == "<f>/etc/shadow"
    assert m.field(op, "evt.res") == "SUCCESS"
    assert "flags=524288(O_RDONLY|O_CLOEXEC)" in m.field(op, "evt.args")

    bad = m.evt("openat", 200, -2, fd=-2, dirfd=-100, name="/nope", flags=0o1101, mode=0o644)
    assert (m.field(bad, "fd.num"), m.field(bad, "fd.name")) == (-1, "/nope")
    assert m.field(bad, "evt.res") == "ENOENT"
    assert m.field(bad, "evt.failed") is True
    assert m.field(bad, "evt.rawres") == -2
    assert m.field(bad, "evt.is_open_write") is True
    assert m.field(bad, "evt.arg", "flags") == "O_TRUNC|O_CREAT|O_WRONLY"
    assert 2 not in m.tables.get(200).fds and -1 not in m.tables.get(200).fds

    so = m.evt("socket", 200, 4, fd=4, domain=2, type=1, proto=0)
    assert m.field(so, "fd.typechar") == "4" and m.field(so, "fd.l4proto") == "tcp"
    assert m.field(so, "evt.arg", "domain") == "AF_INET"
    co = m.evt("connect", 200, 0, fd=4, family=2, sip="127.0.0.1", sport=41234, dip="127.0.0.1",
               dport=8080, path="", tuple="127.0.0.1:41234->127.0.0.1:8080")
    assert m.field(co, "fd.name") == "127.0.0.1:41234->127.0.0.1:8080"
    assert (m.field(co, "fd.cip"), m.field(co, "fd.cport")) == ("127.0.0.1", 41234)
    assert (m.field(co, "fd.sip"), m.field(co, "fd.sport")) == ("127.0.0.1", 8080)
    assert (m.field(co, "fd.lport"), m.field(co, "fd.rport")) == (41234, 8080)
    assert m.field(co, "fd.connected") is True and m.field(co, "fd.is_server") is False
    assert m.field(co, "fd.ip") == ("127.0.0.1", "127.0.0.1")
    assert m.field(co, "fd.sockfamily") == "ip"
    assert m.field(co, "fd.name_changed") is False      # named for the first time

    du = m.evt("dup2", 200, 1, fd=1, oldfd=4, newfd=1)
    assert m.field(du, "evt.rawres") == 1
    assert m.field(du, "fd.type") == "ipv4"
    assert m.field(du, "fd.num") == 1
    assert m.field(du, "fd.types", "1") == ("ipv4",)
    assert set(m.field(du, "fd.types")) == {"file", "ipv4"}

    cl = m.evt("close", 200, 0, fd=3)
    assert m.field(cl, "fd.name") == "/etc/shadow"
    assert 3 not in m.tables.get(200).fds

    m.evt("procexit", 200, None, status=0)
    dead = m.tables.get(200)
    assert dead is not None and dead.dead           # kept for the grace period
    m.ts += 10 * SEC
    m.add(tid=300, ptid=150, comm="x")
    m.evt("procexit", 300, None, status=0)          # exits drive reclaim by event time
    assert m.tables.get(200) is None


def test_exec_closes_cloexec_fds_and_reresolves_container() -> None:
    m = MiniEngine()
    _host(m)
    t = m.tables.get(150)
    t.container_id = "a" * 64
    t.cgroup_id = 5
    m.evt("openat", 150, 5, fd=5, dirfd=-100, name="keep", flags=0)
    m.evt("openat", 150, 6, fd=6, dirfd=-100, name="drop", flags=F.O_CLOEXEC)
    m.evt("execve", 150, 0, filename="/bin/ls", argv=["ls"], cgroup_id=5)
    assert set(t.fds) == {5} and t.fds[5].name == "/home/alice/keep"
    assert t.container_id == "a" * 64                  # same cgroup: keep
    m.evt("execve", 150, 0, filename="/bin/ls", argv=["ls"], cgroup_id=9)
    assert t.container_id == "" and t.cgroup_id == 9     # moved: re-resolve
    # failed exec changes nothing
    m.evt("execve", 150, -2, filename="/bin/nope", argv=["nope"])
    assert t.comm == "ls"


def test_exec_takes_the_kernels_parent() -> None:
    m = MiniEngine()
    _host(m)
    m.evt("procfork", 150, None, child_tid=300, child_pid=300, parent_tid=150, parent_pid=150)
    m.evt("procexit", 150, None, status=0)                  # the parent exits: re-parented to init
    e = m.evt("execve", 300, 0, filename="/bin/sleep", argv=["sleep", "9"], ppid=1)
    assert m.field(e, "proc.ppid") == 1 and m.field(e, "proc.pname") == "systemd"


def test_threads_share_fds_and_cwd_and_exec_from_thread() -> None:
    m = MiniEngine()
    _host(m)
    m.evt("procfork", 150, None, child_tid=151, child_pid=150, parent_tid=150, parent_pid=150)
    th = m.tables.get(151)
    assert th.pid == 150 and th.fds is m.tables.get(150).fds
    o = m.evt("openat", 151, 7, fd=7, dirfd=-100, name="/tmp/x", flags=0)
    assert o.thread is th and 7 in m.tables.get(150).fds
    m.evt("chdir", 151, 0, path="/tmp")
    e = m.evt("openat", 150, 8, fd=8, dirfd=-100, name="y", flags=0)
    assert m.field(e, "fd.name") == "/tmp/y" and m.field(e, "proc.cwd") == "/tmp/"
    assert m.field(o, "thread.tid") == 151 and m.field(o, "proc.pid") == 150
    assert m.field(o, "thread.ismain") is False
    # thread exit removes it at once
    m.evt("procexit", 151, None, status=0)
    assert m.tables.get(151) is None and not m.tables.get(150).dead


def test_clone_flags_files_and_parent() -> None:
    m = MiniEngine()
    _host(m)
    m.evt("openat", 150, 3, fd=3, dirfd=-100, name="/a", flags=0)
    m.evt("clone", 150, 400, child_tid=400, child_pid=400, flags=F.CLONE_FILES | F.CLONE_PARENT | 17)
    c = m.tables.get(400)
    assert c.fds is m.tables.get(150).fds and c.ptid == 100
    m.evt("clone", 150, 401, child_tid=401, child_pid=401, flags=17)
    c2 = m.tables.get(401)
    assert c2.fds is not m.tables.get(150).fds and 3 in c2.fds and c2.ptid == 150
    m.evt("close", 401, 0, fd=3)
    assert 3 in m.tables.get(150).fds                  # a copy, not the parent's table


def test_dirfd_relative_open_and_fchdir() -> None:
    m = MiniEngine()
    _host(m)
    m.evt("openat", 150, 9, fd=9, dirfd=-100, name="/var/log", flags=0o200000)
    o = m.evt("openat", 150, 10, fd=10, dirfd=9, name="syslog", flags=0o1)
    assert m.field(o, "fd.name") == "/var/log/syslog" and m.field(o, "evt.is_open_write") is True
    d = m.evt("fchdir", 150, 0, fd=9)
    assert m.field(d, "fd.typechar") == "d" and m.field(d, "fd.directory") == "/var/log"
    assert m.tables.get(150).cwd == "/var/log"


def test_accept_bind_listen_udp_names() -> None:
    m = MiniEngine()
    _host(m)
    m.evt("socket", 150, 3, fd=3, domain=2, type=1, proto=0)
    # collector convention: bind's local address in sip/sport; accept's peer (client) in sip/sport
    m.evt("bind", 150, 0, fd=3, family=2, sip="0.0.0.0", sport=8080, dip="", dport=0)
    li = m.evt("listen", 150, 0, fd=3, backlog=10)
    assert m.field(li, "fd.name") == "0.0.0.0:8080" and m.field(li, "fd.is_server") is True
    ac = m.evt("accept4", 150, 4, fd=4, listenfd=3, flags=0, family=2, sip="10.0.0.9",
               sport=5555, dip="10.0.0.1", dport=8080)
    assert m.field(ac, "fd.name") == "10.0.0.9:5555->10.0.0.1:8080"
    assert (m.field(ac, "fd.lport"), m.field(ac, "fd.rport")) == (8080, 5555)
    assert (m.field(ac, "fd.lip"), m.field(ac, "fd.rip")) == ("10.0.0.1", "10.0.0.9")
    assert m.field(ac, "fd.is_server") is True
    ac2 = m.evt("accept", 150, 7, fd=7, listenfd=3, family=2, sip="10.0.0.8", sport=6000, dip="",
                dport=0)                                  # local side unknown: the listener's
    assert m.field(ac2, "fd.name") == "10.0.0.8:6000->0.0.0.0:8080"
    # UDP server: recvfrom names the sender as client
    m.evt("socket", 150, 8, fd=8, domain=2, type=2, proto=0)
    m.evt("bind", 150, 0, fd=8, family=2, sip="0.0.0.0", sport=53, dip="", dport=0)
    rf = m.evt("recvfrom", 150, 20, fd=8, size=20, family=2, sip="10.1.1.1", sport=3333, dip="",
               dport=0)
    assert m.field(rf, "fd.name") == "10.1.1.1:3333->0.0.0.0:53"
    assert (m.field(rf, "fd.lport"), m.field(rf, "fd.rport"), m.field(rf, "fd.is_server")) == (53, 3333, True)
    # UDP: the tuple changes per datagram → fd.name_changed
    m.evt("socket", 150, 5, fd=5, domain=10, type=2, proto=0)
    s1 = m.evt("sendto", 150, 10, fd=5, size=10, family=10, sip="::1", sport=999, dip="::1", dport=53)
    s2 = m.evt("sendto", 150, 10, fd=5, size=10, family=10, sip="::1", sport=999, dip="::1", dport=54)
    assert m.field(s1, "fd.typechar") == "6" and m.field(s1, "fd.l4proto") == "udp"
    assert m.field(s2, "fd.name") == "::1:999->::1:54" and m.field(s2, "fd.name_changed") is True
    assert m.field(s2, "fd.connected") is False
    # unix
    m.evt("socket", 150, 6, fd=6, domain=1, type=1, proto=0)
    u = m.evt("connect", 150, 0, fd=6, family=1, path="/run/docker.sock")
    assert (m.field(u, "fd.name"), m.field(u, "fd.typechar"), m.field(u, "fd.sockfamily")) == (
        "/run/docker.sock", "u", "unix")
    assert m.field(u, "fd.sip") is None


def test_memfd_exec_and_setuid() -> None:
    m = MiniEngine()
    _host(m)
    mf = m.evt("memfd_create", 150, 3, fd=3, name="payload", flags=1)
    assert (m.field(mf, "fd.name"), m.field(mf, "fd.typechar"), m.field(mf, "evt.arg", "flags")) == (
        "/memfd:payload", "m", "MFD_CLOEXEC")
    ex = m.evt("execve", 150, 0, filename="/proc/self/fd/3", argv=["x"], exepath="/memfd:payload (deleted)")
    assert m.field(ex, "proc.is_exe_from_memfd") is True
    assert "EXE_FROM_MEMFD" in m.field(ex, "evt.arg", "flags")
    su = m.evt("setuid", 150, 0, uid=0)
    assert m.field(su, "user.uid") == 0
    m.evt("setresuid", 150, 0, ruid=4294967295, euid=33, suid=4294967295)
    t = m.tables.get(150)
    assert (t.uid, t.euid) == (0, 33)
    m.evt("setgid", 150, -1, gid=0)              # failed: unchanged
    assert t.egid == 1000
    m.evt("setresgid", 150, 0, rgid=7, egid=4294967295, sgid=4294967295)
    assert (t.gid, t.egid) == (7, 1000)
    m.evt("setgid", 150, 0, gid=0)
    assert (t.gid, t.egid) == (0, 0)


def test_unknown_tid_in_replay_is_synthesized_not_read_from_proc() -> None:
    import os

    m = MiniEngine(live=False)
    e = m.evt("openat", os.getpid(), 3, fd=3, dirfd=-100, name="/etc/hosts", flags=0, cgroup_id=42)
    assert e.thread is not None and e.thread.comm == "" and e.thread.cgroup_id == 42
    assert m.parser.synthesized == 1 and m.parser.proc_lookups == 0
    assert m.metrics.enrichment[("core-state", "miss")] == 1
    assert m.field(e, "fd.name") == "/etc/hosts"
    assert m.field(e, "proc.name") == ""
    assert m.field(e, "proc.pname") is None


def test_non_syscall_events_are_left_alone() -> None:
    from falconet.events import Event

    m = MiniEngine()
    e = Event("k8s_audit", "audit", 1, 0, 0, {"x": 1})
    m.parser(e)
    assert e.thread is None and not m.tables.threads


def test_table_bounded_under_fork_exit_churn() -> None:
    m = MiniEngine(max_threads=5000)
    m.tables.max_dead = 256
    _host(m)
    for i in range(20000):
        tid = 1000 + i
        m.evt("procfork", 150, None, child_tid=tid, child_pid=tid, parent_tid=150, parent_pid=150)
        m.evt("openat", tid, 3, fd=3, dirfd=-100, name="/tmp/f", flags=0)
        m.evt("procexit", tid, None, status=0)
    # only the few live processes plus at most max_dead exited ones remain
    assert len(m.tables.threads) <= 3 + 256 + 1
    assert len(m.tables.dead) <= 256
    assert m.tables.reclaimed >= 20000 - 256


def test_table_cap_evicts_and_counts() -> None:
    m = MiniEngine(max_threads=100)
    _host(m)
    for i in range(500):
        tid = 1000 + i
        m.evt("procfork", 150, None, child_tid=tid, child_pid=tid, parent_tid=150, parent_pid=150)
    assert len(m.tables.threads) == 100
    assert m.parser.evictions == m.tables.evictions >= 400
    assert m.metrics.drops["state_evicted"] == m.parser.evictions
    assert m.tables.sizes()["threads"] == 100


def test_container_session_and_group_leaders_as_falco() -> None:
    """Falco 0.44.1, side by side (tests/fields/test_vs_falco.py): a container's init (vpid 1,
    sid 1 after runc's setsid) has proc.sname/proc.vpgid.name "" (its parent, the shim, is in
    another session; the process itself is no fallback) and is the session leader (sid ==
    vpid); its child names the init."""
    m = MiniEngine()
    m.add(tid=900, ptid=1, comm="containerd-shim", sid=900, vpgid=900, vpid=900)
    m.add(tid=3964, ptid=900, comm="sh", sid=1, vpgid=1, vpid=1)
    m.add(tid=4002, ptid=3964, comm="sh", sid=1, vpgid=1, vpid=8)
    init = m.evt("openat", 3964, 3, fd=3, dirfd=-100, name="/x", flags=0, mode=0)
    assert m.field(init, "proc.sname") == "" and m.field(init, "proc.vpgid.name") == ""
    assert m.field(init, "proc.is_sid_leader") is True and m.field(init, "proc.sid") == 1
    child = m.evt("openat", 4002, 3, fd=3, dirfd=-100, name="/y", flags=0, mode=0)
    assert m.field(child, "proc.sname") == "sh" and m.field(child, "proc.vpgid.name") == "sh"
    assert m.field(child, "proc.is_sid_leader") is False


def test_open_flags_name_the_overlay_layer() -> None:
    """ftype bits 3/20 (bpf open_ftype) render as Falco's FD_UPPER_LAYER / FD_LOWER_LAYER,
    after O_F_CREATED (Falco's order)."""
    m = MiniEngine()
    _host(m)
    up = m.evt("openat", 150, 3, fd=3, dirfd=-100, name="/u", flags=0o1101, mode=0o600,
               ftype=1 | F.FTYPE_CREATED | F.FTYPE_UPPER | (0o100600 << 4))
    assert m.field(up, "evt.arg", "flags") == "O_TRUNC|O_CREAT|O_WRONLY|O_F_CREATED|FD_UPPER_LAYER"
    low = m.evt("openat", 150, 4, fd=4, dirfd=-100, name="/l", flags=0, mode=0,
                ftype=1 | F.FTYPE_LOWER | (0o100644 << 4))
    assert m.field(low, "evt.arg", "flags") == "O_RDONLY|FD_LOWER_LAYER"
    plain = m.evt("openat", 150, 5, fd=5, dirfd=-100, name="/p", flags=0, mode=0,
                  ftype=1 | (0o100644 << 4))
    assert m.field(plain, "evt.arg", "flags") == "O_RDONLY"
