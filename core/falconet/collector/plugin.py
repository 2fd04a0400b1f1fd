"""Built-in plugin ``ebpf``: contributes the eBPF event source through the ordinary hooks."""

from __future__ import annotations

from typing import Any

from falconet.api import PluginConfigError, hookimpl
from falconet.collector.source import CollectorConfig, EbpfSource

_state: dict[str, Any] = {"config": CollectorConfig(), "engine": None}


@hookimpl
def falconet_configure(config: dict[str, Any], engine: Any) -> None:
    """Read ``collector:`` from the whole configuration (``plugins.ebpf`` keys override)."""
    whole = getattr(engine, "config", None) or {}
    section = dict(whole.get("collector") or {})
    section.update({k: v for k, v in (config or {}).items() if k != "required"})
    try:
        _state["config"] = CollectorConfig.from_dict(section)
    except ValueError as e:
        raise PluginConfigError(str(e)) from None
    _state["engine"] = engine


@hookimpl
def falconet_event_sources(engine: Any) -> list[Any]:
    return [EbpfSource(_state["config"], engine)]
