"""The one ``bpf(2)`` call the engine needs after start, without bcc: read a per-CPU array."""

from __future__ import annotations

import ctypes
import os
import platform

BPF_MAP_LOOKUP_ELEM = 1
#: ``__NR_bpf`` by machine
_NR_BPF = {"x86_64": 321, "aarch64": 280}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _LookupAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs (the per-CPU value count), from ``0-3,5``-style ranges."""
    with open(path) as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class PerCpuU64Array:
    """A ``BPF_PERCPU_ARRAY`` of u64 read through its map fd."""

    def __init__(self, map_fd: int, size: int) -> None:
        self.fd, self.size = map_fd, size
        self.ncpu = possible_cpus()
        self._vals = (ctypes.c_uint64 * self.ncpu)()
        self._key = ctypes.c_uint32(0)
        self._attr = _LookupAttr(map_fd, 0, ctypes.addressof(self._key),
                                 ctypes.addressof(self._vals), 0)
        self._nr = _NR_BPF.get(platform.machine(), 321)

    def sum(self, key: int) -> int:
        """Sum over CPUs of element ``key``."""
        self._key.value = key
        r = _libc.syscall(self._nr, BPF_MAP_LOOKUP_ELEM, ctypes.byref(self._attr),
                          ctypes.sizeof(self._attr))
        if r < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bpf map lookup failed: {os.strerror(err)}")
        return sum(self._vals)

    def sums(self) -> list[int]:
        return [self.sum(k) for k in range(self.size)]
