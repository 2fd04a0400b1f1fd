"""What a rule match produces and outputs consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from falconet.priorities import Priority


@dataclass(slots=True)
class Alert:
    """A rule match, fully rendered in the hot loop (state changes after the event, so every field
    value is resolved at match time; outputs only serialise).

    Attributes:
        rule: rule name.
        priority: the rule's priority.
        source: event source of the rule.
        tags: the rule's tags, sorted.
        output: the rendered output *without* the ``<time>: <Priority>`` prefix (Falco's ``message``).
        output_fields: typed values of every ``%field`` of the output, keyed by the token as written
            (``proc.aname[2]``), plus ``evt.time`` (ns); missing values are ``None``.
        time_ns: the event's timestamp (ns since the epoch).
        hostname: the host that saw the event.
        desc: the rule's description (for OTel ``security_rule.description``).
        ruleset: the rules file the rule came from (for ``security_rule.ruleset.name``).
        lineage: the triggering process and its ancestors, nearest first, as dicts with ``pid``,
            ``name``, ``exepath``, ``cmdline``, ``start_ts`` (for OTel spans); may be empty.
        extra: free-form data plugins attach (e.g. the container plugin's metadata).
        uuid: the alert's unique id (set when the pipeline dispatches it; the same in every
            output and every delivery retry, so receivers can drop duplicates).
        match_fields: raw values of the field tokens ``load_rules(capture_fields=...)`` asked
            for (what ``match:`` conditions of response policies and routes read, see
            :mod:`falconet.alertmatch`), keyed by token; not serialised by outputs.
    """

    rule: str
    priority: Priority
    source: str
    tags: list[str]
    output: str
    output_fields: dict[str, Any]
    time_ns: int
    hostname: str
    desc: str = ""
    ruleset: str = ""
    lineage: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    uuid: str = ""
    match_fields: dict[str, Any] = field(default_factory=dict)
