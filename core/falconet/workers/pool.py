"""The parent side of a partitioned run: fork N workers, route batches of raw records to them,
merge their alerts into the one output stage.

The parent never decodes the common event: a precompiled pattern reads ``type``, ``tid`` and
``pid`` from the front of a canonical capture line (the order :class:`~falconet.capture.
CaptureWriter` writes), and only lifecycle events (a few percent), state records and lines in
another key order are decoded here, to keep the owners current (:class:`Partitioner`). Lines go
to the workers in batches (one pickled message per :data:`BATCH_LINES` lines: per-event IPC
would cost more than a worker saves, see docs/performance.md), with at most :data:`CREDITS`
batches in flight per worker. A replay waits for a busy worker (nothing is lost); with
``blocking=False`` (a live source) a batch that finds its worker's queue full is dropped and
counted (``falconet_drops_total{cause="worker_queue_full"}`` and per worker), never silently.
"""

from __future__ import annotations

import bisect
import logging
import multiprocessing
import os
import pickle
import queue
import re
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from falconet.capture import StateRecord, decode_record
from falconet.workers.merge import AlertMerger
from falconet.workers.partition import DEFAULT_KEY, FORKS, LIFECYCLE, Partitioner
from falconet.workers.worker import FAILED, FINAL, RESULT, merge_metrics, worker_main

log = logging.getLogger("falconet.workers")

#: records per batch message (measured: bench/bench_workers.py --batch)
BATCH_LINES = 2048
#: batches in flight per worker before the router waits (or, not blocking, drops); the router
#: feeds the workers in capture order, so a worker that falls behind stops the others' supply
#: once its credit is used up: enough credit absorbs a worker descheduled for a while
CREDITS = 16
#: the front of a canonical event line: src, type, ts, tid, pid in the writer's order
_FRONT = re.compile(rb'\{"src":"([^"\\]*)","type":"([A-Za-z0-9_]+)","ts":\d+,"tid":(\d+),'
                    rb'"pid":(\d+),')
_LIFECYCLE_B = frozenset(t.encode() for t in LIFECYCLE)
#: the cgroup id of a canonical event line (``collector.partition: cgroup``); a string argument
#: cannot fake it (its quotes are escaped)
_CGROUP = re.compile(rb'"cgroup_id":(\d+)')


class WorkerFailed(RuntimeError):
    """A worker process died or raised: the run stops (its partition's events are lost)."""


