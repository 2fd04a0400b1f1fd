"""The ``bpf(2)`` and ``perf_event_open(2)`` calls that load and attach a compiled BPF program
without bcc: create maps, load programs, fill a prog array, attach (raw) tracepoints.

Why here and not bcc: loading a cached object (see :mod:`falconet.collector.bpfcache`) must not
import bcc (which maps LLVM, ~60 MB RSS, and is what made start-up slow). Every call returns an fd
the caller owns, or raises ``OSError`` with the errno and, for a rejected program, the tail of
the verifier's log.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
from dataclasses import dataclass

# commands (include/uapi/linux/bpf.h)
BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_PROG_LOAD = 0, 2, 3, 5
BPF_OBJ_GET_INFO_BY_FD, BPF_RAW_TRACEPOINT_OPEN = 15, 17
# program types
BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT = 5, 17
# map types whose values are fds or need data besides the spec: a cache entry with one is refused
MAP_TYPES_NOT_COPYABLE = frozenset({12, 13})   # ARRAY_OF_MAPS, HASH_OF_MAPS

PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408

_NR = {"x86_64": (321, 298), "aarch64": (280, 241)}      # (bpf, perf_event_open)
_NR_BPF, _NR_PERF = _NR.get(platform.machine(), _NR["x86_64"])

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

OBJ_NAME_LEN = 16


def _sys_bpf(cmd: int, attr: ctypes.Structure) -> int:
    r = int(_libc.syscall(_NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr)))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return r


def _obj_name(name: str) -> bytes:
    # the kernel accepts [A-Za-z0-9_.] only, at most 15 characters (bcc truncates the same way)
    return bytes(c if chr(c).isalnum() or c in b"_." else ord("_")
                 for c in name.encode()[:OBJ_NAME_LEN - 1])


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * OBJ_NAME_LEN),
                ("map_ifindex", ctypes.c_uint32), ("btf_fd", ctypes.c_uint32),
                ("btf_key_type_id", ctypes.c_uint32), ("btf_value_type_id", ctypes.c_uint32),
                ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("map_extra", ctypes.c_uint64)]


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * OBJ_NAME_LEN),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32)]


class _ElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * OBJ_NAME_LEN), ("ifindex", ctypes.c_uint32),
                ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
                ("netns_ino", ctypes.c_uint64), ("btf_id", ctypes.c_uint32),
                ("btf_key_type_id", ctypes.c_uint32), ("btf_value_type_id", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("map_extra", ctypes.c_uint64)]


class _RawTpAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class _PerfEventAttr(ctypes.Structure):
    # the first fields of struct perf_event_attr, padded to PERF_ATTR_SIZE_VER5 (112 bytes)
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("config", ctypes.c_uint64), ("sample_period", ctypes.c_uint64),
                ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 60)]


@dataclass(frozen=True)
class MapSpec:
    """What ``BPF_MAP_CREATE`` needs to make an equivalent map (generic over map types)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    map_extra: int = 0


def map_info(fd: int) -> MapSpec:
    """The spec of an existing map, from the kernel (``BPF_OBJ_GET_INFO_BY_FD``)."""
    info = _MapInfo()
    _sys_bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info)))
    return MapSpec(info.name.decode(errors="replace"), info.type, info.key_size,
                   info.value_size, info.max_entries, info.map_flags, info.map_extra)


def map_create(spec: MapSpec) -> int:
    attr = _MapCreateAttr(map_type=spec.type, key_size=spec.key_size,
                          value_size=spec.value_size, max_entries=spec.max_entries,
                          map_flags=spec.flags, map_name=_obj_name(spec.name),
                          map_extra=spec.map_extra)
    try:
        return _sys_bpf(BPF_MAP_CREATE, attr)
    except OSError as e:
        raise OSError(e.errno, f"cannot create BPF map {spec.name}: {e.strerror}") from None


