"""``plugins.learning`` of ``falconet.yaml``: every key declared once (check, default, meaning);
the engine validates the section against :data:`SCHEMA` (``falconet.yaml:LINE:COL: error:
plugins.learning.<key>: expected ...``). ``falconet.yaml`` documents them too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from falconet import plugin_config as c
from falconet.api import ConfigSchema, PluginConfigError, Setting

from falconet_learning.learner import LearningConfig

SCHEMA = ConfigSchema({
    "state_dir": Setting(c.optional(c.string()), None,
                         "profile database directory (0700); null: <state_dir>/learning, "
                         "$FALCONET_STATE_DIR/learning, else /var/lib/falconet/learning"),
    "learning_seconds": Setting(c.number(0, 365 * 86400), 3600.0,
                                "a profile learns at least this long (event time) ..."),
    "learning_events": Setting(c.integer(0), 0, "... and at least this many events"),
    "max_entries_per_profile": Setting(c.integer(1, 10**7), 5000,
                                       "bound per profile: then a warning, and it stops growing"),
    "max_profiles": Setting(c.integer(1, 10**6), 1000, "bound on the number of profiles"),
    "queue_size": Setting(c.integer(16, 10**7), 65536,
                          "observations waiting for the writer (drops counted beyond)"),
    "flush_interval": Setting(c.number(0.01, 60), 1.0, "seconds between writer batches"),
    "quarantine_seconds": Setting(c.number(0, 600), 2.0,
                                  "an observation waits this long for a Warning+ alert on its "
                                  "process before it is learned"),
    "host_profiles": Setting(c.boolean(), True, "also profile host processes (per executable)"),
    "files": Setting(c.boolean(), False,
                     "also learn file access (path classes opened for read/write) and load the "
                     "'Unexpected File Access in Workload' rule: every open then reaches "
                     "userspace (the kernel filter passes them), the busiest events of a host"),
})


def default_state_dir(engine_config: Mapping[str, Any] | None) -> str:
    """``<state_dir>/learning`` when the engine has a ``state_dir``, else
    ``$FALCONET_STATE_DIR/learning``, else ``/var/lib/falconet/learning``."""
    base = (engine_config or {}).get("state_dir") or os.environ.get("FALCONET_STATE_DIR")
    return os.path.join(str(base), "learning") if base else "/var/lib/falconet/learning"


def learning_config(values: Mapping[str, Any], engine_config: Mapping[str, Any] | None = None
                    ) -> LearningConfig:
    """The validated section (defaults filled in) as the learner's settings."""
    state_dir = values.get("state_dir") or default_state_dir(engine_config)
    if not os.path.isabs(state_dir):
        raise PluginConfigError("plugins.learning.state_dir: expected an absolute path")
    return LearningConfig(
        state_dir=state_dir, learning_seconds=float(values["learning_seconds"]),
        learning_events=int(values["learning_events"]),
        max_entries=int(values["max_entries_per_profile"]),
        max_profiles=int(values["max_profiles"]), queue_size=int(values["queue_size"]),
        flush_interval=float(values["flush_interval"]),
        quarantine_seconds=float(values["quarantine_seconds"]),
        host_profiles=bool(values["host_profiles"]), files=bool(values["files"]))
