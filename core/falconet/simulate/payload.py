"""Syscall-level behaviours that busybox cannot produce, run by the simulator as a subprocess.

This file is deliberately standalone (standard library only, no ``falconet`` import): the
simulator bind-mounts its directory into containers and runs it with the host's Python there, so
the behaviour happens inside the container's namespaces and cgroup.

Usage: ``python3 payload.py BEHAVIOUR [ARGS...]``. Every behaviour is harmless by construction:
network traffic stays on loopback (or is routed into the container's own loopback), kernel
module and BPF loads use inert input, files are created below private temporary directories and
removed. Exit status 0 means "the behaviour was performed" (even if the kernel refused the
syscall, which is what a detection engine must still see).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

# x86_64 syscall numbers (the simulator targets x86_64 hosts, as the collector does)
SYS_SETNS = 308
SYS_FINIT_MODULE = 313
SYS_BPF = 321

PTRACE_TRACEME = 0
PTRACE_ATTACH = 16
PTRACE_DETACH = 17


def _loopback_listener(port: int = 0, host: str = "127.0.0.1") -> tuple[socket.socket, int]:
    """A TCP listener on a loopback address (127.0.0.1 unless told) that accepts connections in
    a daemon thread."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                conn.recv(1024)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _spare_binary() -> tuple[str, str]:
    """(path of a static-enough executable, argv[0] that makes it exit 0)."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(path):
            return path, "true"
    return shutil.which("true") or "/bin/true", "true"


def memfd_exec() -> int:
    """Copy an executable into an anonymous memfd and execute it from there (fexecve)."""
    src, argv0 = _spare_binary()
    fd = os.memfd_create("falconet-sim", 0)
    with open(src, "rb") as f:
        os.write(fd, f.read())
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(f"/proc/self/fd/{fd}", [argv0], {"PATH": "/usr/bin:/bin"})
        finally:
            os._exit(127)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return 0


def ptrace_attach() -> int:
    """PTRACE_ATTACH to a child of ours (allowed without CAP_SYS_PTRACE), then detach."""
    pid = os.fork()
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    try:
        rc = _libc.ptrace(PTRACE_ATTACH, pid, None, None)
        if rc == 0:
            os.waitpid(pid, 0)
            _libc.ptrace(PTRACE_DETACH, pid, None, None)
        else:
            print(f"ptrace attach: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return 0


def ptrace_traceme() -> int:
    """A child calls ptrace(PTRACE_TRACEME), the anti-debugging trick."""
    pid = os.fork()
    if pid == 0:
        _libc.ptrace(PTRACE_TRACEME, 0, None, None)
        os._exit(0)
    os.waitpid(pid, 0)
    return 0


def reverse_shell() -> int:
    """A shell with stdin/stdout/stderr on a TCP connection to a loopback listener."""
    srv, port = _loopback_listener()
    pid = os.fork()
    if pid == 0:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            for n in (0, 1, 2):
                os.dup2(s.fileno(), n)
            os.execv("/bin/sh", ["sh", "-c", "exit 0"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    srv.close()
    return 0


def netcat_exec(nc: str = "nc") -> int:
    """``nc 127.0.0.1 PORT -e /bin/true`` against a loopback listener."""
    srv, port = _loopback_listener()
    tmp = None
    path = shutil.which(nc)
    if path is None or os.path.basename(os.path.realpath(path)) == "busybox" and nc != "nc":
        path = None
    if path is None:
        # a busybox applet link named nc in a private directory
        tmp = tempfile.mkdtemp(prefix="falconet-sim-")
        path = os.path.join(tmp, "nc")
        os.symlink(_spare_binary()[0], path)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 2)
                os.execv(path, ["nc", "127.0.0.1", str(port), "-e", "/bin/true"])
            finally:
                os._exit(127)
        _wait_or_kill(pid, 3)
    finally:
        srv.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _wait_or_kill(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def connect_port(port: str, host: str = "127.0.0.1") -> int:
    """Connect to HOST:PORT. On loopback a listener is opened first (on HOST) so the connect
    succeeds; elsewhere the connect is non-blocking (EINPROGRESS) and abandoned at once."""
    p = int(port)
    srv = None
    if host.startswith("127."):
        try:
            srv, _ = _loopback_listener(p, host)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect((host, p))
    except (BlockingIOError, OSError) as e:
        if getattr(e, "errno", None) not in (errno.EINPROGRESS, None):
            print(f"connect {host}:{p}: {e}", file=sys.stderr)
    time.sleep(0.05)
    s.close()
    if srv is not None:
        srv.close()
    return 0


def kernel_module() -> int:
    """finit_module() on a file of zeros: the kernel rejects it (ENOEXEC/EPERM), nothing loads."""
    with tempfile.NamedTemporaryFile(prefix="falconet-sim-", suffix=".ko") as f:
        f.write(b"\0" * 64)
        f.flush()
        fd = os.open(f.name, os.O_RDONLY)
        try:
            _libc.syscall(SYS_FINIT_MODULE, fd, b"", 0)
        finally:
            os.close(fd)
    return 0


def bpf_prog_load() -> int:
    """Load (and immediately unload) a two-instruction socket filter: ``r0 = 0; exit``."""
    insns = (ctypes.c_uint64 * 2)(0x00000000000000B7, 0x0000000000000095)
    license_ = ctypes.create_string_buffer(b"GPL")

    class Attr(ctypes.Structure):
        _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                    ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                    ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                    ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                    ("pad", ctypes.c_uint8 * 64)]

    attr = Attr(prog_type=1, insn_cnt=2, insns=ctypes.addressof(insns),
                license=ctypes.addressof(license_))
    fd = _libc.syscall(SYS_BPF, 5, ctypes.byref(attr), ctypes.sizeof(attr))   # 5 = BPF_PROG_LOAD
    if fd >= 0:
        os.close(fd)
    else:
        print(f"bpf: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    return 0


def packet_socket() -> int:
    """socket(AF_PACKET, SOCK_RAW): succeeds with CAP_NET_RAW, EPERM without."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except OSError as e:
        print(f"packet socket: {e}", file=sys.stderr)
    return 0


