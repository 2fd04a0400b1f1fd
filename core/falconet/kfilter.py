"""PLACEHOLDER (integrator): replaced by the i18-derive branch's module at merge."""

from __future__ import annotations

from dataclasses import dataclass, field

OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat"})
KEY_LEN = 255


@dataclass(frozen=True, slots=True)
class Clause:
    any_path: bool
    exact: frozenset[str]
    prefixes: frozenset[str]
    need_read: bool
    need_write: bool
    need_success: bool


@dataclass(frozen=True)
class TypeFilter:
    event_type: str
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class FilterPlan:
    types: dict[str, TypeFilter]
    unfiltered: dict[str, str]
    filter_close: bool
    io: dict[str, IoFilter] = field(default_factory=dict)


@dataclass(frozen=True)
class IoFilter:
    """PLACEHOLDER: the I/O part of the plan (merged into the real module)."""

    event_type: str
    sockets_only: bool
    needles: tuple[bytes, ...]
