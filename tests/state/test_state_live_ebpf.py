"""End to end with the real kernel: the eBPF collector's events through the state parser (bootstrapped
from /proc) give the field values a rule sees: process tree, command line, file and socket names."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_bcc
from falconet.events import Event
from falconet.fields.registry import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.state.fields import core_field_defs
from falconet.state.parser import StateParser
from falconet.state.proc_bootstrap import bootstrap
from falconet.state.tables import StateTables
from falconet.state.users import UserDB

FIELDS = ["proc.name", "proc.pname", "proc.cmdline", "proc.exepath", "proc.aname[2]", "proc.cwd",
          "proc.pid", "proc.ppid", "user.uid", "user.name", "fd.name", "fd.typechar", "fd.num",
          "fd.lport", "fd.rport", "evt.type", "evt.res", "proc.tty", "proc.is_exe_upper_layer",
          "fd.type", "evt.buffer"]


class LiveState:
    """Collector → parser in one consumer thread; the field values of interesting events are
    extracted right after parsing, as the rule engine would."""

    def __init__(self, event_types: set[str]) -> None:
        from falconet.collector.source import CollectorConfig, EbpfSource  # noqa: PLC0415

        self.tables = StateTables()
        bootstrap(self.tables)
        self.parser = StateParser(self.tables, live=True, metrics=EngineMetrics(), users=UserDB())
        reg = FieldRegistry()
        reg.register_all(core_field_defs(self.tables, self.parser.users, "h"))
        self.fields = {}
        for tok in FIELDS:
            name, _, arg = tok.partition("[")
            self.fields[tok] = reg.resolve(name, arg.rstrip("]") or None).extract
        self.want: list[Callable[[Event], bool]] = []
        self.seen: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.source = EbpfSource(CollectorConfig(ring_buffer_pages=1024))
        self._it = self.source.open({"event_types": event_types})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for evt in self._it:
                if evt is None:
                    continue
                self.parser(evt)
                if any(w(evt) for w in list(self.want)):
                    self.seen.append({k: f(evt) for k, f in self.fields.items()})
        except BaseException as e:  # noqa: BLE001 - surfaced by wait
            self.error = e

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for v in list(self.seen):
                if pred(v):
                    return v
            if self.error is not None:
                raise AssertionError(f"collector failed: {self.error!r}")
            time.sleep(0.02)
        raise AssertionError(f"no matching event within {timeout}s; seen: {self.seen[-5:]}")

    def close(self) -> None:
        self.source.close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveState]:
    need_bcc()
    ls = LiveState({"openat", "open", "connect", "execve"})
    yield ls
    ls.close()


def test_exec_and_open_seen_with_process_tree(live: LiveState, tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{uuid.uuid4().hex}"
    marker.write_text("x")
    live.want.append(lambda e: e.type in ("openat", "open") and e.args.get("name") == str(marker))
    sh, cat = shutil.which("sh"), shutil.which("cat")
    subprocess.run([sh, "-c", f"cat {marker} >/dev/null; true"], check=True, cwd=tmp_path)
    v = live.wait(lambda v: v["fd.name"] == str(marker))
    assert v["proc.name"] == "cat"
    assert v["proc.pname"] == "sh"
    assert v["proc.cmdline"] == f"cat {marker}"
    assert v["proc.exepath"] == os.path.realpath(cat)
    assert v["proc.aname[2]"] == Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert v["proc.cwd"] == f"{tmp_path}/"   # Falco: with a trailing "/"
    assert v["user.uid"] == os.geteuid() and v["user.name"] == "root"
    assert v["fd.typechar"] == "f" and v["fd.num"] >= 0 and v["evt.res"] == "SUCCESS"
    assert v["proc.is_exe_upper_layer"] is False


def test_connect_named_like_falco(live: LiveState) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    live.want.append(lambda e: e.type == "connect" and e.args.get("dport") == port)
    code = ("import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
            "print(s.getsockname()[1], flush=True); sys.stdin.readline()")
    p = subprocess.Popen([sys.executable, "-c", code, str(port)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        conn, _ = srv.accept()
        cport = int(p.stdout.readline())
        v = live.wait(lambda v: v["evt.type"] == "connect" and v["fd.rport"] == port)
        assert v["fd.name"] == f"127.0.0.1:{cport}->127.0.0.1:{port}"
        assert v["fd.lport"] == cport and v["fd.typechar"] == "4"
        assert v["proc.pid"] == p.pid and v["proc.ppid"] == os.getpid()
        conn.close()
    finally:
        p.stdin.close()
        p.wait(5)
        srv.close()


@pytest.fixture(scope="module")
def fdlive() -> Iterator[LiveState]:
    """Rules that name writes (and opens, connects), not fcntl: fcntl, pipes, socketpair and
    the pidfd calls are traced for the fd tables only (fcntl: F_DUPFD* alone)."""
    need_bcc()
    ls = LiveState({"write", "openat", "connect"})
    assert ls.source.all_fcntl is False
    assert {"fcntl", "pipe2", "socketpair", "pidfd_open", "pidfd_getfd"} <= set(
        ls.source.dispatched)
    yield ls
    ls.close()


#: a socket copied with fcntl (not dup2) to fd 50, 60 and 0 (stdin), a pipe, a socketpair and a file taken
#: from a child with pidfd_getfd: each written to with a marker
FD_COPIES = r"""
import ctypes, fcntl, os, socket, subprocess, sys
port, mark, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
a = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 50)
b = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 60)
fcntl.fcntl(s.fileno(), fcntl.F_GETFL)                # not a copy: not traced
os.write(a, (mark + "-dupfd").encode())
os.write(b, (mark + "-dupfd-cloexec").encode())
os.close(0)
assert fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 0) == 0    # the socket on stdin, without dup2
os.write(0, (mark + "-stdin").encode())
r, w = os.pipe()
os.write(w, (mark + "-pipe").encode())
x, y = socket.socketpair()
os.write(x.fileno(), (mark + "-socketpair").encode())
child = subprocess.Popen([sys.executable, "-c",
    "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600); "
    "print(fd, flush=True); sys.stdin.readline()", path],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
target = int(child.stdout.readline())
pidfd = os.pidfd_open(child.pid)
libc = ctypes.CDLL(None, use_errno=True)
stolen = libc.syscall(438, pidfd, target, 0)          # pidfd_getfd
assert stolen >= 0, ctypes.get_errno()
os.write(stolen, (mark + "-pidfd-getfd").encode())
child.stdin.write("\n")
child.stdin.flush()
child.wait()
"""


def test_fds_copied_without_dup_keep_their_names(fdlive: LiveState, tmp_path: Path) -> None:
    """fd.* of a write on an fd made by fcntl(F_DUPFD*), pipe2, socketpair or pidfd_getfd are
    the fd's file: the evasion of dup2 detection (a socket put on 0/1/2 with fcntl) has them."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(30)
    port = srv.getsockname()[1]
    mark = f"fdcopy-{uuid.uuid4().hex[:12]}"
    path = tmp_path / f"{mark}.out"
    fdlive.want.append(lambda e: e.type == "write"
                       and bytes(e.args.get("data") or b"").startswith(mark.encode()))
    p = subprocess.Popen([sys.executable, "-c", FD_COPIES, str(port), mark, str(path)])
    conn, _ = srv.accept()
    assert p.wait(30) == 0
    conn.close()
    srv.close()

    def written(suffix: str) -> dict[str, Any]:
        return fdlive.wait(lambda v: bytes(v["evt.buffer"] or b"") == f"{mark}-{suffix}".encode())

    tup = f"127.0.0.1:{{}}->127.0.0.1:{port}"
    a = written("dupfd")
    assert a["fd.num"] >= 50 and a["fd.typechar"] == "4" and a["fd.type"] == "ipv4"
    assert a["fd.name"] == tup.format(a["fd.lport"]) and a["fd.rport"] == port
    b = written("dupfd-cloexec")
    assert b["fd.num"] >= 60 and b["fd.name"] == a["fd.name"] and b["fd.type"] == "ipv4"
    z = written("stdin")
    assert z["fd.num"] == 0 and z["fd.name"] == a["fd.name"] and z["fd.type"] == "ipv4"
    pipe = written("pipe")
    assert pipe["fd.type"] == "pipe" and pipe["fd.name"].startswith("pipe:[")
    pair = written("socketpair")
    assert pair["fd.type"] == "unix" and pair["fd.typechar"] == "u"
    stolen = written("pidfd-getfd")
    assert stolen["fd.name"] == str(path) and stolen["fd.type"] == "file"
