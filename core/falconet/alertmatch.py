"""Which alerts a response policy or an output route applies to: ``match:`` specs compiled once.

A spec is a mapping (usually a piece of ``falconet.yaml``)::

    match:
      rules: [Terminal shell in container]      # exact rule names, or one name
      tags: [mitre_execution]                   # the alert has ANY of these tags
      priority: ">=Critical"                    # at least Critical ('Critical' means the same;
                                                #   '<=Notice' = at most Notice)
      condition: container.id != host and k8s.ns.name != kube-system

Every key is optional; all given keys must hold. The ``condition`` is Falco's filter language,
compiled by the rule compiler (:class:`falconet.rules.compiler.ConditionCompiler`) against a
*derived* field registry: each field reads the alert's value of its token, from
``Alert.match_fields`` (values captured at render time for the tokens in
:attr:`AlertMatcher.fields`, see ``load_rules(capture_fields=...)``) or else from
``Alert.output_fields``. A missing value makes a comparison false, as in Falco, so internal
alerts (no event) match no condition on event fields.

Matching runs off the hot path (on an output or response worker) and never raises: a check that
fails counts as no match and is counted in :attr:`AlertMatcher.stats`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from falconet.alerts import Alert
from falconet.fields.registry import FieldDef, FieldRegistry
from falconet.priorities import PRIORITY_NAMES, Priority
from falconet.rules.errors import FilterSyntaxError, RuleLoadError
from falconet.rules.yamlnodes import YMap, YStr, offset_location

#: the event source conditions of a ``match:`` are compiled for (every field is available)
ALERT_SOURCE = "alert"

#: keys a ``match:`` spec may hold
MATCH_KEYS = ("rules", "tags", "priority", "condition")

#: (line, column), 1-based
Mark = tuple[int, int]


class MatchError(Exception):
    """A ``match:`` spec is invalid. ``problems`` are complete messages
    ``file:line:col: error: what ... expected``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class MatchStats:
    """Checks that raised (counted as no match) and the last reason, for metrics and logs."""

    errors: int = 0
    last_error: str = ""


def _always(_alert: Any) -> bool:
    return True


@dataclass(frozen=True)
class AlertMatcher:
    """A compiled ``match:`` spec; call it with an :class:`~falconet.alerts.Alert`."""

    rules: frozenset[str] | None        # exact rule names (None = any)
    tags: frozenset[str] | None         # alert matches if it has ANY of these tags (None = any)
    priority: int | None                # threshold (Priority int; lower = more severe)
    condition_text: str | None
    fields: frozenset[str]              # field tokens the condition reads
    #: ``>=`` (at least this severe, the default) or ``<=`` (at most this severe)
    priority_op: str = ">="
    check: Any = field(default=_always, repr=False, compare=False)
    stats: MatchStats = field(default_factory=MatchStats, repr=False, compare=False)

    def __call__(self, alert: Alert) -> bool:
        try:
            if self.rules is not None and alert.rule not in self.rules:
                return False
            if self.tags is not None and self.tags.isdisjoint(alert.tags):
                return False
            if self.priority is not None:
                p = int(alert.priority)
                if (p > self.priority) if self.priority_op == ">=" else (p < self.priority):
                    return False
            return bool(self.check(alert))
        except Exception as e:  # noqa: BLE001 - a failing check is no match, counted
            self.stats.errors += 1
            self.stats.last_error = f"{type(e).__name__}: {e}"
            return False


