"""Turns ring-buffer records into :class:`falconet.events.Event` objects.

Hot path. Every record starts with the same 96-byte header (``struct hdr_t`` in
``bpf/falconet.bpf.c``), unpacked with one precompiled ``struct.Struct``; the rest is decoded by a
per-event-type closure built once at start from :data:`falconet.collector.program.SPECS`. Every
event gets the hidden args ``cgroup_id`` and ``cpu`` (the CPU the record was written on:
``evt.cpu``) from the header.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from falconet import syscalls
from falconet.collector import program
from falconet.events import Event
from falconet.permissions import writable_by

#: ts, cgroup_id, res, tid, pid, id, len0, len1, len2, a0..a5, cpu (then 4 bytes of padding)
HDR = struct.Struct("<QQqIIHHHH6QI4x")
#: index of ``cpu`` in an ``HDR`` tuple
H_CPU = 15
assert HDR.size == program.HDR_SIZE
EXEC_WORDS = struct.Struct(f"<{program.N_EXEC_WORDS}Q")
CLONE_THREAD = 0x00010000
CLONE_VM_VFORK = 0x00004100
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10

Decoder = Callable[[memoryview, int], Event]


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def _i64(v: int) -> int:
    return v - 0x10000000000000000 if v & 0x8000000000000000 else v


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _u64(v: int) -> int:
    return v


_CONV = {"i32": _i32, "i64": _i64, "u32": _u32, "u64": _u64}


def text(b: bytes | memoryview) -> str:
    """Kernel bytes to str: UTF-8, undecodable bytes kept as surrogate escapes (U+DC80+byte),
    as /proc is read: a live event, its replay and the process table hold the same value (the
    output policy shows such a byte as ``\\xNN``, see docs/outputs.md)."""
    return bytes(b).decode("utf-8", "surrogateescape")


def parse_sockaddr(b: bytes) -> tuple[int, str, int, str]:
    """``(family, ip, port, unix_path)`` of a raw ``struct sockaddr``; unknown parts empty."""
    if len(b) < 2:
        return 0, "", 0, ""
    fam = b[0] | (b[1] << 8)
    if fam == AF_INET and len(b) >= 8:
        return fam, socket.inet_ntop(socket.AF_INET, b[4:8]), (b[2] << 8) | b[3], ""
    if fam == AF_INET6 and len(b) >= 24:
        return fam, socket.inet_ntop(socket.AF_INET6, b[8:24]), (b[2] << 8) | b[3], ""
    if fam == AF_UNIX:
        p = b[2:]
        if p[:1] == b"\0":                      # abstract socket: shown as @name, like ss(8)
            return fam, "", 0, "@" + text(p[1:].split(b"\0", 1)[0])
        return fam, "", 0, text(p.split(b"\0", 1)[0])
    return fam, "", 0, ""


def _addr_args(args: dict[str, Any], raw: bytes, role: str) -> None:
    fam, ip, port, path = parse_sockaddr(raw)
    args["family"] = fam
    if role == "dst":
        args["sip"], args["sport"], args["dip"], args["dport"] = "", 0, ip, port
    else:           # peer (accept/recvfrom: the remote side is the client) or local (bind)
        args["sip"], args["sport"], args["dip"], args["dport"] = ip, port, "", 0
    args["path"] = path
    if fam == AF_UNIX:
        args["tuple"] = path
    elif fam:
        args["tuple"] = f"{args['sip']}:{args['sport']}->{args['dip']}:{args['dport']}"
    else:
        args["tuple"] = ""


def _local_args(args: dict[str, Any], role: str) -> None:
    """Our side of the tuple from the kernel's socket (bpf sock_local: family | port << 16 |
    IPv4 << 32, then the IPv6 address), as Falco's driver fills it: connect (``role`` dst) the
    client's ``sip``/``sport``, accept (peer) the server's ``dip``/``dport``."""
    w0, w1, w2 = (args.pop(k, 0) for k in program.LOCAL_KEYS)
    fam, port = w0 & 0xffff, (w0 >> 16) & 0xffff
    if fam == AF_INET:
        ip = socket.inet_ntop(socket.AF_INET, (w0 >> 32).to_bytes(4, "little"))
    elif fam == AF_INET6:
        ip = socket.inet_ntop(socket.AF_INET6, w1.to_bytes(8, "little") + w2.to_bytes(8, "little"))
    else:
        return
    if not port:
        return
    if role == "dst":
        if args.get("family") in (AF_INET, AF_INET6):
            args["sip"], args["sport"] = ip, port
            args["tuple"] = f"{ip}:{port}->{args['dip']}:{args['dport']}"
    elif args.get("family") in (AF_INET, AF_INET6, 0):      # 0: accept given no sockaddr
        args["family"] = args.get("family") or fam
        args["dip"], args["dport"] = ip, port
        args["tuple"] = f"{args['sip']}:{args['sport']}->{ip}:{port}"


_WORD_FMT = {"i32": "i4x", "u32": "I4x", "i64": "q", "u64": "Q"}


def _make_generic(name: str, spec: program.Spec, boot: int, hot: bool = True) -> Decoder:
    """One closure per event type around a per-type ``struct.Struct`` that converts the six
    argument words (signed/unsigned, 32/64-bit) in the same C call as the header."""
    nums: list[tuple[int, str, str]] = []
    strs: list[tuple[str, int]] = []
    fd_res = size_res = False
    addr_role = ""
    for item in spec.decode.split():
        key, _, src = item.partition("=")
        if src == "res":
            fd_res = key == "fd"
            size_res = key == "size"
        elif src == "b1":
            pass                        # kind "io": the data snapshot after the sockaddr
        elif src in ("s0", "s1", "s2"):
            strs.append((key, int(src[1])))
        elif src in ("dst", "peer", "local"):
            addr_role = src
        else:
            conv, _, word = src.partition(":")
            nums.append((int(word), key, conv))
    words = ["8x"] * 6
    for idx, _key, conv in nums:
        words[idx] = _WORD_FMT[conv]
    # ts, cgroup_id, res, tid, pid, (id skipped), len0, len1, len2, converted words..., cpu
    unpack = struct.Struct("<QQqII2xHHH" + "".join(words) + "I4x").unpack_from
    keys = tuple(key for _idx, key, _conv in sorted(nums))
    sock = spec.kind == "sock"
    local = program.LOCAL_KEYS[0] in keys
    io = spec.kind == "io"
    base = program.HDR_SIZE
    k0 = strs[0][0] if strs else ""
    k1 = strs[1][0] if len(strs) > 1 else ""
    k2 = strs[2][0] if len(strs) > 2 else ""
    nstr = len(strs)
    if any(si != i for i, (_k, si) in enumerate(strs)):
        raise ValueError(f"{name}: strings must be listed s0, s1, s2 in order")

    fast = _hot_decoder(name, unpack, boot) if hot else None
    if fast is not None:
        return fast

    def decode(view: memoryview, off: int) -> Event:
        v = unpack(view, off)
        # zip stops at the last key, before cpu; strict=True costs a check per event
        args: dict[str, Any] = dict(zip(keys, v[8:], strict=False))
        if fd_res:
            args["fd"] = v[2]
        if nstr:                        # strings are packed: s1 follows s0, s2 follows s1
            p = off + base
            n = v[5]
            args[k0] = str(view[p: p + n - 1], "utf-8", "surrogateescape") if n > 1 else ""
            if nstr > 1:
                p += n
                n = v[6]
                args[k1] = str(view[p: p + n - 1], "utf-8", "surrogateescape") if n > 1 else ""
                if nstr > 2:
                    p += n
                    n = v[7]
                    args[k2] = (str(view[p: p + n - 1], "utf-8", "surrogateescape")
                                if n > 1 else "")
        elif io:
            p = off + base
            n0 = v[5]
            if addr_role:
                _addr_args(args, bytes(view[p: p + n0]), addr_role)
            if size_res:
                args["size"] = max(v[2], 0)
            args["data"] = bytes(view[p + n0: p + n0 + v[6]])
        elif sock:
            _addr_args(args, bytes(view[off + base: off + base + v[5]]), addr_role)
            if local:
                _local_args(args, addr_role)
        args["cgroup_id"] = v[1]
        args["cpu"] = v[-1]
        return Event("syscall", name, v[0] + boot, v[3], v[4], args, v[2])

    return decode


def _hot_decoder(name: str, unpack: Callable[..., tuple], boot: int) -> Decoder | None:
    """Hand-written decoders for the types that dominate real workloads (opens and closes are
    most of what a host does): a dict display with fixed keys is about twice as fast as building
    the args from the spec's key list. They unpack with the same per-type ``struct.Struct`` as the
    generic decoder, so the layout stays defined by :data:`program.SPECS` only (the unit tests
    compare both paths)."""
    base = program.HDR_SIZE
    if name == "close":
        def decode_close(view: memoryview, off: int) -> Event:
            ts, cg, res, tid, pid, _l0, _l1, _l2, fd, cpu = unpack(view, off)
            return Event("syscall", "close", ts + boot, tid, pid,
                         {"fd": fd, "cgroup_id": cg, "cpu": cpu}, res)
        return decode_close
    if name == "openat":
        def decode_openat(view: memoryview, off: int) -> Event:
            ts, cg, res, tid, pid, n, _l1, _l2, dirfd, flags, mode, ftype, cpu = unpack(view, off)
            p = off + base
            return Event("syscall", "openat", ts + boot, tid, pid,
                         {"dirfd": dirfd, "flags": flags, "mode": mode, "ftype": ftype,
                          "fd": res, "name": str(view[p: p + n - 1], "utf-8", "surrogateescape")
                          if n > 1 else "", "cgroup_id": cg, "cpu": cpu}, res)
        return decode_openat
    if name == "open":
        def decode_open(view: memoryview, off: int) -> Event:
            ts, cg, res, tid, pid, n, _l1, _l2, flags, mode, ftype, cpu = unpack(view, off)
            p = off + base
            return Event("syscall", "open", ts + boot, tid, pid,
                         {"flags": flags, "mode": mode, "ftype": ftype, "fd": res,
                          "name": str(view[p: p + n - 1], "utf-8", "surrogateescape")
                          if n > 1 else "", "cgroup_id": cg, "cpu": cpu}, res)
        return decode_open
    return None


def _make_clone(name: str, boot: int) -> Decoder:
    def decode(view: memoryview, off: int) -> Event:
        h = HDR.unpack_from(view, off)
        res, tid, pid = h[2], h[3], h[4]
        flags = h[9] if name in ("clone", "clone3") else (CLONE_VM_VFORK if name == "vfork" else 0)
        if res > 0:
            child_tid, child_pid = res, (pid if flags & CLONE_THREAD else res)
        elif res == 0:
            child_tid, child_pid = tid, pid
        else:
            child_tid = child_pid = 0
        args = {"child_tid": child_tid, "child_pid": child_pid, "flags": flags,
                "cgroup_id": h[1], "cpu": h[H_CPU]}
        return Event("syscall", name, h[0] + boot, tid, pid, args, res)
    return decode


def _split_nul(b: bytes) -> list[str]:
    if not b:
        return []
    parts = b.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [text(p) for p in parts]


def _proc_link(pid: int, what: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/{what}")
    except OSError:
        return ""


def _make_exec(name: str, env_len: int, boot: int) -> Decoder:
    s0 = program.EXEC_S0_OFF
    comm_off = program.EXEC_COMM_OFF
    dirfd_flags = name == "execveat"

    def decode(view: memoryview, off: int) -> Event:
        h = HDR.unpack_from(view, off)
        res, tid, pid = h[2], h[3], h[4]
        lens = h[6:9]
        x = EXEC_WORDS.unpack_from(view, off + program.HDR_SIZE)
        filename = text(view[off + s0: off + s0 + lens[0] - 1]) if lens[0] > 1 else ""
        s1 = off + s0 + lens[0]                  # argv follows the filename, env follows argv
        s2 = s1 + lens[1]
        argv = _split_nul(bytes(view[s1: s2]))
        comm = bytes(view[off + comm_off: off + comm_off + 16]).split(b"\0", 1)[0]
        args: dict[str, Any] = {
            "filename": filename, "argv": argv, "exe": argv[0] if argv else filename,
            # cwd needs d_path, not available to tracepoint programs: read /proc now (empty if
            # the process already exited); exepath comes from the kernel's walk of exe_file
            # when the record has it (issue 19), else from /proc too
            "cwd": _proc_link(pid, "cwd") if res == 0 else "",
            "exepath": (_proc_link(pid, "exe") if res == 0 and not (x[18] >> 16) & 0xFFFF
                        else ""),
            "comm": text(comm),
            "uid": x[0], "gid": x[1], "euid": x[2], "egid": x[3],
            "cap_effective": x[4], "cap_permitted": x[5], "cap_inheritable": x[6],
            "loginuid": x[7], "tty": x[8], "pgid": x[9], "vpgid": x[10], "sid": x[11],
            "vtid": x[12], "vpid": x[13], "ppid": x[14], "exe_ino": x[15],
            "exe_from_memfd": bool(x[16]), "exe_upper_layer": bool(x[17]),
            "exe_ino_ctime": x[19], "exe_ino_mtime": x[20],
            "exe_writable": writable_by(x[21], x[22], x[23], x[2], x[3], x[4]) if x[18] & 2 else False,
            "cgroup_id": h[1], "cpu": h[H_CPU],
        }
        klen = (x[18] >> 16) & 0xFFFF       # issue 19: exe_file's path from the kernel
        if klen > 1:
            k0 = s2 + lens[2]
            args["exepath"] = text(view[k0: k0 + klen - 1])
        if res == 0 and not args["exepath"] and filename.startswith("/"):
            args["exepath"] = filename      # the process is gone; the path it was started by
        if env_len:
            args["env"] = _split_nul(bytes(view[s2: s2 + lens[2]]))
        if dirfd_flags:
            args["dirfd"] = _i32(h[9])
            args["flags"] = _u32(h[13])
        if res != 0:
            args["argv"] = []
        return Event("syscall", name, h[0] + boot, tid, pid, args, res)
    return decode


def _make_procfork(boot: int) -> Decoder:
    def decode(view: memoryview, off: int) -> Event:
        h = HDR.unpack_from(view, off)
        n = h[6]
        comm = bytes(view[off + program.HDR_SIZE: off + program.HDR_SIZE + n]).split(b"\0", 1)[0]
        args = {"child_tid": h[9] & 0xFFFFFFFF, "child_pid": h[10] & 0xFFFFFFFF,
                "parent_tid": h[11], "parent_pid": h[12], "child_comm": text(comm),
                "cgroup_id": h[1], "cpu": h[H_CPU]}
        return Event("syscall", "procfork", h[0] + boot, h[3], h[4], args, None)
    return decode


def _make_procexit(boot: int) -> Decoder:
    def decode(view: memoryview, off: int) -> Event:
        h = HDR.unpack_from(view, off)
        return Event("syscall", "procexit", h[0] + boot, h[3], h[4],
                     {"status": _i32(h[9]), "cgroup_id": h[1], "cpu": h[H_CPU]}, None)
    return decode


def _resolved_openat(spec: program.Spec, boot: int) -> Decoder:
    """The hot ``openat`` decoder when records carry the kernel's path (s1, issue 19); the unit
    tests compare it with the generic decoder of the same spec."""
    generic = _make_generic("openat", spec, boot, hot=False)
    del generic                      # built once only to validate the spec's string order
    unpack = struct.Struct("<QQqII2xHHH" + "i4x8xI4xI4x8xI4x" + "I4x").unpack_from
    base = program.HDR_SIZE

    def decode_openat(view: memoryview, off: int) -> Event:
        ts, cg, res, tid, pid, n, n1, _l2, dirfd, flags, mode, ftype, cpu = unpack(view, off)
        p = off + base
        q = p + n
        return Event("syscall", "openat", ts + boot, tid, pid,
                     {"dirfd": dirfd, "flags": flags, "mode": mode, "ftype": ftype, "fd": res,
                      "name": str(view[p: q - 1], "utf-8", "surrogateescape") if n > 1 else "",
                      "resolved": str(view[q: q + n1 - 1], "utf-8", "surrogateescape")
                      if n1 > 1 else "", "cgroup_id": cg, "cpu": cpu}, res)
    return decode_openat


def _make_iou(name: str, boot: int) -> Decoder:
    """An io_uring record (issue 19): decoded as the syscall record whose layout it has, then
    marked ``via=io_uring``; a fixed-file operation also gets ``slot`` (the fixed-file index) and
    ``ring`` (low bits of the ring's address: slots belong to a ring), and no fd of its own
    (``fd`` -1)."""
    base = program.IOU_EVENTS[name]
    inner = _make_generic(base, program.SPECS[base], boot, hot=False)
    w5 = struct.Struct("<Q").unpack_from
    w5_off = program.HDR_A_OFF + 5 * 8
    install = name == "iou_fixed_fd_install"
    fixed_fd = name in ("iou_openat", "iou_openat2", "iou_socket", "iou_accept4", "iou_close",
                        "iou_connect")

    def decode(view: memoryview, off: int) -> Event:
        evt = inner(view, off)
        a = evt.args
        a["via"] = "io_uring"
        (word,) = w5(view, off + w5_off)
        slot = word & 0xFFFFFFFF
        if slot:
            a["slot"] = slot - 1
            a["ring"] = word >> 32
            if fixed_fd:
                a["fd"] = -1
        if install:
            a["newfd"] = evt.res
        return evt
    return decode


class RecordDecoder:
    """Decodes records of one built program. ``decode(view, off)`` returns an Event."""

    def __init__(self, *, path_len: int, argv_len: int, env_len: int,
                 resolve_paths: bool = False) -> None:
        # kernel timestamps are CLOCK_MONOTONIC (bpf_ktime_get_ns); events carry epoch ns
        self.boot_offset = boot = time.time_ns() - time.monotonic_ns()
        self.path_len, self.argv_len = path_len, argv_len
        table: dict[int, Decoder] = {}
        for name in syscalls.EVENTS:
            eid = program.EVENT_IDS[name]
            if name == "procfork":
                table[eid] = _make_procfork(boot)
            elif name == "procexit":
                table[eid] = _make_procexit(boot)
            else:
                spec = program.SPECS[name]
                if spec.kind == "clone":
                    table[eid] = _make_clone(name, boot)
                elif spec.kind == "exec":
                    table[eid] = _make_exec(name, env_len, boot)
                elif resolve_paths and name in program.RESOLVED_OPENS:
                    # the record has the kernel's path too (issue 19)
                    table[eid] = (_resolved_openat(program.RESOLVED_OPENS[name], boot)
                                  if name == "openat" else
                                  _make_generic(name, program.RESOLVED_OPENS[name], boot,
                                                hot=False))
                else:
                    table[eid] = _make_generic(name, spec, boot)
        for name, eid in program.IOU_IDS.items():
            table[eid] = _make_iou(name, boot)
        self.table = table

    def decode(self, view: memoryview, off: int) -> Event:
        # the event id is the u16 at byte 32 of the header (struct hdr_t)
        return self.table[view[off + 32] | (view[off + 33] << 8)](view, off)