class WorkerPool:
    """N forked workers and the router that feeds them.

    Create it after the pipeline is built and before plugins start (the fork copies the compiled
    rules; no plugin or output thread exists yet), then :meth:`run` the records of the source.
    """

    def __init__(self, app: Any, pipeline: Any, n: int, *, key: str = DEFAULT_KEY,
                 batch_lines: int | None = None, credits: int | None = None,
                 blocking: bool = True, handoff: bool = True) -> None:
        self.app, self.pipeline, self.n = app, pipeline, n
        self.partitioner = Partitioner(n, key)
        batch_lines = BATCH_LINES if batch_lines is None else batch_lines
        credits = CREDITS if credits is None else credits
        #: fork handoffs on (off only to measure what they repair)
        self.handoff = handoff
        self.handoffs = 0
        self.batch_lines, self.credits, self.blocking = batch_lines, credits, blocking
        self._ctx = multiprocessing.get_context("fork")
        self.results: Any = None
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        #: per worker: events routed to it as owner, lifecycle copies, alerts, dropped records
        self.routed = [0] * n
        self.shared = [0] * n
        self.alerts = [0] * n
        self.dropped = [0] * n
        self.finals: dict[int, dict[str, Any]] = {}
        self._inflight = [0] * n
        #: per worker: the first evt.num of each batch in flight, oldest first
        self._unacked: list[deque[int]] = [deque() for _ in range(n)]
        self._bid = 0
        self._reporter: Any = None
        self.cpu_s = 0.0
        #: (first evt.num after a shift, lines before it that are not events), in order
        self._shifts: list[tuple[int, int]] = [(0, 1)]
        self._started = False

    # ------------------------------------------------------------------ processes
    def start(self) -> None:
        """Fork the workers (each gets its read end; every other end is closed in it)."""
        ctx = self._ctx
        self.results = ctx.Queue()
        #: one inbox per worker for the fork handoffs the other workers send it
        self.inboxes = [ctx.Queue() for _ in range(self.n)]
        ends = [ctx.Pipe(duplex=False) for _ in range(self.n)]
        self.conns = [w for _, w in ends]
        for i, (r, _) in enumerate(ends):
            others = [c for j, (rr, ww) in enumerate(ends) for c in (rr, ww)
                      if c is not r or j != i]
            p = ctx.Process(target=_child, name=f"falconet-worker-{i}", daemon=True,
                            args=(i, self.app, self.pipeline, r, self.results, self.inboxes,
                                  others))
            p.start()
            self.procs.append(p)
        for r, _ in ends:
            r.close()
        self._started = True
        m = self.app.metrics
        m.gauges["worker_events"] = lambda: {str(i): float(v) for i, v in enumerate(self.routed)}
        m.gauges["worker_shared_events"] = lambda: {str(i): float(v)
                                                    for i, v in enumerate(self.shared)}
        m.gauges["worker_alerts"] = lambda: {str(i): float(v) for i, v in enumerate(self.alerts)}
        m.gauges["worker_queue_drops"] = lambda: {str(i): float(v)
                                                  for i, v in enumerate(self.dropped)}

    def abort(self) -> None:
        """Stop every worker now (start-up failed after the fork, or a worker died)."""
        stop_all(self.conns, self.procs)
        self.procs = []

    # ------------------------------------------------------------------ the run
    def run(self, blocks: Iterable[tuple[int, list[bytes]]], reporter: Any = None) -> int:
        """Route every record (``(first line number, [lines])`` blocks, see
        :func:`~falconet.capture.read_capture_blocks`), wait for the workers, dispatch the alerts
        in order. Returns the number of events processed (also set as ``pipeline.events``).
        ``reporter(lineno, reason)`` hears of malformed lines (else they are only counted)."""
        self._reporter = reporter
        cpu0 = time.process_time()
        pipeline = self.pipeline
        if not pipeline._started:
            pipeline.start()
        local = self._local_sinks_out()
        n = self.n
        part = self.partitioner
        owner, group, route = part.owner, part.group, part.route
        lineage = part.key == "lineage"
        by_cgroup = part.key == "cgroup"
        find_cgroup = _CGROUP.search
        #: pid (or, under ``cgroup``, the cgroup id) as the line spells it -> worker: under
        #: ``tgid`` and ``cgroup`` an owner never changes (a hash), under ``lineage`` a fork
        #: re-assigns its child (dropped from here)
        cache: dict[bytes, int] = {}
        cache_get = cache.get
        match_front = _FRONT.match
        lifecycle = _LIFECYCLE_B
        nums: list[list[int]] = [[] for _ in range(n)]
        lines: list[list[bytes]] = [[] for _ in range(n)]
        #: per worker: positions in its buffer of lifecycle events another worker owns
        foreign: list[list[int]] = [[] for _ in range(n)]
        shared = self.shared
        #: per worker: state records in its buffer (not events: not counted as routed)
        self._states = states = [0] * n
        limit = self.batch_lines
        self._merger = AlertMerger(n)
        self._bufs = (nums, lines, foreign)
        # the buffers are emptied in place when sent: their appends are bound once
        add_num = [b.append for b in nums]
        add_line = [b.append for b in lines]
        #: per worker: fork handoffs of its buffered lines (evt.num -> (to worker, child), and
        #: evt.num -> (from worker, child) for the receiving side)
        self._sends: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]
        self._waits: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]
        #: per worker: the last evt.num of the batches sent to it
        self._sent_upto = [0] * n
        #: evt.num -> line number: the lines that are not events (header, state records, bad
        #: or blank lines) shift them; (first evt.num after the shift, shift), in order
        self._shifts = [(0, 1)]
        handoff = self.handoff
        everyone = range(n)
        skipped = 1                  # lines before this one that are not events (the header)
        num = 0
        it: Iterator[tuple[int, list[bytes]]] = iter(blocks)
        try:
            for first, block in it:
                for lineno, line in enumerate(block, first):
                    m = match_front(line)
                    if m is not None:
                        typ, pid_b = m.group(2, 4)
                        if typ not in lifecycle:
                            if by_cgroup:
                                c = find_cgroup(line)
                                pid_b = c.group(1) if c is not None else b"0"
                                w = cache_get(pid_b)
                                if w is None:
                                    w = cache[pid_b] = group(int(pid_b))
                            else:
                                w = cache_get(pid_b)
                                if w is None:
                                    w = cache[pid_b] = owner(int(pid_b))
                            num = lineno - skipped
                            add_num[w](num)
                            add_line[w](line)
                            continue
                    # the slow path: lifecycle events, state records, other key orders, bad lines
                    try:
                        rec = decode_record(line)
                    except ValueError as e:
                        self._malformed(lineno, str(e))
                        rec = None
                    if rec is None or isinstance(rec, StateRecord):
                        skipped += 1
                        self._shifts.append((lineno - skipped + 1, skipped))
                        if rec is None:
                            continue
                        h, mine = None, -1
                    else:
                        num = lineno - skipped
                        if rec.type not in LIFECYCLE:
                            w = route(rec.pid, rec.args.get("cgroup_id"))
                            nums[w].append(num)
                            lines[w].append(line)
                            continue
                        h = part.observe(rec.type, rec.tid, rec.pid, rec.args, rec.res)
                        if lineage and rec.type in FORKS:
                            cache.clear()     # rare: a fork may have moved a child
                        mine = route(rec.pid, rec.args.get("cgroup_id"))
                    if mine < 0:
                        for w in everyone:
                            states[w] += 1
                    for w in everyone:
                        nums[w].append(num)
                        lines[w].append(line)
                        if w != mine and mine >= 0:
                            foreign[w].append(len(lines[w]) - 1)
                            shared[w] += 1
                    if h is not None and handoff:
                        src, dst, child = h
                        self._sends[src][num] = (dst, child)
                        self._waits[dst][num] = (src, child)
                        self.handoffs += 1
                for w in everyone:
                    # full, or idle with something to do: a worker that gets few records
                    # (a quiet partition) must not hold back the merge of everyone's alerts
                    if len(lines[w]) >= limit or (lines[w] and not self._inflight[w]):
                        self._flush(w, num)
                if pipeline.stopping:
                    break
            for w in everyone:
                if lines[w]:
                    self._flush(w, num)
            self._finish()
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        #: CPU seconds of this (the parent) process during the run: routing, merging, outputs
        self.cpu_s = time.process_time() - cpu0
        pipeline.workers.extend(local)        # closed with the others at shutdown
        m = self.app.metrics
        for f in self.finals.values():
            for name, k in f["stats"].get("local_sent", {}).items():
                m.output_sent[name] += k
            for name, k in f["stats"].get("local_failed", {}).items():
                m.output_failures[name] += k
        events = int(sum(f["stats"]["owned"] for f in self.finals.values()))
        pipeline.events = events
        return events

    def _busy(self) -> list[bool]:
        lines = self._bufs[1]
        return [self._inflight[w] > 0 or bool(lines[w]) for w in range(self.n)]

    def _firsts(self) -> list[int | None]:
        """Per worker, the first event number it has not acknowledged (in flight or buffered)."""
        nums = self._bufs[0]
        return [f[0] if f else (nums[w][0] if nums[w] else None)
                for w, f in enumerate(self._unacked)]

    def _flush(self, w: int, upto: int, forced: bool = False) -> None:
        """Send worker ``w``'s buffer as one batch, waiting for a credit (or, not blocking,
        dropping it).

        Fork handoffs: a batch whose worker will wait for a child's fds must never sit behind a
        router that waits for a credit while the fork it waits for is still buffered here (the
        only way the workers could deadlock: each worker's stream is in global order, so a wait
        only ever depends on earlier events). So the buffers of the senders of its waits go out
        first, *forced* (past their credit, never waiting: a few batches beyond the bound)."""
        nums, lines, foreign = self._bufs
        self._poll()
        if not forced and self._inflight[w] >= self.credits and not self.blocking:
            k = len(lines[w])
            self.dropped[w] += k
            self.app.metrics.drop("worker_queue_full", k)
            nums[w].clear()
            lines[w].clear()
            foreign[w].clear()
            self._states[w] = 0
            self._sends[w], self._waits[w] = {}, {}
            return
        self._bid += 1
        waits = self._waits[w]
        # one blob: joining and splitting are C loops, pickling a list of lines is not cheaper
        payload = pickle.dumps((self._bid, upto, nums[w], b"\n".join(lines[w]), foreign[w],
                                self._sends[w], {k: v[1] for k, v in waits.items()}),
                               protocol=pickle.HIGHEST_PROTOCOL)
        self.routed[w] += len(lines[w]) - len(foreign[w]) - self._states[w]
        self._unacked[w].append(nums[w][0] if nums[w] else upto + 1)
        self._sent_upto[w] = upto
        self._states[w] = 0
        nums[w].clear()
        lines[w].clear()
        foreign[w].clear()
        self._sends[w], self._waits[w] = {}, {}
        # counted in flight from here: the merger must see this worker busy while the batch
        # waits to be sent (it holds events the worker has not acknowledged)
        self._inflight[w] += 1
        for num, (src, _child) in waits.items():
            if self._sent_upto[src] < num and lines[src]:
                self._flush(src, upto, forced=True)
        if not forced:
            while self._inflight[w] > self.credits:
                self._wait_one()
        try:
            self.conns[w].send_bytes(payload)
        except OSError as e:
            raise WorkerFailed(f"worker {w} is gone ({e})") from None

    def _poll(self) -> None:
        """Take every result already waiting (never blocks)."""
        drain_queue(self.results, self._handle)

    def _wait_one(self, timeout: float = 1.0) -> None:
        """Block for one result; a worker that died meanwhile fails the run."""
        while True:
            try:
                msg = self.results.get(timeout=timeout)
            except queue.Empty:
                for i, p in enumerate(self.procs):
                    if not p.is_alive() and i not in self.finals:
                        raise WorkerFailed(f"worker {i} exited with status {p.exitcode}") from None
                continue
            self._handle(msg)
            return

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == RESULT:
            _, w, _bid, upto, alerts, bad = msg
            self._inflight[w] -= 1
            self._unacked[w].popleft()
            self.alerts[w] += len(alerts)
            self._merger.add(w, upto, alerts)
            for num, reason in bad:
                self._malformed(self._lineno(num), reason)
            self._release(self._merger.pop_ready(self._busy(), self._firsts()))
        elif kind == FINAL:
            _, w, stats, snap = msg
            self.finals[w] = {"stats": stats, "metrics": snap}
        elif kind == FAILED:
            raise WorkerFailed(f"worker {msg[1]} failed: {msg[2]}")

    def _release(self, alerts: list[Any]) -> None:
        dispatch = self.pipeline.dispatch
        for a in alerts:
            dispatch(a)

    def _local_sinks_out(self) -> list[Any]:
        """Take the ``worker_local`` sinks out of the parent's output stage (the workers feed
        them, see :class:`~falconet.workers.worker.WorkerLoop`); returns them."""
        pipeline = self.pipeline
        local = [w for w in pipeline.workers if getattr(w.sink, "worker_local", False)]
        pipeline.workers = [w for w in pipeline.workers if w not in local]
        return local

    def _lineno(self, num: int) -> int:
        """The line number of event ``num`` (see ``_shifts``)."""
        i = bisect.bisect_right(self._shifts, (num, 1 << 62)) - 1
        return num + self._shifts[max(i, 0)][1]

    def _malformed(self, lineno: int, reason: str) -> None:
        reporter = self._reporter
        if reporter is not None:
            reporter(lineno, reason)
        else:
            self.app.metrics.drop("capture_malformed")

    def _finish(self) -> None:
        """End marker to every worker, then every result and final count, then the rest of
        the alerts in order."""
        end = pickle.dumps(None)
        for w, c in enumerate(self.conns):
            try:
                c.send_bytes(end)
            except OSError as e:
                raise WorkerFailed(f"worker {w} is gone ({e})") from None
            c.close()
        while len(self.finals) < self.n:
            self._wait_one()
        self._release(self._merger.drain())
        for f in self.finals.values():
            merge_metrics(self.app.metrics, f["metrics"])
        deadline = time.monotonic() + 5
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))

    def summary(self) -> str:
        """``workers: 2 (0: 51234 events, 3 alerts; 1: ...)`` for the run's summary line."""
        parts = []
        for w in range(self.n):
            part = f"{w}: {self.routed[w]} events, {self.alerts[w]} alerts"
            if self.dropped[w]:
                part += f", {self.dropped[w]} records dropped (queue full)"
            parts.append(part)
        return f"workers: {self.n} ({'; '.join(parts)})"


def drain_queue(results: Any, handle: Any) -> None:
    """``handle`` every message already on ``results`` (never blocks)."""
    get = results.get_nowait
    while True:
        try:
            msg = get()
        except queue.Empty:
            return
        handle(msg)


def stop_all(conns: list[Any], procs: list[Any]) -> None:
    """Close the workers' channels, terminate those still running, reap them all."""
    for c in conns:
        try:
            c.close()
        except OSError:
            pass
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(2)


def _child(index: int, app: Any, pipeline: Any, conn: Any, results: Any, inboxes: list[Any],
           others: list[Any]) -> None:
    for c in others:             # the parent's ends and the other workers' pipes
        try:
            c.close()
        except OSError:
            pass
    # a terminal's ^C reaches the whole process group: the parent decides when to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["FALCONET_WORKER"] = str(index)
    worker_main(index, app, pipeline, conn, results, inboxes)
