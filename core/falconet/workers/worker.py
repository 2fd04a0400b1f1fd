"""One worker process: the state and the rules of its partition.

A worker is a fork of the engine taken after the rules were compiled and the pipeline built, so
it holds the same ruleset, parsers and (empty) state tables at no start-up cost. It reads batches
of raw capture records from its pipe, decodes them, runs every parser on each (the core state
first, as the single-worker loop does), evaluates the rules on the events it owns, and returns
per batch: the alerts with their event numbers, malformed lines, and the batch's last event
number (the merger's watermark). It never touches an output: alerts leave through the parent's
one output stage.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

from falconet.capture import StateRecord, decode_record
from falconet.metrics import EngineMetrics
from falconet.pipeline import LATENCY_SAMPLE_MASK, lineage_of, tune_gc_for_events

#: message kinds on the result queue
RESULT, FINAL, FAILED = "result", "final", "failed"


def metrics_snapshot(m: EngineMetrics) -> dict[str, Any]:
    """The counters a worker adds to the engine's (plain dicts: picklable)."""
    return {"events": dict(m.events), "drops": dict(m.drops),
            "plugin_errors": dict(m.plugin_errors), "enrichment": dict(m.enrichment),
            "latency_counts": list(m.latency_counts), "latency_sum": m.latency_sum,
            "latency_n": m.latency_n}


def merge_metrics(into: EngineMetrics, snap: dict[str, Any]) -> None:
    """Add a worker's final counters to the engine's."""
    for name in ("events", "drops", "plugin_errors", "enrichment"):
        target = getattr(into, name)
        for k, v in snap[name].items():
            target[k] += v
    for i, v in enumerate(snap["latency_counts"]):
        into.latency_counts[i] += v
    into.latency_sum += snap["latency_sum"]
    into.latency_n += snap["latency_n"]


