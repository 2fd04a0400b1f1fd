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

With ``"mode": "compile"`` the child only compiles and answers with a length-prefixed JSON
``{"ok": true, "entry": <bpfcache entry>}`` (no fds): :func:`load` then loads that entry in this
process, and keeps it in the cache so the next start skips the child (see :mod:`bpfcache`).
"""

from __future__ import annotations

import ctypes as ct
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from falconet.collector import bpfcache, bpfsyscall

log = logging.getLogger("falconet.collector")

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


def _spawn() -> tuple[socket.socket, subprocess.Popen[bytes]]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "falconet.collector.bpfproc",
                                 str(child.fileno())], pass_fds=(child.fileno(),),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return parent, proc


def compile_in_child(request: dict[str, Any], key: str, timeout: float = 120.0
                     ) -> bpfcache.Entry:
    """Compile ``request`` in the child and return the dumped entry (raises ``RuntimeError``
    with the compiler's message, :class:`bpfcache.CacheError` if it cannot be cached)."""
    parent, proc = _spawn()
    try:
        data = json.dumps({**request, "mode": "compile", "key": key}).encode()
        parent.sendall(_LEN.pack(len(data)) + data)
        parent.settimeout(timeout)
        try:
            n = _LEN.unpack(_recv_exact(parent, 4))[0]
            msg = _recv_exact(parent, n)
        except (OSError, EOFError) as e:
            proc.kill()
            _out, err = proc.communicate(timeout=timeout)
            raise RuntimeError(f"BPF compiler process failed: {e}: "
                               + err.decode(errors="replace")[-3000:]) from None
        _out, err = proc.communicate(timeout=timeout)
        reply = json.loads(msg.decode())
        if not reply.get("ok"):
            detail = err.decode(errors="replace").strip()
            error = reply.get("error", "unknown error")
            if reply.get("uncacheable"):
                raise bpfcache.CacheError(error)
            raise RuntimeError(error + (f"\n{detail[-3000:]}" if detail else ""))
        return bpfcache.Entry.from_json(reply["entry"].encode(), key)
    finally:
        parent.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def load(request: dict[str, Any], *, cache: bool = True) -> dict[str, int]:
    """Load ``request`` as :func:`load_in_child` does, through the compiled-object cache when
    ``cache``: a hit loads in this process without compiling; a miss compiles in the child,
    stores the entry and loads it here. Whatever goes wrong with the cache falls back to the
    plain child load (counted in ``bpfcache.STATS`` and logged), never fails the start."""
    if not cache:
        return load_in_child(request)
    from falconet.collector.program import tracefs_root  # noqa: PLC0415
    stats = bpfcache.STATS
    t0 = time.monotonic()
    cflags, tgid = bpfcache.compile_cflags(request["cflags"])
    tracefs = tracefs_root()
    if tgid is None or tracefs is None:
        stats["uncacheable"] += 1
        log.info("BPF cache: not used (no SELF_TGID flag or no tracefs)")
        return load_in_child(request)
    creq = {**request, "cflags": cflags}
    try:
        key = bpfcache.cache_key(request["text"], cflags)
    except OSError as e:
        stats["error"] += 1
        log.warning("BPF cache: cannot compute the key (%s); compiling", e)
        return load_in_child(request)
    if bpfcache.is_marked_uncacheable(key):
        stats["uncacheable"] += 1
        log.info("BPF cache: %s is marked uncacheable; loading it with bcc", key[:12])
        return load_in_child(request)
    entry: bpfcache.Entry | None = None
    writable = True
    try:
        entry = bpfcache.read(key)
    except bpfcache.CacheDirError as e:
        stats["dir_error"] += 1
        writable = False
        log.warning("BPF cache: %s; compiling", e)
    except bpfcache.CacheError as e:
        stats["corrupt"] += 1
        log.warning("BPF cache: ignoring entry %s: %s; compiling again", key[:12], e)
    if entry is not None:
        try:
            fds = bpfcache.load_entry(entry, creq, tgid, tracefs)
        except (OSError, bpfcache.CacheError) as e:
            stats["load_failed"] += 1
            log.warning("BPF cache: the cached program %s did not load (%s); compiling again",
                        key[:12], e)
            bpfcache.remove(key)
        else:
            stats["hit"] += 1
            log.info("BPF cache: hit %s, loaded in %.2fs without compiling", key[:12],
                     time.monotonic() - t0)
            return fds
    stats["miss"] += 1
    try:
        entry = compile_in_child(creq, key)
    except bpfcache.CacheError as e:
        stats["uncacheable"] += 1
        log.warning("BPF cache: the program cannot be cached (%s); loading it with bcc", e)
        bpfcache.mark_uncacheable(key, str(e))
        return load_in_child(request)
    try:
        fds = bpfcache.load_entry(entry, creq, tgid, tracefs)
    except (OSError, bpfcache.CacheError) as e:
        stats["load_failed"] += 1
        log.warning("BPF cache: the freshly compiled program did not load without bcc (%s); "
                    "loading it with bcc", e)
        if isinstance(e, bpfcache.CacheError) or e.errno in bpfsyscall.REJECTED:
            bpfcache.mark_uncacheable(key, str(e))      # not a passing condition: remember
        return load_in_child(request)
    if writable:
        try:
            bpfcache.write(entry)
            stats["stored"] += 1
        except bpfcache.CacheError as e:
            stats["error"] += 1
            log.warning("BPF cache: %s", e)
    log.info("BPF cache: miss %s, compiled and loaded in %.2fs", key[:12], time.monotonic() - t0)
    return fds


def _compile_child(sock: socket.socket, req: dict[str, Any]) -> int:
    """Compile only; dump the functions and maps as a cache entry (bcc's auto-attach off: this
    process attaches nothing)."""
    from falconet.collector.bccloader import import_bcc  # noqa: PLC0415
    bcc = import_bcc()
    bcc.BPF._trace_autoload = lambda self: None
    b = bcc.BPF(text=req["text"].encode(), cflags=req["cflags"])    # a compile error raises
    try:
        lib = bcc.libbcc.lib
        lib.bpf_num_tables.restype = ct.c_size_t
        lib.bpf_num_tables.argtypes = [ct.c_void_p]
        lib.bpf_table_name.restype = ct.c_char_p
        lib.bpf_table_name.argtypes = [ct.c_void_p, ct.c_size_t]
        lib.bpf_table_fd_id.restype = ct.c_int
        lib.bpf_table_fd_id.argtypes = [ct.c_void_p, ct.c_size_t]
        maps = {lib.bpf_table_name(b.module, i).decode(): lib.bpf_table_fd_id(b.module, i)
                for i in range(lib.bpf_num_tables(b.module))}
        fns = ([fn for _nr, fn in req["dispatch"]] + [fn for _k, _tp, fn in req["attach"]]
               + [fn for _t, _i, fn in req.get("tails", ())])
        functions = {fn: b.dump_func(fn.encode()) for fn in dict.fromkeys(fns)}
        entry = bpfcache.make_entry(req["key"], functions, maps,
                                    lib.bpf_module_license(b.module).decode(),
                                    int(lib.bpf_module_kern_version(b.module)))
        reply: dict[str, Any] = {"ok": True, "entry": entry.to_json().decode()}
    except Exception as e:  # noqa: BLE001 - dumping failed (an older libbcc...): use bcc's load
        reply = {"ok": False, "uncacheable": True, "error": f"{type(e).__name__}: {e}"}
    data = json.dumps(reply).encode()
    sock.sendall(_LEN.pack(len(data)) + data)
    return 0


def _child(sock_fd: int) -> int:
    sock = socket.socket(fileno=sock_fd)
    req: dict[str, Any] = {}
    try:
        n = _LEN.unpack(_recv_exact(sock, 4))[0]
        req = json.loads(_recv_exact(sock, n).decode())
        if req.get("mode") == "compile":
            return _compile_child(sock, req)
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
            data = json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}).encode()
            if req.get("mode") == "compile":
                data = _LEN.pack(len(data)) + data
            sock.sendall(data)
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    rc = _child(int(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)         # never run bcc's atexit cleanup: it would detach what the parent owns
