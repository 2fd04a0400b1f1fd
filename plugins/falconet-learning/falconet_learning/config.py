"""``plugins.learning`` of ``falconet.yaml`` (documented there, with the defaults)."""

from __future__ import annotations

import os
from typing import Any

from falconet.api import PluginConfigError

from falconet_learning.learner import LearningConfig

_NUMBERS: dict[str, tuple[type, float, float]] = {
    "learning_seconds": (float, 0, 365 * 86400),
    "learning_events": (int, 0, 10**12),
    "max_entries_per_profile": (int, 1, 10**7),
    "max_profiles": (int, 1, 10**6),
    "queue_size": (int, 16, 10**7),
    "flush_interval": (float, 0.01, 60),
    "quarantine_seconds": (float, 0, 600),
}
_ATTR = {"max_entries_per_profile": "max_entries"}
KNOWN = {*_NUMBERS, "state_dir", "host_profiles", "required", "enabled"}


def default_state_dir(engine_config: dict[str, Any] | None) -> str:
    """``<state_dir>/learning`` when the engine has a ``state_dir``, else
    ``$FALCONET_STATE_DIR/learning``, else ``/var/lib/falconet/learning``."""
    base = (engine_config or {}).get("state_dir") or os.environ.get("FALCONET_STATE_DIR")
    return os.path.join(str(base), "learning") if base else "/var/lib/falconet/learning"


def parse_config(config: dict[str, Any], engine_config: dict[str, Any] | None = None
                 ) -> LearningConfig:
    unknown = sorted(set(config) - KNOWN)
    if unknown:
        raise PluginConfigError(f"plugins.learning: unknown setting(s) {', '.join(unknown)} "
                                f"(known: {', '.join(sorted(KNOWN - {'required', 'enabled'}))})")
    cfg = LearningConfig(state_dir=default_state_dir(engine_config))
    for key, (typ, lo, hi) in _NUMBERS.items():
        if key not in config:
            continue
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or (typ is int and v != int(v)) \
                or not lo <= v <= hi:
            raise PluginConfigError(f"plugins.learning.{key}: expected a "
                                    f"{'whole ' if typ is int else ''}number in [{lo:g}, {hi:g}], "
                                    f"got {v!r}")
        setattr(cfg, _ATTR.get(key, key), typ(v))
    if "state_dir" in config:
        v = config["state_dir"]
        if not isinstance(v, str) or not v.startswith("/"):
            raise PluginConfigError("plugins.learning.state_dir: expected an absolute path")
        cfg.state_dir = v
    if "host_profiles" in config:
        if not isinstance(config["host_profiles"], bool):
            raise PluginConfigError("plugins.learning.host_profiles: expected true or false")
        cfg.host_profiles = config["host_profiles"]
    return cfg
