"""Replay a capture in-process, as ``falconet replay`` does: a fresh engine (plugins, state
tables), state records restored in order, every event through the engine's parsers, then to the
visitors (rules or feature extraction) when it is in the capture's focus.

One engine per capture: the state of one recording must not leak into the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from falconet.app import App
from falconet.authoring.focus import Focus, FocusFilter, load_focus
from falconet.capture import MalformedReporter, read_capture
from falconet.config import Config, load_config
from falconet.events import Event
from falconet.pipeline import Pipeline

Visitor = Callable[[Event], None]


@dataclass
class ReplayStats:
    path: str
    events: int = 0
    in_focus: int = 0
    malformed: int = 0


def make_app(config: Config | None = None) -> App:
    """An engine for in-process replay (the ``replay`` source's plugins, the configuration's
    plugin settings)."""
    app = App(config or load_config(None), source_name="replay")
    app.load_plugins()
    return app


def replay(path: str, visitors: Iterable[Visitor], *, config: Config | None = None,
           focus: Focus | None = None,
           setup: Callable[[App], Iterable[Visitor]] | None = None) -> ReplayStats:
    """Feed the events of ``path`` in its focus (``focus``, else its sidecar) to ``visitors``
    after the engine's parsers ran. ``setup(app)`` may return more visitors that need the
    replay's engine (its field registry, bound to its state)."""
    app = make_app(config)
    more = list(setup(app)) if setup is not None else []
    visit = [*visitors, *more]
    f = focus if focus is not None else load_focus(path)
    infocus = FocusFilter(f, lambda name, arg=None: app.ctx.fields.resolve(name, arg)) \
        if not f.empty else (lambda _e: True)
    # the engine's own loop body: parsers (core state first, then plugins) in their order
    pipe = Pipeline(_NoRules(), app.parsers, (), app.metrics, state=app.ctx.state)
    parsers = pipe.parsers
    stats = ReplayStats(path)
    bad = MalformedReporter(path, app.metrics)
    for evt in read_capture(path, on_state=lambda p, d: app.host.restore_state(p, d, app.ctx),
                            on_malformed=bad, progress=False):
        stats.events += 1
        evt.num = stats.events
        for _name, parse in parsers:
            try:
                parse(evt)
            except Exception:  # noqa: BLE001 - as the pipeline: count, go on
                app.metrics.plugin_errors[(_name, "parser")] += 1
        if not infocus(evt):
            continue
        stats.in_focus += 1
        for v in visit:
            v(evt)
    stats.malformed = bad.count
    return stats


class _NoRules:
    def match(self, evt: Any) -> list[Any]:
        return []
