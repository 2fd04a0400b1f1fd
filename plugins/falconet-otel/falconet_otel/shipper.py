"""Batching export with counted losses.

The OTel SDK's batch processors drop silently when their queue is full; the house rule is that every
loss is counted. A :class:`Shipper` is the same idea (bounded queue, one export thread, batches of
``batch_size`` every ``schedule_delay`` or sooner when a batch is full) with counters for records
sent, failed (the exporter gave up: collector down, timeout, rejected) and dropped (queue full).
``put`` never blocks: it is called from the sink worker, which must keep up with the engine.

Records and alerts are not the same count: one alert is a log record *and* several spans. The
engine's drop counter (``on_loss``) gets the number of *alerts* lost, which each record carries
(``put(record, alerts=...)``): the sink gives 1 to the records of one signal only, so an alert
whose log record and spans are all lost is one drop in the run summary, not two or more. In the
same way ``on_sent`` gets the alerts of an export the collector accepted: the engine counts an
OTel alert as sent only then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from falconet.redact import redact_text

log = logging.getLogger("falconet.otel")


class SignalStats:
    """Counters of one signal. Each counter has a single writer (``dropped``: the producer;
    ``sent``/``failed``: the export thread), so plain ints are safe to read from the scrape thread."""

    __slots__ = ("signal", "sent", "failed", "dropped", "batches_failed", "queue_depth")

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.batches_failed = 0
        self.queue_depth: Callable[[], int] = lambda: 0


class Shipper:
    """One export thread in front of one OTLP exporter (logs or spans)."""

    def __init__(self, exporter: Any, stats: SignalStats, *, batch_size: int = 512,
                 queue_size: int = 20000, schedule_delay: float = 0.2,
                 on_loss: Callable[[str, int], None] | None = None,
                 on_sent: Callable[[int], None] | None = None) -> None:
        self._exporter = exporter
        self.stats = stats
        self._batch_size = batch_size
        self._queue_size = queue_size
        self._delay = schedule_delay
        self._on_loss = on_loss
        #: told how many alerts an accepted export carried (the engine's output_sent)
        self._on_sent = on_sent
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._warned_at = 0.0
        stats.queue_depth = lambda: len(self._queue)
        self._thread = threading.Thread(target=self._run, name=f"falconet-otel-{stats.signal}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def put(self, item: Any, alerts: int = 1) -> bool:
        """Queue one record that stands for ``alerts`` alerts in the engine's loss counts;
        ``False`` (and a counted drop) when the queue is full."""
        if len(self._queue) >= self._queue_size or self._stopping:
            self.stats.dropped += 1
            if self._on_loss is not None and alerts:
                self._on_loss("otel_queue_full", alerts)
            return False
        self._queue.append((item, alerts))
        if len(self._queue) >= self._batch_size:
            self._wake.set()
        return True

    def kick(self) -> None:
        """Export what is queued now instead of at the next ``schedule_delay`` tick."""
        if self._queue:
            self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Export everything queued so far; wait at most ``timeout`` seconds. True when drained."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._wake.set()
        return True

    def shutdown(self, timeout: float) -> None:
        """Flush (bounded by ``timeout``), stop the thread, shut the exporter down."""
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=max(0.1, timeout))
        left = len(self._queue)
        if left:                       # could not be sent before the deadline: count, never lose silently
            alerts = sum(n for _item, n in self._queue)
            self._queue.clear()
            self.stats.dropped += left
            if self._on_loss is not None and alerts:
                self._on_loss("otel_queue_full", alerts)
        try:
            self._exporter.shutdown()
        except Exception as e:  # noqa: BLE001 - shutting down: report and go on
            log.warning("otel: %s exporter shutdown failed: %s", self.stats.signal,
                        redact_text(str(e)))

    # ------------------------------------------------------------------ export thread
    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        q = self._queue
        while q and not self._stopping:
            n = min(self._batch_size, len(q))
            taken = [q.popleft() for _ in range(n)]
            self._in_flight = n
            try:
                ok = self._export([item for item, _alerts in taken])
            finally:
                self._in_flight = 0
            if ok:
                self.stats.sent += n
                alerts = sum(a for _item, a in taken)
                if self._on_sent is not None and alerts:
                    self._on_sent(alerts)
            else:
                self.stats.failed += n
                self.stats.batches_failed += 1
                alerts = sum(a for _item, a in taken)
                if self._on_loss is not None and alerts:
                    self._on_loss(f"otel_{self.stats.signal}_export_failed", alerts)
            with self._idle:
                self._idle.notify_all()
        with self._idle:
            self._idle.notify_all()

    def _export(self, batch: list[Any]) -> bool:
        try:
            result = self._exporter.export(batch)
        except Exception as e:  # noqa: BLE001 - an exporter bug must not kill the thread
            self._warn(f"export failed ({redact_text(str(e))})")
            return False
        ok = result is True or getattr(result, "name", "") == "SUCCESS"
        if not ok:
            self._warn("export failed (collector unreachable, slow or rejecting)")
        return ok

    def _warn(self, what: str) -> None:
        # at most one line every 10 s: a dead collector must not flood the engine's log
        now = time.monotonic()
        if now - self._warned_at >= 10:
            self._warned_at = now
            log.warning("otel: %s %s; records are counted as failed and the engine goes on",
                        self.stats.signal, what)
