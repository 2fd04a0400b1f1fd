"""Build the thread and fd tables from ``/proc`` at start (live mode only).

Every process and thread: comm, exe (argv[0]), exepath, args, cwd, uids/gids, loginuid, tty, sid,
pgid, start time, capabilities, ppid, vpid, cgroup, exe inode and times, and the fds of every
process (sockets mapped to addresses through ``/proc/<pid>/net/{tcp,tcp6,udp,udp6,unix}``, read
once per network namespace). Processes vanish while we read: every per-process read is guarded and
a process that disappears half-way is simply skipped (counted in :class:`BootstrapStats`).
"""

from __future__ import annotations

import os
import socket
import stat as _stat
import struct
import time
from dataclasses import dataclass
from typing import Any

from falconet.permissions import writable_by
from falconet.state.flags import AF_INET, AF_INET6
from falconet.state.overlay import is_upper_layer
from falconet.state.tables import FdInfo, StateTables, ThreadInfo

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_UNSET_UID = 4294967295


@dataclass(slots=True)
class BootstrapStats:
    processes: int = 0
    threads: int = 0
    fds: int = 0
    vanished: int = 0       # processes that exited while being read
    seconds: float = 0.0


def boot_time_ns(proc: str = "/proc") -> int:
    """Boot time in ns since the epoch (``btime`` of /proc/stat, 1 s resolution)."""
    try:
        with open(f"{proc}/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return int(line.split()[1]) * 1_000_000_000
    except OSError:
        pass
    # fallback: now - uptime
    with open(f"{proc}/uptime", encoding="ascii") as f:
        up = float(f.read().split()[0])
    return int((time.time() - up) * 1e9)


# ------------------------------------------------------------------------------------ sockets
@dataclass(slots=True)
class SockAddr:
    family: int
    proto: str          # tcp, udp, raw, unix
    lip: str
    lport: int
    rip: str
    rport: int
    listening: bool
    path: str = ""


def _hex_ip4(h: str) -> str:
    return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(h, 16)))


def _hex_ip6(h: str) -> str:
    raw = b"".join(struct.pack("<I", int(h[i:i + 8], 16)) for i in range(0, 32, 8))
    ip = socket.inet_ntop(socket.AF_INET6, raw)
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def _parse_inet_lines(lines: Any, proto: str, v6: bool, out: dict[int, SockAddr]) -> None:
    conv = _hex_ip6 if v6 else _hex_ip4
    for line in lines:
        p = line.split()
        if len(p) < 10 or not p[9].isdigit():
            continue
        ino = int(p[9])
        if ino == 0:
            continue
        la, _, lp = p[1].partition(":")
        ra, _, rp = p[2].partition(":")
        listening = (p[3] == "0A") if proto == "tcp" else (ra.strip("0") == "" and rp == "0000")
        out[ino] = SockAddr(AF_INET6 if v6 else AF_INET, proto, conv(la), int(lp, 16),
                            conv(ra), int(rp, 16), listening)


def _parse_inet(path: str, proto: str, v6: bool, out: dict[int, SockAddr]) -> None:
    try:
        with open(path, encoding="ascii") as f:
            next(f, None)
            _parse_inet_lines(f, proto, v6, out)
    except OSError:
        pass


def _parse_unix(path: str, out: dict[int, SockAddr]) -> None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            next(f, None)
            for line in f:
                p = line.split(None, 7)
                if len(p) < 7:
                    continue
                ino = int(p[6])
                out[ino] = SockAddr(1, "unix", "", 0, "", 0, p[5] == "01",
                                    p[7].strip() if len(p) > 7 else "")
    except OSError:
        pass


def read_net_tables(pid: int | str, proc: str = "/proc") -> dict[int, SockAddr]:
    """Socket inode → addresses for the network namespace of ``pid``."""
    out: dict[int, SockAddr] = {}
    base = f"{proc}/{pid}/net"
    _parse_inet(f"{base}/tcp", "tcp", False, out)
    _parse_inet(f"{base}/tcp6", "tcp", True, out)
    _parse_inet(f"{base}/udp", "udp", False, out)
    _parse_inet(f"{base}/udp6", "udp", True, out)
    _parse_inet(f"{base}/raw", "raw", False, out)
    _parse_inet(f"{base}/raw6", "raw", True, out)
    _parse_unix(f"{base}/unix", out)
    return out


