"""The hot loop and the alert queues.

One loop: source → parsers (core state first, then plugins) → ``ruleset.match`` → alerts. Alerts
leave through one bounded queue and one worker thread per sink (:class:`SinkWorker`), so a slow
or failing sink costs counted drops, never a stalled loop. Everything that can be decided at start
(parser list, sink filters, sampling mask) is bound to locals before the loop starts.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from falconet.alerts import Alert
from falconet.delivery.aggregate import Aggregator
from falconet.delivery.ids import ALERT_IDS
from falconet.delivery.policy import OutputPolicy
from falconet.events import Event
from falconet.metrics import EngineMetrics
from falconet.priorities import Priority
from falconet.redact import redact_text

log = logging.getLogger("falconet.pipeline")

#: measure rule evaluation latency on 1 event in (mask + 1)
LATENCY_SAMPLE_MASK = 63

Parser = Callable[[Event], None]

_STOP = object()

#: gen0 threshold while events flow (CPython's default is 700). The hot loop allocates events,
#: dicts and alerts that die young and almost never form cycles; with the default threshold the
#: collector ran every few events and the state engineer measured it at 30-40% of parser time.
GC_GEN0_THRESHOLD = 50_000


def tune_gc_for_events() -> tuple[int, int, int]:
    """Make garbage collection cheap for the event loop; call once start-up is done, before the
    first event. Everything alive now (rules, compiled conditions, field registry, plugin modules,
    /proc bootstrap state) lives for the whole run: ``gc.freeze()`` moves it to the permanent
    generation so no collection ever traverses it again, and a high gen0 threshold makes young
    collections rare. Returns the previous thresholds (for :func:`restore_gc`)."""
    old = gc.get_threshold()
    # no gc.collect() first: with Falco's rules loaded it costs ~35 ms of start-up for a few
    # kilobytes of start-up garbage that would stay frozen
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)
    return old


def restore_gc(old: tuple[int, int, int]) -> None:
    """Undo :func:`tune_gc_for_events` (the engine ran in-process, e.g. in tests)."""
    gc.unfreeze()
    gc.set_threshold(*old)


def refreeze_gc() -> None:
    """After a rules reload: the previous ruleset was frozen and may hold reference cycles
    (generated functions and their globals); unfreeze, collect it, freeze the new one."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class SinkWorker:
    """A sink behind a bounded queue, drained by its own daemon thread.

    Delivery accounting (docs/outputs.md): a sink's ``send`` may buffer, so an alert is counted
    as sent (``output_sent``) only once a ``flush`` after it returned; a ``send`` or ``flush``
    that raises counts its alerts as failures (``output_failures``). At shutdown what could not
    be delivered in time, including the alert inside a stuck ``send``, is counted as dropped,
    once: a send that returns after that is not counted again."""

    #: confirm (flush) at least every this many alerts, so ``output_sent`` follows a busy sink
    CONFIRM_EVERY = 256

    def __init__(self, sink: Any, metrics: EngineMetrics, capacity: int = 10000,
                 policy: OutputPolicy | None = None) -> None:
        self.sink = sink
        self.name: str = sink.name
        mp = getattr(sink, "min_priority", Priority.DEBUG)
        self.min_priority = int(mp if isinstance(mp, Priority) else Priority.parse(mp))
        #: optional rule-name filter of the sink (response actions); None admits every rule
        rules = getattr(sink, "rules", None)
        self.rules: frozenset[str] | None = frozenset(rules) if rules else None
        self.metrics = metrics
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name=f"falconet-sink-{self.name}",
                                        daemon=True)
        self._last_error_log = 0.0
        #: routing and aggregation run here, on the worker thread, never in the hot loop
        policy = policy or OutputPolicy()
        self.policy = policy
        self.matcher = policy.matcher
        agg = policy.aggregate
        self.aggregator = Aggregator(agg["window"], tuple(agg["by"])) if agg else None
        #: alerts taken from the queue and not yet confirmed (in send, or sent and not flushed)
        self._unconfirmed = 0
        #: set once shutdown gave up on this sink: the worker then counts nothing more
        self._abandoned = False
        #: the sink counts ``output_sent`` itself when delivery is confirmed later (the OTel
        #: sink: after the collector accepted the export); the worker still counts failures
        self._self_reported = bool(getattr(sink, "reports_delivery", False))
        self._count_lock = threading.Lock()

    def start(self) -> None:
        self.sink.start()
        self._thread.start()

    def offer(self, alert: Alert) -> bool:
        """Queue without blocking; a full queue is a counted drop."""
        try:
            self.queue.put_nowait(alert)
            return True
        except queue.Full:
            self.metrics.output_drops[self.name] += 1
            self.metrics.drop("output_queue_full")
            return False

    def _wait(self) -> float | None:
        """How long the worker may block for the next alert (None: until one comes)."""
        agg = self.aggregator
        due = agg.next_deadline() if agg is not None else None
        return None if due is None else max(0.0, due - time.monotonic())

    def _admit(self, item: Any, now: float) -> list[Alert]:
        """The alerts to send for one queue item (``None``: a timer tick): the item unless the
        output's ``match:`` rejects it (counted) or aggregation folds it (counted), plus the
        summaries of aggregation windows that ended."""
        agg = self.aggregator
        out = agg.due(now) if agg is not None else []
        if out:
            self.metrics.output_summaries[self.name] += len(out)
        if item is None:
            return out
        if self.matcher is not None and not self.matcher(item):
            self.metrics.output_unmatched[self.name] += 1
            return out
        if agg is not None and not agg.admit(item, now):
            self.metrics.output_aggregated[self.name] += 1
            return out
        out.append(item)
        return out

    def _closing_summaries(self) -> list[Alert]:
        """At shutdown: the summaries of open aggregation windows (nothing folded goes unsaid)."""
        if self.aggregator is None:
            return []
        out = self.aggregator.close()
        self.metrics.output_summaries[self.name] += len(out)
        return out

    def _send(self, alert: Alert) -> None:
        """Hand one alert to the sink; it counts as sent once a later flush confirms it."""
        lock = self._count_lock
        with lock:
            self._unconfirmed += 1
        try:
            self.sink.send(alert)
        except Exception as e:  # noqa: BLE001 - a failing sink is counted, never fatal
            with lock:
                self._unconfirmed -= 1
                if not self._abandoned:
                    self.metrics.output_failures[self.name] += 1
            self._log_failure(f"output {self.name} failed: {redact_text(str(e))}")

    def _run(self) -> None:
        q = self.queue
        while True:
            try:
                item = q.get(timeout=self._wait())
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            for a in self._admit(item, time.monotonic()):
                self._send(a)
            if q.empty() or self._unconfirmed >= self.CONFIRM_EVERY:
                self._flush()
        for a in self._closing_summaries():
            self._send(a)

    def _log_failure(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("%s", msg)

    def _flush(self) -> None:
        """Flush the sink and settle the alerts sent since the last flush: sent when it returns,
        failed when it raises."""
        try:
            self.sink.flush()
            ok = True
        except Exception as e:  # noqa: BLE001
            ok = False
            self._log_failure(f"output {self.name}: flush failed: {redact_text(str(e))}")
        with self._count_lock:
            n, self._unconfirmed = self._unconfirmed, 0
            if n and not self._abandoned:
                if ok:
                    if not self._self_reported:
                        self.metrics.output_sent[self.name] += n
                else:
                    self.metrics.output_failures[self.name] += n

    def request_stop(self, timeout: float) -> None:
        """Queue the end marker behind the alerts already waiting."""
        if self._thread.is_alive():
            try:
                self.queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.warning("output %s: queue still full at shutdown", self.name)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout``), then flush and close the sink."""
        self.request_stop(timeout)
        self.finish(timeout)

    def finish(self, timeout: float) -> None:
        """Wait for the worker (after :meth:`request_stop`), count what it could not deliver,
        then flush and close the sink."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))
            if self._thread.is_alive():
                with self._count_lock, self.queue.mutex:
                    self._abandoned = True
                    left = sum(1 for item in self.queue.queue if item is not _STOP)
                    left += self._unconfirmed
                    self._unconfirmed = 0
                self.metrics.output_drops[self.name] += left
                self.metrics.drop("output_shutdown_timeout", left)
                log.warning("output %s did not drain in %.0fs; %d alerts dropped",
                            self.name, timeout, left)
        if not self._abandoned:
            self._flush()
        try:
            self.sink.close()
        except Exception as e:  # noqa: BLE001
            log.warning("output %s: close failed: %s", self.name, redact_text(str(e)))


