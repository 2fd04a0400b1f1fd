"""The plugin's hooks (entry point ``otel`` in group ``falconet``; config section ``plugins.otel``).

With no endpoint configured the plugin contributes no sink and says so in one line at start.
"""

from __future__ import annotations

from typing import Any

from falconet import __version__ as falconet_version
from falconet.api import hookimpl

from falconet_otel.config import OtelSettings, resolve_settings
from falconet_otel.metrics import OtelExportCollector
from falconet_otel.shipper import SignalStats
from falconet_otel.sink import OtelSink


class _State:
    """What the hooks share during one engine run."""

    def __init__(self) -> None:
        self.settings = OtelSettings()
        self.sink: OtelSink | None = None
        self.stats: dict[str, SignalStats] = {}
        self.announced = False
        self.configured = False


_state = _State()

#: ``engine.extras`` key under which the sink is published to other plugins
SPANS_EXTRA = "falconet.otel.spans"


@hookimpl
def falconet_configure(config: dict[str, Any], engine: Any) -> None:
    """Validate ``plugins.otel`` (raises ``PluginConfigError``) and merge the OTEL_* environment."""
    _state.__init__()
    _state.settings = resolve_settings(config)
    _state.stats = {s: SignalStats(s) for s in _state.settings.targets}
    _state.configured = True


@hookimpl
def falconet_alert_sinks(engine: Any) -> list[Any] | None:
    if not _state.configured:          # no configure call (no config at all): environment only
        falconet_configure({}, engine)
    settings = _state.settings
    if not settings.enabled:
        return None
    metrics = getattr(engine, "metrics", None)
    on_loss = metrics.drop if metrics is not None and hasattr(metrics, "drop") else None
    _state.sink = OtelSink(settings, hostname=getattr(engine, "hostname", "") or "",
                           version=falconet_version, stats=_state.stats, on_loss=on_loss)
    extras = getattr(engine, "extras", None)
    if isinstance(extras, dict):
        # span_ids(alert) / emit_span(...): the response plugin's action spans join the trace
        extras[SPANS_EXTRA] = _state.sink
    return [_state.sink]


@hookimpl
def falconet_start(engine: Any) -> None:
    """Say in one line whether alerts are exported. Only when the engine really runs (not for
    ``rules validate`` or ``plugins list``), and "off" is visible without ``-v``."""
    log = getattr(engine, "log", None)
    if log is not None and not _state.announced:
        _state.announced = True
        settings = _state.settings
        (log.info if settings.enabled else log.warning)(settings.describe())


@hookimpl
def falconet_metrics(registry: Any, engine: Any) -> None:
    if _state.settings.enabled:
        registry.register(OtelExportCollector(lambda: _state.stats))
