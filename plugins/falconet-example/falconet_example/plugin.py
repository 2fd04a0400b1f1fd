"""The hookimpls: what Falconet calls. Every hook is optional; implement only what you need.

The plugin is a class: the engine makes one instance per engine run (``FALCONET_PLUGIN`` below
names it), so everything the plugin remembers lives on ``self``, never in module globals.

Configuration (``falconet.yaml``, section ``plugins.example``; ``-o plugins.example.x=y`` works)
is declared once, in :data:`SCHEMA`; the engine validates the section against it (unknown keys,
wrong types: ``falconet.yaml:LINE:COL: error: plugins.example.<key>: expected ...``) and hands
``falconet_configure`` the values with the defaults filled in::

    plugins:
      example:
        messages: ["hello", "curl http://evil"]   # what the source emits, in turn
        interval: 1.0                              # seconds between events
        count: null                                # stop after N events (null: forever)
        output: /tmp/example-alerts.jsonl          # enables the output sink
        min_priority: debug                        # of the output sink
        rules: false                               # also load the rules this package ships
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from falconet import plugin_config as c
from falconet.api import (
    AlertSink,
    ConfigSchema,
    EngineContext,
    Event,
    EventSource,
    FieldDef,
    FieldType,
    Priority,
    Setting,
    attr_field,
    hookimpl,
)

from falconet_example.sink import JsonLinesSink
from falconet_example.source import SOURCE, ExampleSource

RULES = Path(__file__).parent / "rules" / "example_rules.yaml"

#: every key of ``plugins.example``: its check, its default, what it means
SCHEMA = ConfigSchema({
    "messages": Setting(c.string_list(nonempty=True), ["hello from the example plugin"],
                        "what the source emits, in turn"),
    "interval": Setting(c.number(0), 1.0, "seconds between events"),
    "count": Setting(c.optional(c.integer(0)), None, "stop after N events (null: forever)"),
    "output": Setting(c.optional(c.string()), None, "JSON-lines file; enables the output"),
    "min_priority": Setting(c.priority(), Priority.DEBUG, "of the output"),
    "rules": Setting(c.boolean(), False, "also load the rules this package ships"),
})


class ExamplePlugin:
    """One engine's example plugin."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = SCHEMA.defaults()
        #: enrichment state kept by the parser: events seen per message text
        self.seen: dict[str, int] = {}

    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: EngineContext) -> None:
        """``config`` is already validated against SCHEMA; keep it."""
        self.config = config

    @hookimpl
    def falconet_event_sources(self, engine: EngineContext) -> list[EventSource]:
        cfg = self.config
        return [ExampleSource(cfg["messages"], cfg["interval"], cfg["count"])]

    def _parse(self, evt: Event) -> None:
        """Per-event parser (hot path: no I/O). Counts messages so a field can read it."""
        if evt.source == SOURCE:
            msg = evt.args.get("message", "")
            self.seen[msg] = self.seen.get(msg, 0) + 1

    @hookimpl
    def falconet_event_parsers(self, engine: EngineContext) -> list[Callable[[Event], None]]:
        return [self._parse]

    def _times_seen(self, evt: Event) -> Any:
        return self.seen.get(evt.args.get("message", ""))

    @hookimpl
    def falconet_fields(self, engine: EngineContext) -> list[FieldDef]:
        """Fields rules and outputs can use with ``source: example``. ``None`` = no value."""
        src = frozenset({SOURCE})
        return [
            attr_field("example.message", FieldType.STRING, "The message text.",
                       lambda e: e.args.get("message"), sources=src),
            attr_field("example.seq", FieldType.UINT64, "Sequence number of the event (1, 2, ...).",
                       lambda e: e.args.get("seq"), sources=src),
            attr_field("example.times_seen", FieldType.UINT64,
                       "How many events with this message were seen so far (from the parser).",
                       self._times_seen, sources=src, cache=False),
        ]

    @hookimpl
    def falconet_alert_sinks(self, engine: EngineContext) -> list[AlertSink]:
        if not self.config["output"]:
            return []
        return [JsonLinesSink(self.config["output"], self.config["min_priority"])]

    @hookimpl
    def falconet_rules_files(self, engine: EngineContext) -> list[str | Path]:
        return [RULES] if self.config["rules"] else []


#: what the entry point's module names: the engine makes one instance per engine run
FALCONET_PLUGIN = ExamplePlugin
