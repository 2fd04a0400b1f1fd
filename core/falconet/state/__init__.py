"""Process and fd state: the tables ``proc.*``, ``thread.*``, ``user.*``, ``group.*`` and ``fd.*`` read.

Tables are bootstrapped from ``/proc`` at start (live) or from the snapshot at the head of a capture
(replay), then kept current by the core state parser from fork/exec/exit/open/close/... events.
"""

from falconet.state.tables import FdInfo, StateTables, ThreadInfo

__all__ = ["FdInfo", "StateTables", "ThreadInfo"]