class DeadWorker:
    """Stands in for a sink whose ``start`` failed: every alert it would have taken is counted
    as a failure of that output, so a file output that cannot open is not a silent loss."""

    def __init__(self, worker: SinkWorker) -> None:
        self.sink, self.name, self.metrics = worker.sink, worker.name, worker.metrics
        self.min_priority, self.rules, self.queue = worker.min_priority, worker.rules, worker.queue

    def offer(self, alert: Alert) -> bool:
        self.metrics.output_failures[self.name] += 1
        return False

    def request_stop(self, timeout: float) -> None:
        pass

    def finish(self, timeout: float) -> None:
        pass

    def stop(self, timeout: float = 10.0) -> None:
        pass


def make_worker(sink: Any, metrics: EngineMetrics, capacity: int,
                policy: OutputPolicy | None) -> SinkWorker:
    """A :class:`SinkWorker`, or a spooling one when the output has a spool (see
    :mod:`falconet.delivery.worker`)."""
    if policy is not None and policy.spool and policy.state_dir:
        from falconet.delivery.worker import SpoolingWorker  # noqa: PLC0415 - avoids a cycle
        return SpoolingWorker(sink, metrics, capacity, policy)
    return SinkWorker(sink, metrics, capacity, policy)


def lineage_of(evt: Event, state: Any) -> list[dict[str, Any]]:
    """The triggering process and its ancestors, nearest first (for ``Alert.lineage``)."""
    t = evt.thread
    if t is None or state is None:
        return []
    try:
        procs = [state.main(t), *state.ancestors(t)]
    except Exception:  # noqa: BLE001 - a half-built table must not cost the alert
        return []
    out = []
    for p in procs:
        cmd = " ".join([p.exe or p.comm, *p.args]) if (p.exe or p.comm) else ""
        out.append({"pid": p.pid, "name": p.comm, "exepath": p.exepath, "cmdline": cmd,
                    "start_ts": p.start_ts})
    return out


