"""One live worker process (``falconet run`` with ``collector.workers`` > 1): it reads its own
group of ring buffers, keeps the whole process table and runs the rules on the events it owns.

The kernel routes every record to the worker that owns its thread group (``worker_of`` in
``bpf/falconet.bpf.c``) and writes lifecycle records (fork, exec, exit, set*id, chdir, ...) to
every worker, the copies for the non-owners with :data:`~falconet.collector.program.FOREIGN_ID`
set in the record's id: those are applied to the state here, the owner alone evaluates the rules
on them (each alert once). Alerts go to the parent's one output stage with this worker's
watermark (the timestamp it has read up to), counters every ``stats_interval``.

Messages to the parent (the result queue): ``(ALERTS, w, mark, [alerts])``, ``(STATS, w,
stats, metrics delta)``, ``(FINAL, w, stats, metrics delta)``, ``(FAILED, w, reason)``. From the
parent (the control socket): the attach message with the ring fds, then ``"reload"`` and
``"stop"``; end of file (the parent is gone) stops the worker too.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import socket
import time
from collections.abc import Callable
from typing import Any

from falconet.collector import kfilter_maps, program
from falconet.collector.decoder import RecordDecoder
from falconet.collector.merge import TimestampMerge
from falconet.collector.ringbuf import RingBuffer, RingSet
from falconet.metrics import EngineMetrics
from falconet.workers.worker import (
    FINAL,
    WorkerLoop,
    metrics_snapshot,
    run_child,
    start_worker,
    stop_worker,
)

#: message kinds on the result queue (FINAL and FAILED as the replay workers send them)
ALERTS, STATS = "alerts", "stats"
#: empty polls before the worker sleeps until the kernel wakes it (as the single-worker loop)
LINGER_POLLS = 10
PR_SET_PDEATHSIG = 1
_FOREIGN_HI = program.FOREIGN_ID >> 8


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the engine dies (even by SIGKILL): no orphan workers."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != parent:        # it died before the prctl
        os._exit(1)


def take_delta(m: EngineMetrics) -> dict[str, Any]:
    """This worker's counters since the last call (then zeroed): the parent adds them."""
    snap = metrics_snapshot(m)
    for name in ("events", "drops", "plugin_errors", "enrichment"):
        getattr(m, name).clear()
    for i in range(len(m.latency_counts)):
        m.latency_counts[i] = 0
    m.latency_sum, m.latency_n = 0.0, 0
    return snap


