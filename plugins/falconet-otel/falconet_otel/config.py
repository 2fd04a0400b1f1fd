"""Where the OTLP output sends to: the ``plugins.otel`` config section merged with the standard
``OTEL_EXPORTER_OTLP_*`` environment variables.

Precedence, per setting: a key set in ``plugins.otel`` (the file, or ``-o plugins.otel.x=...``) wins
over the environment; the signal-specific variable (``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``) wins over
the general one (``OTEL_EXPORTER_OTLP_ENDPOINT``), as the OTel specification says.

Endpoints follow the specification too: a *general* HTTP endpoint gets ``/v1/logs`` or ``/v1/traces``
appended; a *signal-specific* one is used as is. For gRPC the endpoint is ``host:port`` or a URL;
``http://`` means plaintext, ``https://`` TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from falconet.api import ConfigSchema, PluginConfigError, Priority, Setting
from falconet.plugin_config import any_value, check_or_raise
from falconet.redact import redact_url, register_header_secrets, register_url_secrets

PROTOCOLS = ("grpc", "http/protobuf")
SIGNALS = ("logs", "traces")
#: ``plugins.otel``: the keys (values are read by :func:`resolve_settings`, which merges them
#: with the ``OTEL_EXPORTER_OTLP_*`` environment and accepts the environment's spellings)
SCHEMA = ConfigSchema({k: Setting(any_value(), doc=d) for k, d in {
    "endpoint": "OTLP endpoint of both signals (default: $OTEL_EXPORTER_OTLP_ENDPOINT)",
    "logs_endpoint": "logs only, used as is", "traces_endpoint": "traces only, used as is",
    "protocol": "grpc or http/protobuf", "headers": "mapping or 'k=v,k2=v2'",
    "timeout": "seconds per export", "insecure": "grpc: plaintext",
    "logs": "export alerts as log records", "traces": "export alerts as spans",
    "service_name": "service.name resource attribute", "min_priority": "lowest priority sent",
    "batch_size": "records per export", "queue_size": "records waiting at most",
    "schedule_delay": "seconds between exports", "span_duration_ms": "span length",
    "compression": "none or gzip",
}.items()})


@dataclass(frozen=True)
class SignalTarget:
    """Where one signal (logs or traces) goes."""

    signal: str
    endpoint: str
    protocol: str
    headers: dict[str, str]
    timeout: float
    insecure: bool
    compression: str = "none"


@dataclass(frozen=True)
class OtelSettings:
    """The resolved configuration. ``targets`` is empty when no endpoint is configured (output off)."""

    targets: dict[str, SignalTarget] = field(default_factory=dict)
    service_name: str = "falconet"
    min_priority: Priority = Priority.DEBUG
    batch_size: int = 512
    queue_size: int = 20000
    schedule_delay: float = 0.2
    span_duration_ms: int = 1

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def describe(self) -> str:
        """One line for the start-up log."""
        if not self.targets:
            return ("otel: no OTLP endpoint configured (set OTEL_EXPORTER_OTLP_ENDPOINT or "
                    "plugins.otel.endpoint); OpenTelemetry output is off")
        parts = [f"{t.signal} -> {redact_url(t.endpoint)} ({t.protocol})"
                 for t in self.targets.values()]
        return "otel: exporting " + ", ".join(parts)


def parse_headers(text: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` syntax: ``k1=v1,k2=v2`` with URL-encoded values."""
    headers: dict[str, str] = {}
    for i, item in enumerate(text.split(","), 1):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # the item may be a credential written wrongly: never echoed
            raise PluginConfigError(f"bad OTLP header (item {i} of the list): expected key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise PluginConfigError(f"{what}: expected true or false, got {value!r}")


def _number(value: Any, what: str, kind: type = float, minimum: float = 0) -> Any:
    try:
        n = kind(value)
    except (TypeError, ValueError):
        raise PluginConfigError(f"{what}: expected a number, got {value!r}") from None
    if n < minimum:
        raise PluginConfigError(f"{what}: must be >= {minimum}, got {value!r}")
    return n


def _http_signal_url(base: str, signal: str) -> str:
    return base.rstrip("/") + f"/v1/{signal}"


def _resolve_target(signal: str, section: Mapping[str, Any], env: Mapping[str, str]) -> SignalTarget | None:
    up = signal.upper()
    specific = section.get(f"{signal}_endpoint") or env.get(f"OTEL_EXPORTER_OTLP_{up}_ENDPOINT")
    general = section.get("endpoint") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if section.get(f"{signal}_endpoint"):
        specific, general = section[f"{signal}_endpoint"], None
    elif section.get("endpoint"):
        specific, general = None, section["endpoint"]
    if not specific and not general:
        return None
    protocol = str(section.get("protocol") or env.get(f"OTEL_EXPORTER_OTLP_{up}_PROTOCOL")
                   or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        raise PluginConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r} "
                                "(http/json is not supported)")
    raw = str(specific or general).strip()
    register_url_secrets(raw)         # masked in every later message (redact_text)
    if protocol == "http/protobuf":
        if not raw.startswith(("http://", "https://")):
            raise PluginConfigError(f"{signal} endpoint {redact_url(raw)!r}: an http/protobuf "
                                    "endpoint must be an http:// or https:// URL")
        endpoint = raw if specific else _http_signal_url(raw, signal)
        insecure = raw.startswith("http://")
    else:
        parsed = urlparse(raw if "://" in raw else f"//{raw}")
        if not parsed.hostname or not parsed.port:
            raise PluginConfigError(f"{signal} endpoint {redact_url(raw)!r}: a grpc endpoint needs host:port")
        endpoint = f"{parsed.hostname}:{parsed.port}"
        default_insecure = parsed.scheme == "http" or env.get(
            f"OTEL_EXPORTER_OTLP_{up}_INSECURE", env.get("OTEL_EXPORTER_OTLP_INSECURE", "")).lower() == "true"
        insecure = _bool(section.get("insecure", default_insecure), "insecure")
    headers_cfg = section.get("headers")
    if headers_cfg is None:
        headers = parse_headers(env.get(f"OTEL_EXPORTER_OTLP_{up}_HEADERS")
                                or env.get("OTEL_EXPORTER_OTLP_HEADERS") or "")
    elif isinstance(headers_cfg, Mapping):
        headers = {str(k).lower(): str(v) for k, v in headers_cfg.items()}
    elif isinstance(headers_cfg, str):
        headers = parse_headers(headers_cfg)
    else:
        raise PluginConfigError("headers: expected a mapping or 'k=v,k2=v2'")
    register_header_secrets(headers)
    if "timeout" in section:
        timeout = _number(section["timeout"], "timeout", float, 0.01)          # seconds
    else:
        env_ms = env.get(f"OTEL_EXPORTER_OTLP_{up}_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")
        # the specification's unit is milliseconds; default short so a dead collector costs little
        timeout = _number(env_ms, "OTEL_EXPORTER_OTLP_TIMEOUT", float, 1) / 1000 if env_ms else 2.0
    compression = str(section.get("compression") or env.get(f"OTEL_EXPORTER_OTLP_{up}_COMPRESSION")
                      or env.get("OTEL_EXPORTER_OTLP_COMPRESSION") or "none").strip().lower()
    if compression not in ("none", "gzip"):
        raise PluginConfigError(f"compression: expected none or gzip, got {compression!r}")
    return SignalTarget(signal, endpoint, protocol, headers, timeout, insecure, compression)


def resolve_settings(section: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> OtelSettings:
    """Merge ``plugins.otel`` with the environment. Raises ``PluginConfigError`` on bad values."""
    section = check_or_raise(SCHEMA, "otel", section)
    env = os.environ if env is None else env
    targets: dict[str, SignalTarget] = {}
    for signal in SIGNALS:
        if not _bool(section.get(signal, True), signal):
            continue
        target = _resolve_target(signal, section, env)
        if target is not None:
            targets[signal] = target
    try:
        min_priority = Priority.parse(section.get("min_priority", "debug"))
    except ValueError as e:
        raise PluginConfigError(f"min_priority: {e}") from None
    return OtelSettings(
        targets=targets,
        service_name=str(section.get("service_name") or env.get("OTEL_SERVICE_NAME") or "falconet"),
        min_priority=min_priority,
        batch_size=_number(section.get("batch_size", 512), "batch_size", int, 1),
        queue_size=_number(section.get("queue_size", 20000), "queue_size", int, 1),
        schedule_delay=_number(section.get("schedule_delay", 0.2), "schedule_delay", float, 0.001),
        span_duration_ms=_number(section.get("span_duration_ms", 1), "span_duration_ms", int, 0),
    )
