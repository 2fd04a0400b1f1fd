"""Timestamp order across ring buffers, batch after batch.

Each CPU group has its own ring, and a process that migrates between CPUs leaves its events in
several of them, so every batch read from the rings is sorted by timestamp before it is
evaluated. Sorting one batch is not enough when the rings are behind: each read takes at most
``batch`` records from each ring, and a ring on a quiet CPU covers more time in ``batch``
records than a busy CPU's ring does. Yielding everything read would then put a busy ring's
unread (earlier) records after the quiet ring's later ones, by up to a second under load: a
child's events before its parent's fork, an fd used before its ``dup2``.

:class:`TimestampMerge` holds back what lies beyond the *frontier*: the newest timestamp taken
from any ring that still had records left (a full read). Nothing a ring still holds can be older
than that ring's newest read record, so everything at or before the smallest such timestamp is in
order; the rest waits for the next read. A frontier always includes the whole read of the ring
that defines it, so every read makes progress. This is libscap's "the next event is the oldest
buffer head", at the cost of one sort per batch rather than a comparison per event.

A ring read empty, or read before another, gives no frontier but is no proof either: the rings
are read one after the other, and between two reads a parent's ``procfork`` lands in the ring
already read while its child, woken on another CPU, fills the next ring with a ``dup2`` the
fork precedes. So a read also holds back what is stamped after the moment it *started*, less
:data:`IN_FLIGHT_NS`: a record is stamped when its BPF program fills it and is visible once
committed, a few microseconds later, so every record stamped before that bound that will ever
be read had been committed by the time the read began. What is held goes out with a read that
starts more than that after its stamp: the readers poll rather than sleep while something is
held, so within one poll interval.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from typing import Any

_ts = operator.attrgetter("ts")

#: the longest a record may be stamped before it is visible in its ring: one BPF program's run
#: between ``bpf_ktime_get_ns`` and the commit (microseconds; a millisecond covers preemption)
IN_FLIGHT_NS = 1_000_000


class TimestampMerge:
    """Orders the events read from several rings (see the module's docstring)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: list[Any] = []

    def order(self, got: list[Any], frontier: int | None, started: int | None = None
              ) -> list[Any]:
        """``got`` (this read, any order) with what was held, sorted; events newer than
        ``frontier`` (``None``: no ring was left with records) or than ``started`` (when the
        read began, on the events' clock) less :data:`IN_FLIGHT_NS` are held for the next
        read."""
        held = self.held
        if held:
            got.extend(held)
        got.sort(key=_ts)
        if started is not None:
            bound = started - IN_FLIGHT_NS
            if frontier is None or bound < frontier:
                frontier = bound
        if frontier is None:
            if held:
                self.held = []
            return got
        i = bisect_right(got, frontier, key=_ts)
        self.held = got[i:]
        return got[:i] if self.held else got

    def drain(self) -> list[Any]:
        """What is still held (the source is closing: nothing more will come)."""
        held, self.held = self.held, []
        return held
