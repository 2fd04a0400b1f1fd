"""Signals of a run: SIGINT/SIGTERM stop it (a second Ctrl-C exits at once), SIGHUP reloads the
rules. Handlers are installed on the main thread only and put back when the run ends."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from falconet.app.open_source import Session

if TYPE_CHECKING:
    from falconet.reload import RulesReloader


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def install_stop_handlers(s: Session) -> None:
    """SIGINT and SIGTERM ask the pipeline to stop after the current event."""
    pipeline = s.pipeline

    def on_signal(signum: int, _frame: Any) -> None:
        s.stopped_by.append(signal_name(signum))
        pipeline.request_stop()
        # a second Ctrl-C exits at once
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    if s.in_main_thread:
        for sig in (signal.SIGINT, signal.SIGTERM):
            s.old_handlers[sig] = signal.signal(sig, on_signal)


def install_reload_handler(s: Session, reloader: RulesReloader,
                           hup_hooks: list[Callable[[], None]]) -> None:
    """SIGHUP asks ``reloader`` for a reload and calls ``hup_hooks`` (plugins that act on SIGHUP
    too: the response plugin re-arms its policies); SIGHUPs that came while the source opened
    reload now."""
    if s.in_main_thread and hasattr(signal, "SIGHUP"):
        def on_hup(_s: int, _f: Any) -> None:
            reloader.request("SIGHUP")
            for hook in hup_hooks:
                hook()
        signal.signal(signal.SIGHUP, on_hup)
        if s.early_hups:
            reloader.request("SIGHUP")


def restore_handlers(s: Session) -> None:
    for sig, h in s.old_handlers.items():
        signal.signal(sig, h)
