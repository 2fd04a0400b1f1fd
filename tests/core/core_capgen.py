"""Synthetic captures for CLI tests: a process tree, then a stream of file events."""

from __future__ import annotations

from falconet.capture import CaptureWriter
from falconet.events import Event

T0 = 1_764_000_000_000_000_000


def write_capture(path: str, n_events: int, *, every: int = 1000, bad_lines: list[str] = ()) -> int:
    """``n_events`` events of one ``cat`` process; every ``every``-th is an ``unlinkat`` of
    ``/tmp/secret-<i>``, the rest ``read``. Returns how many unlinkat events were written."""
    hits = 0
    with CaptureWriter(path, host="caphost", kernel="6.18.0", start_ns=T0) as w:
        w.write_event(Event("syscall", "procfork", T0 + 1, 99, 99,
                            {"child_tid": 100, "child_pid": 100, "parent_tid": 99,
                             "parent_pid": 99}))
        w.write_event(Event("syscall", "execve", T0 + 2, 100, 100,
                            {"filename": "/usr/bin/cat", "argv": ["cat", "x"], "cwd": "/tmp",
                             "exepath": "/usr/bin/cat", "uid": 0, "gid": 0, "comm": "cat"}, 0))
        for i in range(n_events):
            ts = T0 + 10 + i
            if i % every == every - 1:
                hits += 1
                w.write_event(Event("syscall", "unlinkat", ts, 100, 100,
                                    {"dirfd": -100, "name": f"/tmp/secret-{i}", "flags": 0}, 0))
            else:
                w.write_event(Event("syscall", "read", ts, 100, 100, {"fd": 0, "size": 10}, 10))
    if bad_lines:
        with open(path, "a") as f:
            for b in bad_lines:
                f.write(b + "\n")
    return hits


RULES = """\
- rule: Core test unlink
  desc: a file below /tmp/secret was deleted
  condition: evt.type = unlinkat and evt.arg.name startswith /tmp/secret
  output: Secret deleted (name=%evt.arg.name proc=%proc.name)
  priority: ERROR
  tags: [test]
"""