def socket_addr(pid: int, fd: int, family: int, l4proto: str = "", proc: str = "/proc"
                ) -> SockAddr | None:
    """The kernel's view of one socket fd (local and remote address), or ``None``.

    Used by the live parser when a connect/accept event does not carry the local side: reads
    only the table of the socket's family and protocol and stops at the socket's inode.
    """
    try:
        target = os.readlink(f"{proc}/{pid}/fd/{fd}")
    except OSError:
        return None
    if not target.startswith("socket:["):
        return None
    ino = target[8:-1]
    v6 = family == AF_INET6
    protos = (l4proto,) if l4proto in ("tcp", "udp") else ("tcp", "udp")
    needle = f" {ino} "
    for proto in protos:
        path = f"{proc}/{pid}/net/{proto}{'6' if v6 else ''}"
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except OSError:
            continue
        i = text.find(needle)
        while i >= 0:
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            line = text[start:end if end >= 0 else len(text)]
            out: dict[int, SockAddr] = {}
            _parse_inet_lines([line], proto, v6, out)
            if int(ino) in out:
                return out[int(ino)]
            i = text.find(needle, i + 1)
    return None


def _ipport(ip: str, port: int) -> str:
    return f"{ip}:{port}"


def socket_fd(num: int, ino: int, sa: SockAddr | None, listen_ports: set[int]) -> FdInfo:
    """An fd entry for a socket: named ``client:port->server:port`` like Falco."""
    if sa is None:
        return FdInfo(num, "o", f"socket:[{ino}]", ino=ino)
    if sa.family == 1:
        return FdInfo(num, "u", sa.path, l4proto="", ino=ino, is_server=sa.listening)
    tc = "6" if sa.family == AF_INET6 else "4"
    if sa.listening:
        return FdInfo(num, tc, _ipport(sa.lip, sa.lport), l4proto=sa.proto, dip=sa.lip,
                      dport=sa.lport, is_server=True, ino=ino)
    connected = bool(sa.rport)
    server_side = sa.lport in listen_ports
    if server_side:      # accepted connection: the peer is the client
        cip, cport, sip, sport = sa.rip, sa.rport, sa.lip, sa.lport
    else:
        cip, cport, sip, sport = sa.lip, sa.lport, sa.rip, sa.rport
    name = f"{cip}:{cport}->{sip}:{sport}" if connected else _ipport(sa.lip, sa.lport)
    return FdInfo(num, tc, name, l4proto=sa.proto, sip=cip, sport=cport, dip=sip, dport=sport,
                  is_server=server_side, connected=connected, ino=ino)


_ANON_TYPES = {"[eventfd]": "e", "[signalfd]": "s", "[eventpoll]": "l", "inotify": "i",
               "[io_uring]": "r", "bpf-map": "b", "bpf-prog": "b", "bpf_link": "b",
               "[userfaultfd]": "u", "[timerfd]": "t", "[pidfd]": "P"}


class _NetCache:
    """Net tables per network namespace, read lazily on the first socket fd of that namespace."""

    def __init__(self, proc: str) -> None:
        self.proc = proc
        self.by_ns: dict[str, tuple[dict[int, SockAddr], set[int]]] = {}

    def get(self, pid: int) -> tuple[dict[int, SockAddr], set[int]]:
        try:
            ns = os.readlink(f"{self.proc}/{pid}/ns/net")
        except OSError:
            ns = f"pid:{pid}"
        v = self.by_ns.get(ns)
        if v is None:
            tbl = read_net_tables(pid, self.proc)
            ports = {s.lport for s in tbl.values() if s.listening and s.family != 1}
            v = self.by_ns[ns] = (tbl, ports)
        return v


def read_fds(pid: int, proc: str = "/proc", net: _NetCache | None = None) -> dict[int, FdInfo]:
    """The fd table of ``pid`` (empty if it vanished)."""
    base = f"{proc}/{pid}/fd"
    out: dict[int, FdInfo] = {}
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for n in names:
        try:
            num = int(n)
            target = os.readlink(f"{base}/{n}")
        except (OSError, ValueError):
            continue
        if target.startswith("socket:["):
            ino = int(target[8:-1])
            if net is None:
                net = _NetCache(proc)
            tbl, ports = net.get(pid)
            out[num] = socket_fd(num, ino, tbl.get(ino), ports)
        elif target.startswith("pipe:["):
            out[num] = FdInfo(num, "p", target, ino=int(target[6:-1]))
        elif target.startswith("anon_inode:"):
            kind = target[11:]
            out[num] = FdInfo(num, _ANON_TYPES.get(kind, "o"), target)
        elif target.startswith("/memfd:"):
            out[num] = FdInfo(num, "m", target.removesuffix(" (deleted)"))
        else:
            try:
                st = os.stat(f"{base}/{n}")
                tc = "d" if _stat.S_ISDIR(st.st_mode) else "f"
                out[num] = FdInfo(num, tc, target, target, ino=st.st_ino, dev=st.st_dev)
            except OSError:
                out[num] = FdInfo(num, "f", target, target)
    return out


