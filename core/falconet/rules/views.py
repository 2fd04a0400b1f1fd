"""The second view of an event (issue 19, docs/rules.md "Resolved paths"): rules about files
fire when either the path as requested or the path the kernel opened matches, without
changing what ``fd.name`` means.

``fd.name`` keeps Falco's meaning (the path as the syscall gave it, made absolute), so
Falco's unmodified rules compare the requested path. When the kernel reports a different path
for the opened file (``fd.resolved_name``: a symlink, ``/proc/self/root/...``, a bind mount),
:class:`~falconet.rules.ruleset.Ruleset` evaluates the rules that read a path field
(:data:`PATH_FIELDS`, decided when the rule compiles: ``CompiledRule.path_view``) a second
time on a *view* of the event: the same event whose fd entry has ``fd.name``,
``fd.nameraw`` (and so ``fd.directory``, ``fd.filename``) equal to the resolved path. An
event type that is an open under another name (:data:`OPEN_ALIASES`: ``open_by_handle_at``,
whose ``fd.name`` is already the kernel's path) is also evaluated by the rules of the open it
stands for, on a view whose ``evt.type`` is that open.

A rule raises at most one alert per event, rendered from the event itself (its ``%fd.name``
is the requested path); an alert raised only through a view carries ``fd.resolved_name`` in
its output fields and text (``fd_resolved_name=...``), which says what matched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from falconet.events import Event

__all__ = ["OPEN_ALIASES", "PATH_FIELDS", "alias_view", "needs_path_view", "path_view"]

#: fields whose value is the fd's path or derives from it: bound to the resolved path in a view
PATH_FIELDS = frozenset({"fd.name", "fd.nameraw", "fd.directory", "fd.filename"})
#: event types that open a file under another name -> the open type whose rules also see them
OPEN_ALIASES = {"open_by_handle_at": "openat"}
#: per-event cache keys the state parser owns (kept in a view; field values are recomputed)
_STATE_KEYS = "_state."


def needs_path_view(field_names: Iterable[str]) -> bool:
    """Whether a rule whose condition reads these fields needs the resolved-path view."""
    return any(n in PATH_FIELDS for n in field_names)


def _view(evt: Event, evt_type: str) -> Event:
    v = Event(evt.source, evt_type, evt.ts, evt.tid, evt.pid, evt.args, evt.res, evt.raw)
    v.num = evt.num
    v.thread = evt.thread
    v.fdinfo = evt.fdinfo
    v.cache = {k: x for k, x in evt.cache.items() if k.startswith(_STATE_KEYS)}
    return v


def path_view(evt: Event) -> Event | None:
    """The view of ``evt`` with the fd's path fields bound to the kernel's path, or ``None``
    when there is none (no fd, a socket, the path not resolved, or equal to ``fd.name``)."""
    f = evt.fdinfo
    if f is None:
        return None
    resolved = f.resolved
    if not resolved or resolved == f.name or f.typechar not in ("f", "d"):
        return None
    v = _view(evt, evt.type)
    g = copy.copy(f)
    g.name = g.nameraw = resolved
    v.fdinfo = g
    return v


def alias_view(evt: Event, evt_type: str) -> Event:
    """``evt`` seen as an event of ``evt_type`` (an :data:`OPEN_ALIASES` target)."""
    return _view(evt, evt_type)