# ------------------------------------------------------------------------------------ positions
class _Where:
    """Formats ``file:line:col`` for a key of the spec: from a position-aware :class:`YMap`
    (``falconet.yaml`` sections are read that way), else from ``marks``, else just ``where``."""

    def __init__(self, spec: Mapping[str, Any], where: str,
                 marks: Mapping[str, Mark] | None) -> None:
        self.spec, self.where, self.marks = spec, where, marks or {}

    def at(self, key: str | None, *, value: bool = True) -> str:
        if isinstance(self.spec, YMap):
            locs = self.spec.locs if value else self.spec.key_locs
            loc = locs.get(key) if key is not None else self.spec.loc
            if loc is not None:
                return f"{loc.file}:{loc.line}:{loc.col}"
        m = self.marks.get(key) if key is not None else None
        if m is not None:
            return f"{self.where}:{m[0]}:{m[1]}"
        return self.where

    def inside(self, key: str, offset: int) -> str:
        """The position ``offset`` characters into the string value of ``key``."""
        raw = self.spec.get(key)
        if isinstance(raw, YStr):
            lines = _source_lines(raw)
            loc = offset_location(raw, offset, lines)
            if loc is not None:
                return f"{loc.file}:{loc.line}:{loc.col}"
            # an error at the very end of a block scalar: just after its last character
            loc = offset_location(raw, offset - 1, lines) if offset > 0 else None
            if loc is not None:
                return f"{loc.file}:{loc.line}:{loc.col + 1}"
        m = self.marks.get(key)
        if m is not None and isinstance(raw, str) and "\n" not in raw:
            return f"{self.where}:{m[0]}:{m[1] + offset}"
        return self.at(key)


#: a config file larger than this is not read again to place an error inside a block scalar
_MAX_REREAD = 1 << 20


def _source_lines(value: YStr) -> list[str]:
    """The text lines a scalar was read from (block scalars need them): PyYAML's buffer, else
    (libyaml keeps none) the file again, only on this error path."""
    buf = getattr(value.node.start_mark, "buffer", None)
    if isinstance(buf, str):
        return buf.rstrip("\0").splitlines(keepends=True)
    try:
        path = value.loc.file
        if os.path.getsize(path) <= _MAX_REREAD:
            with open(path, encoding="utf-8") as f:
                return f.read().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        pass
    return []


# ------------------------------------------------------------------------------------ compiling
def _names(v: Any) -> frozenset[str]:
    if isinstance(v, str) and v:
        return frozenset([str(v)])
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return frozenset(str(x) for x in v)
    raise ValueError("expected a name or a non-empty list of names")


_PRIORITY_RE = re.compile(r"\s*(>=|<=)?\s*(\w+)\s*")


def parse_priority(v: Any) -> tuple[str, int]:
    """``'>=Critical'``/``'Critical'`` -> ``('>=', 2)``; ``'<=Notice'`` -> ``('<=', 5)``."""
    if isinstance(v, Priority):
        return ">=", int(v)
    m = _PRIORITY_RE.fullmatch(v) if isinstance(v, str) else None
    if m is not None:
        try:
            return m.group(1) or ">=", int(Priority.parse(m.group(2)))
        except ValueError:
            pass
    raise ValueError("expected a priority threshold like '>=Critical', 'Critical' or "
                     f"'<=Notice' (priorities: {', '.join(PRIORITY_NAMES)})")


def _reader(keys: tuple[str, ...]) -> Any:
    """An extractor reading a token's value from the alert (captured, else output field)."""
    def extract(alert: Any, _keys: tuple[str, ...] = keys) -> Any:
        mf = alert.match_fields
        for k in _keys:
            if k in mf:
                return mf[k]
        of = alert.output_fields
        for k in _keys:
            if k in of:
                v = of[k]
                return tuple(v) if isinstance(v, list) else v
        return None
    return extract


def alert_registry(registry: FieldRegistry) -> FieldRegistry:
    """The registry conditions over alerts compile against: same names and types, every field
    available for :data:`ALERT_SOURCE`, each extractor reading the alert's value of its token."""
    out: dict[str, FieldDef] = {}
    for name, f in registry.fields.items():
        def make(arg: str | None, _f: FieldDef = f) -> Any:
            if arg is None:
                return _reader((_f.name,))
            keys = (f"{_f.name}[{arg}]", f"{_f.name}.{arg}") if _f.dotted_arg \
                else (f"{_f.name}[{arg}]",)
            return _reader(keys)
        out[name] = replace(f, make_extractor=make, sources=frozenset({ALERT_SOURCE}),
                            cache=False, compile_check=None)
    return FieldRegistry(out)


