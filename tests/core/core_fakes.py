"""Small fakes for fast unit tests of the core (the real rule engine is tested in tests/rules and
wired end to end in test_integration.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert
from falconet.events import Event
from falconet.priorities import Priority


class FakeRuleset:
    """Matches events with plain predicates: ``[(rule name, priority, predicate)]``."""

    def __init__(self, rules: list[tuple[str, Priority, Callable[[Event], bool]]] | None = None,
                 hostname: str = "testhost") -> None:
        self.rules = rules or []
        self.hostname = hostname

    def match(self, evt: Event) -> list[Alert]:
        out = []
        for name, prio, pred in self.rules:
            if pred(evt):
                out.append(Alert(rule=name, priority=prio, source=evt.source, tags=["test"],
                                 output=f"{name} type={evt.type} name={evt.args.get('name')}",
                                 output_fields={"evt.type": evt.type, "evt.time": evt.ts},
                                 time_ns=evt.ts, hostname=self.hostname))
        return out

    def event_types(self, source: str) -> set[str] | None:
        return None


class ListSink:
    """Collects alerts in memory."""

    def __init__(self, name: str = "list", min_priority: Priority = Priority.DEBUG) -> None:
        self.name = name
        self.min_priority = min_priority
        self.alerts: list[Alert] = []
        self.started = self.closed = False
        self.flushes = 0

    def start(self) -> None:
        self.started = True

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


class BlockingSink(ListSink):
    """Blocks in ``send`` until released: a stuck endpoint."""

    def __init__(self, name: str = "slow", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.release = threading.Event()

    def send(self, alert: Alert) -> None:
        self.release.wait(30)
        super().send(alert)


class FailingSink(ListSink):
    def send(self, alert: Alert) -> None:
        raise ConnectionError("endpoint down")


def evt(type_: str = "openat", ts: int = 1_700_000_000_123_456_789, **args: Any) -> Event:
    return Event("syscall", type_, ts, tid=100, pid=100, args=args, res=0)
