"""Falco's alert formats: the text line and the JSON object (falcosidekick accepts both).

Text: ``HH:MM:SS.nnnnnnnnn: Priority output`` in local time, or ISO 8601 (UTC) with
``time_format_iso_8601``. JSON: one object per line, keys sorted (``hostname``, ``output``,
``output_fields``, ``priority``, ``rule``, ``source``, ``tags``, ``time``), ``time`` in UTC with
nanoseconds (``2025-02-10T09:15:40.698757000Z``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from falconet.alerts import Alert

#: ``str.translate`` table: control characters escaped as a JSON string escapes them (shared
#: with the rule output formatter, which escapes field values the same way)
CONTROL_ESCAPES: dict[int, str] = {i: f"\\u{i:04x}" for i in range(0x20)} | {
    0x7F: "\\u007f", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def escape_control(text: str) -> str:
    """Escape control characters the way a JSON string does (``\\n``, ``\\u001b``), so an
    attacker-chosen file name cannot forge lines or terminal sequences in the text output."""
    if text.isprintable():
        return text
    return text.translate(CONTROL_ESCAPES)


def iso_time(ns: int) -> str:
    """``2025-02-10T09:15:40.698757000Z`` (UTC, nanoseconds)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def text_time(ns: int, iso: bool = False) -> str:
    """The time prefix of a text alert: local ``HH:MM:SS.nnnnnnnnn`` or ISO 8601 UTC."""
    secs, frac = divmod(ns, 1_000_000_000)
    if iso:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}+0000"
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{frac:09d}"


def format_text(alert: Alert, iso: bool = False) -> str:
    """``14:03:07.123456789: Warning Sensitive file opened ...`` (control characters escaped)."""
    return f"{text_time(alert.time_ns, iso)}: {alert.priority.label} {escape_control(alert.output)}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        return v.decode("utf-8", "backslashreplace")
    if isinstance(v, set | frozenset):
        return sorted(v)
    return str(v)


def json_dict(alert: Alert, include_output: bool = True, include_tags: bool = True,
              iso: bool = False) -> dict[str, Any]:
    """The Falco JSON alert as a dict (``output`` carries the full text line, as Falco's does)."""
    d: dict[str, Any] = {
        "hostname": alert.hostname,
        "output_fields": alert.output_fields,
        "priority": alert.priority.label,
        "rule": alert.rule,
        "source": alert.source,
        "time": iso_time(alert.time_ns),
    }
    if include_output:
        d["output"] = f"{text_time(alert.time_ns, iso)}: {alert.priority.label} {alert.output}"
    if include_tags:
        d["tags"] = list(alert.tags)
    if alert.uuid:
        d["uuid"] = alert.uuid
    return d


def format_json(alert: Alert, include_output: bool = True, include_tags: bool = True,
                iso: bool = False) -> str:
    """One line of Falco-compatible JSON, keys sorted. Control characters are escaped by JSON."""
    return json.dumps(json_dict(alert, include_output, include_tags, iso), sort_keys=True,
                      ensure_ascii=False, default=_jsonable, separators=(",", ":"))


class Formatter:
    """Picks text or JSON once, from the configuration."""

    def __init__(self, json_output: bool = False, include_output: bool = True,
                 include_tags: bool = True, iso: bool = False) -> None:
        self.json_output, self.include_output, self.include_tags, self.iso = (
            json_output, include_output, include_tags, iso)

    @classmethod
    def from_config(cls, cfg: Any, json_output: bool | None = None) -> Formatter:
        return cls(cfg["json_output"] if json_output is None else json_output,
                   cfg["json_include_output_property"], cfg["json_include_tags_property"],
                   cfg["time_format_iso_8601"])

    def __call__(self, alert: Alert) -> str:
        if self.json_output:
            return format_json(alert, self.include_output, self.include_tags, self.iso)
        return format_text(alert, self.iso)
