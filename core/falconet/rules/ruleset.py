"""The loaded ruleset: rules indexed by source and event type, evaluated in load order.

``match(evt)`` is on the hot path: one dict lookup finds the rules of the event's
(source, type) bucket, each compiled condition is a closure, and only a matching rule renders its
output. The rules that read a path field are also evaluated on the resolved-path view of an
event whose kernel path differs from ``fd.name``, and the rules of ``openat`` on
``open_by_handle_at`` (:mod:`falconet.rules.views`): which rules need that is decided here,
once, per event type. A rule that raises while evaluating (a bad value type from a plugin extractor...) is
counted in :attr:`Ruleset.eval_errors` (and ``EngineMetrics.drop("rule_error")`` when metrics
are attached) and never stops the other rules.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from falconet.alerts import Alert
from falconet.events import SYSCALL_SOURCE, Event
from falconet.rules.model import CompiledRule, to_json_value, to_text
from falconet.rules.views import OPEN_ALIASES, alias_view, path_view

#: how a rule of a view plan is evaluated: (rule, on the event, on the path view, on the
#: alias view)
_Entry = tuple[CompiledRule, bool, bool, bool]
#: (the alias type or None, the entries in load order); None: the type needs no view
_Plan = tuple[str | None, tuple[_Entry, ...]] | None


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
        # syscall: per type, the plan of the second views (None when no rule needs one)
        self._views: dict[str, tuple[dict[str, _Plan], _Plan]] = {}
        if SYSCALL_SOURCE in self._index:
            by_type, rest = self._index[SYSCALL_SOURCE]
            plans = {t: self._plan(t, by_type.get(t, rest))
                     for t in set(by_type) | set(OPEN_ALIASES)}
            self._views[SYSCALL_SOURCE] = ({t: p for t, p in plans.items() if p is not None},
                                           self._plan("", rest))

    def _plan(self, t: str, own: tuple[CompiledRule, ...]) -> _Plan:
        alias = OPEN_ALIASES.get(t)
        seen = set(map(id, own))
        extra = [r for r in self.rules_for(SYSCALL_SOURCE, alias)
                 if id(r) not in seen] if alias else []
        if not extra and not any(r.path_view for r in own):
            return None
        via = set(map(id, extra))
        entries = tuple((r, id(r) in seen, r.path_view and id(r) in seen, id(r) in via)
                        for r in self.rules if id(r) in seen or id(r) in via)
        return (alias if extra else None, entries)

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
        if source == SYSCALL_SOURCE:    # the opens the openat rules also see (views)
            out |= {t for t, target in OPEN_ALIASES.items() if target in out}
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
        views = self._views.get(evt.source)
        if views is not None:
            plan = views[0].get(evt.type, views[1])
            if plan is not None:
                pv = path_view(evt)
                if pv is not None or plan[0] is not None:
                    return self._match_views(evt, plan, pv)
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

    def _match_views(self, evt: Event, plan: tuple[str | None, tuple[_Entry, ...]],
                     pv: Event | None) -> list[Alert]:
        """``match`` when ``evt`` has a second view: each rule at most once, in load order;
        an alert raised through a view names the path that matched."""
        alias, entries = plan
        av = alias_view(evt, alias) if alias is not None else None
        out: list[Alert] = []
        for r, on_evt, on_path, on_alias in entries:
            try:
                if on_evt and r.check(evt):
                    alert = self.render(r, evt)
                elif (on_path and pv is not None and r.check(pv)) or \
                        (on_alias and av is not None and r.check(av)):
                    alert = self._mark(self.render(r, evt), evt)
                else:
                    continue
            except Exception as e:  # noqa: BLE001 - one bad rule/event never stops the others
                self._count_error(r, e)
                continue
            out.append(alert)
            if self.first:
                break
        return out

    @staticmethod
    def _mark(alert: Alert, evt: Event) -> Alert:
        """Say which path matched: ``fd.resolved_name`` in the output fields and text."""
        f = evt.fdinfo
        path = (f.resolved or f.name) if f is not None else None
        if "fd.resolved_name" not in alert.output_fields:
            alert.output_fields["fd.resolved_name"] = to_json_value(path)
            alert.output += " fd_resolved_name=" + to_text(path)
        return alert

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
