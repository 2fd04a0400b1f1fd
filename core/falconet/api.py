"""The objects plugins receive and return. Import from here in a plugin::

    from falconet.api import hookimpl, AlertSink, EventSource, FieldDef, FieldType
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pluggy

from falconet.alerts import Alert
from falconet.delivery import PayloadRejected
from falconet.events import Event
from falconet.fields import ArgKind, FieldDef, FieldRegistry, FieldType, attr_field
from falconet.plugin_config import ConfigSchema, Setting
from falconet.priorities import Priority

if TYPE_CHECKING:
    from falconet.metrics import EngineMetrics
    from falconet.state.tables import StateTables

hookimpl = pluggy.HookimplMarker("falconet")


class PluginConfigError(ValueError):
    """Raise from ``falconet_configure`` when your section of the config is invalid."""


@runtime_checkable
class EventSource(Protocol):
    """An input. ``name`` is what ``--source`` selects; ``source`` is the event source produced."""

    name: str
    source: str
    live: bool

    def open(self, options: dict[str, Any]) -> Iterator[Event | None]:
        """Start producing events; yield ``None`` when idle (lets the engine do housekeeping)."""
        ...

    def close(self) -> None:
        """Stop producing; the iterator returned by ``open`` must end soon after."""
        ...


@runtime_checkable
class AlertSink(Protocol):
    """An output. Runs on its own worker thread behind a bounded queue."""

    name: str
    min_priority: Priority

    def start(self) -> None: ...
    def send(self, alert: Alert) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class SpoolingSink(AlertSink, Protocol):
    """An output whose undeliverable alerts the engine may keep in its on-disk spool
    (``docs/outputs.md``). When spooled, the engine calls ``encode``/``deliver`` instead of
    ``send``: ``encode`` on the intake thread, ``deliver`` (synchronous, in order, no retries of
    its own) on the delivery thread. ``deliver`` returns how many payloads were accepted from
    the start; raising means none; :class:`PayloadRejected` marks one refused for good."""

    spool: bool     # True

    def encode(self, alert: Alert) -> bytes: ...
    def deliver(self, payloads: Sequence[bytes]) -> int: ...


@runtime_checkable
class ResponseAction(Protocol):
    """A response action (contract: ``falconet_response.actions.base.Action``), run off the
    hot path by ``responses:`` policies: ``run`` receives the resolved target and returns an
    ``Outcome``; ``undo`` reverts one."""

    name: str
    reversible: bool

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def run(self, target: Any, alert: Alert, params: dict[str, Any]) -> Any: ...
    def undo(self, data: dict[str, Any]) -> Any: ...


@runtime_checkable
class RuleAuthoringBackend(Protocol):
    """A model that proposes rules for ``falconet rules generate``
    (``falconet_rule_authoring_backends``)."""

    name: str

    def propose(self, messages: list[dict[str, str]]) -> str:
        """The reply to an OpenAI-format chat; raise ``RuntimeError`` when it cannot answer."""
        ...


@runtime_checkable
class MetricsRegistry(Protocol):
    """What ``falconet_metrics`` receives: a per-plugin proxy of the server's registry."""

    def register(self, collector: Any) -> None: ...
    def unregister(self, collector: Any) -> None: ...


@runtime_checkable
class MetricsEndpoint(Protocol):
    """The ``/metrics`` server a ``falconet_metrics_server`` hook returns."""

    @property
    def url(self) -> str:
        """``http://host:port`` it serves on (read only: the engine never sets it)."""
        ...

    def start(self) -> None:
        """Listen and serve on a daemon thread; raises ``OSError`` when it cannot listen."""
        ...

    def stop(self) -> None: ...


class Ruleset(Protocol):
    """What the pipeline needs from the rule engine (``falconet.rules.ruleset.Ruleset``)."""

    def match(self, evt: Event) -> list[Alert]:
        """Return the alerts the event triggers (at most one with ``rule_matching: first``)."""
        ...

    def event_types(self, source: str) -> set[str] | None:
        """Event types any enabled rule of ``source`` can match; ``None`` means all types."""
        ...


@dataclass
class EngineContext:
    """Handed to every hook. One per engine run.

    Attributes:
        hostname: the host name alerts carry (``FALCO_HOSTNAME``/``FALCONET_HOSTNAME`` or gethostname).
        fields: the field registry (read it; declare fields through ``falconet_fields``).
        config: the whole validated configuration (read-only by convention).
        metrics: the engine's metrics (``falconet.metrics.EngineMetrics``) or ``None`` in tools.
        state: the core state tables (``falconet.state.StateTables``): threads and fds.
        log: a logger named ``falconet``.
        extras: a place for plugins to publish objects to other plugins, by agreed key.
    """

    hostname: str
    fields: FieldRegistry
    config: dict[str, Any] = field(default_factory=dict)
    metrics: EngineMetrics | None = None
    state: StateTables | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("falconet"))
    extras: dict[str, Any] = field(default_factory=dict)
    #: set by ``falconet record``: writes a state record in order with the events
    state_writer: Callable[[str, Any], None] | None = None

    def emit_state(self, plugin: str, data: Any) -> None:
        """Write plugin state into the capture being recorded (no-op when not recording)."""
        w = self.state_writer
        if w is not None:
            w(plugin, data)


# ------------------------------------------------------------------------------- contributions
#: contribution hook -> (the Protocol its items must satisfy, what the message calls it)
CONTRIBUTIONS: dict[str, tuple[type, str]] = {
    "falconet_event_sources": (EventSource, "an EventSource"),
    "falconet_alert_sinks": (AlertSink, "an AlertSink"),
    "falconet_response_actions": (ResponseAction, "a ResponseAction"),
    "falconet_fields": (FieldDef, "a FieldDef"),
    "falconet_rule_authoring_backends": (RuleAuthoringBackend, "a RuleAuthoringBackend"),
}


def contribution_problem(hook: str, items: list[object]) -> str | None:
    """Why what a plugin returned from ``hook`` is unusable, or ``None`` when every item is
    what the hook's contract says (``isinstance`` against the runtime-checkable Protocols above;
    parsers must be callable)."""
    if hook == "falconet_event_parsers":
        bad = [x for x in items if not callable(x)]
        return f"not callable: {bad[0]!r}" if bad else None
    want, label = CONTRIBUTIONS[hook]
    bad = [x for x in items if not isinstance(x, want)]
    return f"not {label}: {bad[0]!r}" if bad else None


__all__ = ["Alert", "AlertSink", "ArgKind", "ConfigSchema", "EngineContext", "Event", "EventSource",
           "FieldDef", "FieldRegistry", "FieldType", "MetricsEndpoint", "MetricsRegistry",
           "PayloadRejected", "PluginConfigError", "Priority", "ResponseAction",
           "RuleAuthoringBackend", "Ruleset", "Setting", "SpoolingSink", "attr_field",
           "contribution_problem", "hookimpl"]
