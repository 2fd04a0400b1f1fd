"""Parameter checking shared by the first-party actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falconet_response.actions.base import ActionParamError, Outcome

#: a guard the engine gives actions that pick further pids (process group, container init):
#: returns why a pid is protected, or None
PidGuard = Callable[[int], "str | None"]


def no_guard(_pid: int) -> str | None:
    return None


def check_keys(params: dict[str, Any], allowed: dict[str, str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        hint = ", ".join(f"{k} ({v})" for k, v in allowed.items()) or "none"
        raise ActionParamError(f"unknown parameter '{unknown[0]}' (parameters: {hint})")


def seconds(params: dict[str, Any], key: str, default: float | None, *, lo: float = 0.0,
            hi: float = 86400.0 * 30) -> float | None:
    v = params.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo < v <= hi:
        low = f">= {lo + 1e-9:.0f}" if lo < 0 else f"> {lo:g}"
        raise ActionParamError(f"{key}: expected a number of seconds {low} and <= {hi:.0f}, "
                               f"got {v!r}")
    return float(v)


def choice(params: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    v = params.get(key, default)
    if v not in allowed:
        raise ActionParamError(f"{key}: expected one of {', '.join(allowed)}, got {v!r}")
    return str(v)


def failed(detail: str) -> Outcome:
    return Outcome("failed", detail[:300])


def skipped(detail: str) -> Outcome:
    return Outcome("skipped", detail[:300])
