"""Helpers of the kernel-filter tests: the real field registry and state parser (not the
stand-ins), rules loaded against them, events parsed as the engine parses them."""

from __future__ import annotations

from typing import Any

from falconet.events import Event
from falconet.fields.registry import FieldRegistry
from falconet.rules import load_rules_text
from falconet.rules.kfilter import derive
from falconet.state.fields import core_field_defs
from falconet.state.parser import StateParser
from falconet.state.tables import StateTables


class Engine:
    """Core fields + state parser over one set of tables."""

    def __init__(self) -> None:
        self.tables = StateTables()
        self.registry = FieldRegistry()
        self.registry.register_all(core_field_defs(self.tables, hostname="h"))
        self.parser = StateParser(self.tables)

    def load(self, text: str) -> Any:
        res = load_rules_text(text, self.registry, append_output=[])
        assert res.ok, [str(e) for e in res.errors]
        return res.ruleset

    def plan(self, text: str, **kw: Any) -> Any:
        return derive(self.load(text), **kw)


def rule(cond: str, name: str = "r", output: str = "out") -> str:
    q = cond.replace("'", "''")
    o = output.replace("'", "''")
    return (f"- rule: {name}\n  desc: d\n  condition: '{q}'\n  output: '{o}'\n"
            "  priority: warning\n")


def open_event(etype: str, name: str, flags: int = 0, res: int = 3, *, is_dir: bool | None = False,
               pid: int = 100, ts: int = 1) -> Event:
    args: dict[str, Any] = {"fd": res, "name": name, "mode": 0}
    if etype != "creat":
        args["flags"] = flags
    if etype in ("openat", "openat2"):
        args["dirfd"] = -100
    if is_dir is not None:
        args["ftype"] = ftype(is_dir)
    return Event("syscall", etype, ts, pid, pid, args, res)


def ftype(is_dir: bool) -> int:
    """The hidden ``ftype`` arg the collector gives an open of a directory or of a file."""
    return (3 | 0o040000 << 4) if is_dir else (1 | 0o100000 << 4)
