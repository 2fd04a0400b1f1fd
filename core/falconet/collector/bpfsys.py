"""The ``bpf(2)`` calls the engine needs after start, without bcc: read a per-CPU array (an
element, or a range of them in one batch)."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Sequence
from typing import Any

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_LOOKUP_BATCH = 24
#: what a kernel without batched lookups of this map type answers (ENOTSUPP is 524)
_NO_BATCH = frozenset({errno.EINVAL, errno.ENOTSUP, 524})
#: ``__NR_bpf`` by machine
_NR_BPF = {"x86_64": 321, "aarch64": 280}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _LookupAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


class _BatchAttr(ctypes.Structure):
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64),
                ("keys", ctypes.c_uint64), ("values", ctypes.c_uint64),
                ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


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
        self._batches = True
        self._batch_bufs: dict[tuple[int, int], tuple[Any, ...]] = {}

    def sum(self, key: int) -> int:
        """Sum over CPUs of element ``key``."""
        self._key.value = key
        r = _libc.syscall(self._nr, BPF_MAP_LOOKUP_ELEM, ctypes.byref(self._attr),
                          ctypes.sizeof(self._attr))
        if r < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bpf map lookup failed: {os.strerror(err)}")
        return sum(self._vals)

    def sums(self, keys: Sequence[int] | None = None) -> list[int]:
        """Sums over CPUs of the elements ``keys`` (default all), in that order: one batched
        lookup of the range they span, so a stats tick costs one system call, not one per
        element (the idle engine reads its counters every second); element by element where
        the kernel has no batches."""
        if keys is None:
            keys = range(self.size)
        if not keys:
            return []
        if self._batches:
            lo = min(keys)
            try:
                return self._batch(lo, max(keys) + 1 - lo, keys)
            except OSError as e:
                if e.errno not in _NO_BATCH:
                    raise
                self._batches = False
        return [self.sum(k) for k in keys]

    def _batch(self, lo: int, n: int, keys: Sequence[int]) -> list[int]:
        bufs = self._batch_bufs.get((lo, n))
        if bufs is None:
            # in_batch is the key *before* the first one returned (NULL: from the start)
            start, nxt = ctypes.c_uint32(max(lo - 1, 0)), ctypes.c_uint32(0)
            out_keys, vals = (ctypes.c_uint32 * n)(), (ctypes.c_uint64 * (n * self.ncpu))()
            attr = _BatchAttr(ctypes.addressof(start) if lo else 0, ctypes.addressof(nxt),
                              ctypes.addressof(out_keys), ctypes.addressof(vals), n, self.fd, 0, 0)
            bufs = self._batch_bufs[(lo, n)] = (attr, start, nxt, out_keys, vals)
        attr, _start, _nxt, _keys, vals = bufs
        attr.count = n
        r = _libc.syscall(self._nr, BPF_MAP_LOOKUP_BATCH, ctypes.byref(attr), ctypes.sizeof(attr))
        if r < 0:
            err = ctypes.get_errno()
            # ENOENT: the range ended at the map's last element (every element still copied)
            if err != errno.ENOENT or attr.count != n:
                raise OSError(err, f"bpf map batch lookup failed: {os.strerror(err)}")
        c = self.ncpu
        # only the elements asked for leave the C buffer (a sparse range on many CPUs)
        return [sum(vals[(k - lo) * c:(k - lo + 1) * c]) for k in keys]
