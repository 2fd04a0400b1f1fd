"""The plugin's hooks (entry point ``learning`` in group ``falconet``). Config: see
``falconet.yaml`` (``plugins.learning``) and ``docs/learning.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from falconet.api import hookimpl
from falconet.priorities import Priority

from falconet_learning.config import parse_config
from falconet_learning.fields import field_defs
from falconet_learning.learner import Learner, LearningConfig

RULES_FILE = Path(__file__).resolve().parent / "rules" / "learning_rules.yaml"


class TaintSink:
    """Sees every alert (off the hot loop): Warning+ taints the process for learning, lower
    alerts of a learning profile are kept as evidence for ``falconet learn suggest``."""

    name = "learning-taint"
    min_priority = Priority.DEBUG

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def start(self) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...

    def send(self, alert: Any) -> None:
        self.learner.on_alert(alert)


_learner = Learner(LearningConfig())


@hookimpl
def falconet_configure(config: dict[str, Any], engine: Any) -> None:
    global _learner
    _learner = Learner(parse_config(config, getattr(engine, "config", None)),
                       getattr(engine, "metrics", None))   # one engine per configure
    _learner._state = getattr(engine, "state", None)


@hookimpl
def falconet_fields(engine: Any) -> list[Any]:
    return field_defs(_learner)


@hookimpl
def falconet_event_parsers(engine: Any) -> list[Any]:
    return [_learner.parse]


@hookimpl
def falconet_alert_sinks(engine: Any) -> list[Any]:
    return [TaintSink(_learner)]


@hookimpl
def falconet_rules_files(engine: Any) -> list[Any]:
    return [RULES_FILE]


@hookimpl
def falconet_start(engine: Any) -> None:
    _learner.bind_fields(engine.fields)
    _learner.start()
    m = getattr(engine, "metrics", None)
    if m is not None:
        prev = m.gauges.get("state_table_entries")
        learner = _learner

        def sizes() -> dict[str, float]:
            out = dict(prev()) if prev is not None else {}
            out["learning_profiles"] = float(len(learner.profiles))
            return out
        m.gauges["state_table_entries"] = sizes


@hookimpl
def falconet_stop(engine: Any) -> None:
    _learner.stop()


@hookimpl
def falconet_metrics(registry: Any, engine: Any) -> None:
    registry.register(_Collector())


@hookimpl
def falconet_commands() -> list[Any]:
    from falconet_learning import cli  # noqa: PLC0415 - only when a plugin command runs

    return [cli.ProfilesCommand, cli.LearnCommand]


class _Collector:
    """``falconet_learning_*`` series, read at scrape time from the learner's plain counters."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

        lr = _learner
        c = CounterMetricFamily("falconet_learning_observations",
                                "Learning-mode observations by outcome", labels=["outcome"])
        for k in ("observed", "learned", "tainted_dropped", "queue_full", "profile_full",
                  "profiles_limit"):
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
