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
from collections.abc import Callable

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


# ------------------------------------------------------------------ io_uring (issue 19)
# File and socket operations through io_uring only (no open/socket/connect/dup syscall), with the
# raw io_uring syscalls and mmap: no liburing. x86_64 numbers and the uapi layouts.
SYS_IO_URING_SETUP, SYS_IO_URING_ENTER, SYS_IO_URING_REGISTER = 425, 426, 427
SYS_NAME_TO_HANDLE_AT, SYS_OPEN_BY_HANDLE_AT = 303, 304
IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_OPENAT, IORING_OP_CLOSE = 13, 16, 18, 19
IORING_OP_READ, IORING_OP_RENAMEAT, IORING_OP_SOCKET, IORING_OP_FIXED_FD_INSTALL = 22, 35, 45, 54
IORING_REGISTER_FILES, IORING_ENTER_GETEVENTS, IOSQE_FIXED_FILE = 2, 1, 1
AT_FDCWD = -100


class IoUring:
    """One io_uring with synchronous submit-and-wait of one request at a time."""

    def __init__(self, entries: int = 8) -> None:
        import mmap  # noqa: PLC0415 - only the io_uring behaviours need it
        import struct  # noqa: PLC0415

        self._struct = struct
        params = ctypes.create_string_buffer(120)              # struct io_uring_params
        fd = _libc.syscall(SYS_IO_URING_SETUP, entries, params)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
        self.fd = fd
        sq_entries, cq_entries = struct.unpack_from("II", params, 0)
        sq = struct.unpack_from("7I", params, 40)     # head tail ring_mask ring_entries flags dropped array
        cq = struct.unpack_from("6I", params, 80)     # head tail ring_mask ring_entries overflow cqes
        size = max(sq[6] + sq_entries * 4, cq[5] + cq_entries * 16)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self.ring = mmap.mmap(fd, size, mmap.MAP_SHARED, prot, offset=0)   # IORING_OFF_SQ_RING
        self.sqes = mmap.mmap(fd, sq_entries * 64, mmap.MAP_SHARED, prot, offset=0x10000000)
        self.sq_tail, self.sq_mask, self.sq_array = sq[1], sq[2], sq[6]
        self.cq_head, self.cq_tail, self.cq_mask, self.cqes = cq[0], cq[1], cq[2], cq[5]
        self._keep: list[object] = []

    def _u32(self, off: int) -> int:
        return int(self._struct.unpack_from("I", self.ring, off)[0])

    def op(self, opcode: int, *, fd: int = 0, addr: int = 0, length: int = 0, off: int = 0,
           flags: int = 0, op_flags: int = 0, file_index: int = 0) -> int:
        """Submit one sqe and wait for its completion; returns the cqe's res."""
        st = self._struct
        tail = self._u32(self.sq_tail)
        idx = tail & self._u32(self.sq_mask)
        sqe = bytearray(64)
        st.pack_into("BBHiQQIIQ", sqe, 0, opcode, flags, 0, fd, off, addr, length, op_flags, 1)
        st.pack_into("I", sqe, 44, file_index)
        self.sqes[idx * 64: idx * 64 + 64] = bytes(sqe)
        st.pack_into("I", self.ring, self.sq_array + 4 * idx, idx)
        st.pack_into("I", self.ring, self.sq_tail, (tail + 1) & 0xFFFFFFFF)
        if _libc.syscall(SYS_IO_URING_ENTER, self.fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0) < 0:
            raise OSError(ctypes.get_errno(), "io_uring_enter")
        head = self._u32(self.cq_head)
        deadline = time.monotonic() + 5
        while head == self._u32(self.cq_tail):
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "io_uring completion")
        res = st.unpack_from("i", self.ring, self.cqes + 16 * (head & self._u32(self.cq_mask)) + 8)[0]
        st.pack_into("I", self.ring, self.cq_head, (head + 1) & 0xFFFFFFFF)
        return int(res)

    def buf(self, data: bytes) -> int:
        """The address of a C copy of ``data`` kept alive as long as the ring."""
        b = ctypes.create_string_buffer(data)
        self._keep.append(b)
        return ctypes.addressof(b)

    def sparse_files(self, n: int) -> None:
        fds = (ctypes.c_int * n)(*([-1] * n))
        self._keep.append(fds)
        if _libc.syscall(SYS_IO_URING_REGISTER, self.fd, IORING_REGISTER_FILES, fds, n) < 0:
            raise OSError(ctypes.get_errno(), "io_uring_register")


