"""The plugin's hooks (entry point ``learning`` in group ``falconet``): one instance per engine
(``FALCONET_PLUGIN``). Config: :data:`falconet_learning.config.SCHEMA`, ``falconet.yaml``
(``plugins.learning``) and ``docs/learning.md``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from falconet.api import AlertSink, ConfigSchema, EngineContext, Event, FieldDef, hookimpl
from falconet.priorities import Priority

from falconet_learning.config import SCHEMA, learning_config
from falconet_learning.fields import field_defs
from falconet_learning.learner import OPEN, Learner, LearningConfig

RULES_FILE = Path(__file__).resolve().parent / "rules" / "learning_rules.yaml"
#: the file-access rule, loaded only with ``plugins.learning.files: true``
FILE_RULES_FILE = Path(__file__).resolve().parent / "rules" / "learning_file_rules.yaml"


class TaintSink:
    """Sees every alert (off the hot loop): Warning+ taints the process for learning, lower
    alerts of a learning profile are kept as evidence for ``falconet learn suggest``."""

    name = "learning-taint"
    min_priority = Priority.DEBUG
    #: in a partitioned run (``collector.workers``) each worker process feeds its own learner
    #: the alerts of its partition, right after the event: the taint must reach the learner
    #: that holds the process's observations, not the parent's
    worker_local = True

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def start(self) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...

    def send(self, alert: Any) -> None:
        self.learner.on_alert(alert)


class LearningPlugin:
    """One engine's learning mode."""

    def __init__(self) -> None:
        self.learner = Learner(LearningConfig())

    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: EngineContext) -> None:
        self.learner = Learner(learning_config(config, getattr(engine, "config", None)),
                               getattr(engine, "metrics", None))
        self.learner._state = getattr(engine, "state", None)

    @hookimpl
    def falconet_fields(self, engine: EngineContext) -> list[FieldDef]:
        return field_defs(self.learner)

    @hookimpl
    def falconet_event_parsers(self, engine: EngineContext) -> list[Callable[[Event], None]]:
        return [self.learner.parse]

    @hookimpl
    def falconet_unfiltered_event_types(self, engine: EngineContext) -> list[str]:
        # file learning learns from every open of a learning profile (failed ones too): the
        # kernel filter must not drop them; it is off by default (plugins.learning.files),
        # and so is this need, unless profiles never learn (both thresholds 0: a profile is
        # ready at its first event)
        cfg = self.learner.cfg
        if not cfg.files or (cfg.learning_seconds <= 0 and cfg.learning_events <= 0):
            return []
        return sorted(OPEN)

    @hookimpl
    def falconet_alert_sinks(self, engine: EngineContext) -> list[AlertSink]:
        return [TaintSink(self.learner)]

    @hookimpl
    def falconet_rules_files(self, engine: EngineContext) -> list[str | Path]:
        return [RULES_FILE, FILE_RULES_FILE] if self.learner.cfg.files else [RULES_FILE]

    @hookimpl
    def falconet_start(self, engine: EngineContext) -> None:
        learner = self.learner
        learner.bind_fields(engine.fields)
        learner.start()
        m = getattr(engine, "metrics", None)
        if m is not None:
            prev = m.gauges.get("state_table_entries")

            def sizes() -> dict[str, float]:
                out = dict(prev()) if prev is not None else {}
                out["learning_profiles"] = float(len(learner.profiles))
                return out
            m.gauges["state_table_entries"] = sizes

    @hookimpl
    def falconet_stop(self, engine: EngineContext) -> None:
        self.learner.stop()

    @hookimpl
    def falconet_metrics(self, registry: Any, engine: EngineContext) -> None:
        registry.register(_Collector(self.learner))

    @hookimpl
    def falconet_commands(self) -> list[Any]:
        from falconet_learning import cli  # noqa: PLC0415 - only when a plugin command runs

        return [cli.ProfilesCommand, cli.LearnCommand]


class _Collector:
    """``falconet_learning_*`` series, read at scrape time from the learner's plain counters."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

        lr = self.learner
        c = CounterMetricFamily("falconet_learning_observations",
                                "Learning-mode observations by outcome", labels=["outcome"])
        for k in ("observed", "learned", "tainted_dropped", "queue_full", "profile_full",
                  "profiles_limit", "identity_held", "identity_held_dropped"):
            c.add_metric([k], lr.counts[k])
        yield c
        g = GaugeMetricFamily("falconet_learning_profiles", "Workload profiles by state",
                              labels=["state"])
        states = {"learning": 0, "ready": 0}
        for p in list(lr.profiles.values()):
            states[p.state] = states.get(p.state, 0) + 1
        for s, n in sorted(states.items()):
            g.add_metric([s], n)
        yield g
        yield GaugeMetricFamily("falconet_learning_profiles_full",
                                "Profiles that reached max_entries_per_profile (no longer growing)",
                                value=lr.full_profiles)
        yield CounterMetricFamily("falconet_learning_db_writes",
                                  "SQLite batches written by the learning writer",
                                  value=lr.counts["writes"])


#: what the entry point's module names: the engine makes one instance per engine run
FALCONET_PLUGIN = LearningPlugin
