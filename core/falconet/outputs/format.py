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
from falconet.encoding import escape_text, safe_fields, safe_value

#: the text of a whole line through the output policy (:mod:`falconet.encoding`)
escape_control = escape_text


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
    """``14:03:07.123456789: Warning Sensitive file opened ...`` (unsafe characters escaped)."""
    return f"{text_time(alert.time_ns, iso)}: {alert.priority.label} {escape_text(alert.output)}"


def json_dict(alert: Alert, include_output: bool = True, include_tags: bool = True,
              iso: bool = False) -> dict[str, Any]:
    """The Falco JSON alert as a dict (``output`` carries the full text line, as Falco's does).
    Every string in it went through the output policy: values the rule formatter bounded stay
    as they are, anything else (fields a plugin or ``append_output`` added raw) is bounded here."""
    d: dict[str, Any] = {
        "hostname": safe_value(alert.hostname),
        "output_fields": safe_fields(alert.output_fields),
        "priority": alert.priority.label,
        "rule": safe_value(alert.rule),
        "source": safe_value(alert.source),
        "time": iso_time(alert.time_ns),
    }
    if include_output:
        d["output"] = (f"{text_time(alert.time_ns, iso)}: {alert.priority.label} "
                       f"{escape_text(alert.output)}")
    if include_tags:
        d["tags"] = [safe_value(t) for t in alert.tags]
    if alert.uuid:
        d["uuid"] = alert.uuid
    return d


def format_json(alert: Alert, include_output: bool = True, include_tags: bool = True,
                iso: bool = False) -> str:
    """One line of Falco-compatible JSON, keys sorted: valid UTF-8, every value escaped by the
    output policy (so a JSON consumer shows what the text output shows)."""
    return json.dumps(json_dict(alert, include_output, include_tags, iso), sort_keys=True,
                      ensure_ascii=False, default=str, separators=(",", ":"))


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
