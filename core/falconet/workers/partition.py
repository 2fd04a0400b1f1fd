"""Which worker an event goes to: the partition key, and the events every worker must see.

The rule (docs/performance.md, "More than one core"):

- **Process lifecycle events are broadcast** (:data:`LIFECYCLE`): fork/clone, exec, exit, the
  set*id family, chdir/fchdir, capset, prctl, setsid/setpgid, chroot, unshare/setns. Every worker
  applies them, so every worker holds the whole process table (``proc.aname[N]``,
  ``proc.pname``... of any ancestor are right on any worker). Exactly one worker, the owner of the
  event's process, also evaluates the rules on them (each alert once).
- **Everything else goes to the owner of its thread group** (``evt.pid``): fd-creating and fd-using
  events of one process stay on one worker, in order, so its fd table has a single writer.
- **Owners** (the key). A fork child inherits its parent's fd table and cwd, which only the
  parent's worker knows (fd events are not broadcast), and the dup2-of-an-inherited-socket rules
  read them. ``lineage`` (the default) keeps a fork child on its parent's worker and hashes only
  the roots, the processes first seen without their fork (the capture's snapshot, a live
  engine's /proc scan): the child's worker built the table it inherits, nothing is exchanged.
  Its cost is balance: one busy process tree stays on one worker. ``tgid`` (Falco's draft)
  hashes every process on its own; a fork whose child lands on another worker is then a
  *handoff*, Falco's clone synchronisation point: the parent's worker, having applied the fork,
  sends the child's fd table and cwd to the child's worker, which waits for them at that same
  event (both see the fork in the same global order, so waits never form a cycle). Even balance,
  but the two workers wait for each other at every such fork (measured in docs/performance.md:
  slower than ``lineage`` on a capture with many processes). ``cgroup`` (a container key)
  hashes the cgroup v2 id every event carries (``args.cgroup_id``): a fork child starts in its
  parent's cgroup, so it starts on its parent's worker without a handoff, but a process that
  *moves* to another cgroup (runc puts a container's first process into the container's cgroup
  after forking it) changes worker with its fd table left behind: its inherited fds (stdio) are
  stale there. Measured with bench/bench_partition.py and documented in docs/performance.md.

The partitioner is pure bookkeeping (no I/O, no state tables): the replay router runs it in the
parent; a live run makes the same decisions in the kernel (``worker_of`` and ``owner_of`` in
``bpf/falconet.bpf.c``, which hash with :func:`_mix` / :func:`cgroup_hash` too: a ring group
per worker, lifecycle records written to every group) for ``lineage`` and ``cgroup``;
``tgid``'s handoff is replay only (:data:`falconet.workers.live.LIVE_KEYS` says why).
"""

from __future__ import annotations

from collections import deque

from falconet.collector.program import PARTITION_KEYS
from falconet.syscalls import LIFECYCLE

__all__ = ["DEFAULT_KEY", "FORKS", "KEYS", "LIFECYCLE", "Partitioner", "cgroup_hash", "parse_key"]

#: the events that create a process (their child inherits its parent's owner under ``lineage``)
FORKS: frozenset[str] = frozenset({"clone", "clone3", "fork", "vfork", "procfork"})
#: partition keys :class:`Partitioner` knows
KEYS = PARTITION_KEYS
#: the key a run uses when ``collector.partition`` is not set (docs/performance.md, "The
#: partitioning": the one that measured correct on every workload, and the fastest of those)
DEFAULT_KEY = "lineage"
#: CLONE_THREAD (a new thread of the same process, not a new process)
_CLONE_THREAD = 0x00010000
#: exited processes whose owner is kept, for the late events of their other threads
_MAX_EXITED = 4096


def _mix(tgid: int) -> int:
    """A cheap integer hash (pids are sequential: a plain modulo would alternate workers by the
    parity of the pid, which fork-heavy workloads correlate with)."""
    x = (tgid * 0x9E3779B1) & 0xFFFFFFFF
    return x ^ (x >> 16)


def cgroup_hash(cgroup_id: int) -> int:
    """:func:`_mix` of a 64-bit cgroup id folded to 32 bits (as ``owner_of`` in the kernel)."""
    return _mix((cgroup_id ^ (cgroup_id >> 32)) & 0xFFFFFFFF)


def parse_key(value: object) -> str:
    """``collector.partition``: one of :data:`KEYS` (``None``: :data:`DEFAULT_KEY`). Raises
    ``ValueError`` saying what is accepted."""
    if value is None:
        return DEFAULT_KEY
    if not isinstance(value, str) or value not in KEYS:
        raise ValueError(f"expected one of {', '.join(KEYS)}, got {value!r}")
    return value


