"""The plugin's own Prometheus series, registered through the ``falconet_metrics`` hook.

``falconet_otel_records_total{signal, result}`` with result ``sent`` (accepted by the collector),
``failed`` (the exporter gave up: collector down, slow or rejecting) and ``dropped`` (the export
queue was full), plus ``falconet_otel_queue_depth{signal}``. Values are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from falconet_otel.shipper import SignalStats


class OtelExportCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, SignalStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        records = CounterMetricFamily("falconet_otel_records", "OTLP records by signal and outcome",
                                      labels=["signal", "result"])
        depth = GaugeMetricFamily("falconet_otel_queue_depth", "OTLP records waiting for export",
                                  labels=["signal"])
        for signal, s in sorted(self._stats().items()):
            records.add_metric([signal, "sent"], s.sent)
            records.add_metric([signal, "failed"], s.failed)
            records.add_metric([signal, "dropped"], s.dropped)
            depth.add_metric([signal], s.queue_depth())
        yield records
        yield depth

    def describe(self) -> list:
        return []       # collected lazily; nothing to check at registration
