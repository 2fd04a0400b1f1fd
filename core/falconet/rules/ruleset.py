"""The loaded ruleset: rules indexed by source and event type, evaluated in load order.

``match(evt)`` is on the hot path: one dict lookup finds the rules of the event's
(source, type) bucket, each compiled condition is a closure, and only a matching rule renders its
output. A rule that raises while evaluating (a bad value type from a plugin extractor...) is
counted in :attr:`Ruleset.eval_errors` (and ``EngineMetrics.drop("rule_error")`` when metrics
are attached) and never stops the other rules.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from falconet.alerts import Alert
from falconet.events import SYSCALL_SOURCE, Event
from falconet.rules.loader import CompiledRule


class Ruleset:
    """Enabled rules, ready to match. Build with :func:`falconet.rules.load_rules`."""

    def __init__(self, rules: list[CompiledRule], *, rule_matching: str = "first",
                 hostname: str = "", metrics: Any = None) -> None:
        if rule_matching not in ("first", "all"):
            raise ValueError(f"rule_matching must be 'first' or 'all', not '{rule_matching}'")
        self.rules = [r for r in rules if r.enabled]
        self.first = rule_matching == "first"
        self.hostname = hostname
        #: an ``EngineMetrics`` (or anything with ``drop(cause)``) the pipeline may attach
        self.metrics = metrics
        self.eval_errors: defaultdict[str, int] = defaultdict(int)   # rule name -> count
        self.last_error: str = ""
        # source -> (type -> rules, rules for types not listed)
        self._index: dict[str, tuple[dict[str, tuple[CompiledRule, ...]],
                                     tuple[CompiledRule, ...]]] = {}
        by_source: dict[str, list[CompiledRule]] = defaultdict(list)
        for r in self.rules:
            by_source[r.source].append(r)
        for source, rs in by_source.items():
            named = set().union(*(r.event_types for r in rs if r.event_types is not None))
            by_type = {t: tuple(r for r in rs if r.event_types is None or t in r.event_types)
                       for t in named}
            rest = tuple(r for r in rs if r.event_types is None)
            self._index[source] = (by_type, rest)

    def __len__(self) -> int:
        return len(self.rules)

    def event_types(self, source: str = SYSCALL_SOURCE) -> set[str] | None:
        """Event types any enabled rule of ``source`` can match; ``None`` means every type."""
        rs = [r for r in self.rules if r.source == source]
        if any(r.event_types is None for r in rs):
            return None
        out: set[str] = set()
        for r in rs:
            out |= r.event_types or set()
        return out

    def rules_for(self, source: str, evt_type: str) -> tuple[CompiledRule, ...]:
        idx = self._index.get(source)
        if idx is None:
            return ()
        return idx[0].get(evt_type, idx[1])

    def match(self, evt: Event) -> list[Alert]:
        """The alerts ``evt`` triggers: at most one with ``rule_matching: first``."""
        idx = self._index.get(evt.source)
        if idx is None:
            return []
        rules = idx[0].get(evt.type, idx[1])
        out: list[Alert] = []
        for r in rules:
            try:
                if not r.check(evt):
                    continue
                alert = self.render(r, evt)
            except Exception as e:  # noqa: BLE001 - one bad rule/event never stops the others
                self._count_error(r, e)
                continue
            out.append(alert)
            if self.first:
                break
        return out

    def render(self, r: CompiledRule, evt: Event) -> Alert:
        """Build the fully rendered alert of rule ``r`` for ``evt``."""
        text, fields = r.fmt.render(evt)
        fields["evt.time"] = evt.ts
        extra = r.extra_fields
        if extra:
            for name, g in extra["getters"]:
                fields[name] = g(evt)
            if extra["consts"]:
                fields.update(extra["consts"])
        alert = Alert(r.name, r.priority, r.source, list(r.tags), text, fields, evt.ts,
                      self.hostname, r.desc, r.file)
        capture = r.capture_getters
        if capture:
            # values `match:` conditions read (load_rules(capture_fields=...)), resolved now
            # because state changes after the event
            alert.match_fields = {tok: g(evt) for tok, g in capture}
        return alert

    def _count_error(self, r: CompiledRule, e: Exception) -> None:
        self.eval_errors[r.name] += 1
        self.last_error = f"rule '{r.name}': {type(e).__name__}: {e}"
        if self.metrics is not None:
            self.metrics.drop("rule_error")
