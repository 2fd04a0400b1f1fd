"""What the engine does for one output between its queue and its sink: which alerts it takes
(``match:``), whether repeats are folded (``aggregate:``), whether undeliverable alerts are kept
on disk (``spool:``). Built once at start from the output's configuration section."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from falconet.alerts import Alert

#: the keys of an output's section (``outputs.<name>`` or ``plugins.<name>``) the engine owns
DELIVERY_KEYS = frozenset({"match", "aggregate", "spool"})

SPOOL_DEFAULTS: dict[str, Any] = {"enabled": True, "max_bytes": 256 * 1024 * 1024,
                                  "max_age": 86400.0, "sync": "normal"}
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTE_UNITS = {"": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def duration(v: Any) -> float:
    """``10``, ``10s``, ``5m``, ``1h``, ``2d`` → seconds (> 0). Raises ValueError."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        if v > 0:
            return float(v)
    elif isinstance(v, str):
        m = _DURATION.match(v)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError("expected a duration > 0 (seconds, or a string like 10s, 5m, 1h, 2d)")


def size(v: Any) -> int:
    """``1048576``, ``512MiB``, ``1G`` → bytes (> 0). Raises ValueError."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v > 0:
            return v
    elif isinstance(v, str):
        m = _SIZE.match(v)
        unit = m.group(2).lower() if m else ""
        if m and unit in _BYTE_UNITS and int(m.group(1)) > 0:
            return int(m.group(1)) * _BYTE_UNITS[unit]
    raise ValueError("expected a size in bytes > 0 (an integer, or a string like 512MiB, 1G)")


def check_aggregate(v: Any) -> dict[str, Any] | None:
    """``aggregate: {window: 10s, by: [field, ...]}`` (config checker)."""
    if v is None or v is False:
        return None
    if not isinstance(v, dict):
        raise ValueError("expected a mapping {window: <duration>, by: [<field>, ...]}")
    unknown = sorted(set(map(str, v)) - {"window", "by"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (allowed: window, by)")
    if "window" not in v:
        raise ValueError("window: missing (e.g. window: 10s)")
    try:
        window = duration(v["window"])
    except ValueError as e:
        raise ValueError(f"window: {e}") from None
    by = v.get("by") or []
    if isinstance(by, str):
        by = [by]
    if not isinstance(by, list) or not all(isinstance(x, str) and x for x in by):
        raise ValueError("by: expected a list of field names (e.g. [k8s.ns.name, proc.name])")
    return {"window": window, "by": list(by)}


def check_spool(v: Any) -> dict[str, Any]:
    """``spool: {enabled, max_bytes, max_age, sync}`` (config checker); ``false`` turns it off."""
    if v is None:
        return dict(SPOOL_DEFAULTS)
    if isinstance(v, bool):
        return {**SPOOL_DEFAULTS, "enabled": v}
    if not isinstance(v, dict):
        raise ValueError("expected true, false or a mapping {enabled, max_bytes, max_age, sync}")
    unknown = sorted(set(map(str, v)) - set(SPOOL_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(SPOOL_DEFAULTS)})")
    out = dict(SPOOL_DEFAULTS)
    for key, check in (("enabled", _bool), ("max_bytes", size), ("max_age", duration),
                       ("sync", _sync)):
        if key in v:
            try:
                out[key] = check(v[key])
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
    return out


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("expected true or false")


def _sync(v: Any) -> str:
    if v in ("normal", "full"):
        return str(v)
    raise ValueError("expected normal or full")


@dataclass
class OutputPolicy:
    """One output's delivery settings (all optional).

    Attributes:
        matcher: ``matcher(alert) -> bool`` (a compiled ``match:``); None takes every alert.
        aggregate: ``{"window": seconds, "by": [fields]}`` or None.
        spool: the spool settings (``SPOOL_DEFAULTS`` shape) or None for no spool.
        state_dir: where the spool lives (``<state_dir>/spool``).
    """

    matcher: Callable[[Alert], bool] | None = None
    aggregate: Mapping[str, Any] | None = None
    spool: Mapping[str, Any] | None = None
    state_dir: str | None = None

    @property
    def fields(self) -> frozenset[str]:
        """Field tokens this policy reads from alerts (to capture when rules render them)."""
        out = set(getattr(self.matcher, "fields", ()) or ())
        if self.aggregate:
            out |= set(self.aggregate["by"])
        return frozenset(out)