class Partitioner:
    """Owners of processes for ``n`` workers, under one key (:data:`KEYS`)."""

    __slots__ = ("n", "key", "owners", "groups", "_forked", "_exited")

    def __init__(self, n: int, key: str = DEFAULT_KEY) -> None:
        if n < 1:
            raise ValueError("at least one worker")
        if key not in KEYS:
            raise ValueError(f"unknown partition key {key!r} (known: {', '.join(KEYS)})")
        self.n = n
        self.key = key
        #: tgid -> worker index (roots get theirs at first sight)
        self.owners: dict[int, int] = {}
        #: ``cgroup``: cgroup id -> worker
        self.groups: dict[int, int] = {}
        #: tgids whose owner a fork event set (procfork and the clone exit name the same child)
        self._forked: set[int] = set()
        self._exited: deque[int] = deque()

    def owner(self, tgid: int) -> int:
        """The worker of a thread group (assigned at first sight for a root)."""
        w = self.owners.get(tgid)
        if w is None:
            w = self.owners[tgid] = _mix(tgid) % self.n
        return w

    def group(self, cgroup_id: int) -> int:
        """The worker of a cgroup (the ``cgroup`` key)."""
        w = self.groups.get(cgroup_id)
        if w is None:
            w = self.groups[cgroup_id] = cgroup_hash(cgroup_id) % self.n
        return w

    def route(self, tgid: int, cgroup_id: object) -> int:
        """The worker of an event of process ``tgid`` written in cgroup ``cgroup_id``."""
        if self.key == "cgroup":
            return self.group(cgroup_id if isinstance(cgroup_id, int) else 0)
        return self.owner(tgid)

    def forked(self, parent_tgid: int, child_tgid: int) -> tuple[int, int] | None:
        """A new process. Under ``lineage`` it takes its parent's worker; under ``tgid`` it gets
        its own, and when that is not the parent's the fork is a *handoff*: returns ``(parent's
        worker, child's worker)``, the worker that knows the parent's fds and cwd at the fork
        and the one that must start the child with them. The first fork event of a child
        decides (``procfork`` comes before both clone exits); a later one is the same fork."""
        if child_tgid in self._forked or child_tgid == parent_tgid:
            return None
        self._forked.add(child_tgid)
        src = self.owner(parent_tgid)
        if self.key == "lineage":
            self.owners[child_tgid] = src
            return None
        self.owners.pop(child_tgid, None)     # a reused pid: hashed again
        dst = self.owner(child_tgid)
        return (src, dst) if dst != src else None

    def exited(self, tgid: int) -> None:
        """A process exited: its owner is forgotten a while later (the pid may be reused by a
        new process, whose fork assigns it again; other threads' last events may still come)."""
        self._forked.discard(tgid)       # a reused pid's next fork assigns it again
        ex = self._exited
        ex.append(tgid)
        if len(ex) > _MAX_EXITED:
            old = ex.popleft()
            if old not in self._forked:  # not re-forked since it exited
                self.owners.pop(old, None)

    def fork_child(self, typ: str, pid: int, args: dict[str, object], res: int | None) -> int:
        """The child thread group a fork event creates, or 0 (a thread, a failure, the child's
        own return)."""
        if typ == "procfork":
            child = args.get("child_pid") or args.get("child_tid")
            parent = args.get("parent_pid") or pid
        else:
            if res is None or res <= 0:
                return 0
            flags = args.get("flags") or 0
            if isinstance(flags, int) and flags & _CLONE_THREAD:
                return 0
            child = args.get("child_pid") or res
            parent = pid
        if not isinstance(child, int) or child == parent:
            return 0
        return child

    def observe(self, typ: str, tid: int, pid: int, args: dict[str, object],
                res: int | None) -> tuple[int, int, int] | None:
        """Update the owners from a lifecycle event (before routing it). Returns a handoff
        ``(from worker, to worker, child tgid)`` (see :meth:`forked`), else ``None``.
        Under ``cgroup`` nothing changes here: a child starts in its parent's cgroup."""
        if self.key == "cgroup":
            return None
        if typ in FORKS:
            child = self.fork_child(typ, pid, args, res)
            if child:
                parent = args.get("parent_pid") if typ == "procfork" else pid
                h = self.forked(parent if isinstance(parent, int) and parent else pid, child)
                if h is not None:
                    return h[0], h[1], child
        elif typ == "procexit" and tid == pid:    # the process, not one of its threads
            self.exited(pid)
        return None
