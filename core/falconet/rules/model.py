"""The compiled rules: what the loading stages produce and the runtime (:mod:`falconet.rules.ruleset`)
runs. Nothing here parses or compiles; a :class:`CompiledRule` carries its condition as a
ready check and its output as a ready :class:`OutputFormat`.

Output rendering lives here because it runs per alert: field values become text and the typed
``output_fields``, each string through the output policy (:mod:`falconet.encoding`), so an
attacker-controlled file name cannot forge log lines, break an output's encoding or inflate an
alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from falconet.encoding import decode_bytes, field_text
from falconet.priorities import Priority

NA = "<NA>"


def to_text(v: Any) -> str:
    """A field value as output text."""
    if v is None:
        return NA
    t = type(v)
    if t is str:
        return field_text(v)
    if t is bool:
        return "true" if v else "false"
    if t is bytes or t is bytearray:
        return field_text(decode_bytes(v))
    if t is int or t is float:
        return str(v)
    if t is tuple or t is list:
        return field_text(",".join(_raw_text(x) for x in v))
    return field_text(str(v))


def _raw_text(v: Any) -> str:
    """An element of a list value, before the policy (applied once to the joined text)."""
    if v is None:
        return NA
    if isinstance(v, bytes | bytearray):
        return decode_bytes(v)
    if v is True or v is False:
        return "true" if v else "false"
    return str(v)


def to_json_value(v: Any) -> Any:
    """A field value for ``output_fields``: typed, JSON-serialisable."""
    t = type(v)
    if t is str:
        return field_text(v)
    if v is None or t is int or t is float or t is bool:
        return v
    if isinstance(v, bytes | bytearray):
        return field_text(decode_bytes(v))
    if isinstance(v, tuple | list):
        return [to_json_value(x) for x in v]
    return field_text(str(v)) if not isinstance(v, int | float) else v


class OutputFormat:
    """A compiled output format. :meth:`render` returns ``(text, output_fields)``."""

    __slots__ = ("text", "pieces", "fields", "warnings")

    def __init__(self, text: str, pieces: list[Any], fields: list[tuple[str, Callable[[Any], Any]]],
                 warnings: list[str]) -> None:
        self.text = text
        self.pieces = pieces          # str, or (getter, pad)
        self.fields = fields          # (token, getter) for output_fields
        self.warnings = warnings

    def render(self, evt: Any) -> tuple[str, dict[str, Any]]:
        out: list[str] = []
        for p in self.pieces:
            if p.__class__ is str:
                out.append(p)
            else:
                g, pad = p
                s = to_text(g(evt))
                if pad:
                    s = s[:pad].ljust(pad)
                out.append(s)
        fields = {tok: to_json_value(g(evt)) for tok, g in self.fields}
        return "".join(out), fields


@dataclass
class CompiledRule:
    """A rule ready to run. ``check`` is the compiled condition, ``fmt`` the compiled output."""

    name: str
    priority: Priority
    source: str
    tags: list[str]
    desc: str
    file: str
    enabled: bool
    check: Callable[[Any], bool]
    fmt: OutputFormat
    event_types: frozenset[str] | None       # None = every type
    condition: str
    output: str
    capture: bool = False
    capture_duration_ns: int = 0
    extra_fields: dict[str, Any] = field(default_factory=dict)
    #: (token, extractor) of the ``capture_fields`` valid for this rule's source
    capture_getters: tuple[tuple[str, Any], ...] = ()
    #: what the kernel filter is derived from (``falconet.rules.kfilter.RuleFacts`` of the
    #: expanded condition, exceptions included), computed at compile time for syscall rules so
    #: no syntax tree is kept; ``None``: no filter can be derived (the types stay unfiltered)
    kfacts: Any = None
    #: the condition reads a path field (``falconet.rules.views.PATH_FIELDS``): the rule is
    #: also evaluated on the resolved-path view of an event whose kernel path differs
    path_view: bool = False


@dataclass
class RuleDescription:
    """A rule as ``falconet rules list`` shows it."""

    name: str
    priority: Priority
    source: str
    tags: list[str]
    enabled: bool
    event_types: list[str] | None
    file: str
    desc: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "priority": self.priority.label, "source": self.source,
                "tags": self.tags, "enabled": self.enabled, "event_types": self.event_types,
                "file": self.file, "desc": self.desc}
