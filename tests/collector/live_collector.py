"""Test helper: run the real eBPF collector in a background thread and wait for events."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from falconet.collector.source import CollectorConfig, EbpfSource
from falconet.events import Event


class LiveCollector:
    """Starts :class:`EbpfSource` with ``event_types`` and keeps the events it yields."""

    def __init__(self, event_types: Any, config: CollectorConfig | None = None,
                 consume: bool = True, **options: Any) -> None:
        self.source = EbpfSource(config or CollectorConfig(ring_buffer_pages=1024))
        self.events: collections.deque[Event] = collections.deque(maxlen=500_000)
        self._it = self.source.open({"event_types": event_types, **options})
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if consume:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            for evt in self._it:
                if evt is not None:
                    self.events.append(evt)
        except BaseException as e:  # noqa: BLE001 - surfaced by wait_for
            self._error = e

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 5.0,
                 what: str = "event") -> Event:
        """The first kept event matching ``pred``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for e in list(self.events):
                if pred(e):
                    return e
            if self._error is not None:
                raise AssertionError(f"collector failed: {self._error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout}s")
            time.sleep(0.01)

    def matching(self, pred: Callable[[Event], bool]) -> list[Event]:
        return [e for e in list(self.events) if pred(e)]

    def close(self) -> None:
        self.source.close()
        if self._thread is not None:
            self._thread.join(5)
        else:
            self._it.close()
