"""io_uring visibility against the real kernel (issue 19): file and socket operations submitted
through io_uring (``iouring_probe.c``, raw io_uring syscalls, compiled here with gcc) are reported
as the syscall events rules know, marked ``via=io_uring``, keep the fd table right (plain fds,
fixed-file slots, ``IORING_OP_FIXED_FD_INSTALL``), and the unmodified Falco stable rules fire."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import FALCO_RULES, need, need_bcc

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

PROBE_SRC = Path(__file__).with_name("iouring_probe.c")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    gcc = shutil.which("gcc")
    need(gcc is not None, "gcc is not installed")
    out = tmp_path_factory.mktemp("iou") / "iouring_probe"
    subprocess.run([str(gcc), "-O1", "-Wall", "-o", str(out), str(PROBE_SRC)], check=True)
    return str(out)


@pytest.fixture(scope="module")
def live():
    need_bcc()
    from live_collector import LiveCollector  # noqa: PLC0415
    c = LiveCollector(None)
    need(bool(c.source.built and c.source.built.io_uring),
         "the kernel lacks the io_uring tracepoints or BTF types")
    yield c
    c.close()


def _listener() -> tuple[socket.socket, int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    return srv, srv.getsockname()[1]


def test_io_uring_open_read_is_an_openat_event(live, probe):
    p = subprocess.run([probe, "read", "/etc/hostname"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    fd = int(p.stdout.split()[0].split("=")[1])
    o = live.wait_for(lambda e: e.type == "openat" and e.args.get("via") == "io_uring"
                      and e.args["name"] == "/etc/hostname", what="io_uring openat")
    assert o.res == fd and o.args["fd"] == fd and o.args["dirfd"] == -100
    # the kernel's prep adds O_LARGEFILE (force_o_largefile) to what the sqe asked for
    assert o.args["flags"] & ~0o100000 == 0 and "slot" not in o.args
    c = live.wait_for(lambda e: e.type == "close" and e.pid == o.pid
                      and e.args.get("via") == "io_uring", what="io_uring close")
    assert c.args["fd"] == fd and c.res == 0
    # no syscall openat of that path: the open happened inside io_uring only
    assert not live.matching(lambda e: e.pid == o.pid and e.type == "openat"
                             and e.args.get("name") == "/etc/hostname" and "via" not in e.args)


def test_io_uring_socket_connect_carries_the_address(live, probe):
    srv, port = _listener()
    with srv:
        p = subprocess.run([probe, "connect", "127.0.0.1", str(port)], capture_output=True,
                           text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    c = live.wait_for(lambda e: e.type == "connect" and e.args.get("via") == "io_uring"
                      and e.args.get("dport") == port, what="io_uring connect")
    s = live.wait_for(lambda e: e.type == "socket" and e.pid == c.pid
                      and e.args.get("via") == "io_uring", what="io_uring socket")
    assert s.args["domain"] == socket.AF_INET and s.args["type"] == socket.SOCK_STREAM
    assert c.args["fd"] == s.res and c.args["dip"] == "127.0.0.1" and c.res == 0


def test_io_uring_keeps_the_fd_table_right(live, probe, tmp_path):
    """Close and reuse an fd through io_uring, open into a fixed slot and install it, connect a
    fixed-slot socket and install it: the later close(2) syscalls name the right files."""
    from falconet.state.parser import StateParser  # noqa: PLC0415
    from falconet.state.tables import StateTables  # noqa: PLC0415

    srv, port = _listener()
    with srv:
        p = subprocess.Popen([probe, "fdtable", "/etc/hostname", "/etc/passwd", "/etc/group",
                              "127.0.0.1", str(port)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    vals = dict(kv.split("=") for kv in out.split())
    live.wait_for(lambda e: e.pid == p.pid and e.type == "close" and e.args.get("slot") == 1,
                  what="the final slot close")
    time.sleep(0.2)
    evts = sorted(live.matching(lambda e: e.pid == p.pid), key=lambda e: e.ts)
    parser = StateParser(StateTables(), live=False)
    closes = []
    for e in evts:
        parser(e)
        if e.type == "close" and "via" not in e.args and e.res == 0:
            closes.append((e.args["fd"], e.fdinfo))
    by_fd = [(fd, f.name if f else None, f.typechar if f else None) for fd, f in closes]
    b, c, s = int(vals["b"]), int(vals["installed"]), int(vals["sock"])
    assert int(vals["a"]) == b          # io_uring close freed the number, the next open reused it
    tail = by_fd[-3:]
    assert tail[0] == (b, "/etc/passwd", "f"), by_fd
    assert tail[1] == (c, "/etc/group", "f"), by_fd
    assert tail[2][0] == s and tail[2][2] == "4" and tail[2][1].endswith(f"->127.0.0.1:{port}")
    # the slot open itself is visible as an openat whose fd.num is the slot
    so = next(e for e in evts if e.type == "openat" and e.args.get("slot") == 1)
    assert so.args["fd"] == -1 and so.fdinfo is not None and so.fdinfo.num == 1
    assert so.fdinfo.name == "/etc/group"
    inst = [e for e in evts if e.type == "dup3" and e.args.get("via") == "io_uring"]
    assert [e.res for e in inst] == [c, s] and inst[0].fdinfo.name == "/etc/group"
    t = parser.tables.threads[p.pid]
    assert c not in t.fds and s not in t.fds        # closed by close(2)


def test_stable_rule_fires_for_an_io_uring_read_of_etc_shadow(falconet_bin, probe, tmp_path):
    """Falco's unmodified stable rules: "Read sensitive file untrusted" for IORING_OP_OPENAT."""
    need_bcc()
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from test_run_end_to_end import _live_engine  # noqa: PLC0415

    out = tmp_path / "alerts.jsonl"
    with _live_engine(falconet_bin, out, "--rules", str(FALCO_RULES)):
        alert = None
        deadline = time.monotonic() + 20
        while alert is None and time.monotonic() < deadline:
            subprocess.run([probe, "read", "/etc/shadow"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            time.sleep(0.3)
            for line in out.read_text().splitlines():
                a = json.loads(line)
                if a["rule"] == "Read sensitive file untrusted":
                    alert = a
                    break
        assert alert is not None, out.read_text()[-2000:]
    f = alert["output_fields"]
    assert f["fd.name"] == "/etc/shadow" and f["proc.name"] == "iouring_probe"
    assert f["evt.type"] == "openat"
