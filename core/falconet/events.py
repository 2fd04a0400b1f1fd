"""The event model: what every source yields and every rule reads.

An :class:`Event` is deliberately small and flat: the hot loop creates one per kernel event. Field
values (``proc.name``, ``fd.name``...) are *not* stored on the event; they are extracted lazily by the
field registry (:mod:`falconet.fields`) and cached in ``Event.cache`` for the event's lifetime.
"""

from __future__ import annotations

from typing import Any

#: Source name of kernel (system call) events.
SYSCALL_SOURCE = "syscall"
#: Source name of the engine's own alerts (drops, health), as Falco's ``internal`` source.
INTERNAL_SOURCE = "internal"


class Event:
    """One event from one source.

    Attributes:
        source: event source (``syscall`` for kernel events; plugins add others, e.g. ``k8s_audit``).
        type: event type, the value of ``evt.type`` (e.g. ``openat``, ``execve``).
        ts: timestamp, nanoseconds since the Unix epoch.
        tid: thread id (host pid namespace); 0 for events that have no thread.
        pid: process id (thread group id); 0 for events that have no process.
        args: typed parameters by name (``{"fd": 3, "name": "/etc/shadow", "flags": 0}``). Names
            follow Falco's event tables so ``evt.arg.<name>`` works. ``res`` is not in ``args``.
        res: the system call's return value (``evt.rawres``), or ``None`` if it has none.
        num: event number, assigned by the pipeline (1, 2, ...). Falco guarantees ``evt.num >= 1``.
        cache: per-event cache of extracted field values, owned by the field registry.
        thread: the state engine's thread entry for ``tid`` (set by the state parser before rules
            run; ``None`` for sources without process state).
        fdinfo: the state engine's fd entry the event refers to, if any (set by the state parser).
        raw: source-specific payload for plugin sources (e.g. a decoded JSON document).
    """

    __slots__ = ("source", "type", "ts", "tid", "pid", "args", "res", "num", "cache",
                 "thread", "fdinfo", "raw")

    def __init__(self, source: str, type: str, ts: int, tid: int = 0, pid: int = 0,
                 args: dict[str, Any] | None = None, res: int | None = None,
                 raw: Any = None) -> None:
        self.source = source
        self.type = type
        self.ts = ts
        self.tid = tid
        self.pid = pid
        self.args = args if args is not None else {}
        self.res = res
        self.num = 0
        self.cache: dict[str, Any] = {}
        self.thread: Any = None
        self.fdinfo: Any = None
        self.raw = raw

    def to_dict(self) -> dict[str, Any]:
        """The event as the capture format stores it (see ``docs/capture-format.md``)."""
        d: dict[str, Any] = {"src": self.source, "type": self.type, "ts": self.ts,
                             "tid": self.tid, "pid": self.pid, "args": self.args}
        if self.res is not None:
            d["res"] = self.res
        if self.raw is not None:
            d["raw"] = self.raw
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict`. Raises ``KeyError``/``TypeError`` on malformed input."""
        return cls(d["src"], d["type"], int(d["ts"]), int(d.get("tid", 0)), int(d.get("pid", 0)),
                   dict(d.get("args") or {}), d.get("res"), d.get("raw"))

    def __repr__(self) -> str:
        return (f"Event({self.source}:{self.type} ts={self.ts} pid={self.pid} tid={self.tid} "
                f"args={self.args!r} res={self.res!r})")
