"""The one ordered alert stream out of N workers.

Each worker evaluates the events it owns in capture order and returns, per batch, its alerts
tagged with the event number (``evt.num``, the event's position in the whole stream). The merger
releases an alert once no worker can still send an earlier one: every worker that has work in
flight has acknowledged a batch at or past it. The result is the order one worker would have
produced (capture order, which is event-timestamp order in a capture the engine recorded), and
each alert exactly once."""

from __future__ import annotations

import heapq
from typing import Any


class AlertMerger:
    """Orders ``(evt.num, alert)`` pairs from ``n`` workers."""

    def __init__(self, n: int) -> None:
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        #: per worker: the highest event number of its last acknowledged batch
        self.done = [0] * n

    def add(self, worker: int, upto: int, alerts: list[tuple[int, Any]]) -> None:
        """A batch of ``worker`` is done: its alerts, and the last event number it held."""
        for num, alert in alerts:
            self._seq += 1           # keeps the alerts of one event in their order
            heapq.heappush(self._heap, (num, worker, self._seq, alert))
        if upto > self.done[worker]:
            self.done[worker] = upto

    def pop_ready(self, busy: list[bool], firsts: list[int | None] | None = None) -> list[Any]:
        """The alerts no busy worker can precede (``busy[w]``: worker ``w`` has events sent or
        buffered that it has not acknowledged). With ``firsts`` (per worker, the first event
        number it has not acknowledged, ``None`` for none): an alert before all of them is
        ready too, which keeps the stream moving while a worker's buffer fills slowly."""
        heap = self._heap
        if not heap:
            return []
        marks = [d for d, b in zip(self.done, busy, strict=True) if b]
        safe = min(marks) if marks else None
        if firsts is not None:
            low = [f - 1 for f in firsts if f is not None]
            bound = min(low) if low else None
            if safe is None or (bound is not None and bound > safe):
                safe = bound
        out = []
        while heap and (safe is None or heap[0][0] <= safe):
            out.append(heapq.heappop(heap)[3])
        return out

    def drain(self) -> list[Any]:
        """Everything left, in order (every worker finished)."""
        out = [heapq.heappop(self._heap)[3] for _ in range(len(self._heap))]
        return out

    def __len__(self) -> int:
        return len(self._heap)
