"""Step "summary": the one line a command prints when the run ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from falconet.priorities import Priority

if TYPE_CHECKING:
    from falconet.app.engine import App


def summary(app: App) -> str:
    """``falconet: N events, M alerts (Warning: 2, ...), K drops (cause: n, ...)``."""
    m = app.metrics
    drops = sum(m.drops.values())
    by_prio: dict[str, int] = {}
    for (_rule, prio, _src), n in m.alerts.items():
        label = Priority(prio).label
        by_prio[label] = by_prio.get(label, 0) + n
    prios = ", ".join(f"{k}: {v}" for k, v in sorted(by_prio.items(),
                                                      key=lambda kv: Priority.parse(kv[0])))
    events = app.pipeline.events if app.pipeline else 0
    alerts = app.pipeline.alerts if app.pipeline else 0
    return (f"falconet: {events} events, {alerts} alerts"
            + (f" ({prios})" if prios else "") + f", {drops} drops"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(m.drops.items())) + ")"
               if drops else ""))