def prog_load(name: str, prog_type: int, insns: bytes, license: str = "GPL",
              kern_version: int = 0) -> int:
    """Load one program; on rejection, load again with the verifier log and raise ``OSError``
    with its tail (the first attempt runs without a log: it is the fast path)."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8,
                         insns=ctypes.addressof(buf), license=ctypes.addressof(lic),
                         kern_version=kern_version, prog_name=_obj_name(name))
    try:
        return _prog_load_retrying(attr)
    except OSError as e:
        err = e
    log = ctypes.create_string_buffer(1 << 24)
    attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
    try:
        return _prog_load_retrying(attr)
    except OSError:
        pass
    text = log.value.decode(errors="replace").strip()
    raise OSError(err.errno, f"cannot load BPF program {name}: {err.strerror}"
                  + (f"\n{text[-3000:]}" if text else ""))


#: errnos of BPF_PROG_LOAD that say the program itself is refused (the verifier, sizes,
#: unsupported features); others (EAGAIN: the verifier was interrupted by a signal, ENOMEM...)
#: may pass another time
REJECTED = frozenset({errno.EINVAL, errno.EACCES, errno.E2BIG, errno.EOPNOTSUPP, 524})


def _prog_load_retrying(attr: _ProgLoadAttr, attempts: int = 5) -> int:
    """BPF_PROG_LOAD, again on EAGAIN as libbpf does: the verifier gives up with EAGAIN when a
    signal is pending (a SIGCHLD of one of the engine's children is enough)."""
    while True:
        try:
            return _sys_bpf(BPF_PROG_LOAD, attr)
        except BlockingIOError:
            attempts -= 1
            if attempts <= 0:
                raise


def map_update_u32(fd: int, key: int, value: int) -> None:
    k, v = ctypes.c_uint32(key), ctypes.c_uint32(value)
    _sys_bpf(BPF_MAP_UPDATE_ELEM, _ElemAttr(fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))


def map_update(fd: int, key: bytes, value: bytes) -> None:
    """``BPF_MAP_UPDATE_ELEM`` (BPF_ANY) of one entry given as bytes. Raises ``OSError``."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _sys_bpf(BPF_MAP_UPDATE_ELEM, _ElemAttr(fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))


def map_delete(fd: int, key: bytes) -> None:
    """``BPF_MAP_DELETE_ELEM``; a missing key is not an error."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        _sys_bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(fd, 0, ctypes.addressof(k), 0, 0))
    except FileNotFoundError:           # ENOENT
        pass


def raw_tracepoint_open(tp: str, prog_fd: int) -> int:
    name = ctypes.create_string_buffer(tp.encode())
    try:
        return _sys_bpf(BPF_RAW_TRACEPOINT_OPEN,
                        _RawTpAttr(ctypes.addressof(name), prog_fd, 0))
    except OSError as e:
        raise OSError(e.errno, f"cannot attach raw tracepoint {tp}: {e.strerror}") from None


def tracepoint_attach(tracefs: str, tp: str, prog_fd: int) -> int:
    """Attach to ``category:name`` as bcc does: a perf event of the tracepoint on CPU 0 for
    every process (the program runs on every CPU), then SET_BPF and ENABLE. Returns the perf
    event fd (closing it detaches)."""
    category, _, event = tp.partition(":")
    with open(os.path.join(tracefs, "events", category, event, "id")) as f:
        tp_id = int(f.read())
    attr = _PerfEventAttr(type=PERF_TYPE_TRACEPOINT, size=ctypes.sizeof(_PerfEventAttr),
                          config=tp_id, sample_period=1, sample_type=1 << 10,   # PERF_SAMPLE_RAW
                          wakeup_events=1)
    fd = int(_libc.syscall(_NR_PERF, ctypes.byref(attr), -1, 0, -1, PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot open tracepoint {tp}: {os.strerror(err)}")
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as e:
        os.close(fd)
        raise OSError(e.errno, f"cannot attach tracepoint {tp}: {e.strerror}") from None
    return fd
