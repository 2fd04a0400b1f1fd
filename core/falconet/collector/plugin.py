"""Built-in plugin ``ebpf``: contributes the eBPF event source through the ordinary hooks.

Its configuration is the ``collector:`` section of ``falconet.yaml`` (``plugins.ebpf`` keys
override it), declared once in :data:`falconet.collector.source.COLLECTOR_SCHEMA`.
"""

from __future__ import annotations

from typing import Any

from falconet.api import ConfigSchema, EngineContext, EventSource, hookimpl
from falconet.collector.source import COLLECTOR_SCHEMA, CollectorConfig, EbpfSource


class EbpfPlugin:
    """One engine's collector plugin (the host makes one instance per engine)."""

    def __init__(self) -> None:
        self.config = CollectorConfig()

    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return COLLECTOR_SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: EngineContext) -> None:
        self.config = CollectorConfig.from_values(config)

    @hookimpl
    def falconet_event_sources(self, engine: EngineContext) -> list[EventSource]:
        return [EbpfSource(self.config, engine)]


#: the host makes one instance of this class per engine
FALCONET_PLUGIN = EbpfPlugin
