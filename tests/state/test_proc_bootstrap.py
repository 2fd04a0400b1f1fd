"""Bootstrap from the real /proc: a child process we spawn, with a known cwd, env, open file,
a TCP connection to a listener on 127.0.0.1 and a second thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from falconet.state.proc_bootstrap import bootstrap, read_thread
from falconet.state.tables import StateTables
from state_helpers import MiniEngine

CHILD = textwrap.dedent("""
    import os, socket, sys, threading
    os.chdir(sys.argv[1])
    f = open("data.txt", "w")
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    ev = threading.Event()
    th = threading.Thread(target=ev.wait, name="worker", daemon=True)
    th.start()
    with open(f"/proc/self/task/{th.native_id}/comm", "w") as c:
        c.write("worker")
    print(s.getsockname()[1], threading.get_native_id(), th.native_id, f.fileno(), s.fileno(),
          flush=True)
    sys.stdin.readline()
""")


@pytest.fixture
def child(tmp_path: Path) -> Iterator[dict]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    env = dict(os.environ, FALCONET_STATE_TEST="hello")
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(port), "extra-arg"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        conn, _ = srv.accept()
        line = p.stdout.readline().split()
        cport, main_tid, worker_tid, file_fd, sock_fd = map(int, line)
        yield {"proc": p, "port": port, "cport": cport, "worker": worker_tid, "dir": tmp_path,
               "file_fd": file_fd, "sock_fd": sock_fd, "conn": conn}
        conn.close()
    finally:
        p.stdin.close()
        p.wait(timeout=10)
        srv.close()


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def test_bootstrap_sees_the_child_as_proc_does(child: dict) -> None:
    pid = child["proc"].pid
    tables = StateTables()
    stats = bootstrap(tables)
    assert stats.processes >= 3 and stats.seconds < 2.0
    t = tables.get(pid)
    assert t is not None
    st = _status(pid)
    stat = Path(f"/proc/{pid}/stat").read_text()
    after = stat[stat.rindex(")") + 2:].split()
    assert t.pid == pid and t.tid == pid
    assert t.ptid == os.getpid()
    assert t.comm == Path(f"/proc/{pid}/comm").read_text().strip()
    assert t.exepath == os.path.realpath(sys.executable)
    assert t.exe == sys.executable
    assert t.args[0] == "-c" and t.args[-2:] == [str(child["port"]), "extra-arg"]
    assert t.cwd == str(child["dir"])
    assert t.uid == os.getuid() and t.euid == os.geteuid() and t.gid == os.getgid()
    assert t.tty == int(after[4])
    assert t.sid == int(after[3])
    lu = int(Path(f"/proc/{pid}/loginuid").read_text())
    assert t.loginuid == (-1 if lu == 4294967295 else lu)
    assert t.cap_effective == int(st["CapEff"], 16)
    assert t.cap_permitted == int(st["CapPrm"], 16)
    assert "FALCONET_STATE_TEST=hello" in t.env
    assert t.exe_ino == os.stat(sys.executable).st_ino
    assert t.exe_ino_mtime == os.stat(sys.executable).st_mtime_ns
    # start time within a few seconds of now (clock ticks → ns via btime)
    assert abs(t.start_ts - time.time_ns()) < 30 * 1_000_000_000
    assert t.cgroup == Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1].split(":", 2)[2] or t.cgroup
    # fds: the file and the TCP connection, named like Falco
    f = t.fds[child["file_fd"]]
    assert (f.typechar, f.name) == ("f", str(child["dir"] / "data.txt"))
    s = t.fds[child["sock_fd"]]
    assert s.typechar == "4" and s.l4proto == "tcp" and s.connected and not s.is_server
    assert s.name == f"127.0.0.1:{child['cport']}->127.0.0.1:{child['port']}"
    assert (s.sport, s.dport) == (child["cport"], child["port"])
    # our own end of the connection is the server side (accepted from our listener)
    me = tables.get(os.getpid())
    acc = me.fds[child["conn"].fileno()]
    assert acc.is_server and acc.name == s.name
    # the worker thread shares the fd table and has its own name
    w = tables.get(child["worker"])
    assert w is not None and w.pid == pid and w.fds is t.fds and w.comm == "worker"


def test_live_parser_reads_unknown_tid_from_proc(child: dict) -> None:
    pid = child["proc"].pid
    m = MiniEngine(live=True)
    e = m.evt("close", child["worker"], 0, pid, fd=99)
    assert m.parser.proc_lookups == 1 and m.parser.proc_misses == 0
    assert m.metrics.enrichment[("core-state", "hit")] == 1
    assert e.thread.tid == child["worker"] and e.thread.pid == pid
    assert e.thread.comm == "worker" and m.field(e, "thread.ismain") is False
    assert m.field(e, "proc.cmdline").endswith("extra-arg")
    assert m.tables.get(pid) is not None                       # the process came along
    assert m.field(e, "proc.ppid") == os.getpid()
    o = m.evt("connect", pid, 0, fd=child["sock_fd"], family=2)
    assert m.field(o, "fd.sport") == child["port"]            # socket known from /proc
    # a connect that names only the server: the local side comes from the kernel (live) and is
    # written into the event, so a recording replays with the same fd.name
    m.tables.get(pid).fds.pop(child["sock_fd"])
    c = m.evt("connect", pid, 0, fd=child["sock_fd"], family=2, sip="", sport=0,
              dip="127.0.0.1", dport=child["port"], path="", tuple=f":0->127.0.0.1:{child['port']}")
    want = f"127.0.0.1:{child['cport']}->127.0.0.1:{child['port']}"
    assert m.field(c, "fd.name") == want and m.field(c, "fd.lport") == child["cport"]
    assert c.args["sport"] == child["cport"] and c.args["tuple"] == want


def test_read_thread_of_vanished_process_is_none() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert read_thread(p.pid) is None
