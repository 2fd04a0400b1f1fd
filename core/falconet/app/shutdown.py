"""Step "shutdown": the reverse of start-up, in an order that loses no alert."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from falconet.app.metrics_server import stop_metrics
from falconet.pipeline import Pipeline

if TYPE_CHECKING:
    from falconet.app.engine import App

log = logging.getLogger("falconet")


def shutdown(app: App, pipeline: Pipeline, src: Any, linger: float) -> None:
    """Close the source, drain the outputs, ``falconet_stop``; with ``linger`` (replay) keep
    serving metrics that long (a stop request ends it early), then stop the metrics server."""
    if src is not None:
        try:
            src.close()
        except Exception as e:  # noqa: BLE001
            log.warning("closing source failed: %s", e)
    pipeline.close()
    app.host.hook.falconet_stop(engine=app.ctx)      # failures logged, plugins kept
    if linger > 0 and app.metrics_server is not None:
        # the line a scraper (or a test) waits for: every count served from here on is final
        print(f"falconet: the source is done; serving final metrics for {linger:g} s "
              "(a stop signal ends it)", file=sys.stderr, flush=True)
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline and not pipeline.stopping:
            time.sleep(0.05)
    stop_metrics(app)