def _sockaddr_in(host: str, port: int) -> bytes:
    return (socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big")
            + socket.inet_aton(host) + bytes(8))


def iouring_read(path: str) -> int:
    """IORING_OP_OPENAT + READ + CLOSE of PATH: no open/read/close syscall."""
    r = IoUring()
    fd = r.op(IORING_OP_OPENAT, fd=AT_FDCWD, addr=r.buf(path.encode()))
    if fd < 0:
        print(f"io_uring openat {path}: {os.strerror(-fd)}", file=sys.stderr)
        return 0
    r.op(IORING_OP_READ, fd=fd, addr=r.buf(bytes(256)), length=256)
    r.op(IORING_OP_CLOSE, fd=fd)
    return 0


def iouring_connect() -> int:
    """IORING_OP_SOCKET + CONNECT to a loopback listener: no socket/connect syscall."""
    srv, port = _loopback_listener()
    r = IoUring()
    fd = r.op(IORING_OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_STREAM)
    if fd < 0:
        raise OSError(-fd, "io_uring socket")
    r.op(IORING_OP_CONNECT, fd=fd, addr=r.buf(_sockaddr_in("127.0.0.1", port)), off=16)
    r.op(IORING_OP_CLOSE, fd=fd)
    srv.close()
    return 0


def iouring_reverse_shell() -> int:
    """A socket made and connected in a fixed-file slot, installed on stdin by
    IORING_OP_FIXED_FD_INSTALL after an io_uring close of fd 0, then a shell: no
    socket/connect/dup* syscall (the reverse shell of the "curing" rootkit's kind)."""
    srv, port = _loopback_listener()
    pid = os.fork()
    if pid == 0:
        try:
            r = IoUring()
            r.sparse_files(2)
            r.op(IORING_OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_STREAM, file_index=1)
            r.op(IORING_OP_CONNECT, fd=0, flags=IOSQE_FIXED_FILE, off=16,
                 addr=r.buf(_sockaddr_in("127.0.0.1", port)))
            r.op(IORING_OP_CLOSE, fd=0)
            fd = r.op(IORING_OP_FIXED_FD_INSTALL, fd=0, flags=IOSQE_FIXED_FILE, op_flags=1)
            if fd == 0:
                os.execv("/bin/sh", ["sh", "-c", "exit 0"])
        finally:
            os._exit(127)
    _wait_or_kill(pid, 5)
    srv.close()
    return 0


def iouring_rename(src: str, dst: str) -> int:
    """IORING_OP_RENAMEAT SRC -> DST: no rename syscall."""
    r = IoUring()
    res = r.op(IORING_OP_RENAMEAT, fd=AT_FDCWD, addr=r.buf(src.encode()), length=AT_FDCWD & 0xFFFFFFFF,
               off=r.buf(dst.encode()))
    if res < 0:
        print(f"io_uring renameat: {os.strerror(-res)}", file=sys.stderr)
    return 0


def open_by_handle(path: str) -> int:
    """name_to_handle_at(PATH) then open_by_handle_at on the root mount: the file opened with
    no path at all (the "shocker" primitive; needs CAP_DAC_READ_SEARCH)."""
    handle = ctypes.create_string_buffer(8 + 128)
    ctypes.c_uint32.from_buffer(handle).value = 128                 # handle_bytes
    mount_id = ctypes.c_int()
    if _libc.syscall(SYS_NAME_TO_HANDLE_AT, AT_FDCWD, path.encode(), handle,
                     ctypes.byref(mount_id), 0) < 0:
        raise OSError(ctypes.get_errno(), "name_to_handle_at")
    mfd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = _libc.syscall(SYS_OPEN_BY_HANDLE_AT, mfd, handle, os.O_RDONLY)
        if fd < 0:
            print(f"open_by_handle_at: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        else:
            os.close(fd)
    finally:
        os.close(mfd)
    return 0


def renamed_read(name: str, path: str) -> int:
    """prctl(PR_SET_NAME, NAME) then open PATH: a process that renames itself before acting."""
    _libc.prctl(15, name.encode(), 0, 0, 0)
    return open_path(path)


BEHAVIOURS: dict[str, Callable[..., int]] = {
    "stratum_handshake": stratum_handshake,
    "iouring_read": iouring_read,
    "iouring_connect": iouring_connect,
    "iouring_reverse_shell": iouring_reverse_shell,
    "iouring_rename": iouring_rename,
    "open_by_handle": open_by_handle,
    "renamed_read": renamed_read,
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
