"""The plugin's hooks (entry point ``otel`` in group ``falconet``; config section ``plugins.otel``).

With no endpoint configured the plugin contributes no sink and says so in one line at start.
"""

from __future__ import annotations

from typing import Any

from falconet import __version__ as falconet_version
from falconet.api import AlertSink, ConfigSchema, EngineContext, MetricsRegistry, hookimpl

from falconet_otel.config import SCHEMA, OtelSettings, resolve_settings
from falconet_otel.metrics import OtelExportCollector
from falconet_otel.shipper import SignalStats
from falconet_otel.sink import OtelSink

#: ``engine.extras`` key under which the sink is published to other plugins
SPANS_EXTRA = "falconet.otel.spans"


class OtelPlugin:
    """One engine's OTLP output (the host makes one instance per engine)."""

    def __init__(self) -> None:
        self.settings = OtelSettings()
        self.sink: OtelSink | None = None
        self.stats: dict[str, SignalStats] = {}
        self.announced = False
        self.configured = False

    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: EngineContext) -> None:
        """Merge ``plugins.otel`` with the OTEL_* environment (raises ``PluginConfigError``)."""
        self.settings = resolve_settings(config)
        self.stats = {s: SignalStats(s) for s in self.settings.targets}
        self.configured = True

    @hookimpl
    def falconet_alert_sinks(self, engine: EngineContext) -> list[AlertSink] | None:
        if not self.configured:          # no configure call (no config at all): environment only
            self.falconet_configure({}, engine)
        settings = self.settings
        if not settings.enabled:
            return None
        metrics = getattr(engine, "metrics", None)
        on_loss = metrics.drop if metrics is not None and hasattr(metrics, "drop") else None
        on_sent = None
        if metrics is not None and hasattr(metrics, "output_sent"):
            def on_sent(n: int) -> None:
                metrics.output_sent[OtelSink.name] += n
        self.sink = OtelSink(settings, hostname=getattr(engine, "hostname", "") or "",
                             version=falconet_version, stats=self.stats, on_loss=on_loss,
                             on_sent=on_sent)
        extras = getattr(engine, "extras", None)
        if isinstance(extras, dict):
            # span_ids(alert) / emit_span(...): the response plugin's action spans join the trace
            extras[SPANS_EXTRA] = self.sink
        return [self.sink]

    @hookimpl
    def falconet_start(self, engine: EngineContext) -> None:
        """Say in one line whether alerts are exported. Only when the engine really runs (not
        for ``rules validate`` or ``plugins list``), and "off" is visible without ``-v``."""
        log = getattr(engine, "log", None)
        if log is not None and not self.announced:
            self.announced = True
            (log.info if self.settings.enabled else log.warning)(self.settings.describe())

    @hookimpl
    def falconet_metrics(self, registry: MetricsRegistry, engine: EngineContext) -> None:
        if self.settings.enabled:
            registry.register(OtelExportCollector(lambda: self.stats))


#: the host makes one instance of this class per engine
FALCONET_PLUGIN = OtelPlugin
