"""The parent side of a live run on N workers (``falconet run`` with ``collector.workers`` > 1).

The workers are forked before the plugins start (as a partitioned replay's: the fork copies the
compiled rules, no thread exists yet) and wait. The eBPF source then loads the program with one
group of rings per worker and marks the workers' pids untraced; :meth:`LivePool.attach` hands
each worker its ring fds over its control socket (``SCM_RIGHTS``). From then on this process
reads no ring: it merges the workers' alerts into the one output stage, reads the kernel
counters, serves the metrics and supervises.

Alerts are released in timestamp order: an alert leaves once every worker's watermark (the
timestamp it has read up to) passed it, or after :data:`MERGE_DELAY` at most (a worker that
fell behind delays the others' alerts by that much, never more).

A worker that dies (or raises) stops the engine with exit status 1 (:class:`WorkerFailed`),
counted as ``falconet_drops_total{cause="worker_failed"}``: its partition's process table cannot
be rebuilt mid-run (the kernel sends each fork once), and a supervisor (systemd
``Restart=on-failure``) restarts the whole engine, which scans /proc again. Every worker dies
with the engine (``PR_SET_PDEATHSIG``), and stops when its control socket closes.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import os
import pickle
import queue
import socket
import time
from collections.abc import Callable
from typing import Any

from falconet.workers.live_worker import ALERTS, STATS, live_worker_main
from falconet.workers.partition import DEFAULT_KEY
from falconet.workers.pool import WorkerFailed, drain_queue, stop_all
from falconet.workers.worker import FAILED, FINAL, merge_metrics

log = logging.getLogger("falconet.workers")

#: the longest an alert waits for a slower worker's watermark (seconds)
MERGE_DELAY = 0.2
#: the most live workers (each is a group of ring maps with call sites in every emitter)
MAX_LIVE_WORKERS = 16
#: the partition keys a live run takes. ``tgid`` is replay only: its fork handoff (the child's
#: worker waits for the parent's worker to send the child's fd table) was built for the live
#: workers and measured deadlocking: a worker reads its CPU rings in batches, so two workers
#: can reach two cross-worker forks in opposite orders and each wait for the other (53
#: one-second handoff timeouts in 25 s on this 2-vCPU machine, the inherited-socket workload's
#: alerts lost; docs/performance.md, "Live")
LIVE_KEYS = ("lineage", "cgroup")


def live_key_error(key: str) -> str:
    return (f"collector.partition: {key!r} is not available for a live run with more than "
            f"one worker (live: {', '.join(LIVE_KEYS)}; tgid is replay only, "
            f"docs/performance.md \"Live\")")


class LiveMerger:
    """Orders the alerts of ``n`` workers by event timestamp, with a bounded delay."""

    def __init__(self, n: int, delay: float = MERGE_DELAY) -> None:
        self.marks = [0] * n
        self.delay = delay
        self._heap: list[tuple[int, int, float, Any]] = []
        self._seq = 0

    def add(self, worker: int, mark: int, alerts: list[Any], now: float) -> None:
        for a in alerts:
            self._seq += 1
            heapq.heappush(self._heap, (int(a.time_ns), self._seq, now, a))
        if mark > self.marks[worker]:
            self.marks[worker] = mark

    def pop_ready(self, now: float) -> list[Any]:
        heap, out = self._heap, []
        safe = min(self.marks)
        late = now - self.delay
        while heap and (heap[0][0] <= safe or heap[0][2] <= late):
            out.append(heapq.heappop(heap)[3])
        return out

    def drain(self) -> list[Any]:
        return [heapq.heappop(self._heap)[3] for _ in range(len(self._heap))]

    def __len__(self) -> int:
        return len(self._heap)


class LivePool:
    """N live workers, their control sockets and the merge of their alerts.

    ``reload()`` (given by the engine) loads the rules again in a worker (each worker compiles
    its own copy on a hot reload; the parent's swap tells them to)."""

    live = True

    def __init__(self, app: Any, pipeline: Any, n: int,
                 reload: Callable[[], Any] | None = None, key: str = DEFAULT_KEY) -> None:
        if not 1 < n <= MAX_LIVE_WORKERS:
            raise ValueError(f"the live collector runs 2 to {MAX_LIVE_WORKERS} workers, not {n}")
        self.app, self.pipeline, self.n = app, pipeline, n
        #: collector.partition: the kernel routes by it (``lineage`` or ``cgroup``)
        if key not in LIVE_KEYS:
            raise ValueError(live_key_error(key))
        self.key = key
        self._reload = reload
        self.procs: list[Any] = []
        self.socks: list[socket.socket] = []
        self.results: Any = None
        self.merger = LiveMerger(n)
        #: per worker: events it owned, lifecycle copies it applied, alerts, records read
        self.owned = [0] * n
        self.shared = [0] * n
        self.alerts = [0] * n
        self.records = [0] * n
        self.finals: dict[int, dict[str, Any]] = {}
        self.src: Any = None
        self.cpu_s = 0.0

    # ------------------------------------------------------------------ processes
    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.results = ctx.Queue()
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(self.n)]
        parent = os.getpid()
        for i, (_mine, theirs) in enumerate(pairs):
            others = [s for j, pair in enumerate(pairs) for s in pair
                      if not (j == i and s is theirs)]
            p = ctx.Process(target=_child, name=f"falconet-worker-{i}", daemon=True,
                            args=(i, self.app, self.pipeline, theirs, self.results, others,
                                  parent, self._reload))
            p.start()
            self.procs.append(p)
        for _mine, theirs in pairs:
            theirs.close()
        self.socks = [mine for mine, _ in pairs]
        m = self.app.metrics
        m.gauges["worker_events"] = lambda: _per(self.owned)
        m.gauges["worker_shared_events"] = lambda: _per(self.shared)
        m.gauges["worker_alerts"] = lambda: _per(self.alerts)
        m.gauges["worker_ring_records"] = lambda: _per(self.records)
        m.gauges["worker_ring_drops"] = self._ring_drops
        m.gauges["ring_drops"] = self._per_ring_drops

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(int(p.pid) for p in self.procs)

    def attach(self, src: Any) -> None:
        """Give every worker its rings (the source loaded the program for ``n`` workers)."""
        self.src = src
        cfg = src.config
        params = {"ring_bytes": src.ring_bytes, "decoder": src.decoder_args, "batch": cfg.batch,
                  "poll_interval": cfg.poll_interval, "stats_interval": cfg.stats_interval}
        blob = pickle.dumps(params)
        for i, s in enumerate(self.socks):
            try:
                socket.send_fds(s, [blob], [*src.worker_rings[i], src.ctl_fd])
            except OSError as e:
                raise WorkerFailed(f"worker {i} is gone ({e})") from None

    def _per_ring_drops(self) -> dict[str, float]:
        """Ring index (worker * rings per worker + CPU group) -> records lost there."""
        src = self.src
        if src is None or src.ring_drops is None:
            return {}
        return {str(i): float(v) for i, v in enumerate(src.ring_drops.sums())}

    def _ring_drops(self) -> dict[str, float]:
        src = self.src
        if src is None or src.ring_drops is None or not src.worker_rings:
            return {}
        vals = src.ring_drops.sums()
        per = len(src.worker_rings[0])
        return {str(w): float(sum(vals[w * per:(w + 1) * per])) for w in range(self.n)}

    def abort(self) -> None:
        """Stop every worker now (start-up failed, a worker died, or after :meth:`run`)."""
        stop_all(self.socks, self.procs)
        self.procs = []

    # ------------------------------------------------------------------ the run
    def run(self, src: Any) -> int:
        """Merge and dispatch alerts, read the kernel counters, until a stop is requested;
        then stop the workers (each drains its rings) and take their final counters. Returns
        the events evaluated. Raises :class:`WorkerFailed` when a worker died."""
        pipeline = self.pipeline
        if not pipeline._started:
            pipeline.start()
        cpu0 = time.process_time()
        interval = src.config.stats_interval
        next_stats = time.monotonic() + interval
        while not pipeline.stopping:
            if pipeline._attention and pipeline._take_pending() is not None:
                self._tell("reload")
            self._wait(0.05)
            now = time.monotonic()
            self._release(self.merger.pop_ready(now))
            if now >= next_stats:
                next_stats = now + interval
                src.poll_stats()
                self._check_alive()
        self._finish(src)
        self.cpu_s = time.process_time() - cpu0
        events = int(sum(f["stats"]["owned"] for f in self.finals.values()))
        pipeline.events = events
        return events

    def _tell(self, cmd: str) -> None:
        for i, s in enumerate(self.socks):
            try:
                s.send(cmd.encode())
            except OSError as e:
                raise WorkerFailed(f"worker {i} is gone ({e})") from None

    def _wait(self, timeout: float) -> None:
        """Handle every waiting message, blocking up to ``timeout`` for the first."""
        try:
            msg = self.results.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(msg)
        drain_queue(self.results, self._handle)

    def _check_alive(self) -> None:
        dead = [i for i, p in enumerate(self.procs) if not p.is_alive() and i not in self.finals]
        if not dead:
            return
        # a worker exits right after its final message is flushed: take what is queued first
        self._wait(0.5)
        for i in dead:
            if i not in self.finals:
                raise WorkerFailed(f"worker {i} exited with status {self.procs[i].exitcode}")

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind, w = msg[0], msg[1]
        if kind == ALERTS:
            _, _, mark, alerts = msg
            self.alerts[w] += len(alerts)
            self.merger.add(w, mark, alerts, time.monotonic())
        elif kind in (STATS, FINAL):
            _, _, stats, delta = msg
            merge_metrics(self.app.metrics, delta)
            self.owned[w], self.shared[w] = stats["owned"], stats["shared"]
            self.records[w] = stats["records"]
            if kind == FINAL:
                self.finals[w] = {"stats": stats}
        elif kind == FAILED:
            raise WorkerFailed(f"worker {w} failed: {msg[2]}")

    def _release(self, alerts: list[Any]) -> None:
        dispatch = self.pipeline.dispatch
        for a in alerts:
            dispatch(a)

    def _finish(self, src: Any) -> None:
        """Stop every worker (each reads what its rings still hold first), wait for their
        final counters, release the rest of the alerts, then the last kernel counters."""
        self._tell("stop")
        deadline = time.monotonic() + 30
        while len(self.finals) < self.n:
            if time.monotonic() > deadline:
                raise WorkerFailed("workers did not stop within 30 s")
            self._wait(0.2)
            self._check_alive()
        self._release(self.merger.drain())
        src.poll_stats()
        for p in self.procs:
            p.join(5)

    def summary(self) -> str:
        parts = [f"{w}: {self.owned[w]} events, {self.alerts[w]} alerts" for w in range(self.n)]
        return f"workers: {self.n} live ({'; '.join(parts)})"


def _per(values: list[int]) -> dict[str, float]:
    return {str(i): float(v) for i, v in enumerate(values)}


def _child(index: int, app: Any, pipeline: Any, sock: socket.socket, results: Any,
           others: list[socket.socket], parent: int, reload: Callable[[], Any] | None) -> None:
    for s in others:              # the parent's ends and the other workers' sockets
        s.close()
    live_worker_main(index, app, pipeline, sock, results, parent, reload)
