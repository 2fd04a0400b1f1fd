"""Compile, load and attach the BPF program in a short-lived child process; hand back the fds.

Why: bcc pulls LLVM/clang into the process that compiles (measured: +63 MB RSS to import bcc,
+104 MB more to compile), and keeps it for the life of the ``BPF`` object. The engine needs none of
that after start: only the ring buffer and counter map fds, the prog-array map fds (the kernel
clears a prog array when its last user fd closes), and the attachment fds (closing them detaches).
So a child does the bcc work, sends those fds over a unix socket (SCM_RIGHTS) and exits with
``os._exit`` (bcc's atexit cleanup would detach the tracepoints the parent now owns).

Protocol (child side is ``python -m falconet.collector.bpfproc <socket fd>``): the parent sends one
length-prefixed JSON request ``{"text", "cflags", "dispatch", "attach", "maps"}``; the child answers
with one JSON message ``{"ok": true, "fds": [names...]}`` carrying the fds in the same order, or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import socket
import struct
import subprocess
import sys
from typing import Any

_LEN = struct.Struct("<I")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return buf


def load_in_child(request: dict[str, Any], timeout: float = 120.0) -> dict[str, int]:
    """Run the child; return ``{name: fd}`` (fds now owned by the caller). Raises
    ``RuntimeError`` with the child's error message."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "falconet.collector.bpfproc",
                                 str(child.fileno())], pass_fds=(child.fileno(),),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        child.close()
        data = json.dumps(request).encode()
        parent.sendall(_LEN.pack(len(data)) + data)
        parent.settimeout(timeout)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(parent, 1 << 20, 256)
        except (OSError, EOFError) as e:
            proc.kill()
            raise RuntimeError(f"BPF loader process failed: {e}") from None
        _out, err = proc.communicate(timeout=timeout)
        if not msg:
            raise RuntimeError("BPF loader process died: "
                               + (err.decode(errors="replace")[-3000:] or f"exit {proc.returncode}"))
        reply = json.loads(msg.decode())
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            detail = err.decode(errors="replace").strip()
            raise RuntimeError(reply.get("error", "unknown error")
                               + (f"\n{detail[-3000:]}" if detail else ""))
        names = reply["fds"]
        if len(names) != len(fds):
            for fd in fds:
                os.close(fd)
            raise RuntimeError("BPF loader process sent a wrong number of fds")
        return dict(zip(names, fds, strict=True))
    finally:
        parent.close()


def _child(sock_fd: int) -> int:
    sock = socket.socket(fileno=sock_fd)
    try:
        n = _LEN.unpack(_recv_exact(sock, 4))[0]
        req = json.loads(_recv_exact(sock, n).decode())
        from falconet.collector.bccloader import import_bcc  # noqa: PLC0415
        bcc = import_bcc()
        b = bcc.BPF(text=req["text"].encode(), cflags=req["cflags"])
        # handlers first, then the dispatcher may see them: fill the table before attaching
        exit_t = b[b"exit_progs"]
        for nr, exit_fn in req["dispatch"]:
            fn = b.load_func(exit_fn.encode(), bcc.BPF.RAW_TRACEPOINT)
            exit_t[ct.c_int(nr)] = ct.c_int(fn.fd)
        for table, idx, tail_fn in req.get("tails", ()):     # other prog arrays (issue 19)
            fn = b.load_func(tail_fn.encode(), bcc.BPF.RAW_TRACEPOINT)
            b[table.encode()][ct.c_int(idx)] = ct.c_int(fn.fd)
        names: list[str] = []
        fds: list[int] = []
        for kind, tp, fn in req["attach"]:
            if kind == "tp":
                b.attach_tracepoint(tp=tp.encode(), fn_name=fn.encode())
        # the syscall dispatcher last: had it been attached before, this loader's own
        # BPF_PROG_LOAD calls above would be reported as events of an unknown process
        for kind, tp, fn in req["attach"]:
            if kind == "raw":
                b.attach_raw_tracepoint(tp=tp.encode(), fn_name=fn.encode())
        for tp, fd in b.tracepoint_fds.items():
            names.append(f"tp:{tp.decode() if isinstance(tp, bytes) else tp}")
            fds.append(fd)
        for tp, fd in b.raw_tracepoint_fds.items():
            names.append(f"raw:{tp.decode() if isinstance(tp, bytes) else tp}")
            fds.append(fd)
        for m in req["maps"]:
            names.append(f"map:{m}")
            fds.append(b[m.encode()].map_fd)
        socket.send_fds(sock, [json.dumps({"ok": True, "fds": names}).encode()], fds)
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            sock.sendall(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}).encode())
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    rc = _child(int(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)         # never run bcc's atexit cleanup: it would detach what the parent owns
