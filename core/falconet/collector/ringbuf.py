"""A BPF ring buffer consumer that reads records in batches straight from the shared memory.

bcc's ``ring_buffer_poll`` calls a Python function through ctypes for every record, which costs
microseconds each. We mmap the ring buffer map ourselves (the layout is the kernel ABI, see
``kernel/bpf/ringbuf.c``) and walk the records with ``struct.unpack_from``:

- page 0 (read-write): the consumer position (u64);
- page 1 (read-only): the producer position (u64);
- then the data area, mapped twice in a row so a record that wraps is contiguous.

Each record starts with an 8-byte header ``u32 len`` (bit 31 busy, bit 30 discarded) and
``u32 page offset``, followed by the data, padded to 8 bytes. The consumer position is published
after a batch, which frees the space for the kernel.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
import struct
from collections.abc import Iterator

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_U32 = struct.Struct("<I")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _mmap(fd: int, length: int, prot: int, offset: int) -> int:
    addr = _libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of ring buffer failed: {os.strerror(err)}")
    return int(addr)


class RingBuffer:
    """Consumer side of one ``BPF_MAP_TYPE_RINGBUF`` map (by fd) of ``size`` bytes.

    The two positions are read and written as whole aligned 64-bit words through ctypes: a
    ``struct.pack_into`` store goes byte by byte, and a producer reading a half-written consumer
    position sees the ring as full (we measured a few spurious drops per 100k events that way).
    """

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("ring buffer size must be a power of two")
        self.fd = map_fd
        self.size = size
        self.mask = size - 1
        page = mmap.PAGESIZE
        self._page = page
        self._cons_addr = _mmap(map_fd, page, mmap.PROT_READ | mmap.PROT_WRITE, 0)
        self._prod_len = page + 2 * size
        self._prod_addr = _mmap(map_fd, self._prod_len, mmap.PROT_READ, page)
        self._cons = ctypes.c_uint64.from_address(self._cons_addr)
        self._prod = ctypes.c_uint64.from_address(self._prod_addr)
        self.data_off = page
        self._raw = (ctypes.c_char * self._prod_len).from_address(self._prod_addr)
        self.view = memoryview(self._raw).cast("B")
        self._view32 = self.view.cast("I")       # record headers read as one index each

    def available(self) -> int:
        return self._prod.value - self._cons.value

    def records(self, max_records: int = 4096) -> Iterator[tuple[int, int]]:
        """Yield ``(offset, length)`` of committed records in :attr:`view`, oldest first.

        The consumer position advances when the iterator is exhausted or closed, so the data at a
        yielded offset is valid until the next record is requested.
        """
        cons_word = self._cons
        cons = cons_word.value
        prod = self._prod.value
        view = self.view
        mask, base, u32 = self.mask, self.data_off, _U32.unpack_from
        n = 0
        try:
            while cons < prod and n < max_records:
                off = base + (cons & mask)
                length = u32(view, off)[0]
                if length & BUSY:
                    break                         # not committed yet: stop, come back later
                cons += (HDR + (length & 0x3FFFFFFF) + 7) & ~7
                if not length & DISCARD:
                    n += 1
                    yield off + HDR, length & 0x3FFFFFFF
        finally:
            cons_word.value = cons                # one aligned 64-bit store

    def pending(self, max_records: int = 4096) -> tuple[list[int], int]:
        """Offsets in :attr:`view` of up to ``max_records`` committed records (data start, past
        the 8-byte header), oldest first, and the consumer position after them.

        The hot-path form of :meth:`records`: a list instead of a generator and the header word
        read through a uint32 view (about 100 ns less per record). The records stay valid until
        :meth:`release` is called with the returned position, which frees their space.
        """
        cons = self._cons.value
        prod = self._prod.value
        v32, mask, base = self._view32, self.mask, self.data_off
        out: list[int] = []
        add = out.append
        n = 0
        while cons < prod and n < max_records:
            off = base + (cons & mask)               # 8-aligned: a valid uint32 index
            length = v32[off >> 2]
            if length & (BUSY | DISCARD):
                if length & BUSY:
                    break                         # not committed yet: stop, come back later
                cons += (HDR + (length & 0x3FFFFFFF) + 7) & ~7
                continue
            cons += (HDR + length + 7) & ~7
            n += 1
            add(off + HDR)
        return out, cons

    def release(self, cons: int) -> None:
        """Publish the consumer position (one aligned 64-bit store) after :meth:`pending`."""
        self._cons.value = cons

    def close(self) -> None:
        if self._cons_addr:
            self._view32.release()
            self.view.release()
            _libc.munmap(self._prod_addr, self._prod_len)
            _libc.munmap(self._cons_addr, self._page)
            self._cons_addr = self._prod_addr = 0


class RingSet:
    """Several ring buffers (one per CPU group) waited on with one epoll."""

    def __init__(self, rings: list[RingBuffer]) -> None:
        self.rings = rings
        self._epoll = select.epoll()
        for r in rings:
            self._epoll.register(r.fd, select.EPOLLIN)

    def watch(self, fd: int) -> None:
        """Also end :meth:`wait` when ``fd`` is readable (a live worker's control socket)."""
        self._epoll.register(fd, select.EPOLLIN)

    def wait(self, timeout: float) -> bool:
        if any(r.available() for r in self.rings):
            return True
        return bool(self._epoll.poll(timeout))

    def close(self) -> None:
        self._epoll.close()
        for r in self.rings:
            r.close()
