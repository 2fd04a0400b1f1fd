"""Step "start the metrics server" (and its stop at shutdown)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from falconet.app.errors import StartupError
from falconet.app.output_policies import health

if TYPE_CHECKING:
    from falconet.app.engine import App

log = logging.getLogger("falconet")


def start_metrics(app: App, address: str, port: int) -> None:
    """Start the server a ``falconet_metrics_server`` hook contributes (the built-in
    ``metrics`` plugin's Prometheus server) on ``address:port``; none: a warning, the engine
    runs without. A port in use is a start-up error."""
    h = app.host
    # /healthz shows each output's queue and spool (the server calls this per request)
    app.ctx.extras["falconet.health"] = lambda: health(app)
    servers = h.call(h.hook.falconet_metrics_server, engine=app.ctx, address=address,
                     port=port, plugins=h)
    if not servers:
        log.warning("metrics server not available (no plugin provides one: is the built-in "
                    "'metrics' plugin disabled or failing? see `falconet plugins list`)")
        return
    srv = servers[0][1]
    try:
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
