"""The engine's counters: plain integers on the hot path, turned into Prometheus series at scrape
time by ``falconet.prometheus`` (a custom collector), so counting costs a dict update, not a
prometheus_client call.

Every drop anywhere in the engine goes through :meth:`EngineMetrics.drop` with a cause, so nothing
is dropped silently. Causes in use (``falconet_drops_total{cause}``):

- ``kernel_<category>``: the ring buffer was full when the kernel tried to write an event of that
  category (``kernel_open``, ``kernel_execve``, ... see ``falconet.syscalls``);
  ``kernel_args_map_full``: exec arguments could not be staged in the kernel (counted at the
  exec's exit); ``kernel_no_enter``: an exec exit without its enter (it began before the engine
  attached); ``kernel_scratch_unavailable``, ``kernel_regs_unreadable``,
  ``kernel_io_uring_lost``: an event lost in the kernel before any ring write (no per-CPU
  buffer, no syscall registers, no io_uring staging slot). Each lost event is counted once;
  ``falcosecurity_scap_n_drops`` is their sum;
- ``decode_error``: a kernel record could not be decoded; ``source_error``: a source failed;
- ``capture_malformed``: a capture line could not be read: bad JSON, too long or deeply nested, a
  wrongly typed field, a gzip bomb cut off (reported with its line number);
- ``rule_error``: a rule raised while evaluating an event (the other rules still ran);
- ``worker_queue_full``: records a worker process could not take (its queue full; a replay
  waits instead, so only a non-blocking source counts them), also per worker in
  ``falconet_worker_queue_drops``; ``worker_failed``: a worker process died or raised (the run
  stops, exit status 1);
- ``state_evicted``: the thread table was full and an entry was evicted;
- ``output_queue_full``: an alert did not fit in an output's queue (also per output in
  ``falconet_output_drops_total{output}``); ``output_shutdown_timeout``: an alert still queued
  (or inside a stuck ``send``) when shutdown stopped waiting for its output (also per output);
- ``spool_full``, ``spool_expired``: an alert an output could not deliver was removed from its
  on-disk spool, oldest first, past ``spool.max_bytes`` or ``spool.max_age``;
  ``spool_write_error``: the spool could not be written (disk full or failing);
- ``container_lookup_queue_full``: a container metadata lookup could not be queued;
- ``otel_queue_full``, ``otel_logs_export_failed``, ``otel_traces_export_failed``: OTel export
  losses (the OTel plugin), one per alert (not per record: logs and spans of one alert are one).

Alerts an output failed to deliver are ``output_failures`` (``falconet_output_failures_total``),
not drops; docs/outputs.md explains the accounting.

Parser exceptions are counted per plugin in ``falconet_plugin_errors_total{plugin,hook}``.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable


class EngineMetrics:
    """Counters shared by the pipeline, sources, outputs and plugins. Single writer per counter
    family (the hot loop, or one output worker), read by the scrape thread."""

    #: rule evaluation latency histogram buckets, seconds (per event, all rules of its type)
    LATENCY_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2)

    def __init__(self) -> None:
        self.start_time = time.time()
        self.events: defaultdict[tuple[str, str], int] = defaultdict(int)      # (source, type)
        self.drops: defaultdict[str, int] = defaultdict(int)                   # cause
        #: events the kernel filter dropped because no rule can match them (not drops: see
        #: docs/kernel-filter.md), by (event type, reason)
        self.kernel_filtered: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.alerts: defaultdict[tuple[str, int, str], int] = defaultdict(int)  # (rule, prio, source)
        self.rule_tags: dict[str, list[str]] = {}                              # rule -> tags
        self.kernel_events = 0          # events the kernel produced (falcosecurity_scap_n_evts)
        self.kernel_drops = 0           # events the kernel dropped (falcosecurity_scap_n_drops)
        #: events the kernel emitted with a value it could not read (not drops), by what:
        #: ``user_read``, ``kernel_read``, ``exec_filename``
        self.kernel_degraded: defaultdict[str, int] = defaultdict(int)
        self.output_sent: defaultdict[str, int] = defaultdict(int)
        self.output_failures: defaultdict[str, int] = defaultdict(int)
        self.output_drops: defaultdict[str, int] = defaultdict(int)
        #: per output: alerts its ``match:`` did not select, alerts folded into an aggregation
        #: summary, summaries sent (docs/outputs.md)
        self.output_unmatched: defaultdict[str, int] = defaultdict(int)
        self.output_aggregated: defaultdict[str, int] = defaultdict(int)
        self.output_summaries: defaultdict[str, int] = defaultdict(int)
        #: per output with a spool: alerts written to it, failed delivery attempts (batches)
        self.spool_written: defaultdict[str, int] = defaultdict(int)
        self.delivery_retries: defaultdict[str, int] = defaultdict(int)
        self.plugin_errors: defaultdict[tuple[str, str], int] = defaultdict(int)  # (plugin, hook)
        self.enrichment: defaultdict[tuple[str, str], int] = defaultdict(int)  # (plugin, result)
        self.latency_counts = [0] * (len(self.LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_n = 0
        self.rules_loaded: dict[str, int] = {}                                 # source -> count
        self.last_reload_ts = 0.0
        self.last_reload_ok = True
        self.reload_failures = 0
        #: name -> callable returning {label_value: number}; e.g. state table sizes, queue depths
        self.gauges: dict[str, Callable[[], dict[str, float]]] = {}

    def drop(self, cause: str, n: int = 1) -> None:
        self.drops[cause] += n

    def observe_latency(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_n += 1
        # first bucket with seconds <= bound; past the last bound lands in the +Inf slot
        self.latency_counts[bisect_left(self.LATENCY_BUCKETS, seconds)] += 1
