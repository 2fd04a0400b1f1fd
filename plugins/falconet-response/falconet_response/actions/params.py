"""Parameter checks shared by the Kubernetes, Slack and webhook actions: each raises
:class:`ActionParamError` saying which parameter of which action expected what."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import ActionParamError


def at(what: str) -> str:
    """The message prefix naming a settings section (empty for a policy's own params: the
    policy compiler already names the action)."""
    return f"{at(what)}" if what else ""


def check_known(params: Any, known: set[str], what: str) -> None:
    if not isinstance(params, Mapping):
        raise ActionParamError(f"{at(what)}params must be a mapping")
    unknown = sorted(set(params) - known)
    if unknown:
        raise ActionParamError(f"{at(what)}unknown parameter(s) {', '.join(map(str, unknown))} "
                               f"(expected: {', '.join(sorted(known)) or 'none'})")


def flag(params: Mapping[str, Any], key: str, default: bool, what: str) -> bool:
    v = params.get(key, default)
    if not isinstance(v, bool):
        raise ActionParamError(f"{at(what)}{key} must be true or false, got {v!r}")
    return v


def number(params: Mapping[str, Any], key: str, default: Any, lo: float, hi: float, what: str,
           integer: bool = False) -> Any:
    """A number in [lo, hi] (an int with ``integer``); ``None`` stays ``None`` when it is
    the default (an optional setting left out)."""
    v = params.get(key, default)
    if v is None and default is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise ActionParamError(f"{at(what)}{key} must be {kind} in [{lo:g}, {hi:g}], got {v!r}")
    return v
