"""Prometheus exposition: ``/metrics`` and ``/healthz`` on 127.0.0.1:8765 by default.

The engine counts in plain integers (:class:`falconet.metrics.EngineMetrics`); :class:`EngineCollector`
turns them into the series of ``docs/metrics.md`` at scrape time, on the HTTP server's thread. The hot
loop never touches prometheus_client. Plugins add their own series through the ``falconet_metrics``
hook; each plugin gets a registry proxy so a collector that fails at scrape time is counted
(``falconet_plugin_errors_total{plugin,hook="metrics"}``) instead of breaking the whole scrape.
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from falconet import __version__
from falconet.encoding import field_text
from falconet.metrics import EngineMetrics
from falconet.priorities import Priority
from falconet.wakeup import Wakeup

log = logging.getLogger("falconet.prometheus")

_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")
#: label names of the well-known ``EngineMetrics.gauges`` entries
_GAUGES = {
    "output_queue_depth": ("falconet_output_queue_depth", "output",
                           "Alerts waiting in each output's queue"),
    "spool_depth": ("falconet_spool_depth", "output",
                    "Alerts waiting in each output's on-disk spool"),
    "spool_bytes": ("falconet_spool_bytes", "output",
                    "Bytes of encoded alerts in each output's on-disk spool"),
    "spool_oldest_age_seconds": ("falconet_spool_oldest_age_seconds", "output",
                                 "Seconds the oldest alert in each output's spool has waited"),
    "state_table_entries": ("falconet_state_table_entries", "table",
                            "Entries in the engine's state tables (threads, fds, containers)"),
    "worker_events": ("falconet_worker_events", "worker",
                      "Events each worker process owned (its rules ran on them)"),
    "worker_shared_events": ("falconet_worker_shared_events", "worker",
                             "Lifecycle events each worker applied for another worker's process"),
    "worker_alerts": ("falconet_worker_alerts", "worker",
                      "Alerts each worker process returned to the output stage"),
    "worker_queue_drops": ("falconet_worker_queue_drops", "worker",
                           "Records dropped because a worker's queue was full"),
    "worker_ring_records": ("falconet_worker_ring_records", "worker",
                            "Records each live worker read from its own ring buffers"),
    "worker_ring_drops": ("falconet_worker_ring_drops", "worker",
                          "Records the kernel lost because a live worker's ring was full"),
    "ring_drops": ("falconet_ring_drops", "ring",
                   "Records the kernel lost because this ring buffer was full"),
}
_PRIORITY_LABEL = {int(p): p.label for p in Priority}
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def label_value(v: Any) -> str:
    """A label value through the output policy (rule names, hosts and output names come from
    files and plugins: a lone surrogate would fail the whole scrape's UTF-8 encoding)."""
    return field_text(v if type(v) is str else str(v))


def tag_label(tag: str) -> str:
    """``tag_<tag>`` with the tag sanitised to a Prometheus label name (``T1059.001`` → ``T1059_001``)."""
    return "tag_" + _LABEL_BAD.sub("_", tag)


def process_usage() -> tuple[float, int, float]:
    """(CPU seconds used by this process, resident set size in bytes, process age in seconds),
    from /proc (the age is what Falco divides by for ``cpu_usage_ratio``)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK       # utime + stime
        age = uptime - int(fields[19]) / _CLK_TCK                    # now - starttime
        rss = int(fields[21]) * _PAGE
        return cpu, rss, age
    except (OSError, IndexError, ValueError):
        t = os.times()
        return t.user + t.system, 0, 0.0


class EngineCollector(Collector):
    """Falco-compatible ``falcosecurity_*`` and Falconet ``falconet_*`` series from EngineMetrics."""

    def __init__(self, metrics: EngineMetrics, *, hostname: str, version: str = __version__) -> None:
        self.m = metrics
        self.hostname = hostname
        self.version = version
        self._labels_cache: dict[str, dict[str, str]] = {}

    def describe(self) -> list[Metric]:
        return []       # dynamic label sets: nothing to pre-register

    def _tag_labels(self, rule: str, tags: list[str]) -> dict[str, str]:
        cached = self._labels_cache.get(rule)
        if cached is None:
            cached = {tag_label(t): "true" for t in tags}
            self._labels_cache[rule] = cached
        return cached

    def collect(self) -> Iterator[Metric]:
        m = self.m
        # snapshots: the hot loop keeps writing while we read (copies are atomic under the GIL)
        alerts = sorted(m.alerts.copy().items())
        rule_tags = m.rule_tags.copy()
        output_drops = m.output_drops.copy()
        cpu, rss, age = process_usage()
        wall = max(time.time() - m.start_time, 1e-9)

        # ---------------------------------------------------------------- Falco-compatible
        matches = CounterMetricFamily("falcosecurity_falco_rules_matches",
                                      "Number of times each rule matched")
        for (rule, prio, source), n in alerts:
            labels = {"rule_name": label_value(rule), "priority": str(int(prio)),
                      "source": label_value(source),
                      **self._tag_labels(rule, rule_tags.get(rule, []))}
            matches.add_sample("falcosecurity_falco_rules_matches_total", labels, n)
        yield matches
        yield _info("falcosecurity_falco_version_info", "Engine version", "version", self.version)
        yield _info("falcosecurity_evt_hostname_info", "Host name", "hostname", self.hostname)
        yield _counter("falcosecurity_falco_outputs_queue_num_drops",
                       "Alerts dropped because an output queue was full", sum(output_drops.values()))
        yield _counter("falcosecurity_scap_n_evts", "Events the kernel side produced", m.kernel_events)
        yield _counter("falcosecurity_scap_n_drops", "Events the kernel side dropped", m.kernel_drops)
        yield _gauge("falcosecurity_falco_cpu_usage_ratio",
                     "CPU used by the engine over its lifetime, as a ratio of one CPU",
                     cpu / age if age > 0 else 0.0)
        yield _gauge("falcosecurity_falco_memory_rss_bytes", "Resident memory of the engine", rss)
        yield _gauge("falcosecurity_falco_start_timestamp_nanoseconds", "When the engine started",
                     int(m.start_time * 1e9))
        yield _counter("falcosecurity_falco_duration_seconds", "Seconds since the engine started",
                       wall)

        # ---------------------------------------------------------------- Falconet's own
        fam = CounterMetricFamily("falconet_alerts", "Alerts by rule, priority and source",
                                  labels=["rule", "priority", "source"])
        for (rule, prio, source), n in alerts:
            fam.add_metric([label_value(rule), _PRIORITY_LABEL.get(int(prio), str(prio)),
                            label_value(source)], n)
        yield fam
        yield _labelled(CounterMetricFamily, "falconet_events", "Events processed by source and type",
                        ["source", "type"], m.events.copy())
        yield _labelled(CounterMetricFamily, "falconet_drops",
                        "Events, alerts or records lost, by cause", ["cause"], m.drops.copy())
        yield _labelled(CounterMetricFamily, "falconet_kernel_degraded_events",
                        "Events the kernel emitted with a value it could not read (not losses), "
                        "by what", ["what"], m.kernel_degraded.copy())
        yield _labelled(CounterMetricFamily, "falconet_kernel_filtered_events",
                        "Events the kernel filter dropped because no rule can match them (not "
                        "losses), by type and reason", ["type", "reason"],
                        m.kernel_filtered.copy())
        yield self._latency()
        yield _labelled(CounterMetricFamily, "falconet_enrichment_lookups",
                        "Enrichment lookups by plugin and result", ["plugin", "result"],
                        m.enrichment.copy())
        yield _labelled(CounterMetricFamily, "falconet_output_sent", "Alerts delivered to each output",
                        ["output"], m.output_sent.copy())
        yield _labelled(CounterMetricFamily, "falconet_output_failures",
                        "Alerts an output failed to deliver", ["output"], m.output_failures.copy())
        yield _labelled(CounterMetricFamily, "falconet_output_drops",
                        "Alerts dropped before an output (queue full)", ["output"], output_drops)
        yield _labelled(CounterMetricFamily, "falconet_output_unmatched",
                        "Alerts an output's match: did not select", ["output"],
                        m.output_unmatched.copy())
        yield _labelled(CounterMetricFamily, "falconet_output_aggregated",
                        "Alerts folded into an aggregation summary (not sent one by one)",
                        ["output"], m.output_aggregated.copy())
        yield _labelled(CounterMetricFamily, "falconet_output_summaries",
                        "Aggregation summaries sent", ["output"], m.output_summaries.copy())
        yield _labelled(CounterMetricFamily, "falconet_spool_written",
                        "Alerts written to an output's on-disk spool", ["output"],
                        m.spool_written.copy())
        yield _labelled(CounterMetricFamily, "falconet_output_delivery_retries",
                        "Failed delivery attempts of spooled alerts (each followed by a backoff)",
                        ["output"], m.delivery_retries.copy())
        yield _labelled(CounterMetricFamily, "falconet_plugin_errors", "Plugin hook failures",
                        ["plugin", "hook"], m.plugin_errors.copy())
        yield _labelled(GaugeMetricFamily, "falconet_rules_loaded", "Enabled rules by source",
                        ["source"], dict(m.rules_loaded))
        yield _gauge("falconet_rules_last_reload_timestamp_seconds",
                     "When rules were last (re)loaded", m.last_reload_ts)
        yield _gauge("falconet_rules_reload_success", "1 when the last rules (re)load succeeded",
                     1 if m.last_reload_ok else 0)
        yield _counter("falconet_rules_reload_failures", "Failed rules reloads",
                       m.reload_failures)
        yield _info("falconet_build_info", "Falconet version", "version", self.version)
        yield _counter("falconet_cpu_seconds", "CPU seconds used by the engine", cpu)
        yield _gauge("falconet_resident_memory_bytes", "Resident memory of the engine", rss)
        yield from self._gauges()

    def _latency(self) -> HistogramMetricFamily:
        m = self.m
        counts = list(m.latency_counts)
        buckets, acc = [], 0
        for le, c in zip(m.LATENCY_BUCKETS, counts, strict=False):
            acc += c
            buckets.append((repr(float(le)), acc))
        buckets.append(("+Inf", acc + counts[-1]))
        return HistogramMetricFamily("falconet_rule_eval_seconds",
                                     "Rule evaluation time per event (sampled)",
                                     buckets=buckets, sum_value=m.latency_sum)

    def _gauges(self) -> Iterator[Metric]:
        for name, fn in list(self.m.gauges.items()):
            metric, label, doc = _GAUGES.get(name, (f"falconet_{_LABEL_BAD.sub('_', name)}", "key",
                                                    f"Engine gauge {name}"))
            fam = GaugeMetricFamily(metric, doc, labels=[label])
            values = _read_gauge(fn)
            if values is None:      # one broken gauge must not break the scrape: counted, skipped
                self.m.plugin_errors[("engine", f"gauge:{name}")] += 1
                continue
            for k, v in sorted(values.items()):
                fam.add_metric([label_value(k)], float(v))
            yield fam


def _read_gauge(fn: Callable[[], dict[str, float]], attempts: int = 3) -> dict[str, float] | None:
    """Call a gauge callback. It may iterate a table the hot loop is changing ("dictionary changed
    size during iteration"): that is retried; anything else (or repeated failure) gives None."""
    for _ in range(attempts):
        try:
            return dict(fn())
        except RuntimeError:
            continue
        except Exception:  # noqa: BLE001
            return None
    return None


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _info(name: str, doc: str, label: str, value: str) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=[label])
    fam.add_metric([label_value(value)], 1)
    return fam


def _labelled(cls: Any, name: str, doc: str, labels: list[str], data: Mapping[Any, float]) -> Metric:
    fam = cls(name, doc, labels=labels)
    for key, n in sorted(data.items(), key=lambda kv: str(kv[0])):
        values = list(key) if isinstance(key, tuple) else [key]
        fam.add_metric([label_value(v) for v in values], n)
    return fam


class _SafeCollector(Collector):
    """A plugin's collector: a failure at scrape time is counted, and its series are left out."""

    def __init__(self, inner: Any, plugin: str, metrics: EngineMetrics) -> None:
        self.inner, self.plugin, self.metrics = inner, plugin, metrics
        self._warned = False

    def collect(self) -> Iterator[Metric]:
        try:
            out = list(self.inner.collect())
        except Exception as e:  # noqa: BLE001 - attribute the failure, serve everything else
            self.metrics.plugin_errors[(self.plugin, "metrics")] += 1
            if not self._warned:             # once: scrapes repeat every few seconds
                self._warned = True
                log.warning("plugin %s: metrics collector failed: %s (counted in "
                            "falconet_plugin_errors_total from now on)", self.plugin, e)
            return iter(())
        return iter(out)

    def describe(self) -> list[Metric]:
        return []


class PluginRegistry:
    """What a plugin's ``falconet_metrics`` receives: ``register``/``unregister`` like a
    ``CollectorRegistry`` (so ``Counter(..., registry=registry)`` works), wrapping each collector."""

    def __init__(self, registry: CollectorRegistry, plugin: str, metrics: EngineMetrics) -> None:
        self._registry, self.plugin, self._metrics = registry, plugin, metrics
        self._wrapped: dict[int, _SafeCollector] = {}

    def register(self, collector: Any) -> None:
        safe = _SafeCollector(collector, self.plugin, self._metrics)
        self._wrapped[id(collector)] = safe
        self._registry.register(safe)

    def unregister(self, collector: Any) -> None:
        safe = self._wrapped.pop(id(collector), None)
        if safe is not None:
            self._registry.unregister(safe)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = generate_latest(self.server.registry)
            except Exception as e:  # noqa: BLE001 - report, keep serving
                log.warning("metrics scrape failed: %s", e)
                self._reply(500, b"scrape failed\n", "text/plain; charset=utf-8")
                return
            self._reply(200, body, CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, detail = self.server.health()
            body = json.dumps({"status": "ok" if ok else "unhealthy", **detail}).encode() + b"\n"
            self._reply(200 if ok else 503, body, "application/json")
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access logs
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: CollectorRegistry
    health: Callable[[], tuple[bool, dict[str, Any]]]

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._stop = Wakeup()                 # the shutdown signal (see serve_until_stopped)
        self._stopping = False
        try:
            super().__init__(address, handler)
        except BaseException:
            self._stop.close()
            raise

    def serve_until_stopped(self) -> None:
        """Serve until :meth:`stop_serving`, asleep between requests. ``serve_forever`` wakes
        every ``poll_interval`` to look for a shutdown request: an idle engine's most frequent
        wakeup."""
        with selectors.DefaultSelector() as sel:
            sel.register(self, selectors.EVENT_READ)
            sel.register(self._stop, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in sel.select():
                    if key.fileobj is self and not self._stopping:
                        self.handle_request()         # readable: returns at once

    def stop_serving(self) -> None:
        self._stopping = True
        self._stop.set()

    def server_close(self) -> None:
        super().server_close()
        self._stop.close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` on a threaded HTTP server.

    Args:
        engine: the :class:`falconet.api.EngineContext` (for the hostname).
        metrics: the engine's counters.
        plugin_host: the :class:`falconet.plugins.PluginHost` (or a pluggy ``PluginManager``);
            ``falconet_metrics`` is called on every plugin with its own registry proxy.
        address, port: where to listen (127.0.0.1 by default: metrics are not for the network
            unless the operator says so). Port 0 picks a free port (see :attr:`port`).
        health: optional ``() -> (ok, details)`` for ``/healthz``; default: always ok.
    """

    def __init__(self, engine: Any, metrics: EngineMetrics, plugin_host: Any = None,
                 address: str = "127.0.0.1", port: int = 8765, *,
                 health: Callable[[], tuple[bool, dict[str, Any]]] | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        self.address = address
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        hostname = getattr(engine, "hostname", "") or socket.gethostname()
        self.registry.register(EngineCollector(metrics, hostname=hostname))
        self._health = health or (lambda: (True, {}))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._register_plugins(plugin_host)

    def _register_plugins(self, host: Any) -> None:
        if host is None:
            return
        pm = getattr(host, "pm", host)           # falconet.plugins.PluginHost or a PluginManager
        caller = getattr(getattr(pm, "hook", None), "falconet_metrics", None)
        if caller is None:
            return
        # one call per plugin, each with its own registry proxy (pluggy's order: it calls the
        # list from the end)
        for impl in reversed(caller.get_hookimpls()):
            proxy = PluginRegistry(self.registry, impl.plugin_name, self.metrics)
            kw = {"registry": proxy, "engine": self.engine}
            try:
                impl.function(**{a: kw[a] for a in impl.argnames})
            except Exception as e:  # noqa: BLE001 - one plugin's metrics never stop the server
                self.metrics.plugin_errors[(impl.plugin_name, "metrics")] += 1
                log.warning("plugin %s: falconet_metrics failed: %s", impl.plugin_name, e)

    def _health_check(self) -> tuple[bool, dict[str, Any]]:
        try:
            ok, detail = self._health()
        except Exception as e:  # noqa: BLE001
            return False, {"error": str(e)}
        return bool(ok), dict(detail or {})

    def start(self) -> None:
        """Bind and serve on a daemon thread. Raises ``OSError`` if the address is unusable."""
        cls = _Server6 if ":" in self.address else _Server
        srv = cls((self.address, self.port), _Handler)
        srv.registry = self.registry
        srv.health = self._health_check
        self._server = srv
        self.port = srv.server_address[1]
        self._thread = threading.Thread(target=srv.serve_until_stopped, name="falconet-metrics",
                                        daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self.address, self.port)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop_serving()
            if self._thread is not None:
                self._thread.join(timeout=5)
                self._thread = None
            self._server.server_close()
            self._server = None
