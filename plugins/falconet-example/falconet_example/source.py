"""An event source: produces events of the new source ``example``.

A real plugin would read a log, a socket or an API here. This one emits ``message`` events from a
configured list, one every ``interval`` seconds, and yields ``None`` while idle so the engine can
check for shutdown. ``count`` makes it end after that many events (handy in tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from falconet.api import Event

SOURCE = "example"


class ExampleSource:
    name = "example"          # what `falconet run --source example` selects
    source = SOURCE           # the event source rules say `source: example` for
    live = True

    def __init__(self, messages: list[str], interval: float, count: int | None) -> None:
        self.messages = messages
        self.interval = interval
        self.count = count
        self._closed = False

    def open(self, options: dict[str, Any]) -> Iterator[Event | None]:
        self._closed = False
        return self._events()

    def _events(self) -> Iterator[Event | None]:
        seq = 0
        next_at = time.monotonic()
        while not self._closed and (self.count is None or seq < self.count):
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(0.05, next_at - now))
                yield None          # idle: lets the engine notice a stop request
                continue
            seq += 1
            next_at = now + self.interval
            msg = self.messages[(seq - 1) % len(self.messages)]
            yield Event(SOURCE, "message", time.time_ns(), args={"seq": seq, "message": msg})

    def close(self) -> None:
        self._closed = True
