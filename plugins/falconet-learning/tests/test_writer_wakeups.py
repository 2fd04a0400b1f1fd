"""The profile writer sleeps while it has nothing to write (an idle engine wakes only for
work) and wakes for the first observation queued. Stand-in threads; the real SQLite store."""

from __future__ import annotations

import time
from pathlib import Path

from test_identity_pending import Identity, execve, learner, thread

S = 1_000_000_000


def _switches(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[2])


def _until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_writer_sleeps_when_idle_and_wakes_for_work(tmp_path: Path) -> None:
    ident = Identity()
    ident.resolved = True
    lr = learner(tmp_path, ident, flush_interval=0.05)
    lr.start()
    try:
        t = lr._thread
        assert t is not None and t.native_id is not None
        assert _until(lambda: lr._idle and not lr.queue)           # asleep on an empty queue
        before = _switches(t.native_id)
        time.sleep(0.5)        # a writer polling every flush_interval would wake 10 times here
        assert _switches(t.native_id) - before <= 1
        lr.parse(execve(thread(9, 1, "httpd"), 1 * S))
        assert _until(lambda: lr.counts["learned"] >= 2), lr.counts   # woken, and written
        assert _until(lambda: lr._idle and not lr.queue)           # and asleep again
    finally:
        lr.stop()
    assert not t.is_alive()
