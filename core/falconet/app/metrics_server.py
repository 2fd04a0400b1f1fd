"""Step "start the metrics server" (and its stop at shutdown)."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from falconet.app.errors import StartupError

if TYPE_CHECKING:
    from falconet.app.engine import App

log = logging.getLogger("falconet")


def start_metrics(app: App, address: str, port: int) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``address:port`` (``falconet.prometheus``) while
    the engine runs; a port in use is a start-up error."""
    try:
        mod = importlib.import_module("falconet.prometheus")
    except ModuleNotFoundError as e:
        if e.name != "falconet.prometheus":
            raise StartupError(f"metrics server cannot start: {e}") from None
        log.warning("metrics server not available (falconet.prometheus is not installed)")
        return
    try:
        srv = mod.MetricsServer(app.ctx, app.metrics, app.host, address, port)
        srv.start()
    except OSError as e:
        raise StartupError(f"metrics server cannot listen on {address}:{port}: "
                           f"{e.strerror or e}") from None
    app.metrics_server = srv


def stop_metrics(app: App) -> None:
    if app.metrics_server is not None:
        try:
            app.metrics_server.stop()
        except Exception as e:  # noqa: BLE001
            log.warning("metrics server stop failed: %s", e)
        app.metrics_server = None
