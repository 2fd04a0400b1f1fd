"""Built-in plugin ``metrics``: contributes the Prometheus ``/metrics`` server through
``falconet_metrics_server``, like any other part. ``falconet.prometheus`` (and
``prometheus_client``) is imported only when the engine serves metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from falconet.api import EngineContext, MetricsEndpoint, hookimpl

if TYPE_CHECKING:
    from falconet.plugins import PluginHost


@hookimpl
def falconet_metrics_server(engine: EngineContext, address: str, port: int,
                            plugins: PluginHost) -> MetricsEndpoint:
    from falconet.prometheus import MetricsServer  # noqa: PLC0415 - only when serving metrics

    metrics = engine.metrics
    if metrics is None:
        raise RuntimeError("the engine has no metrics to serve")
    # the engine's /healthz details (outputs' queues and spools), when it publishes them
    return MetricsServer(engine, metrics, plugins, address, port,
                         health=engine.extras.get("falconet.health"))
