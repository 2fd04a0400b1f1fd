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

import mmap
import os
import select
import struct
from collections.abc import Iterator

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingBuffer:
    """Consumer side of one ``BPF_MAP_TYPE_RINGBUF`` map (by fd) of ``size`` bytes."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("ring buffer size must be a power of two")
        self.fd = map_fd
        self.size = size
        self.mask = size - 1
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                               offset=0)
        self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=page)
        self.data_off = page
        self.view = memoryview(self._prod)
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout: float) -> bool:
        """Block until data may be available or ``timeout`` seconds pass."""
        if self.available():
            return True
        return bool(self._epoll.poll(timeout))

    def available(self) -> int:
        return _U64.unpack_from(self._prod, 0)[0] - _U64.unpack_from(self._cons, 0)[0]

    def records(self, max_records: int = 4096) -> Iterator[tuple[int, int]]:
        """Yield ``(offset, length)`` of committed records in :attr:`view`, oldest first.

        The consumer position advances when the iterator is exhausted or closed, so the data at a
        yielded offset is valid until the next record is requested.
        """
        cons_map, prod_map = self._cons, self._prod
        cons = _U64.unpack_from(cons_map, 0)[0]
        prod = _U64.unpack_from(prod_map, 0)[0]
        mask, base, u32 = self.mask, self.data_off, _U32.unpack_from
        n = 0
        try:
            while cons < prod and n < max_records:
                off = base + (cons & mask)
                length = u32(prod_map, off)[0]
                if length & BUSY:
                    break                         # not committed yet: stop, come back later
                cons += (HDR + (length & ~DISCARD & 0x3FFFFFFF) + 7) & ~7
                if not length & DISCARD:
                    n += 1
                    yield off + HDR, length
        finally:
            _U64.pack_into(cons_map, 0, cons)

    def close(self) -> None:
        try:
            self._epoll.close()
            self.view.release()
            self._prod.close()
            self._cons.close()
        except (BufferError, ValueError, OSError):
            pass


def map_fd_of(table: object) -> int:
    """The map fd of a bcc table (``bpf["events"]``)."""
    fd = getattr(table, "map_fd", None)
    if fd is None:
        raise RuntimeError("bcc table has no map_fd")
    os.fstat(fd)      # raises if invalid
    return int(fd)
