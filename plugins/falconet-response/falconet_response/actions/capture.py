"""``capture``: a falconet capture file of the events of the alert's process tree (its container,
for a container) from a bounded in-memory window before the alert plus ``seconds`` after.

The window is kept by a parser hook that only appends each event to a bounded deque (no
filtering, no I/O on the hot path); the action filters it on the response worker, writes the
part before the alert at once (so a policy that freezes next has it on disk first), follows the
tree in memory for ``seconds`` and writes the rest from the engine's timer thread. Files are
written by the capture module's writer (0600, exclusive, never through a symlink) in a 0700
directory, so ``falconet replay`` reads them."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert
from falconet.capture import CaptureWriter

from falconet_response.actions.base import Outcome, Target
from falconet_response.actions.common import check_keys, failed, seconds, skipped

#: events kept for the window before an alert, whatever the rate
DEFAULT_MAX_EVENTS = 50_000
#: events one capture follows after the alert
MAX_AFTER_EVENTS = 100_000


def _container_of(evt: Any) -> str:
    t = getattr(evt, "thread", None)
    return getattr(t, "container_id", "") or "" if t is not None else ""


class _Follower:
    """Selects the events of one tree: a container's, or a host pid and its descendants."""

    def __init__(self, container_id: str | None, pid: int | None) -> None:
        self.cid = container_id or ""
        self.pids: set[int] = {pid} if pid else set()
        self.events: list[Any] = []
        self.dropped = 0

    def wants(self, evt: Any) -> bool:
        if self.cid:
            cid = _container_of(evt)
            return bool(cid) and (cid == self.cid or cid.startswith(self.cid))
        if evt.pid in self.pids:
            return True
        t = getattr(evt, "thread", None)
        ptid = getattr(t, "ptid", 0) if t is not None else 0
        if ptid and ptid in self.pids:
            self.pids.add(evt.pid)        # a child of the tree joined it
            return True
        return False


class EventRing:
    """The bounded window: ``parse(evt)`` is the parser hook (one append), followers collect
    the events after an alert."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.ring: deque[Any] = deque(maxlen=max_events)
        self.followers: list[_Follower] = []
        self._lock = threading.Lock()

    def parse(self, evt: Any) -> None:
        self.ring.append(evt)
        if self.followers:
            for f in self.followers:
                if f.wants(evt):
                    if len(f.events) < MAX_AFTER_EVENTS:
                        f.events.append(evt)
                    else:
                        f.dropped += 1

    def before(self, follower: _Follower, since_ns: int) -> list[Any]:
        snap = list(self.ring)          # a copy: the hot loop keeps appending
        return [e for e in snap if e.ts >= since_ns and follower.wants(e)]

    def follow(self, f: _Follower) -> None:
        with self._lock:
            self.followers = [*self.followers, f]     # the hot loop iterates a stable list

    def unfollow(self, f: _Follower) -> None:
        with self._lock:
            self.followers = [x for x in self.followers if x is not f]


class CaptureAction:
    name = "capture"
    reversible = False

    def __init__(self, ring: EventRing | None, directory: str,
                 schedule: Callable[[float, Callable[[], None]], None]) -> None:
        self.ring = ring
        self.directory = directory
        self.schedule = schedule
        self.written: list[str] = []

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, {"seconds": "seconds recorded after the alert (default 5)",
                            "before_seconds": "seconds kept before the alert (default 10)"})
        return {"seconds": seconds(params, "seconds", 5.0, lo=-1e-9, hi=3600),
                "before_seconds": seconds(params, "before_seconds", 10.0, hi=3600)}

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if target.pid is None and target.container_id is None:
            return skipped("the alert names no process or container")
        if self.ring is None:
            return failed("no event window (the capture parser is not installed)")
        ring = self.ring
        f = _Follower(target.container_id, target.pid)
        before_ns = int(float(params.get("before_seconds", 10.0)) * 1e9)
        # follow first: nothing between the snapshot and the follow is lost (maybe doubled)
        ring.follow(f)
        events = ring.before(f, alert.time_ns - before_ns)
        name = f"capture-{time.strftime('%Y%m%dT%H%M%S')}-{target.key.replace(':', '_')[:40]}" \
               f"-{os.getpid()}-{time.time_ns() % 1_000_000}.jsonl"
        path = os.path.join(self.directory, name)
        try:
            # the capture module's writer creates it 0600, exclusively, never through a symlink
            w = CaptureWriter(path, start_ns=events[0].ts if events else alert.time_ns)
            for e in events:
                w.write_event(e)
        except Exception as e:  # noqa: BLE001 - a capture that cannot be written fails alone
            ring.unfollow(f)
            return failed(f"capture {path}: {e}")
        n_before = len(events)
        seen = {id(e) for e in events}

        def finish() -> None:
            ring.unfollow(f)
            try:
                for e in list(f.events):
                    if id(e) not in seen:
                        w.write_event(e)
            finally:
                w.close()
            self.written.append(path)
        after = float(params.get("seconds", 5.0))
        self.schedule(after, finish)
        return Outcome("done", f"{path}: {n_before} events before, recording {after:g}s after")

    def undo(self, data: dict[str, Any]) -> Outcome:
        return skipped("a capture is evidence: it is never undone")
