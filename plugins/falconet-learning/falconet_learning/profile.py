"""One workload's profile in memory: what the hot path reads.

Keys are precomputed strings per kind, kept in plain sets: a lookup is one ``in`` on a set.
``pending`` holds observations queued for the writer but not committed yet (they count as known,
so a replay that turns a profile ready before the writer caught up gives the same verdicts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

LEARNING, READY = "learning", "ready"
#: what a profile records: executables, parent→child edges, files read, files written,
#: outbound endpoints, listening ports
KINDS = ("proc", "spawn", "file_r", "file_w", "net", "listen")


def profile_id(identity: str) -> str:
    """A short stable id for an identity string (what the CLI and ``profile.id`` show)."""
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:12]


@dataclass(slots=True, eq=False)
class Profile:
    """``identity`` is the workload identity string (see :mod:`falconet_learning.identity`)."""

    id: str
    identity: str
    state: str = LEARNING     # LEARNING or READY (these very objects: compared with `is`)
    created_ns: int = 0
    ready_ns: int = 0
    events: int = 0
    #: when the window ends (event time, ns) and the event count it needs
    ready_at_ns: int = 0
    min_events: int = 0
    full: bool = False
    sets: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    pending: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    size: int = 0
    kind: str = ""          # "container" or "host" (profile.kind), set from the identity

    def __post_init__(self) -> None:
        self.kind = "host" if self.identity.startswith("host:") else "container"

    @property
    def learning(self) -> bool:
        return self.state == LEARNING

    def known(self, kind: str, key: str) -> bool:
        return key in self.sets[kind] or key in self.pending[kind]

    def add(self, kind: str, key: str) -> None:
        s = self.sets[kind]
        if key not in s:
            s.add(key)
            self.size += 1

    def meta(self) -> dict[str, object]:
        return {"id": self.id, "identity": self.identity, "state": self.state,
                "created_ns": self.created_ns, "ready_ns": self.ready_ns, "events": self.events,
                "full": self.full, "size": self.size}