class WorkerLoop:
    """The body of a worker (runs in the forked child; tests may run it in-process).

    Args:
        index: this worker's number.
        parsers: ``(plugin name, parse)`` in call order (the pipeline's).
        match: the ruleset's ``match``.
        state: the core state tables (alert lineage).
        metrics: this process's counters.
        restore_state: ``(plugin, data)`` for state records of the capture.
    """

    def __init__(self, index: int, parsers: list[tuple[str, Callable[[Any], None]]],
                 match: Callable[[Any], list[Any]], state: Any, metrics: EngineMetrics,
                 restore_state: Callable[[str, Any], None] | None) -> None:
        self.index = index
        self.parsers = tuple(parsers)
        self.match = match
        self.state = state
        self.metrics = metrics
        self.restore_state = restore_state
        self.owned = 0           # events whose rules this worker evaluated
        self.shared = 0          # lifecycle events applied for the process table only
        self.alerts = 0
        self.current = 0         # event number being processed (alerts injected meanwhile)
        self.outbox: list[tuple[int, Any]] = []
        self.received = 0        # fork handoffs applied
        self._pending: dict[int, Any] = {}
        #: sinks that run inside the worker (``worker_local``: a plugin's per-process view of
        #: the alerts, e.g. learning's taint), as (name, min priority, rule filter, send)
        self.local_sinks: list[tuple[str, int, Any, Callable[[Any], None]]] = []
        self.local_sent: dict[str, int] = {}
        self.local_failed: dict[str, int] = {}

    def inject(self, alert: Any) -> None:
        """Engine-made alerts raised while this worker runs (a plugin's): merged like any."""
        self.outbox.append((self.current, alert))

    def batch(self, nums: list[int], lines: list[bytes], foreign: list[int] | None = None,
              sends: dict[int, tuple[int, int]] | None = None,
              waits: dict[int, int] | None = None
              ) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
        """Process one batch: ``nums[i]`` is the ``evt.num`` of ``lines[i]``; ``foreign``
        the positions of lifecycle events another worker owns (applied to the state here, the
        rules run there). Returns the alerts ``(evt.num, alert)`` and the malformed lines
        ``(evt.num, reason)``. ``sends``/``waits``: the batch's fork handoffs
        (:meth:`send_child`)."""
        notmine = frozenset(foreign) if foreign else frozenset()
        bad: list[tuple[int, str]] = []
        return self.evaluate(self._decoded(nums, lines, notmine, bad), sends, waits), bad

    def _decoded(self, nums: list[int], lines: list[bytes], notmine: frozenset[int],
                 bad: list[tuple[int, str]]) -> Iterator[tuple[int, Any, bool]]:
        """The events of a batch's lines as ``(evt.num, event, mine)``; state records are
        restored here, in their place in the stream, malformed lines go to ``bad``."""
        plugin_errors = self.metrics.plugin_errors
        for i, line in enumerate(lines):
            try:
                evt = decode_record(line)
            except ValueError as e:
                bad.append((nums[i], str(e)))
                continue
            if evt is None:
                continue
            if isinstance(evt, StateRecord):
                if self.restore_state is not None:
                    try:
                        self.restore_state(evt.plugin, evt.data)
                    except Exception:  # noqa: BLE001 - the single-worker replay counts it the same way
                        plugin_errors[(evt.plugin, "restore_state")] += 1
                continue
            yield nums[i], evt, i not in notmine

    def evaluate(self, items: Iterable[tuple[int, Any, bool]],
                 sends: dict[int, tuple[int, int]] | None = None,
                 waits: dict[int, int] | None = None) -> list[tuple[int, Any]]:
        """Run the parsers on every ``(evt.num, event, mine)`` and the rules on the ones this
        worker owns (``mine``: the others are lifecycle events applied for the process table
        only). Returns the alerts ``(evt.num, alert)``; ``sends``/``waits``: fork handoffs
        (:meth:`send_child`)."""
        m = self.metrics
        counts, plugin_errors = m.events, m.plugin_errors
        parsers, match, state = self.parsers, self.match, self.state
        observe, perf, mask = m.observe_latency, time.perf_counter, LATENCY_SAMPLE_MASK
        out = self.outbox
        n_owned = n_shared = 0
        for num, evt, mine in items:
            self.current = evt.num = num
            if mine:
                n_owned += 1
                counts[(evt.source, evt.type)] += 1
            else:
                n_shared += 1
            for name, parse in parsers:
                try:
                    parse(evt)
                except Exception:  # noqa: BLE001 - counted once, by the owner
                    if mine:
                        plugin_errors[(name, "parser")] += 1
            if sends and num in sends:
                self.send_child(num, *sends[num])
            elif waits and num in waits:
                self.receive_child(num, waits[num])
            if not mine:
                continue
            try:
                if num & mask:
                    alerts = match(evt)
                else:
                    t0 = perf()
                    alerts = match(evt)
                    observe(perf() - t0)
            except Exception:  # noqa: BLE001 - one bad event never stops the loop
                m.drops["rule_error"] += 1
                continue
            if alerts:
                lineage = lineage_of(evt, state)
                for a in alerts:
                    if not a.lineage:
                        a.lineage = lineage
                    out.append((num, a))
        self.owned += n_owned
        self.shared += n_shared
        if out and self.local_sinks:
            self._local(out)
        self.outbox = []
        self.alerts += len(out)
        return out

    def _local(self, alerts: list[tuple[int, Any]]) -> None:
        for name, prio, rules, send in self.local_sinks:
            sent = failed = 0
            for _, a in alerts:
                if int(a.priority) <= prio and (rules is None or a.rule in rules):
                    try:
                        send(a)
                        sent += 1
                    except Exception:  # noqa: BLE001 - counted as the output's failure
                        failed += 1
            self.local_sent[name] = self.local_sent.get(name, 0) + sent
            if failed:
                self.local_failed[name] = self.local_failed.get(name, 0) + failed

    # ------------------------------------------------------------------ fork handoffs
    #: set by the process that runs the loop: put(to worker, message), get() -> message
    send: Callable[[int, Any], None] | None = None
    receive: Callable[[], Any] | None = None

    def send_child(self, num: int, dest: int, child: int) -> None:
        """The fork ``num`` made ``child`` here from the parent's fds and cwd as this worker
        knows them (it owns the parent): give them to the child's worker."""
        t = self.state.threads.get(child) if self.state is not None else None
        fds = dict(t.fds) if t is not None else None
        cwd = t.cwd if t is not None else None
        if self.send is not None:
            self.send(dest, (num, child, fds, cwd))

    def receive_child(self, num: int, child: int) -> None:
        """Wait for the handoff of fork ``num`` and start ``child`` with it (the child's copy
        made here from this worker's stale view of the parent is replaced)."""
        pending = self._pending
        while num not in pending:
            if self.receive is None:
                return
            msg = self.receive()
            pending[msg[0]] = msg
        _, _, fds, cwd = pending.pop(num)
        t = self.state.threads.get(child) if self.state is not None else None
        if t is None or fds is None:
            return
        t.fds = fds
        if cwd is not None:
            t.cwd = cwd
        self.received += 1

    #: CPU seconds of the loop (this process, from the first batch wait to the end marker)
    cpu_s = 0.0
    #: wall seconds of the plugins' start in this worker, and waiting for batches
    start_s = 0.0
    idle_s = 0.0
    stop_s = 0.0

    def stats(self) -> dict[str, Any]:
        return {"owned": self.owned, "shared": self.shared, "alerts": self.alerts,
                "handoffs": self.received, "cpu_s": self.cpu_s,
                "start_s": self.start_s, "idle_s": self.idle_s, "stop_s": self.stop_s,
                "local_sent": dict(self.local_sent), "local_failed": dict(self.local_failed)}


