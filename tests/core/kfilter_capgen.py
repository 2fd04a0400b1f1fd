"""A capture for the kernel-filter soundness replay: processes doing what the detection
suites and a busy host do to files — reads of secrets, of libraries, failed probes, writes,
log truncation, directory traversal, directory fds used as dirfd and by fchdir, closes,
dup2 onto sockets, threads — with ``ftype`` set as the collector reports it."""

from __future__ import annotations

from typing import Any

from falconet.capture import CaptureWriter
from falconet.events import Event

T0 = 1_764_000_000_000_000_000
O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = 0, 0o1, 0o2, 0o100, 0o1000
O_DIRECTORY, O_CLOEXEC, O_PATH = 0o200000, 0o2000000, 0o10000000


class _Proc:
    def __init__(self, w: CaptureWriter, clock: list[int], pid: int, ppid: int, comm: str,
                 exe: str, argv: list[str], cwd: str = "/tmp") -> None:
        self.w, self.clock, self.pid, self.comm = w, clock, pid, comm
        self.fds: set[int] = set()
        self.emit("procfork", {"child_tid": pid, "child_pid": pid, "parent_tid": ppid,
                               "parent_pid": ppid}, tid=ppid, pid=ppid)
        self.emit("execve", {"filename": exe, "argv": argv, "cwd": cwd, "exepath": exe,
                             "uid": 0, "gid": 0, "comm": comm, "tty": 0}, 0)

    def emit(self, t: str, args: dict[str, Any], res: int | None = None, *, tid: int | None = None,
             pid: int | None = None, is_dir: bool | None = None) -> None:
        self.clock[0] += 1000
        p = self.pid if pid is None else pid
        if is_dir is not None:       # the hidden arg the collector sets on opens
            args["ftype"] = (3 | 0o040000 << 4) if is_dir else (1 | 0o100000 << 4)
        self.w.write_event(Event("syscall", t, self.clock[0], tid or p, p, args, res))

    def lowest(self) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        return fd

    def open(self, name: str, flags: int = O_RDONLY, *, fail: int = 0, is_dir: bool = False,
             dirfd: int = -100, t: str = "openat", tid: int | None = None) -> int:
        fd = -fail if fail else self.lowest()
        args: dict[str, Any] = {"fd": fd, "name": name, "flags": flags, "mode": 0o644}
        if t in ("openat", "openat2"):
            args["dirfd"] = dirfd
        if t == "creat":
            del args["flags"]
        self.emit(t, args, fd, tid=tid, is_dir=is_dir if fd >= 0 else False)
        if fd >= 0:
            self.fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        ok = fd in self.fds
        self.fds.discard(fd)
        self.emit("close", {"fd": fd}, 0 if ok else -9)

    def exit(self) -> None:
        self.emit("procexit", {"status": 0}, 0)


def write_capture(path: str, rounds: int = 20) -> str:
    clock = [T0]
    with CaptureWriter(path, host="caphost", kernel="6.18.0", start_ns=T0) as w:
        init = _Proc(w, clock, 1, 0, "systemd", "/usr/lib/systemd/systemd", ["/sbin/init"], "/")
        sshd = _Proc(w, clock, 50, 1, "sshd", "/usr/sbin/sshd", ["sshd", "-D"], "/")
        bash = _Proc(w, clock, 60, 50, "bash", "/usr/bin/bash", ["bash"], "/root")
        pid = 100
        for r in range(rounds):
            # python importing modules: reads of libraries, failed probes, closes
            py = _Proc(w, clock, pid, bash.pid, "python3", "/usr/bin/python3.12",
                       ["python3", "app.py"], "/srv/app")
            pid += 1
            for i in range(30):
                fd = py.open(f"/usr/lib/python3.12/mod{i}.py", O_RDONLY | O_CLOEXEC)
                py.open(f"/usr/lib/python3.12/mod{i}.cpython-312.so", fail=2)
                py.close(fd)
            d = py.open("/usr/lib/python3.12", O_RDONLY | O_DIRECTORY | O_CLOEXEC, is_dir=True)
            fd = py.open("json/__init__.py", dirfd=d)              # relative to a dirfd
            py.close(fd)
            py.close(d)
            # a directory opened without O_DIRECTORY, then fchdir into it
            d = py.open("/srv/app/data", O_RDONLY, is_dir=True)
            py.emit("fchdir", {"fd": d}, 0)
            py.close(d)
            fd = py.open("config.json")                              # relative to the new cwd
            py.close(fd)
            fd = py.open("/tmp/out.log", O_WRONLY | O_CREAT | O_TRUNC)
            py.close(fd)
            fd = py.open("/tmp/new.txt", t="creat")
            py.close(fd)
            fd = py.open("/etc/hosts", O_PATH)
            py.close(fd)
            fd = py.open("/etc/ld.so.cache", O_RDONLY | O_CLOEXEC, t="open")
            py.close(fd)
            fd = py.open("/usr/lib/x86_64-linux-gnu/libc.so.6", t="openat2")
            py.close(fd)
            # threads share the table: a thread opens, the leader closes
            fd = py.open("/usr/share/zoneinfo/UTC", tid=py.pid + 5000)
            py.close(fd)
            py.close(99)                                              # EBADF
            # fds left open at exit
            py.open("/usr/lib/python3.12/left-open.py")
            py.exit()
            # cat reading secrets (Read sensitive file untrusted / Sensitive File Read ...)
            if r % 5 == 0:
                cat = _Proc(w, clock, pid, bash.pid, "cat", "/usr/bin/cat", ["cat", "/etc/shadow"],
                            "/root")
                pid += 1
                fd = cat.open("/etc/shadow")
                cat.close(fd)
                fd = cat.open("/root/.ssh/id_rsa")
                cat.close(fd)
                cat.open("/etc/nothere", fail=2)
                cat.exit()
                # directory traversal from a relative path
                tr = _Proc(w, clock, pid, sshd.pid, "less", "/usr/bin/less",
                           ["less", "../../etc/shadow"], "/tmp/a")
                pid += 1
                fd = tr.open("../../etc/shadow")
                tr.close(fd)
                tr.open("/etc/../../etc/nothere", fail=2)
                tr.exit()
                # log truncation (Clear Log Activities)
                lg = _Proc(w, clock, pid, bash.pid, "evil", "/tmp/evil", ["evil"], "/tmp")
                pid += 1
                fd = lg.open("/var/log/syslog", O_WRONLY | O_TRUNC)
                lg.close(fd)
                fd = lg.open("/etc/shadow", O_RDWR)
                lg.close(fd)
                # a reverse shell: a socket onto stdin/stdout (Reverse Shell Redirect)
                s = lg.lowest()
                lg.emit("socket", {"fd": s, "domain": 2, "type": 1, "proto": 0}, s)
                lg.fds.add(s)
                lg.emit("connect", {"fd": s, "family": 2, "sip": "127.0.0.1", "sport": 40000,
                                    "dip": "127.0.0.1", "dport": 4444, "path": "",
                                    "tuple": "127.0.0.1:40000->127.0.0.1:4444"}, 0)
                for n in (0, 1):
                    lg.emit("dup2", {"fd": n, "oldfd": s, "newfd": n}, n)
                lg.exit()
        sshd.exit()
        init.exit()
    return path
