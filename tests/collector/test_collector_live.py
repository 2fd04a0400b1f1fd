"""The eBPF collector against the real kernel: events from real commands have the right values.

Runs as root with bcc (``need_bcc``). One collector (all event types) is shared by the module;
the selective-attach and drop tests start their own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import need, need_bcc, wait_for
from falconet.collector import program

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

ALL = None     # event_types None = everything the collector knows

PROBE = textwrap.dedent(r"""
    import ctypes, os, socket, sys
    os.chdir(sys.argv[1])
    port = int(sys.argv[2])
    fd = os.open("probe.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.mkdir("d1", 0o750)
    os.rename("probe.txt", "probe2.txt")
    os.symlink("probe2.txt", "lnk")
    os.chmod("probe2.txt", 0o600)
    os.unlink("lnk")
    os.dup2(fd, 77)
    os.close(77)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", port))
    s.close()
    m = os.memfd_create("falconet-test", 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, b"fnprobe", 0, 0, 0)
    os.chdir("d1")
    os.execv("/bin/true", ["true", "marker-7f3a"])
""")


@pytest.fixture(scope="module")
def live():
    need_bcc()
    from live_collector import LiveCollector  # noqa: PLC0415
    c = LiveCollector(ALL)
    yield c
    c.close()


def _run_probe(tmp_path: Path) -> tuple[subprocess.Popen, int, socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-c", PROBE, str(tmp_path), str(port)])
    assert p.wait(15) == 0
    return p, port, srv


def test_file_socket_and_exec_events_carry_the_real_values(live, tmp_path):
    p, port, srv = _run_probe(tmp_path)
    pid = p.pid

    def of(*types):
        return lambda e: e.pid == pid and e.type in types

    o = live.wait_for(lambda e: of("openat")(e) and e.args["name"] == "probe.txt", what="openat")
    assert o.tid == pid and o.res >= 3 and o.args["fd"] == o.res
    assert o.args["dirfd"] == -100
    assert o.args["flags"] == os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    assert o.args["mode"] == 0o640
    assert o.args["cgroup_id"] > 0

    mk = live.wait_for(lambda e: of("mkdir", "mkdirat")(e), what="mkdir")
    assert mk.args["path"] == "d1" and mk.args["mode"] == 0o750 and mk.res == 0
    rn = live.wait_for(of("rename", "renameat", "renameat2"), what="rename")
    assert (rn.args["oldpath"], rn.args["newpath"], rn.res) == ("probe.txt", "probe2.txt", 0)
    sl = live.wait_for(of("symlink", "symlinkat"), what="symlink")
    assert (sl.args["target"], sl.args["linkpath"]) == ("probe2.txt", "lnk")
    ch = live.wait_for(of("chmod", "fchmodat"), what="chmod")
    assert ch.args["filename"] == "probe2.txt" and ch.args["mode"] == 0o600
    ul = live.wait_for(lambda e: of("unlink", "unlinkat")(e)
                       and (e.args.get("path") or e.args.get("name")) == "lnk", what="unlink")
    assert ul.res == 0
    d2 = live.wait_for(of("dup2", "dup3"), what="dup2")
    assert d2.args["oldfd"] == o.res and d2.args["newfd"] == 77 and d2.res == 77
    live.wait_for(lambda e: of("close")(e) and e.args["fd"] == 77 and e.res == 0, what="close")

    sk = live.wait_for(lambda e: of("socket")(e) and e.args["domain"] == socket.AF_INET,
                       what="socket")
    assert sk.args["type"] & 0xF == socket.SOCK_STREAM and sk.res == sk.args["fd"] >= 0
    cn = live.wait_for(of("connect"), what="connect")
    assert cn.res == 0 and cn.args["fd"] == sk.res
    assert (cn.args["family"], cn.args["dip"], cn.args["dport"]) == (2, "127.0.0.1", port)
    assert cn.args["tuple"].endswith(f"->127.0.0.1:{port}")

    mf = live.wait_for(of("memfd_create"), what="memfd_create")
    assert mf.args["name"] == "falconet-test" and mf.res >= 0
    pr = live.wait_for(lambda e: of("prctl")(e) and e.args["option"] == 15, what="prctl")
    assert pr.args["arg2_str"] == "fnprobe"
    cd = live.wait_for(lambda e: of("chdir")(e) and e.args["path"] == "d1", what="chdir")
    assert cd.res == 0

    ex = live.wait_for(lambda e: of("execve")(e) and e.args["filename"] == "/bin/true",
                       what="execve")
    assert ex.res == 0 and ex.tid == pid
    assert ex.args["argv"] == ["true", "marker-7f3a"]
    assert ex.args["comm"] == "true"
    assert ex.args["uid"] == os.getuid() and ex.args["gid"] == os.getgid()
    assert ex.args["ppid"] == os.getpid()
    # cwd/exepath come from /proc at decode time; a very short-lived process may be gone by then
    assert ex.args["cwd"] in (str(tmp_path / "d1"), "")
    assert ex.args["exepath"] in (os.path.realpath("/bin/true"), "/bin/true")
    # (the fork that started the probe happened in this process: filtered, see the own-process
    # test; test_fork_events_link_child_to_parent covers procfork)
    ex_end = live.wait_for(lambda e: e.type == "procexit" and e.pid == pid, what="procexit")
    assert ex_end.args["status"] == 0
    srv.close()


def test_accept_bind_listen_have_addresses(live):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    code = textwrap.dedent("""
        import socket, sys
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
        print(s.getsockname()[1], flush=True)
        c, a = s.accept(); print(a[1], flush=True); c.close()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    srv.connect(("127.0.0.1", port))
    client_port = srv.getsockname()[1]
    assert int(p.stdout.readline()) == client_port
    p.wait(5)
    srv.close()
    b = live.wait_for(lambda e: e.pid == p.pid and e.type == "bind", what="bind")
    assert (b.args["sip"], b.args["family"], b.res) == ("127.0.0.1", 2, 0)
    lst = live.wait_for(lambda e: e.pid == p.pid and e.type == "listen", what="listen")
    assert lst.args["fd"] == b.args["fd"] and lst.args["backlog"] == 1
    ac = live.wait_for(lambda e: e.pid == p.pid and e.type in ("accept", "accept4"),
                       what="accept")
    assert ac.res >= 0 and ac.args["listenfd"] == b.args["fd"]
    assert (ac.args["sip"], ac.args["sport"]) == ("127.0.0.1", client_port)


@pytest.mark.parametrize("fam,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_connect_carries_the_kernels_local_address(live, fam, host):
    """The client's side of connect's tuple comes from its struct sock (not /proc: the client
    is gone before the event is parsed, and a replay parser never reads /proc)."""
    from falconet.state.parser import StateParser  # noqa: PLC0415
    from falconet.state.tables import StateTables  # noqa: PLC0415

    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    code = ("import socket,sys; s=socket.socket(int(sys.argv[1])); s.connect((sys.argv[2], "
            "int(sys.argv[3]))); print(s.getsockname()[1])")
    with srv:
        out = subprocess.run([sys.executable, "-c", code, str(int(fam)), host, str(port)],
                             capture_output=True, text=True, check=True, timeout=10)
    cport = int(out.stdout)
    cn = live.wait_for(lambda e: e.type == "connect" and e.args.get("dport") == port,
                       what="connect")
    assert (cn.args["sip"], cn.args["sport"]) == (host, cport)
    assert not set(program.LOCAL_KEYS) & set(cn.args)
    parser = StateParser(StateTables(), live=False)
    parser(cn)
    assert cn.fdinfo.name == f"{host}:{cport}->{host}:{port}"
    assert (cn.fdinfo.sip, cn.fdinfo.sport) == (host, cport)


@pytest.mark.parametrize("fam,any_addr,host", [(socket.AF_INET, "0.0.0.0", "127.0.0.1"),
                                               (socket.AF_INET6, "::", "::1")])
def test_accept_carries_the_kernels_local_address(live, fam, any_addr, host):
    """The server's side of accept's tuple is the accepted socket's address (127.0.0.1), not
    the listener's wildcard, read in the kernel: the server is gone before the event is parsed."""
    from falconet.state.parser import StateParser  # noqa: PLC0415
    from falconet.state.tables import StateTables  # noqa: PLC0415

    code = textwrap.dedent("""
        import socket, sys
        s = socket.socket(int(sys.argv[1])); s.bind((sys.argv[2], 0)); s.listen(1)
        print(s.getsockname()[1], flush=True)
        c, a = s.accept(); c.close()
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(int(fam)), any_addr],
                         stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    with socket.socket(fam, socket.SOCK_STREAM) as cli:
        cli.connect((host, port))
        cport = cli.getsockname()[1]
    assert p.wait(5) == 0
    ac = live.wait_for(lambda e: e.pid == p.pid and e.type in ("accept", "accept4"),
                       what="accept")
    assert (ac.args["sip"], ac.args["sport"], ac.args["dip"], ac.args["dport"]) == (
        host, cport, host, port)
    assert not set(program.LOCAL_KEYS) & set(ac.args)
    parser = StateParser(StateTables(), live=False)
    parser(ac)
    assert ac.fdinfo.name == f"{host}:{cport}->{host}:{port}"


def test_open_that_creates_its_file_has_o_f_created(live, tmp_path):
    """FMODE_CREATED of the new file: set for the O_CREAT open that created it, not for the
    same open of the existing file, nor for an open without O_CREAT (evt.arg.flags as Falco)."""
    from falconet.fields.registry import FieldRegistry  # noqa: PLC0415
    from falconet.state.fields import core_field_defs  # noqa: PLC0415
    from falconet.state.tables import StateTables  # noqa: PLC0415
    from falconet.state.users import UserDB  # noqa: PLC0415

    path = tmp_path / f"created-{os.getpid()}"
    code = ("import os,sys; p=sys.argv[1]; [os.close(os.open(p, f, 0o600)) for f in "
            "(os.O_WRONLY | os.O_CREAT, os.O_WRONLY | os.O_CREAT, os.O_RDONLY)]")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=10)

    def of_path(e) -> bool:
        return e.type in ("open", "openat") and e.args.get("name") == str(path)
    assert wait_for(lambda: len(live.matching(of_path)) == 3), live.matching(of_path)
    opens = sorted(live.matching(of_path), key=lambda e: e.ts)
    assert [bool(e.args["ftype"] & 4) for e in opens] == [True, False, False]
    reg = FieldRegistry()
    reg.register_all(core_field_defs(StateTables(), UserDB(), "h"))
    flags = reg.resolve("evt.arg.flags", None).extract
    # (Python's os.open adds O_CLOEXEC)
    assert [flags(e) for e in opens] == ["O_CREAT|O_WRONLY|O_CLOEXEC|O_F_CREATED",
                                         "O_CREAT|O_WRONLY|O_CLOEXEC", "O_RDONLY|O_CLOEXEC"]
    assert opens[0].args["flags"] == os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    # openat2 reads its flags from struct open_how: the same bit, from the same f_mode
    path2 = tmp_path / f"created2-{os.getpid()}"
    code2 = ("import ctypes,os,sys; libc=ctypes.CDLL(None, use_errno=True); how=(ctypes.c_uint64"
             " * 3)(os.O_WRONLY | os.O_CREAT, 0o600, 0)\nfor _ in (1, 2): fd=libc.syscall(437, "
             "-100, sys.argv[1].encode(), ctypes.byref(how), 24); assert fd >= 0; os.close(fd)")
    subprocess.run([sys.executable, "-c", code2, str(path2)], check=True, timeout=10)

    def of_path2(e) -> bool:
        return e.type == "openat2" and e.args.get("name") == str(path2)
    assert wait_for(lambda: len(live.matching(of_path2)) == 2), live.matching(of_path2)
    o2 = sorted(live.matching(of_path2), key=lambda e: e.ts)
    assert [flags(e) for e in o2] == ["O_CREAT|O_WRONLY|O_F_CREATED", "O_CREAT|O_WRONLY"]


def test_fork_events_link_child_to_parent(live):
    code = "import os, sys\npid = os.fork()\nif pid == 0: os._exit(3)\nos.waitpid(pid, 0)\nprint(pid)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = int(out.stdout)
    pf = live.wait_for(lambda e: e.type == "procfork" and e.args["child_tid"] == child,
                       what="procfork")
    assert pf.args["child_pid"] == child
    parent = pf.args["parent_pid"]
    assert pf.pid == parent and pf.args["parent_tid"] == pf.tid
    cl = live.wait_for(lambda e: e.pid == parent and e.type in ("clone", "clone3", "fork")
                       and e.res == child, what="clone exit in the parent")
    assert cl.args["child_tid"] == child and cl.args["child_pid"] == child
    ex = live.wait_for(lambda e: e.type == "procexit" and e.tid == child, what="procexit")
    assert ex.args["status"] == 3 << 8          # exit_code as the kernel keeps it (status << 8)


def test_threads_report_their_process(live):
    code = ("import threading\nt = threading.Thread(target=lambda: open('/dev/null').close())\n"
            "t.start(); t.join()")
    p = subprocess.Popen([sys.executable, "-c", code])
    p.wait(10)
    cl = live.wait_for(lambda e: e.pid == p.pid and e.type in ("clone", "clone3") and e.res > 0,
                       what="thread clone")
    assert cl.args["flags"] & 0x00010000                    # CLONE_THREAD
    assert cl.args["child_pid"] == p.pid and cl.args["child_tid"] == cl.res
    o = live.wait_for(lambda e: e.pid == p.pid and e.type == "openat"
                      and e.args["name"] == "/dev/null", what="thread openat")
    assert o.tid == cl.res


def _proc_stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()        # fields from 3 (state) on


def _proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def test_btf_derived_task_fields_equal_proc(live):
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        # (the first execve attempts of Popen's PATH search fail with ENOENT)
        ex = live.wait_for(lambda e: e.pid == p.pid and e.type == "execve" and e.res == 0,
                           what="execve")
        st, status = _proc_stat(p.pid), _proc_status(p.pid)
        a = ex.args
        assert a["ppid"] == int(st[1]) == os.getpid()
        assert a["pgid"] == int(st[2]) == p.pid          # new session: its own group and session
        assert a["sid"] == int(st[3]) == p.pid
        assert a["tty"] == int(st[4])
        assert a["loginuid"] == int(Path(f"/proc/{p.pid}/loginuid").read_text())
        assert a["cap_effective"] == int(status["CapEff"], 16)
        assert a["cap_permitted"] == int(status["CapPrm"], 16)
        assert a["cap_inheritable"] == int(status["CapInh"], 16)
        uid = status["Uid"].split()
        gid = status["Gid"].split()
        assert (a["uid"], a["euid"], a["gid"], a["egid"]) == (
            int(uid[0]), int(uid[1]), int(gid[0]), int(gid[1]))
        est = os.stat(f"/proc/{p.pid}/exe")
        assert a["exe_ino"] == est.st_ino
        assert (a["exe_ino_ctime"], a["exe_ino_mtime"]) == (est.st_ctime_ns, est.st_mtime_ns)
        assert a["exe_writable"] is True                 # root may write any file
        assert a["vpid"] == int(status["NSpid"].split()[-1])
        assert a["vpgid"] == int(status["NSpgid"].split()[-1])
        assert a["exepath"] == os.readlink(f"/proc/{p.pid}/exe")
        assert a["cwd"] == os.getcwd()
        assert a["exe_from_memfd"] is False
    finally:
        p.kill()
        p.wait()


def test_tty_is_the_controlling_terminal(live):
    """A process on a pseudo-terminal: tty equals /proc/<pid>/stat tty_nr (non-zero)."""
    import pty  # noqa: PLC0415
    pid, master = pty.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "30"])
    try:
        ex = live.wait_for(lambda e: e.pid == pid and e.type == "execve", what="execve")
        tty_nr = int(_proc_stat(pid)[4])
        assert tty_nr != 0 and ex.args["tty"] == tty_nr
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(master)


def test_exec_from_memfd_is_flagged(live, tmp_path):
    code = textwrap.dedent("""
        import os
        fd = os.memfd_create("falconet-exe", 0)
        os.write(fd, open("/bin/true", "rb").read())
        os.execve(fd, ["memtrue"], {}) if hasattr(os, "execve") else None
    """)
    p = subprocess.run([sys.executable, "-c", code], check=True)
    del p
    ex = live.wait_for(lambda e: e.type in ("execve", "execveat") and e.args.get("argv") ==
                       ["memtrue"], what="memfd exec")
    assert ex.res == 0 and ex.args["exe_from_memfd"] is True


def test_own_process_is_filtered_in_the_kernel(live, tmp_path):
    marker = tmp_path / "own-filter-probe"
    marker.write_text("x")
    open(marker).close()                               # noqa: SIM115 - the engine's own open
    p = subprocess.run(["cat", str(marker)], capture_output=True, check=True)
    del p
    live.wait_for(lambda e: e.type == "openat" and e.args["name"] == str(marker)
                  and e.pid != os.getpid(), what="cat's openat (positive control)")
    mine = live.matching(lambda e: e.pid == os.getpid())
    assert mine == []


# ia32 read(fd) through int 0x80 from a 64-bit process (ia32 syscall 3 is read; x86_64 syscall 3
# is close), then a real x86_64 close as the positive control.
INT80 = textwrap.dedent("""
    import ctypes, mmap, os, sys
    # push rbx; mov eax, 3; mov ebx, edi; xor ecx, ecx; xor edx, edx; int 0x80; pop rbx; ret
    code = bytes.fromhex("53b80300000089fb31c931d2cd805bc3")
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
    print(fn(int(sys.argv[1])), flush=True)
    try:
        os.close(int(sys.argv[2]))
    except OSError:
        pass
""")


def test_ia32_syscalls_are_not_decoded_with_the_x86_64_table(live):
    """A 32-bit syscall has another numbering: the handlers skip it (TS_COMPAT), or an ia32
    read would be reported as an x86_64 close (an evasion and a state-corrupting lie)."""
    p = subprocess.run([sys.executable, "-c", INT80, "54321", "54322"], capture_output=True,
                       text=True, timeout=15)
    need(p.returncode == 0 and p.stdout.strip() == "-9",
         f"int 0x80 (ia32 emulation) unavailable here: rc={p.returncode} {p.stdout!r}")
    live.wait_for(lambda e: e.type == "close" and e.args["fd"] == 54322,
                  what="the real close (positive control)")
    assert live.matching(lambda e: e.type == "close" and e.args["fd"] == 54321) == []


def test_only_selected_syscalls_are_attached(tmp_path):
    need_bcc()
    from live_collector import LiveCollector  # noqa: PLC0415
    c = LiveCollector({"openat"})
    try:
        built = c.source.built
        assert "openat" in built.events and "connect" not in built.events
        assert "execve" in built.events and "procexit" in built.events   # state base set
        assert "close" in built.events                                    # fd partner of opens
        dispatched = set(c.source.dispatched)
        assert dispatched == set(built.events) - {"procfork", "procexit"}
        assert "openat" in dispatched and "connect" not in dispatched
        assert "unlinkat" not in dispatched
        # io_uring (issue 19): its openat/close operations, when the kernel has the tracepoints
        iou = ({"io_uring:io_uring_submit_req", "io_uring:io_uring_complete"}
               if built.io_uring else set())
        assert set(c.source.attached) == {"sys_exit", "sched_process_fork",
                                          "sched:sched_process_exit", "syscalls:sys_enter_execve",
                                          "syscalls:sys_enter_execveat"} | iou
        code = ("import socket,os\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n"
                "c=socket.socket(); c.connect(s.getsockname()); os.unlink(os.devnull+'x') "
                "if False else None\nopen('/etc/hostname').close()")
        p = subprocess.run([sys.executable, "-c", code], check=True)
        del p
        c.wait_for(lambda e: e.type == "openat" and e.args["name"] == "/etc/hostname",
                   what="openat")
        types = {e.type for e in c.events}
        assert types <= set(built.events)
        assert "connect" not in types and "bind" not in types
    finally:
        c.close()


def test_drops_are_counted_by_category_when_the_buffer_is_tiny(tmp_path):
    """A 1-page ring buffer that nobody reads: the kernel counts every lost open by category, the
    source moves the counts into EngineMetrics and raises the internal drop alert."""
    need_bcc()
    from falconet.collector.source import DROP_RULE, CollectorConfig  # noqa: PLC0415
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    alerts = []
    metrics = EngineMetrics()
    c = LiveCollector({"openat"}, CollectorConfig(ring_buffer_pages=1), consume=False,
                      metrics=metrics, inject=alerts.append)
    try:
        code = "for _ in range(2000): open('/etc/hostname').close()"
        subprocess.run([sys.executable, "-c", code], check=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            c.source.poll_stats()
            if metrics.drops.get("kernel_open", 0) > 0:
                break
            time.sleep(0.05)
        s = c.source.stats
        assert s.drops_by_category["open"] > 1000
        assert metrics.drops["kernel_open"] == s.drops_by_category["open"]
        assert metrics.kernel_drops >= s.drops_by_category["open"]
        assert metrics.kernel_events >= metrics.kernel_drops
        assert alerts and alerts[0].rule == DROP_RULE and alerts[0].source == "internal"
        assert alerts[0].output_fields["n_drops_buffer_open_exit"] > 0
    finally:
        c.close()


def test_exe_upper_layer_on_overlayfs(live, tmp_path):
    """A binary written into an overlay's upper layer is flagged; one from the lower is not."""
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "lowertrue").write_bytes(Path("/bin/true").read_bytes())
    (lower / "lowertrue").chmod(0o755)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                       capture_output=True, text=True)
    need(r.returncode == 0, f"cannot mount overlayfs: {r.stderr.strip()}")
    try:
        (merged / "uppertrue").write_bytes(Path("/bin/true").read_bytes())
        (merged / "uppertrue").chmod(0o755)
        subprocess.run([str(merged / "uppertrue")], check=True)
        subprocess.run([str(merged / "lowertrue")], check=True)
        up = live.wait_for(lambda e: e.type == "execve" and e.res == 0
                           and e.args["filename"] == str(merged / "uppertrue"), what="upper exec")
        low = live.wait_for(lambda e: e.type == "execve" and e.res == 0
                            and e.args["filename"] == str(merged / "lowertrue"), what="lower exec")
        assert up.args["exe_upper_layer"] is True
        assert low.args["exe_upper_layer"] is False
    finally:
        subprocess.run(["umount", str(merged)], check=False)


PINNED = textwrap.dedent(r"""
    import os, sys
    os.sched_setaffinity(0, {int(sys.argv[1])})
    os.close(os.open(sys.argv[2], os.O_RDONLY | os.O_CREAT, 0o600))
    os.mkdir(sys.argv[2] + ".d")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    os.execv("/bin/true", ["true", sys.argv[2]])
""")


def _pinned_events(live, cpu: int, mark: str) -> list:
    p = subprocess.Popen([sys.executable, "-c", PINNED, str(cpu), mark])
    assert p.wait(15) == 0
    pid = p.pid

    def of(t, pred=lambda e: True):
        return live.wait_for(lambda e: e.pid == pid and e.type == t and pred(e), what=t)

    o = of("openat", lambda e: e.args["name"] == mark)
    return [o, of("close", lambda e: e.args["fd"] == o.res and e.ts > o.ts),
            of("mkdir", lambda e: e.args["path"] == mark + ".d"),
            of("clone", lambda e: e.res > 0),
            of("procfork"),
            of("execve", lambda e: e.args["argv"] == ["true", mark]),
            of("procexit")]


def test_evt_cpu_is_the_cpu_a_pinned_process_runs_on(live, tmp_path):
    """evt.cpu (args["cpu"], the header's bpf_get_smp_processor_id) on each decoder path: a
    process pinned to one CPU (sched_setaffinity) has every event there."""
    for cpu in sorted(os.sched_getaffinity(0))[:2]:
        evs = _pinned_events(live, cpu, str(tmp_path / f"cpu-{cpu}"))
        assert [(e.type, e.args["cpu"]) for e in evs] == [(e.type, cpu) for e in evs]