_NONEXISTENT = re.compile(r"nonexistent field (\S+?)(?::|$|\s)")


def _compile_condition(text: str, registry: FieldRegistry, at: _Where
                       ) -> tuple[Any, frozenset[str]]:
    # imported here: the rule compiler is heavy and only configs with conditions need it
    from falconet.rules.compiler import ConditionCompiler  # noqa: PLC0415
    from falconet.rules.parser import parse_condition  # noqa: PLC0415

    try:
        ast = parse_condition(text)
    except FilterSyntaxError as e:
        raise MatchError([f"{at.inside('condition', e.pos)}: error: match.condition: "
                          f"{e.reason}"]) from None
    cc = ConditionCompiler(alert_registry(registry), ALERT_SOURCE)
    try:
        check = cc.compile(ast)
    except RuleLoadError as e:
        msg = e.message.replace(f" for source '{ALERT_SOURCE}'", "")
        m = _NONEXISTENT.search(msg)
        pos = text.find(m.group(1)) if m else -1
        where = at.inside("condition", pos) if pos >= 0 else at.at("condition")
        raise MatchError([f"{where}: error: match.condition: {msg}"]) from None
    return check, frozenset(rf.token for rf in cc.fields)


def compile_match(spec: Mapping[str, Any] | None, registry: FieldRegistry, *,
                  where: str = "<config>", marks: Mapping[str, Mark] | None = None
                  ) -> AlertMatcher:
    """Compile a ``match:`` spec (see the module docstring). An empty/``None`` spec matches
    every alert.

    Args:
        spec: the mapping; a :class:`~falconet.rules.yamlnodes.YMap` (how ``falconet.yaml``
            sections are read) carries its own positions.
        registry: the engine's field registry (core and plugin fields).
        where: what to name in messages when positions are unknown (a file, ``-o ...``).
        marks: position of each key's value in ``where``, for specs that are plain dicts.

    Raises :class:`MatchError` listing every problem as ``file:line:col: error: ...``.
    """
    if spec is None:
        return AlertMatcher(None, None, None, None, frozenset())
    at = _Where(spec, where, marks)
    if not isinstance(spec, Mapping):
        raise MatchError([f"{at.at(None)}: error: match: expected a mapping with "
                          f"{', '.join(MATCH_KEYS)}, got {spec!r}"])
    problems: list[str] = []
    for k in spec:
        if k not in MATCH_KEYS:
            problems.append(f"{at.at(str(k), value=False)}: error: match: unknown key "
                            f"'{k}' (allowed: {', '.join(MATCH_KEYS)})")
    rules = tags = None
    prio_op, prio = ">=", None
    for key in ("rules", "tags"):
        if spec.get(key) is None:
            continue
        try:
            if key == "rules":
                rules = _names(spec[key])
            else:
                tags = _names(spec[key])
        except ValueError as e:
            problems.append(f"{at.at(key)}: error: match.{key}: {e}, got {spec[key]!r}")
    if spec.get("priority") is not None:
        try:
            prio_op, prio = parse_priority(spec["priority"])
        except ValueError as e:
            problems.append(f"{at.at('priority')}: error: match.priority: {e}, "
                            f"got {spec['priority']!r}")
    cond = spec.get("condition")
    check, fields = _always, frozenset[str]()
    if cond is not None:
        if not isinstance(cond, str) or not cond.strip():
            problems.append(f"{at.at('condition')}: error: match.condition: expected a Falco "
                            f"filter condition (a non-empty string), got {cond!r}")
        else:
            try:
                check, fields = _compile_condition(str(cond), registry, at)
            except MatchError as e:
                problems += e.problems
    if problems:
        raise MatchError(problems)
    return AlertMatcher(rules, tags, prio, str(cond) if cond is not None else None, fields,
                        prio_op, check)


__all__ = ["ALERT_SOURCE", "AlertMatcher", "MatchError", "MatchStats", "alert_registry",
           "compile_match", "parse_priority"]
