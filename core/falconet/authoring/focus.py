"""Which events of a capture are "the behaviour": a capture of a live host holds everything that
ran meanwhile, so evidence names its focus: a container, a process tree, a time window.

The focus is stored beside the capture as ``<capture>.focus.json`` (written by the recorders of
:mod:`falconet.authoring.evidence`, picked up when the capture is used as evidence); without one,
every event of the capture counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from falconet.capture import CaptureError
from falconet.events import Event

#: how far up the process tree an event's ancestry is followed
MAX_ANCESTRY = 12


@dataclass
class Focus:
    """``container_id``: only that container's events (12 hex characters or more). ``roots``:
    only processes descending from these pids (``include_roots``: and the roots themselves).
    ``exclude_roots``: never processes below these (the recorder itself). ``start_ns`` and
    ``end_ns``: only events in that window."""

    container_id: str = ""
    roots: list[int] = field(default_factory=list)
    include_roots: bool = False
    exclude_roots: list[int] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0
    label: str = ""

    @property
    def empty(self) -> bool:
        return not (self.container_id or self.roots or self.start_ns or self.end_ns)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Focus:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def sidecar_path(capture: str) -> str:
    return capture + ".focus.json"


def save_focus(capture: str, focus: Focus) -> None:
    fd = os.open(sidecar_path(capture), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(focus.to_dict(), f)


def load_focus(capture: str) -> Focus:
    """The capture's focus (empty when it has no sidecar file)."""
    try:
        with open(sidecar_path(capture)) as f:
            return Focus.from_dict(json.load(f))
    except FileNotFoundError:
        return Focus()
    except (OSError, ValueError, TypeError) as e:
        # a CaptureError: the commands report it as one line, like an unreadable capture
        raise CaptureError(f"{sidecar_path(capture)}: unreadable focus file: {e}") from None


class FocusFilter:
    """Decides per event (after the state parser ran) whether it belongs to the focus. Process
    membership is decided once per pid and remembered: ancestry is walked only for a pid seen
    for the first time."""

    def __init__(self, focus: Focus, resolve: Any) -> None:
        self.focus = focus
        self._cid = resolve("container.id").extract if focus.container_id else None
        self._pid = resolve("proc.pid").extract
        self._apid = [resolve("proc.apid", str(i)).extract for i in range(1, MAX_ANCESTRY)]
        self._roots = set(focus.roots)
        self._excl = set(focus.exclude_roots)
        self._member: dict[int, bool] = {}

    def _in_tree(self, evt: Event) -> bool:
        pid = self._pid(evt)
        if not isinstance(pid, int):
            return False
        known = self._member.get(pid)
        if known is not None:
            return known
        if pid in self._excl:
            ok = False
        elif pid in self._roots:
            ok = self.focus.include_roots
        else:
            ok = False
            for get in self._apid:
                a = get(evt)
                if not isinstance(a, int) or a <= 1:
                    break
                if a in self._excl:
                    break
                if a in self._roots:
                    ok = True
                    break
        self._member[pid] = ok
        return ok

    def __call__(self, evt: Event) -> bool:
        f = self.focus
        if f.start_ns and evt.ts < f.start_ns:
            return False
        if f.end_ns and evt.ts > f.end_ns:
            return False
        if self._cid is not None:
            cid = self._cid(evt)
            if not cid or not (str(cid).startswith(f.container_id[:12])):
                return False
        if self._roots:
            return self._in_tree(evt)
        return True