class Pipeline:
    """The engine's hot loop.

    Args:
        ruleset: anything with ``match(evt) -> list[Alert]``.
        parsers: ``(plugin name, parse)`` in call order.
        sinks: alert sinks (each gets a :class:`SinkWorker`).
        metrics: the engine's counters.
        state: the core state tables (for alert lineage).
        queue_capacity: default queue size per sink (a sink's ``queue_size`` attribute wins).
        policies: per output name, its :class:`~falconet.delivery.policy.OutputPolicy`
            (routing, aggregation, spool); outputs not named take every alert, unspooled.
    """

    def __init__(self, ruleset: Any, parsers: Iterable[tuple[str, Parser]] = (),
                 sinks: Iterable[Any] = (), metrics: EngineMetrics | None = None,
                 state: Any = None, queue_capacity: int = 10000,
                 policies: Mapping[str, OutputPolicy] | None = None) -> None:
        self.ruleset = ruleset
        self.parsers = list(parsers)
        self.metrics = metrics or EngineMetrics()
        if hasattr(ruleset, "metrics"):
            # the rules engine counts a rule that raises as drop("rule_error") and goes on
            ruleset.metrics = self.metrics
        self.state = state
        policies = policies or {}
        self.workers: list[Any] = [
            make_worker(s, self.metrics, getattr(s, "queue_size", None) or queue_capacity,
                        policies.get(s.name)) for s in sinks]
        self.events = 0
        self.alerts = 0
        self._stopping = False
        #: stop requested or a ruleset swap pending: the one flag the loop reads per event
        self._attention = False
        self._pending: tuple[Any, Callable[[Any], None] | None] | None = None
        self._swap_lock = threading.Lock()
        self._started = False
        self.metrics.gauges["output_queue_depth"] = lambda: {
            w.name: float(w.queue.qsize()) for w in self.workers}
        spools = {w.name: w.spool for w in self.workers if hasattr(w, "spool")}
        if spools:
            self.metrics.gauges["spool_depth"] = lambda: {
                n: float(s.depth) for n, s in spools.items()}
            self.metrics.gauges["spool_bytes"] = lambda: {
                n: float(s.bytes) for n, s in spools.items()}
            self.metrics.gauges["spool_oldest_age_seconds"] = lambda: {
                n: s.oldest_age() for n, s in spools.items()}

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start sink workers. A sink whose ``start()`` fails is counted and left out."""
        ok: list[Any] = []
        for w in self.workers:
            try:
                w.start()
                ok.append(w)
            except Exception as e:  # noqa: BLE001
                log.error("output %s failed to start: %s; its alerts are counted as failed",
                          w.name, redact_text(str(e)))
                ok.append(DeadWorker(w))
        self.workers = ok
        self._started = True

    def request_stop(self) -> None:
        """Ask the loop to end after the current event (signal handlers, timers)."""
        self._stopping = True
        self._attention = True

    def swap_ruleset(self, ruleset: Any, on_swapped: Callable[[Any], None] | None = None) -> None:
        """Replace the ruleset between two events (hot reload; any thread). The loop picks it up
        before its next event or idle tick; ``on_swapped(ruleset)`` then runs on the loop's
        thread. Outside a running loop the next :meth:`process`/:meth:`run` applies it."""
        with self._swap_lock:
            self._pending = (ruleset, on_swapped)
            self._attention = True

    def _take_pending(self) -> Any:
        """Install a pending ruleset (loop thread only); returns it, or ``None``."""
        with self._swap_lock:
            pending, self._pending = self._pending, None
            self._attention = self._stopping
        if pending is None:
            return None
        ruleset, on_swapped = pending
        if hasattr(ruleset, "metrics"):
            ruleset.metrics = self.metrics
        self.ruleset = ruleset
        if on_swapped is not None:
            try:
                on_swapped(ruleset)
            except Exception as e:  # noqa: BLE001 - bookkeeping must not stop the loop
                log.warning("after the ruleset swap: %s", e)
        return ruleset

    @property
    def stopping(self) -> bool:
        return self._stopping

    def close(self, timeout: float = 10.0) -> None:
        """Drain every sink queue, flush and close sinks; all sinks drain in parallel within
        one ``timeout``."""
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.request_stop(max(0.1, deadline - time.monotonic()))
        for w in self.workers:
            w.finish(deadline - time.monotonic())

    # ----------------------------------------------------------------------------- alerts
    def dispatch(self, alert: Alert) -> None:
        """Count an alert and queue it to every sink whose ``min_priority`` (and rule filter)
        admits it."""
        m = self.metrics
        prio = int(alert.priority)
        if not alert.uuid:
            alert.uuid = ALERT_IDS.next()
        m.alerts[(alert.rule, prio, alert.source)] += 1
        if alert.rule not in m.rule_tags:
            m.rule_tags[alert.rule] = list(alert.tags)
        self.alerts += 1
        for w in self.workers:
            if prio <= w.min_priority and (w.rules is None or alert.rule in w.rules):
                w.offer(alert)

    def inject(self, alert: Alert) -> None:
        """Emit an engine-made alert (source ``internal``: drops, health) through the outputs."""
        self.dispatch(alert)

    # ----------------------------------------------------------------------------- events
    def process(self, evt: Event) -> list[Alert]:
        """Run one event through parsers and rules (the loop body, for tools and tests)."""
        if self._attention:
            self._take_pending()
        self.events += 1
        evt.num = self.events
        self.metrics.events[(evt.source, evt.type)] += 1
        for name, parse in self.parsers:
            try:
                parse(evt)
            except Exception:  # noqa: BLE001
                self.metrics.plugin_errors[(name, "parser")] += 1
        try:
            alerts = self.ruleset.match(evt)
        except Exception:  # noqa: BLE001
            self.metrics.drop("rule_error")
            return []
        if alerts:
            self._emit(evt, alerts)
        return alerts

    def _emit(self, evt: Event, alerts: list[Alert]) -> None:
        """Dispatch the alerts of ``evt``, each with the process lineage of ``evt`` unless it
        already has one (looked up once for all of them)."""
        lineage = lineage_of(evt, self.state)
        for a in alerts:
            if not a.lineage:
                a.lineage = lineage
            self.dispatch(a)

    def run(self, events: Iterable[Event | None]) -> int:
        """The hot loop: consume ``events`` until it ends or :meth:`request_stop`. Returns the
        number of events processed. ``None`` items (idle ticks) only check for stop."""
        if not self._started:
            self.start()
        m = self.metrics
        counts = m.events
        plugin_errors = m.plugin_errors
        parsers = tuple(self.parsers)
        if self._attention and not self._stopping:
            self._take_pending()
        match = self.ruleset.match
        emit = self._emit
        observe = m.observe_latency
        perf = time.perf_counter
        mask = LATENCY_SAMPLE_MASK
        n = self.events
        it: Iterator[Event | None] = iter(events)
        try:
            for evt in it:
                if evt is None or self._attention:
                    if self._attention:
                        if self._stopping:
                            break
                        # hot reload: the new ruleset takes over between two events
                        rs = self._take_pending()
                        if rs is not None:
                            match = rs.match
                    if evt is None:
                        continue
                n += 1
                evt.num = n
                counts[(evt.source, evt.type)] += 1
                for name, parse in parsers:
                    try:
                        parse(evt)
                    except Exception:  # noqa: BLE001 - counted; the event goes on
                        plugin_errors[(name, "parser")] += 1
                try:
                    if n & mask:
                        alerts = match(evt)
                    else:
                        t0 = perf()
                        alerts = match(evt)
                        observe(perf() - t0)
                except Exception:  # noqa: BLE001 - one bad event never stops the loop
                    m.drops["rule_error"] += 1
                    continue
                if alerts:
                    emit(evt, alerts)
        finally:
            self.events = n
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as e:  # noqa: BLE001
                    log.warning("closing the event source failed: %s", e)
        return n
