"""Step "open source": the event source starts producing events (the eBPF collector compiles and
attaches its program here, which takes seconds), then the readiness line is printed."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from falconet.app.errors import StartupError
from falconet.app.shutdown import shutdown
from falconet.pipeline import Pipeline

if TYPE_CHECKING:
    from falconet.app.engine import App


@dataclass
class Session:
    """One run on one open source: what the steps after opening share."""

    source_name: str
    src: Any
    pipeline: Pipeline
    events: Iterable[Any]
    #: SIGHUPs that arrived before the reloader ran (reloaded once it does)
    early_hups: list[int]
    #: signal handlers to put back at the end
    old_handlers: dict[int, Any] = field(default_factory=dict)
    #: the name of the signal that stopped the run, if one did
    stopped_by: list[str] = field(default_factory=list)
    in_main_thread: bool = True


def open_source(app: App, source_name: str, src: Any, pipeline: Pipeline,
                options: dict[str, Any], *, guard_hup: bool,
                early_hups: list[int] | None) -> Session:
    """Open ``src`` with the engine's context and ``options``. With ``guard_hup``, a SIGHUP
    while it opens is remembered instead of killing the engine. A source that cannot open
    shuts the engine down and raises :class:`StartupError` with its reason."""
    opts = {"engine": app.ctx, "metrics": app.metrics, **options}
    in_main = threading.current_thread() is threading.main_thread()
    hups = early_hups if early_hups is not None else []
    old: dict[int, Any] = {}
    early_hup_handler = guard_hup and in_main and hasattr(signal, "SIGHUP")
    if early_hup_handler:
        # opening the eBPF source takes seconds; a `systemctl reload` meanwhile must not kill
        # the engine (SIGHUP's default action): remember it, reload once the reloader runs
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda s, _f: hups.append(s))
    try:
        events = src.open(opts)
    except Exception as e:  # noqa: BLE001 - the source says what is missing
        if early_hup_handler:
            signal.signal(signal.SIGHUP, old[signal.SIGHUP])
        shutdown(app, pipeline, None, 0)
        why = str(e).strip() or type(e).__name__
        raise StartupError(f"cannot start event source '{source_name}': {why}") from None
    return Session(source_name, src, pipeline, events, hups, old, in_main_thread=in_main)


def announce(app: App, s: Session) -> None:
    """A live source prints that it watches: also the readiness signal (the source is
    attached when this line appears)."""
    if not getattr(s.src, "live", False):
        return
    n_rules = sum(app.metrics.rules_loaded.values())
    where = f", metrics on {app.metrics_server.url}/metrics" if app.metrics_server and \
        hasattr(app.metrics_server, "url") else ""
    print(f"falconet: watching (source {s.source_name}, {n_rules} rules){where}",
          file=sys.stderr, flush=True)
