"""Aggregation of repeated alerts for one output, never silent.

Alerts of the same rule with the same values of the chosen fields (``aggregate.by``) that reach
the output within ``aggregate.window`` seconds of the first one form a group. The first alert of
a group is sent at once; the others are *folded* (counted in
``falconet_output_aggregated_total{output}``); when the window ends, one summary alert is sent
that stands for the folded ones: ``falconet.count`` (how many), ``falconet.first_time`` and
``falconet.last_time`` (their event times, ns) in its output fields. So for every output, alerts
sent one by one plus the ``falconet.count`` of every summary equals the alerts it selected.

Windows run on the output worker's clock (arrival time), not on event time, so a replay at full
speed folds as a live storm would. Runs on the output's worker thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from falconet.alerts import Alert
from falconet.delivery.ids import ALERT_IDS
from falconet.outputs.format import iso_time

#: groups open at once per output; past it new groups are not aggregated (sent one by one)
MAX_GROUPS = 10_000
#: ``Alert.extra`` keys that identify one alert (the OTel span ids): a summary is a new alert
PER_ALERT_EXTRA = frozenset({"otel.span_ids"})


def _hashable(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict | set):
        return repr(v)
    return v


@dataclass(slots=True)
class _Group:
    first: Alert
    deadline: float
    folded: int = 0
    first_ns: int = 0
    last_ns: int = 0
    last: Alert | None = None


class Aggregator:
    """Per-output folding of repeated alerts (see the module docstring).

    Args:
        window: seconds a group stays open after its first alert.
        by: field tokens whose values (besides the rule) define a group; read from the alert's
            ``output_fields``, else its captured ``match_fields``.
    """

    def __init__(self, window: float, by: tuple[str, ...] = ()) -> None:
        self.window = window
        self.by = tuple(by)
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self.folded_total = 0

    def _key(self, a: Alert) -> tuple[Any, ...]:
        of = a.output_fields
        mf = getattr(a, "match_fields", None) or {}
        return (a.rule, *(_hashable(of[f] if f in of else mf.get(f)) for f in self.by))

    def admit(self, alert: Alert, now: float) -> bool:
        """True: send ``alert`` now (first of its group, or not aggregatable); False: folded."""
        if alert.source == "internal":
            return True             # the engine's own alerts (drops, health) are never folded
        key = self._key(alert)
        g = self._groups.get(key)
        if g is None or now >= g.deadline:
            if g is not None:
                return True         # a closed window not collected yet: due() will summarise it
            if len(self._groups) < MAX_GROUPS:
                self._groups[key] = _Group(alert, now + self.window)
            return True
        if not g.folded:
            g.first_ns = alert.time_ns
        g.folded += 1
        g.last_ns = alert.time_ns
        g.last = alert
        self.folded_total += 1
        return False

    def next_deadline(self) -> float | None:
        """When the oldest open window ends (monotonic seconds), or None."""
        for g in self._groups.values():
            return g.deadline
        return None

    def due(self, now: float) -> list[Alert]:
        """Close every window that has ended; the summaries of those that folded alerts."""
        out: list[Alert] = []
        groups = self._groups
        while groups:
            key = next(iter(groups))
            g = groups[key]
            if g.deadline > now:
                break               # windows have one length: insertion order is deadline order
            del groups[key]
            if g.folded:
                out.append(summary(g))
        return out

    def close(self) -> list[Alert]:
        """Shutdown: the summaries of every open window (nothing folded is left unreported)."""
        out = [summary(g) for g in self._groups.values() if g.folded]
        self._groups.clear()
        return out


def summary(g: _Group) -> Alert:
    """The alert that stands for the folded alerts of ``g`` (a copy of the last of them)."""
    base = g.last or g.first
    fields = {**base.output_fields, "falconet.count": g.folded,
              "falconet.first_time": g.first_ns, "falconet.last_time": g.last_ns}
    text = (f"{base.output} (falconet: {g.folded} more alert(s) like this, "
            f"{iso_time(g.first_ns)} to {iso_time(g.last_ns)})")
    extra = {k: v for k, v in base.extra.items() if k not in PER_ALERT_EXTRA}
    return replace(base, output=text, output_fields=fields, time_ns=g.last_ns,
                   uuid=ALERT_IDS.next(), lineage=list(base.lineage), extra=extra)