class LiveWorker:
    """The ring-reading loop of one worker (runs in the forked child)."""

    def __init__(self, index: int, loop: WorkerLoop, sock: socket.socket, results: Any,
                 params: dict[str, Any], fds: list[int],
                 reload: Callable[[], Any] | None) -> None:
        self.index, self.loop, self.sock, self.results = index, loop, sock, results
        self.reload = reload
        self.ctl_fd = fds[-1]
        self.rings = RingSet([RingBuffer(fd, params["ring_bytes"]) for fd in fds[:-1]])
        self.rings.watch(sock.fileno())       # a control message ends a sleep
        decoder = RecordDecoder(**params["decoder"])
        self.table = decoder.table
        self.boot = decoder.boot_offset   # the kernel's clock to the events' epoch ns
        self.batch = params["batch"]
        self.poll = params["poll_interval"]
        self.stats_interval = params["stats_interval"]
        self.records = 0          # records read from this worker's rings
        self.seq = 0              # evt.num of this worker's events
        self.mark = 0             # the timestamp of the last event evaluated
        self.merge = TimestampMerge()  # timestamp order across this worker's rings and reads
        self.foreign: set[int] = set()  # id() of read lifecycle copies not yet evaluated

    def stats(self) -> dict[str, Any]:
        return {**self.loop.stats(), "records": self.records}

    def run(self) -> None:
        """Read and evaluate until the parent says stop (or is gone), then drain the rings."""
        quiet = LINGER_POLLS + 1
        next_stats = time.monotonic() + self.stats_interval
        while True:
            n = self.step()
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + self.stats_interval
                self.results.put((STATS, self.index, self.stats(), take_delta(self.loop.metrics)))
            cmd = self.control()
            if cmd == "stop":
                while self.step():            # what the kernel committed before the stop
                    pass
                self.evaluate(self.merge.drain())     # and what the merge still held
                return
            if n:
                quiet = 0
                continue
            quiet += 1
            if quiet <= LINGER_POLLS or self.merge.held:
                # what the merge holds goes out with the next read, and is not idle
                self.rings.wait(self.poll)
                continue
            # idle: every earlier record was read, so the merge may pass this worker's mark
            self.results.put((ALERTS, self.index, time.time_ns(), []))
            try:
                kfilter_maps.set_sleeping(self.ctl_fd, self.index)
            except OSError:
                self.rings.wait(self.poll)
                continue
            self.rings.wait(max(0.0, min(next_stats - time.monotonic(), self.stats_interval)))

    def control(self) -> str | None:
        """A pending control message (never blocks): ``"stop"`` (also at end of file),
        ``"reload"`` (handled here), else ``None``."""
        try:
            data = self.sock.recv(4096, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return "stop"
        if not data:
            return "stop"
        cmd = data.decode()
        if cmd == "reload" and self.reload is not None:
            rs = self.reload()
            if rs is not None:
                if hasattr(rs, "metrics"):
                    rs.metrics = self.loop.metrics
                self.loop.match = rs.match
        return cmd

    def step(self) -> int:
        """Read what the rings hold, evaluate it in timestamp order; returns the event count."""
        table, batch = self.table, self.batch
        drop = self.loop.metrics.drop
        got: list[Any] = []
        foreign = self.foreign
        frontier: int | None = None
        started = time.monotonic_ns() + self.boot
        for ring in self.rings.rings:
            view = ring.view
            offsets, cons = ring.pending(batch)
            for off in offsets:
                hi = view[off + 33]
                try:
                    evt = table[view[off + 32] | (hi & 0x7F) << 8](view, off)
                except Exception:  # noqa: BLE001 - one bad record never stops the rest
                    drop("decode_error")
                    continue
                if hi & _FOREIGN_HI:
                    foreign.add(id(evt))
                got.append(evt)
            ring.release(cons)
            if len(offsets) >= batch and got:       # records left: a frontier (collector.merge)
                last = got[-1].ts
                if frontier is None or last < frontier:
                    frontier = last
        if len(self.rings.rings) > 1 and (got or self.merge.held):
            got = self.merge.order(got, frontier, started)
        return self.evaluate(got)

    def evaluate(self, got: list[Any]) -> int:
        """Evaluate ``got`` (in timestamp order) and send its alerts; returns its length."""
        if not got:
            return 0
        foreign = self.foreign
        self.records += len(got)
        seq = self.seq
        if foreign:
            items = [(seq + i, e, id(e) not in foreign) for i, e in enumerate(got, 1)]
            foreign.difference_update(id(e) for e in got)
        else:
            items = [(seq + i, e, True) for i, e in enumerate(got, 1)]
        self.seq = seq + len(got)
        alerts = self.loop.evaluate(items)
        self.mark = got[-1].ts
        if alerts:
            self.results.put((ALERTS, self.index, self.mark, [a for _, a in alerts]))
        return len(got)


def live_worker_main(index: int, app: Any, pipeline: Any, sock: socket.socket, results: Any,
                     parent: int, reload: Callable[[], Any] | None) -> None:
    """The forked child: start the plugins, wait for the rings, loop until stopped, send the
    final counters. Never returns (``os._exit``)."""
    run_child(index, results, lambda: _live(index, app, pipeline, sock, results, parent, reload))


def _live(index: int, app: Any, pipeline: Any, sock: socket.socket, results: Any, parent: int,
          reload: Callable[[], Any] | None) -> tuple[Any, ...]:
    die_with_parent(parent)
    os.environ["FALCONET_WORKER"] = str(index)
    loop = start_worker(index, app, pipeline)
    msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 256)
    if not msg:
        os._exit(0)               # the engine stopped before the collector attached
    worker = LiveWorker(index, loop, sock, results, pickle.loads(msg), fds, reload)
    cpu0 = time.process_time()
    worker.run()
    loop.cpu_s = time.process_time() - cpu0
    stop_worker(app, loop)
    return (FINAL, index, worker.stats(), take_delta(app.metrics))
