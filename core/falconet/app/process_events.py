"""Step "process events": the run itself. Signals and hot reload are installed, the optional
duration is armed, and the pipeline's loop runs until the source ends or a stop is requested;
whatever happens, the engine then shuts down and the signal handlers are put back."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from falconet.app.open_source import Session
from falconet.app.reload_rules import reload_and_refreeze, watched_rules_paths
from falconet.app.shutdown import shutdown
from falconet.app.signals import install_reload_handler, install_stop_handlers, restore_handlers
from falconet.pipeline import restore_gc, tune_gc_for_events
from falconet.reload import RulesReloader
from falconet.workers import WorkerFailed

if TYPE_CHECKING:
    from falconet.app.engine import App

log = logging.getLogger("falconet")


def start_reloader(app: App, s: Session) -> None:
    """Reload on SIGHUP and, with ``watch_rules_files``, when a rules file changes."""
    app.running_source = s.src
    watch = (lambda: watched_rules_paths(app)) if app.config["watch_rules_files"] else None
    app.reloader = RulesReloader(lambda reason: reload_and_refreeze(app, reason), watch)
    app.reloader.start()
    install_reload_handler(s, app.reloader, list(app.ctx.extras.get("falconet.on_sighup", [])))


def process_events(app: App, s: Session, *, duration: float | None, hot_reload: bool,
                   linger: float, pool: Any = None) -> int:
    """Run the loop on the open source; returns the exit code (1 when the source failed).
    With ``pool`` (a :class:`~falconet.workers.WorkerPool`), the source's raw records go to
    its workers instead of the one in-process loop."""
    pipeline = s.pipeline
    install_stop_handlers(s)
    if hot_reload:
        start_reloader(app, s)
    timer = None
    if duration is not None:
        timer = threading.Timer(duration, pipeline.request_stop)
        timer.daemon = True
        timer.start()
    rc = 0
    gc_before = tune_gc_for_events()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        if getattr(pool, "live", False):
            pool.run(s.src)             # the workers read the rings (falconet.workers.live)
        elif pool is not None:
            close = getattr(s.events, "close", None)
            if close is not None:
                close()                 # the workers decode; the event iterator never starts
            pool.run(s.src.blocks(), reporter=getattr(s.src, "reporter", None))
        else:
            pipeline.run(s.events)
    except WorkerFailed as e:
        app.metrics.drop("worker_failed")
        print(f"falconet: error: {e}", file=sys.stderr)
        rc = 1
    except Exception as e:  # noqa: BLE001 - a source that dies mid-run: report, shut down clean
        app.metrics.drop("source_error")
        print(f"falconet: error: event source '{s.source_name}' failed: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        rc = 1
    finally:
        # the event phase alone (benchmarks: start-up and the outputs' drain are not in it)
        app.events_seconds = time.perf_counter() - t0
        app.events_cpu_seconds = time.process_time() - c0
        if pool is not None:
            pool.abort()                # after a clean run: only reaps what is left
        restore_gc(gc_before)
        if timer is not None:
            timer.cancel()
        if app.reloader is not None:
            app.reloader.stop(timeout=2.0)    # a daemon thread: never hold up the exit
            app.reloader = None
        try:
            shutdown(app, pipeline, s.src, linger)   # a signal here ends the linger early
        finally:
            restore_handlers(s)
    if s.stopped_by:
        log.info("stopped by %s", s.stopped_by[0])
    return rc