def setns_uts() -> int:
    """setns() into our own UTS namespace (a no-op join; EPERM without CAP_SYS_ADMIN)."""
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        _libc.syscall(SYS_SETNS, fd, 0)
    finally:
        os.close(fd)
    return 0


def pty_shell(shell: str = "/bin/sh") -> int:
    """Run ``sh -c 'exit 0'`` with a pseudo-terminal as its controlling terminal."""
    import pty  # noqa: PLC0415 - only this behaviour needs it

    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execv(shell, ["sh", "-c", "exit 0"])
        finally:
            os._exit(127)
    try:
        while True:
            try:
                if not os.read(master, 1024):
                    break
            except OSError:
                break
    finally:
        os.close(master)
        os.waitpid(pid, 0)
    return 0


def open_path(path: str, mode: str = "r") -> int:
    """Open PATH as given (no normalisation), e.g. ``/etc/../etc/../etc/passwd``."""
    flags = os.O_RDONLY if mode == "r" else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        os.close(os.open(path, flags, 0o600))
    except OSError as e:
        print(f"open {path}: {e}", file=sys.stderr)
    return 0


def sleep_then_read(seconds: str, path: str) -> int:
    """Wait until this process is no longer 'new', then read PATH (a long-running server)."""
    time.sleep(float(seconds))
    return open_path(path)


def spawn(*argv: str) -> int:
    """Run ARGV as a child of this process (used under a service's name: nginx, cron...)."""
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            for n in (0, 1, 2):
                os.dup2(devnull, n)
            os.execvp(argv[0], list(argv))
        finally:
            os._exit(127)
    _wait_or_kill(pid, 5)
    return 0


def run_as(uid: str, *argv: str) -> int:
    """Run ARGV as UID (e.g. 65534, nobody) in a child process."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(int(uid))
            os.setuid(int(uid))
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    _wait_or_kill(pid, 5)
    return 0


def stratum_handshake(port: str = "0") -> int:
    """Speak a miner's first Stratum lines (JSON-RPC ``mining.subscribe``, ``mining.authorize``)
    over TCP to a loopback listener on PORT (0: any free port, a port in no miner list)."""
    srv, p = _loopback_listener(int(port))
    s = socket.create_connection(("127.0.0.1", p), timeout=2)
    s.sendall(b'{"id": 1, "method": "mining.subscribe", "params": ["falconet-sim/1.0"]}\n')
    s.sendall(b'{"id": 2, "method": "mining.authorize", "params": ["falconet-sim", "x"]}\n')
    s.close()
    srv.close()
    return 0


BEHAVIOURS = {
    "stratum_handshake": stratum_handshake,
    "memfd_exec": memfd_exec,
    "ptrace_attach": ptrace_attach,
    "ptrace_traceme": ptrace_traceme,
    "reverse_shell": reverse_shell,
    "netcat_exec": netcat_exec,
    "connect_port": connect_port,
    "kernel_module": kernel_module,
    "bpf_prog_load": bpf_prog_load,
    "packet_socket": packet_socket,
    "setns_uts": setns_uts,
    "pty_shell": pty_shell,
    "open_path": open_path,
    "sleep_then_read": sleep_then_read,
    "spawn": spawn,
    "run_as": run_as,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BEHAVIOURS:
        print(f"usage: payload.py {{{','.join(sorted(BEHAVIOURS))}}} [ARGS...]", file=sys.stderr)
        return 2
    return BEHAVIOURS[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