# ------------------------------------------------------------------------------------ processes
def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _parse_stat(text: str) -> tuple[str, list[str]]:
    """(comm, fields after comm) of a ``stat`` file; field 0 of the list is ``state``."""
    lp, rp = text.index("("), text.rindex(")")
    return text[lp + 1:rp], text[rp + 2:].split()


def _status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _cgroup(text: str) -> str:
    """The unified (``0::``) path, else the first v1 path."""
    first = ""
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        _, _, path = rest.partition(":")
        if hid == "0":
            return path
        if not first:
            first = path
    return first


def _split_argv(raw: bytes) -> list[str]:
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")]


_CGROUP_IDS: dict[str, int] = {}
_CGROUP2_ROOT: str | None = None


def cgroup2_root(mounts: str = "/proc/self/mounts") -> str:
    """Where the cgroup2 (unified) hierarchy is mounted: ``/sys/fs/cgroup`` on pure v2 hosts,
    ``/sys/fs/cgroup/unified`` on hybrid ones. ``bpf_get_current_cgroup_id`` is an inode there."""
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return "/sys/fs/cgroup"


def cgroup_id(path: str, root: str | None = None) -> int:
    """The cgroup v2 id of a unified-hierarchy cgroup path (its directory inode, what
    ``bpf_get_current_cgroup_id`` returns); 0 if unknown. Cached: many processes share a cgroup."""
    cid = _CGROUP_IDS.get(path)
    if cid is None:
        global _CGROUP2_ROOT
        if root is None:
            if _CGROUP2_ROOT is None:
                _CGROUP2_ROOT = cgroup2_root()
            root = _CGROUP2_ROOT
        try:
            cid = os.stat(root + path).st_ino
        except OSError:
            cid = 0
        if len(_CGROUP_IDS) > 65536:
            _CGROUP_IDS.clear()
        _CGROUP_IDS[path] = cid
    return cid


def exe_writable(st: os.stat_result, uid: int, gid: int, cap_eff: int) -> bool:
    """:func:`writable_by` for the executable's ``stat`` result."""
    return writable_by(st.st_mode, st.st_uid, st.st_gid, uid, gid, cap_eff)


def read_thread(pid: int, tid: int | None = None, *, proc: str = "/proc", btime_ns: int | None = None,
                with_fds: bool = True, read_env: bool = True,
                net: _NetCache | None = None) -> ThreadInfo | None:
    """One thread (``tid``, default the main thread ``pid``) from /proc; ``None`` if it vanished."""
    tid = pid if tid is None else tid
    base = f"{proc}/{pid}"
    tbase = base if tid == pid else f"{base}/task/{tid}"
    if btime_ns is None:
        btime_ns = boot_time_ns(proc)
    try:
        comm, st = _parse_stat(_read(f"{tbase}/stat"))
        status = _status(_read(f"{tbase}/status"))
    except (OSError, ValueError):
        return None
    t = ThreadInfo(tid=tid, pid=pid)
    t.comm = comm
    t.ptid = int(st[1])
    t.vpgid = int(st[2])
    t.sid = int(st[3])
    t.tty = int(st[4])
    t.start_ts = btime_ns + int(st[19]) * 1_000_000_000 // CLK_TCK
    try:
        uids = status.get("Uid", "0 0").split()
        gids = status.get("Gid", "0 0").split()
        t.uid, t.euid = int(uids[0]), int(uids[1])
        t.gid, t.egid = int(gids[0]), int(gids[1])
        t.cap_inheritable = int(status.get("CapInh", "0"), 16)
        t.cap_permitted = int(status.get("CapPrm", "0"), 16)
        t.cap_effective = int(status.get("CapEff", "0"), 16)
        t.ptid = int(status.get("PPid", t.ptid))
        nspid = status.get("NSpid", "").split()
        nstgid = status.get("NStgid", "").split()
        t.vpid = int(nstgid[-1]) if nstgid else pid
        nspgid = status.get("NSpgid", "").split()
        if nspgid:                  # proc.vpgid: as seen from the process's own pid namespace
            t.vpgid = int(nspgid[-1])
        if nspid and tid != pid:
            t.extra["vtid"] = int(nspid[-1])
    except (ValueError, IndexError):
        pass
    try:
        argv = _split_argv(_read_bytes(f"{base}/cmdline"))
    except OSError:
        argv = []
    t.exe = argv[0] if argv else ""
    t.args = argv[1:]
    try:
        t.exepath = os.readlink(f"{base}/exe")
    except OSError:
        t.exepath = ""
    try:
        t.cwd = os.readlink(f"{base}/cwd")
    except OSError:
        pass
    try:
        lu = int(_read(f"{base}/loginuid"))
        t.loginuid = -1 if lu == _UNSET_UID else lu
    except (OSError, ValueError):
        pass
    try:
        t.cgroup = _cgroup(_read(f"{base}/cgroup"))
        t.cgroup_id = cgroup_id(t.cgroup)
    except OSError:
        pass
    if read_env:
        try:
            t.env = _split_argv(_read_bytes(f"{base}/environ"))
        except OSError:
            pass
    if t.exepath:
        t.exe_from_memfd = t.exepath.startswith("/memfd:")
        t.exe_upper_layer = not t.exe_from_memfd and is_upper_layer(pid, t.exepath, proc)
        try:
            est = os.stat(f"{base}/exe")
            t.exe_ino = est.st_ino
            t.exe_ino_ctime = est.st_ctime_ns
            t.exe_ino_mtime = est.st_mtime_ns
            t.exe_writable = exe_writable(est, t.euid, t.egid, t.cap_effective)
        except OSError:
            pass
    if with_fds and tid == pid:
        t.fds = read_fds(pid, proc, net)
    return t


