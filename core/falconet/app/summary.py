"""Step "summary": the one line a command prints when the run ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from falconet.delivery.setup import delivery_summary
from falconet.priorities import Priority

if TYPE_CHECKING:
    from falconet.app.engine import App


def summary(app: App) -> str:
    """One line: events, alerts by priority, drops by cause, and per output what was sent
    (confirmed by the sink), failed and dropped."""
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
    pool = getattr(app, "worker_pool", None)
    return (f"falconet: {events} events, {alerts} alerts"
            + (f" ({prios})" if prios else "") + f", {drops} drops"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(m.drops.items()) if v) + ")"
               if drops else "") + _filtered_summary(app)
            + (f"; {pool.summary()}" if pool is not None else "")
            + _outputs_summary(app))


def _filtered_summary(app: App) -> str:
    """``, 120 filtered in the kernel (openat/path: 100, close/untracked_fd: 20)``: events the
    kernel filter dropped (no rule could match them; not losses)."""
    kf = {k: n for k, n in app.metrics.kernel_filtered.items() if n}
    if not kf:
        return ""
    parts = ", ".join(f"{t}/{why}: {n}" for (t, why), n in sorted(kf.items()))
    return f", {sum(kf.values())} filtered in the kernel ({parts})"


def _outputs_summary(app: App) -> str:
    m = app.metrics
    names = sorted(set(m.output_sent) | set(m.output_failures) | set(m.output_drops)
                   | {w.name for w in (app.pipeline.workers if app.pipeline else [])})
    spools = {w.name: w.spool for w in (app.pipeline.workers if app.pipeline else [])
              if hasattr(w, "spool")}
    parts = []
    for name in names:
        counts = [f"{m.output_sent.get(name, 0)} sent"]
        if m.output_failures.get(name):
            counts.append(f"{m.output_failures[name]} failed")
        if m.output_drops.get(name):
            counts.append(f"{m.output_drops[name]} dropped")
        counts += delivery_summary(m, name, spools.get(name))
        parts.append(f"{name} " + ", ".join(counts))
    return "; outputs: " + "; ".join(parts) if parts else ""


def losses(app: App) -> int:
    """Everything lost in this run, each counted once: drops (every cause; alerts an output
    queue could not take are among them) plus alerts an output failed to deliver."""
    m = app.metrics
    return sum(m.drops.values()) + sum(m.output_failures.values())
