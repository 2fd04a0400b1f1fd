"""Hand-built event sequences for the state tests: a tiny engine (tables + parser + core fields)."""

from __future__ import annotations

from typing import Any

from falconet.events import Event
from falconet.fields.registry import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.state.fields import core_field_defs
from falconet.state.parser import StateParser
from falconet.state.tables import StateTables, ThreadInfo
from falconet.state.users import UserDB

SEC = 1_000_000_000


class MiniEngine:
    """State tables, the parser and the core fields, wired like the engine wires them."""

    def __init__(self, *, live: bool = False, max_threads: int = 262144, users: UserDB | None = None
                 ) -> None:
        self.tables = StateTables(max_threads=max_threads)
        self.metrics = EngineMetrics()
        self.users = users or UserDB(frozen=True)
        self.parser = StateParser(self.tables, live=live, metrics=self.metrics, users=self.users)
        self.registry = FieldRegistry()
        self.registry.register_all(core_field_defs(self.tables, self.users, "testhost"))
        self.ts = 1_700_000_000 * SEC
        self.num = 0

    def add(self, **kw: Any) -> ThreadInfo:
        kw.setdefault("pid", kw["tid"])
        t = ThreadInfo(**kw)
        self.tables.add(t)
        return t

    def evt(self, etype: str, tid: int, res: int | None = 0, pid: int | None = None, /,
            **args: Any) -> Event:
        """Build and parse one syscall event; returns it with thread/fdinfo attached."""
        self.ts += 1000
        self.num += 1
        t = self.tables.get(tid)
        e = Event("syscall", etype, self.ts, tid, pid if pid is not None else (t.pid if t else tid),
                  args, res)
        e.num = self.num
        self.parser(e)
        return e

    def field(self, evt: Event, name: str, arg: str | None = None) -> Any:
        return self.registry.resolve(name, arg).extract(evt)
