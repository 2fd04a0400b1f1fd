"""The hookimpls: what Falconet calls. Every hook is optional; implement only what you need.

Configuration (``falconet.yaml``, section ``plugins.example``; ``-o plugins.example.x=y`` works)::

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

from pathlib import Path
from typing import Any

from falconet.api import Event, FieldDef, FieldType, PluginConfigError, Priority, attr_field, hookimpl

from falconet_example.sink import JsonLinesSink
from falconet_example.source import SOURCE, ExampleSource

RULES = Path(__file__).parent / "rules" / "example_rules.yaml"

#: our settings, plus the two the engine reads from every plugin section (required, enabled)
KNOWN_KEYS = frozenset({"messages", "interval", "count", "output", "min_priority", "rules",
                        "required", "enabled"})

_cfg: dict[str, Any] = {}
#: enrichment state kept by the parser: events seen per message text
_seen: dict[str, int] = {}


@hookimpl
def falconet_configure(config: dict[str, Any], engine: Any) -> None:
    """Validate our section; raise PluginConfigError with a clear message when it is wrong."""
    unknown = sorted(str(k) for k in config if k not in KNOWN_KEYS)
    if unknown:     # a typo must not silently fall back to a default
        raise PluginConfigError(f"plugins.example: unknown key(s) {', '.join(unknown)} (known: "
                                f"{', '.join(sorted(KNOWN_KEYS))})")
    messages = config.get("messages", ["hello from the example plugin"])
    if not isinstance(messages, list) or not messages or not all(isinstance(m, str) for m in messages):
        raise PluginConfigError("plugins.example.messages: expected a non-empty list of strings")
    interval = config.get("interval", 1.0)
    if not isinstance(interval, int | float) or interval < 0:
        raise PluginConfigError("plugins.example.interval: expected a number >= 0")
    count = config.get("count")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise PluginConfigError("plugins.example.count: expected an integer >= 0 or null")
    try:
        min_priority = Priority.parse(config.get("min_priority", "debug"))
    except ValueError as e:
        raise PluginConfigError(f"plugins.example.min_priority: {e}") from None
    _cfg.clear()
    _cfg.update(messages=messages, interval=float(interval), count=count,
                output=config.get("output"), min_priority=min_priority,
                rules=bool(config.get("rules", False)))
    _seen.clear()


@hookimpl
def falconet_event_sources(engine: Any) -> list[Any]:
    return [ExampleSource(_cfg["messages"], _cfg["interval"], _cfg["count"])]


def _parse(evt: Event) -> None:
    """Per-event parser (hot path: no I/O). Counts messages so the field below can read it."""
    if evt.source == SOURCE:
        msg = evt.args.get("message", "")
        _seen[msg] = _seen.get(msg, 0) + 1


@hookimpl
def falconet_event_parsers(engine: Any) -> list[Any]:
    return [_parse]


def _message(evt: Event) -> Any:
    return evt.args.get("message")


def _times_seen(evt: Event) -> Any:
    return _seen.get(evt.args.get("message", ""))


@hookimpl
def falconet_fields(engine: Any) -> list[FieldDef]:
    """Fields rules and outputs can use with ``source: example``. ``None`` = no value."""
    src = frozenset({SOURCE})
    return [
        attr_field("example.message", FieldType.STRING, "The message text.", _message,
                   sources=src),
        attr_field("example.seq", FieldType.UINT64, "Sequence number of the event (1, 2, ...).",
                   lambda e: e.args.get("seq"), sources=src),
        attr_field("example.times_seen", FieldType.UINT64,
                   "How many events with this message were seen so far (from the parser).",
                   _times_seen, sources=src, cache=False),
    ]


@hookimpl
def falconet_alert_sinks(engine: Any) -> list[Any]:
    if not _cfg.get("output"):
        return []
    return [JsonLinesSink(_cfg["output"], _cfg["min_priority"])]


@hookimpl
def falconet_rules_files(engine: Any) -> list[Any]:
    return [RULES] if _cfg.get("rules") else []
