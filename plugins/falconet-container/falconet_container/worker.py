"""The background lookup thread: container ids in, :class:`ContainerInfo` out.

The hot loop :meth:`submit`s an id the first time it sees a container and later drains
:attr:`LookupWorker.done` (a deque: appends and pops are atomic), so it alone publishes results,
counts them and records them into a capture, in event order. A failed lookup is retried a few
times with a growing delay (a container's first process can run before its runtime wrote the
state we read), unless the container is gone by then.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from falconet_container.errors import LookupFailed
from falconet_container.model import ContainerInfo
from falconet_container.resolver import MetadataResolver, PartialResult

log = logging.getLogger("falconet.container")

#: seconds, histogram buckets of ``falconet_enrichment_lookup_seconds``
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyHistogram:
    """Cumulative-at-scrape histogram, written by the worker thread only."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.n += 1
        for i, b in enumerate(LATENCY_BUCKETS):
            if seconds <= b:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


class Done:
    """One finished lookup: ``info`` is ``None`` when nothing usable was found."""

    __slots__ = ("full_id", "info", "result", "seconds", "reason")

    def __init__(self, full_id: str, info: ContainerInfo | None, result: str, seconds: float,
                 reason: str = "") -> None:
        self.full_id, self.info, self.result = full_id, info, result
        self.seconds, self.reason = seconds, reason


class LookupWorker:
    def __init__(self, resolver: MetadataResolver, wanted: Callable[[str], bool],
                 max_queue: int = 4096, retry_delays: tuple[float, ...] = (0.2, 1.0)) -> None:
        self.resolver = resolver
        self.wanted = wanted                      # is the container still in the table?
        self.queue: queue.Queue[tuple[str, str, int] | None] = queue.Queue(max_queue)
        self.done: deque[Done] = deque()
        self.latency = LatencyHistogram()
        self.retry_delays = retry_delays
        self._retries: list[tuple[float, str, str, int]] = []   # heap (due, id, hint, attempt)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def submit(self, full_id: str, hint: str) -> bool:
        """Queue a lookup; ``False`` when the queue is full (the caller counts the drop)."""
        try:
            self.queue.put_nowait((full_id, hint, 0))
            return True
        except queue.Full:
            return False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="falconet-container-lookup",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------------ thread
    def _next(self) -> tuple[str, str, int] | None:
        while not self._stop.is_set():
            timeout = None
            if self._retries:
                timeout = max(0.0, self._retries[0][0] - time.monotonic())
                if timeout == 0.0:
                    _, fid, hint, attempt = heapq.heappop(self._retries)
                    return fid, hint, attempt
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if item is not None:
                return item
        return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            self.lookup_once(*item)

    def lookup_once(self, full_id: str, hint: str, attempt: int = 0) -> Done:
        """One lookup (public so tests and benchmarks can drive it synchronously)."""
        if not self.wanted(full_id):
            # its last process exited while the lookup waited: nothing to ask; counted once
            # (a retry of a lookup that already failed is just dropped)
            done = Done(full_id, None, "miss", 0.0, "exited before its lookup")
            if attempt == 0:
                self.done.append(done)
            return done
        t0 = time.perf_counter()
        info: ContainerInfo | None = None
        reason = ""
        try:
            info = self.resolver.resolve(full_id, hint)
            result = "hit"
        except PartialResult as e:
            # the docker path may have failed with any LookupError (a KeyError too)
            info, result, reason = e.info, getattr(e.err, "result", "error"), str(e.err)
        except LookupError as e:
            result, reason = getattr(e, "result", "error"), str(e)
        except Exception as e:  # noqa: BLE001 - a resolver bug must not kill the worker
            result, reason = LookupFailed.result, f"{type(e).__name__}: {e}"
            log.warning("container %s: lookup failed: %s", full_id[:12], reason)
        dt = time.perf_counter() - t0
        self.latency.observe(dt)
        done = Done(full_id, info, result, dt, reason)
        self.done.append(done)
        if info is None and attempt < len(self.retry_delays):
            heapq.heappush(self._retries, (time.monotonic() + self.retry_delays[attempt],
                                           full_id, hint, attempt + 1))
        return done