def start_worker(index: int, app: Any, pipeline: Any) -> WorkerLoop:
    """In a forked worker: signals (the parent handles stop requests and tells the workers to
    finish), the loop, its worker-local sinks and the plugins of this process started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = WorkerLoop(index, list(pipeline.parsers), pipeline.ruleset.match,
                      app.ctx.state, app.metrics,
                      lambda plugin, data: app.host.restore_state(plugin, data, app.ctx))
    app.ctx.extras["falconet.inject_alert"] = loop.inject
    loop.local_sinks = [(w.name, w.min_priority, w.rules, w.sink.send)
                        for w in pipeline.workers if getattr(w.sink, "worker_local", False)]
    for w in pipeline.workers:
        if getattr(w.sink, "worker_local", False):
            w.sink.start()
    t0 = time.perf_counter()
    app.host.call(app.host.hook.falconet_start, engine=app.ctx)
    loop.start_s = time.perf_counter() - t0
    tune_gc_for_events()
    return loop


def stop_worker(app: Any, loop: WorkerLoop) -> None:
    """The plugins of this worker stop (timed; a plugin's failure must not lose the counters)."""
    t0 = time.perf_counter()
    try:
        app.host.hook.falconet_stop(engine=app.ctx)
    except Exception:  # noqa: BLE001 - a plugin's stop must not lose the counters
        pass
    loop.stop_s = time.perf_counter() - t0


def run_child(index: int, results: Any, body: Callable[[], tuple[Any, ...]]) -> NoReturn:
    """Run a forked worker's ``body`` and put the final message it returns on ``results``;
    any exception becomes a ``FAILED`` message instead (the parent must hear of it, never
    hang). Never returns (``os._exit``: the fork's copy of the engine must not clean up)."""
    code = 0
    try:
        results.put(body())
    except BaseException as e:  # noqa: BLE001 - the parent must hear of it, never hang
        code = 1
        try:
            results.put((FAILED, index, f"{type(e).__name__}: {e}"))
        except Exception:  # noqa: BLE001
            pass
    finally:
        try:
            results.close()
            results.join_thread()     # the feeder thread flushes what is queued
        finally:
            os._exit(code)


def worker_main(index: int, app: Any, pipeline: Any, conn: Any, results: Any,
                inboxes: list[Any]) -> None:
    """The forked child: start the plugins of this process, loop over batches until the end
    marker, send the final counters, stop the plugins. Never returns (``os._exit``)."""
    run_child(index, results, lambda: _replay(index, app, pipeline, conn, results, inboxes))


def _replay(index: int, app: Any, pipeline: Any, conn: Any, results: Any,
            inboxes: list[Any]) -> tuple[Any, ...]:
    """The replay worker's loop: batches from ``conn`` until the end marker."""
    loop = start_worker(index, app, pipeline)
    loop.send = lambda dest, msg: inboxes[dest].put(msg)
    loop.receive = inboxes[index].get
    cpu0 = time.process_time()
    recv = conn.recv_bytes
    loads = pickle.loads
    perf = time.perf_counter
    while True:
        t0 = perf()
        data = recv()
        loop.idle_s += perf() - t0
        msg = loads(data)
        if msg is None:
            break
        bid, upto, nums, blob, foreign, sends, waits = msg
        alerts, bad = loop.batch(nums, blob.split(b"\n"), foreign, sends, waits)
        results.put((RESULT, index, bid, upto, alerts, bad))
    loop.cpu_s = time.process_time() - cpu0
    # the handoffs this worker put are still in its queues' feeder threads: flush them before
    # the exit (os._exit joins nothing), a peer may wait for the last one at its last batch
    for q in inboxes:
        q.close()
        q.join_thread()
    stop_worker(app, loop)
    return (FINAL, index, loop.stats(), metrics_snapshot(app.metrics))