def _pidns_inits(tables: StateTables, proc: str) -> None:
    """Fill ``pidns_init_start_ts``: the start time of pid 1 of each process's pid namespace."""
    ns_of: dict[int, str] = {}
    init_ts: dict[str, int] = {}
    for t in tables.threads.values():
        if t.tid != t.pid:
            continue
        try:
            ns = os.readlink(f"{proc}/{t.pid}/ns/pid")
        except OSError:
            continue
        ns_of[t.pid] = ns
        if t.vpid == 1:
            init_ts[ns] = t.start_ts
    for t in tables.threads.values():
        pidns = ns_of.get(t.pid)
        if pidns is not None:
            t.pidns_init_start_ts = init_ts.get(pidns, 0)


def bootstrap(tables: StateTables, proc: str = "/proc", *, read_env: bool = True,
              threads: bool = True) -> BootstrapStats:
    """Fill ``tables`` with every process (and thread) of the host."""
    t0 = time.perf_counter()
    stats = BootstrapStats()
    btime = boot_time_ns(proc)
    net = _NetCache(proc)
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid = int(name)
        t = read_thread(pid, proc=proc, btime_ns=btime, read_env=read_env, net=net)
        if t is None:
            stats.vanished += 1
            continue
        tables.add(t)
        stats.processes += 1
        stats.threads += 1
        stats.fds += len(t.fds)
        if not threads:
            continue
        try:
            tids = os.listdir(f"{proc}/{pid}/task")
        except OSError:
            continue
        for tname in tids:
            tid = int(tname)
            if tid == pid:
                continue
            th = thread_of(t, tid, proc=proc, btime_ns=btime)
            if th is not None:
                tables.add(th)
                stats.threads += 1
    _pidns_inits(tables, proc)
    stats.seconds = time.perf_counter() - t0
    return stats


def thread_of(main: ThreadInfo, tid: int, *, proc: str = "/proc", btime_ns: int = 0) -> ThreadInfo | None:
    """A non-main thread of ``main``'s process: shares its fd table, own comm and start time."""
    try:
        comm, st = _parse_stat(_read(f"{proc}/{main.pid}/task/{tid}/stat"))
    except (OSError, ValueError):
        return None
    th = clone_thread(main, tid)
    th.comm = comm
    th.start_ts = (btime_ns or boot_time_ns(proc)) + int(st[19]) * 1_000_000_000 // CLK_TCK
    return th


def clone_thread(main: ThreadInfo, tid: int, pid: int | None = None) -> ThreadInfo:
    """A copy of ``main`` for ``tid`` (in process ``pid``, default ``main``'s). It shares ``main``'s
    fd table; a new process (fork) replaces ``fds`` with a copy."""
    th = ThreadInfo(
        tid=tid, pid=main.pid if pid is None else pid, ptid=main.ptid, comm=main.comm, exe=main.exe,
        exepath=main.exepath, args=main.args, cwd=main.cwd, env=main.env, uid=main.uid, gid=main.gid,
        euid=main.euid, egid=main.egid, loginuid=main.loginuid, tty=main.tty, sid=main.sid, vpgid=main.vpgid,
        vpid=main.vpid, pidns_init_start_ts=main.pidns_init_start_ts, start_ts=main.start_ts,
        cap_effective=main.cap_effective, cap_permitted=main.cap_permitted,
        cap_inheritable=main.cap_inheritable, exe_ino=main.exe_ino, exe_ino_ctime=main.exe_ino_ctime,
        exe_ino_mtime=main.exe_ino_mtime, exe_writable=main.exe_writable,
        exe_from_memfd=main.exe_from_memfd, exe_upper_layer=main.exe_upper_layer, cgroup=main.cgroup,
        cgroup_id=main.cgroup_id, container_id=main.container_id)
    th.fds = main.fds
    return th
