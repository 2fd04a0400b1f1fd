"""``responses:`` policies of ``falconet.yaml``, compiled once at start (docs/response.md)::

    responses:
      - name: contain-critical-containers
        match: {priority: ">=Critical", condition: "container.id != host"}
        actions:
          - {action: capture, seconds: 5}
          - {action: freeze, ttl: 600}
        continue: false          # later policies are not evaluated for an alert this one matched
        dry_run: false           # shadow mode: evaluate, audit and count "would have acted"
        allow_host: false        # host processes (container.id = host) are protected unless true
        rate_limit: {max: 10, per_seconds: 60}
        dedup_seconds: 60        # one run per target and action in this window
        breaker: {max_targets: 20, window_seconds: 60}   # default: plugins.response.breaker

Every problem is reported as ``file:line:col: error: ...`` (the YAML position of the key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from falconet.alertmatch import AlertMatcher, MatchError, compile_match
from falconet.fields.registry import FieldRegistry

from falconet_response.actions.base import Action, ActionParamError

POLICY_KEYS = ("name", "match", "actions", "continue", "dry_run", "allow_host", "rate_limit",
               "dedup_seconds", "breaker")


@dataclass(frozen=True)
class RateLimit:
    max: int
    per_seconds: float


@dataclass(frozen=True)
class BreakerSpec:
    max_targets: int
    window_seconds: float


@dataclass
class Step:
    action: Action
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.action.name


@dataclass
class Policy:
    name: str
    match: AlertMatcher
    steps: list[Step]
    cont: bool = False
    dry_run: bool = False
    allow_host: bool = False
    rate_limit: RateLimit | None = None
    dedup_seconds: float = 60.0
    breaker: BreakerSpec | None = None
    where: str = ""
    fields: frozenset[str] = field(default_factory=frozenset)


class PolicyError(Exception):
    """``responses:`` is invalid; ``problems`` are complete ``file:line:col: error:`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def pos(m: Any, key: Any = None, where: str = "<config>", *, of_key: bool = False) -> str:
    """``file:line:col`` of ``m[key]`` (or of ``m``) when ``m`` came from a position-aware read."""
    loc = None
    if key is None:
        loc = getattr(m, "loc", None)
    elif isinstance(getattr(m, "locs", None), dict):
        loc = (m.key_locs if of_key else m.locs).get(key)
    elif isinstance(getattr(m, "locs", None), list) and isinstance(key, int):
        loc = m.locs[key] if key < len(m.locs) else None
    return f"{loc.file}:{loc.line}:{loc.col}" if loc is not None else where


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _number(v: Any, *, zero_ok: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (v == 0 and not zero_ok):
        raise ValueError(f"expected a number {'>=' if zero_ok else '>'} 0")
    return float(v)


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("expected an integer >= 1")
    return v


def parse_rate_limit(v: Any) -> RateLimit:
    if not isinstance(v, Mapping) or set(v) != {"max", "per_seconds"}:
        raise ValueError("expected {max: <runs>, per_seconds: <window>}")
    return RateLimit(_count(v["max"]), _number(v["per_seconds"]))


def parse_breaker(v: Any) -> BreakerSpec:
    if not isinstance(v, Mapping) or set(v) != {"max_targets", "window_seconds"}:
        raise ValueError("expected {max_targets: <distinct targets>, window_seconds: <window>}")
    return BreakerSpec(_count(v["max_targets"]), _number(v["window_seconds"]))


_SCALARS = {"continue": _bool, "dry_run": _bool, "allow_host": _bool,
            "rate_limit": parse_rate_limit, "dedup_seconds": lambda v: _number(v, zero_ok=True),
            "breaker": parse_breaker}
_ATTR = {"continue": "cont"}


def compile_policies(items: Any, registry: FieldRegistry, actions: Mapping[str, Action], *,
                     where: str = "<config>") -> list[Policy]:
    """Compile the ``responses:`` list. Raises :class:`PolicyError` with every problem."""
    if not items:
        return []
    problems: list[str] = []
    out: list[Policy] = []
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        at = pos(items, i, where)
        if not isinstance(item, Mapping):
            problems.append(f"{at}: error: responses: item {i + 1}: expected a policy mapping "
                            f"({', '.join(POLICY_KEYS)}), got {item!r}")
            continue
        before = len(problems)
        for k in item:
            if k not in POLICY_KEYS:
                problems.append(f"{pos(item, k, at, of_key=True)}: error: responses: unknown key "
                                f"'{k}' (allowed: {', '.join(POLICY_KEYS)})")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{pos(item, 'name', at)}: error: responses: item {i + 1}: "
                            f"expected 'name: <policy name>' (a non-empty string)")
            name = f"#{i + 1}"
        elif name in names:
            problems.append(f"{pos(item, 'name', at)}: error: responses: policy '{name}' is "
                            f"already defined at {names[name]}")
        else:
            names[name] = pos(item, "name", at)
        label = f"policy '{name}'"
        kw: dict[str, Any] = {}
        for key, check in _SCALARS.items():
            if item.get(key) is None:
                continue
            try:
                kw[_ATTR.get(key, key)] = check(item[key])
            except ValueError as e:
                problems.append(f"{pos(item, key, at)}: error: {label}: {key}: {e}, "
                                f"got {item[key]!r}")
        try:
            matcher = compile_match(item.get("match"), registry, where=pos(item, "match", at))
        except MatchError as e:
            problems += [p.replace(": error: match", f": error: {label}: match", 1)
                         for p in e.problems]
            matcher = None
        steps = _steps(item, label, at, actions, problems)
        if len(problems) == before and matcher is not None:
            out.append(Policy(str(name), matcher, steps, where=at, fields=matcher.fields, **kw))
    if problems:
        raise PolicyError(sorted(problems, key=_position))
    return out


def _position(message: str) -> tuple[str, int, int]:
    m = re.match(r"(.*?):(\d+):(\d+): ", message)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else (message, 0, 0)


def _steps(item: Mapping[str, Any], label: str, at: str, actions: Mapping[str, Action],
           problems: list[str]) -> list[Step]:
    raw = item.get("actions")
    here = pos(item, "actions", at)
    if not isinstance(raw, list) or not raw:
        problems.append(f"{here}: error: {label}: expected 'actions:', a non-empty list of "
                        f"{{action: <name>, <parameter>: <value>...}}")
        return []
    steps: list[Step] = []
    for j, a in enumerate(raw):
        a_at = pos(raw, j, here)
        if not isinstance(a, Mapping) or not isinstance(a.get("action"), str):
            problems.append(f"{a_at}: error: {label}: actions item {j + 1}: expected a mapping "
                            f"with 'action: <name>'")
            continue
        name = str(a["action"])
        act = actions.get(name)
        if act is None:
            problems.append(f"{pos(a, 'action', a_at)}: error: {label}: unknown action '{name}' "
                            f"(available: {', '.join(sorted(actions)) or 'none'})")
            continue
        params = {str(k): v for k, v in a.items() if k != "action"}
        try:
            steps.append(Step(act, act.check_params(params)))
        except ActionParamError as e:
            problems.append(f"{a_at}: error: {label}: action '{name}': {e}")
    return steps


__all__ = ["BreakerSpec", "Policy", "PolicyError", "RateLimit", "Step", "compile_policies",
           "parse_breaker", "parse_rate_limit", "pos"]
