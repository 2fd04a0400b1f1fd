"""What every core field family shares: the all-sources set of the generic ``evt.*`` fields
and the constructor of a field without argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falconet.events import INTERNAL_SOURCE, SYSCALL_SOURCE
from falconet.fields.registry import Extractor, FieldDef, FieldType

T = FieldType


class AllSources(frozenset):
    """A ``sources`` set that contains every source (Falco's generic ``evt.*`` fields apply to
    plugin sources too). Iteration and intersection see the named sources only, so a plugin
    that re-declares ``evt.type`` for ``syscall`` still conflicts."""

    def __contains__(self, item: object) -> bool:
        return True


ANY_SOURCE = AllSources({SYSCALL_SOURCE, INTERNAL_SOURCE})
SYSCALL_ONLY = frozenset({SYSCALL_SOURCE})


def no_arg(fn: Extractor) -> Callable[[str | None], Extractor]:
    """``make_extractor`` for a field without argument."""
    def make(_arg: str | None, _fn: Extractor = fn) -> Extractor:
        return _fn
    return make


def simple_field(name: str, type: FieldType, desc: str, fn: Extractor, *, cache: bool = False,
                 sources: frozenset[str] = SYSCALL_ONLY, **kw: Any) -> FieldDef:
    """A field without argument (most of them); ``syscall`` events only unless told."""
    return FieldDef(name, type, desc, no_arg(fn), cache=cache, sources=sources, **kw)
