"""The Slack incoming-webhook message, shaped like falcosidekick's Slack output.

So that a channel fed by falcosidekick keeps its look: one attachment whose colour bar is the
priority's falcosidekick colour, ``fallback`` and ``text`` = Falco's ``output`` line, the fields
``rule``, ``priority``, ``source``, ``hostname``, ``tags`` (sorted, ``, ``-joined), then every
output field sorted by name (``short`` when the value has fewer than 36 characters), then
``time`` (Go's ``time.Time.String()`` of the UTC event time), and a footer. ``output_format``
``all`` | ``text`` | ``fields`` drops the fields or the text as falcosidekick's
``slack.outputformat`` does.

Two deliberate differences, both for safety: every value that comes from the event is escaped
for Slack (``&``, ``<``, ``>``: an attacker-chosen file name cannot write ``<!channel>`` or a
disguised link) with control characters escaped as in the text output, and values are bounded.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from falconet.alerts import Alert
from falconet.outputs.format import escape_control, json_dict
from falconet.priorities import Priority

#: falcosidekick's outputs/constants.go colours, per priority as its slack.go maps them
COLORS = {Priority.EMERGENCY: "#e20b0b", Priority.ALERT: "#ff5400", Priority.CRITICAL: "#ff5400",
          Priority.ERROR: "#e20b0b", Priority.WARNING: "#ffc700", Priority.NOTICE: "#5bffb5",
          Priority.INFORMATIONAL: "#68c2ff", Priority.DEBUG: "#ccfff2"}
OUTPUT_FORMATS = ("all", "text", "fields")
MAX_TEXT = 3000          # characters of the output line in the attachment
MAX_VALUE = 1000         # characters of one field value
SHORT_BELOW = 36         # falcosidekick: a value shorter than this is a "short" (half-width) field
_PLACEHOLDER = re.compile(r"\{(rule|priority|source|hostname|output|field:[^{}]+)\}")
_ANY_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def slack_escape(text: str, limit: int = MAX_VALUE) -> str:
    """Slack's three escapes, control characters escaped, at most ``limit`` characters."""
    text = escape_control(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def go_time(ns: int) -> str:
    """Go's ``time.Time.String()`` in UTC: ``2026-12-01 22:04:54.1234 +0000 UTC`` (trailing
    zeros of the fraction dropped, no fraction when it is zero)."""
    secs, frac = divmod(ns, 1_000_000_000)
    digits = f"{frac:09d}".rstrip("0")
    return (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
            + (f".{digits}" if digits else "") + " +0000 UTC")


def field_text(v: Any) -> str:
    """One output field value as text, as falcosidekick shows it (``<NA>`` for a missing one)."""
    if v is None:
        return "<NA>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes | bytearray):
        return v.decode("utf-8", "backslashreplace")
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(v, default=str, ensure_ascii=False)


def check_message(template: str) -> None:
    """Raise ``ValueError`` for a placeholder the message template does not know."""
    for m in _ANY_PLACEHOLDER.finditer(template):
        if not _PLACEHOLDER.fullmatch(m.group(0)):
            raise ValueError(f"unknown placeholder {m.group(0)} (expected {{rule}}, {{priority}}, "
                             "{source}, {hostname}, {output} or {field:<name>})")


def render_message(template: str, alert: Alert, output: str) -> str:
    """The ``message`` above the attachment (falcosidekick's ``slack.messageformat``), with
    ``{rule}``-style placeholders; substituted values are escaped."""
    def value(m: re.Match[str]) -> str:
        key = m.group(1)
        if key.startswith("field:"):
            return slack_escape(field_text(alert.output_fields.get(key[6:])))
        v = {"rule": alert.rule, "priority": alert.priority.label, "source": alert.source,
             "hostname": alert.hostname, "output": output}[key]
        return slack_escape(v, MAX_TEXT)
    return _PLACEHOLDER.sub(value, template)


def slack_payload(alert: Alert, opts: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body. ``opts``: ``output_format``, ``username``, ``icon_url``, ``channel``,
    ``footer``, ``message`` (the normalised params of the ``slack`` action)."""
    falco = json_dict(alert)                    # the Falco JSON alert falcosidekick receives
    output = str(falco["output"])
    fmt = opts.get("output_format", "all")
    attachment: dict[str, Any] = {"fallback": slack_escape(output, MAX_TEXT),
                                  "color": COLORS[alert.priority], "fields": []}
    if fmt in ("all", "fields"):
        fields = [("rule", alert.rule), ("priority", alert.priority.label),
                  ("source", alert.source)]
        if alert.hostname:
            fields.append(("hostname", alert.hostname))
        if alert.tags:
            fields.append(("tags", ", ".join(sorted(alert.tags))))
        out = [{"title": t, "value": slack_escape(v), "short": True} for t, v in fields]
        for name in sorted(falco["output_fields"]):
            v = field_text(falco["output_fields"][name])
            out.append({"title": slack_escape(name, 200), "value": slack_escape(v),
                        "short": len(v) < SHORT_BELOW})
        out.append({"title": "time", "value": go_time(alert.time_ns), "short": False})
        attachment["fields"] = out
        attachment["footer"] = opts.get("footer") or "Falconet"
    if fmt in ("all", "text"):
        attachment["text"] = slack_escape(output, MAX_TEXT)
    payload: dict[str, Any] = {"attachments": [attachment]}
    if opts.get("message"):
        payload["text"] = render_message(str(opts["message"]), alert, output)
    for key in ("username", "icon_url", "channel"):
        if opts.get(key):
            payload[key] = opts[key]
    return payload
