"""Escaping of attacker-written text, shared by every layer that renders it.

One table, two users: the rule output formatter (:mod:`falconet.rules.model`) escapes field
values as it renders an alert, the alert formats (:mod:`falconet.outputs.format`) escape the text
line as a whole. Neither imports the other; both import this.
"""

from __future__ import annotations

#: ``str.translate`` table: control characters escaped as a JSON string escapes them
CONTROL_ESCAPES: dict[int, str] = {i: f"\\u{i:04x}" for i in range(0x20)} | {
    0x7F: "\\u007f", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def escape_control(text: str) -> str:
    """Escape control characters the way a JSON string does (``\\n``, ``\\u001b``), so an
    attacker-chosen file name cannot forge lines or terminal sequences in the text output."""
    if text.isprintable():
        return text
    return text.translate(CONTROL_ESCAPES)
