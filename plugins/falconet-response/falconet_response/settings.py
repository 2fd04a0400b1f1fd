"""``plugins.response`` of ``falconet.yaml``: plugin-wide settings (the policies themselves are
the top-level ``responses:`` list). Every key and its default is in ``falconet.yaml`` and
docs/response.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from falconet.api import PluginConfigError

from falconet_response.audit import DEFAULT_AUDIT_LOG
from falconet_response.policy import BreakerSpec, parse_breaker, pos

#: keys of ``plugins.response`` (``required``/``enabled`` belong to the plugin host)
KEYS = ("required", "enabled", "audit_log", "state_dir", "protected", "breaker",
        "failure_log_seconds", "capture_buffer_events", "runtime", "k8s", "notify")


@dataclass
class ResponseSettings:
    audit_log: str = DEFAULT_AUDIT_LOG
    state_dir: str = ""            # default: the audit log's directory
    protected: str | None = None   # a Falco condition over alert fields
    breaker: BreakerSpec = field(default_factory=lambda: BreakerSpec(20, 60.0))
    failure_log_seconds: float = 60.0
    capture_buffer_events: int = 50_000
    runtime: dict[str, Any] = field(default_factory=dict)
    k8s: dict[str, Any] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.state_dir or os.path.dirname(self.audit_log) or "."

    @property
    def pidfile(self) -> str:
        return os.path.join(self.state, "engine.pid")

    @property
    def capture_dir(self) -> str:
        return os.path.join(self.state, "captures")


def parse_settings(cfg: Mapping[str, Any] | None) -> ResponseSettings:
    """Validate ``plugins.response``; raises ``PluginConfigError`` naming the key."""
    cfg = cfg or {}
    where = "plugins.response"
    s = ResponseSettings()
    problems = []
    for k in cfg:
        if k not in KEYS:
            problems.append(f"{pos(cfg, k, where, of_key=True)}: error: {where}: unknown key "
                            f"'{k}' (allowed: {', '.join(KEYS[2:])})")
    for k in ("audit_log", "state_dir", "protected"):
        v = cfg.get(k)
        if v is None:
            continue
        if not isinstance(v, str) or not v.strip():
            problems.append(f"{pos(cfg, k, where)}: error: {where}.{k}: expected a non-empty "
                            f"string, got {v!r}")
        else:
            setattr(s, k, str(v))
    if cfg.get("breaker") is not None:
        try:
            s.breaker = parse_breaker(cfg["breaker"])
        except ValueError as e:
            problems.append(f"{pos(cfg, 'breaker', where)}: error: {where}.breaker: {e}")
    for k, lo in (("failure_log_seconds", 0), ("capture_buffer_events", 0)):
        v = cfg.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= lo:
            problems.append(f"{pos(cfg, k, where)}: error: {where}.{k}: expected a number > "
                            f"{lo}, got {v!r}")
        else:
            setattr(s, k, int(v) if k == "capture_buffer_events" else float(v))
    for k in ("runtime", "k8s", "notify"):
        v = cfg.get(k)
        if v is None:
            continue
        if not isinstance(v, Mapping):
            problems.append(f"{pos(cfg, k, where)}: error: {where}.{k}: expected a mapping, "
                            f"got {v!r}")
        else:
            setattr(s, k, dict(v))
    if problems:
        raise PluginConfigError("\n".join(problems))
    return s
