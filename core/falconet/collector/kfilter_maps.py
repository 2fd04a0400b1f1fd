"""Loads a :class:`falconet.kfilter.FilterPlan` into the BPF program's kernel-filter maps.

The plan (derived from the rules by :mod:`falconet.rules.kfilter`) says, per open-family event
type, which clauses can make an event interesting. The kernel side (``kf_open_drop`` in
``bpf/falconet.bpf.c``) needs that as numbers it can test in a few instructions:

- every clause gets one bit of a u64 (all filtered types together: at most 64 clauses; a type
  whose clauses don't fit stays unfiltered);
- ``kf_cfg[event id]``: ``live[class]``, the bits of the clauses an event of that access class
  (read | write << 1 | success << 2) satisfies, and ``anypath``, the bits of clauses with no
  path constraint;
- ``kf_paths``, one LPM trie for all clauses: an exact name is stored with its terminating NUL
  (so it matches that string only), a prefix without. The kernel looks up the longest matching
  entry only, so each entry carries the bits of every shorter entry that is a prefix of it.
- ``kf_cfg[clone id]`` (``plan.child_clones``): ``enabled`` alone, the child's own return
  from that call is dropped (``emit_clone``);
- relative opens (when :func:`falconet.kfilter.relative_filtering`): ``kf_paths`` also holds
  each directory ``A/`` with a name or prefix below it, NUL-terminated (the directory
  verdict's lookup of ``D/`` + NUL), ``kf_rpaths`` each suffix's ``/``-tails reversed and
  NUL-terminated; ``relpass`` (in ``kf_cfg``) the bits of clauses with a relative name or
  prefix; ``kf_rel[0]``, the plan's epoch (a verdict of an earlier plan never matches),
  is set last and cleared first.
- ``proc.name`` terms: ``named`` (in ``kf_cfg``) the bits of clauses with one, ``kf_names`` each
  name (its 16 comm bytes, NUL-padded) with the bits of the clauses that list it; the kernel
  tests the comm ``kf_exec`` recorded at the process's last successful execve.

Order matters for soundness while the program already runs: the trie is filled before any
``kf_cfg`` entry enables filtering (an empty trie would drop every path).
"""

from __future__ import annotations

import itertools
import logging
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from falconet.collector.bpfsys import PerCpuU64Array
from falconet.collector.bpfsyscall import map_delete, map_update
from falconet.kfilter import (
    COMM_LEN,
    IO_STATE_TYPES,
    KEY_LEN,
    FilterPlan,
    ancestor_keys,
    clause_relpass,
    relative_filtering,
    suffix_tails,
)

if TYPE_CHECKING:
    from falconet.kfilter import Clause

log = logging.getLogger("falconet.collector")

#: must match bpf/falconet.bpf.c
TRIE_KEY_LEN = 256
MAX_IDS = 128
REASONS = ("failed", "flags", "path", "untracked_fd", "not_socket", "content", "process",
           "child")
IO_NEEDLES = 4
_IO = struct.Struct(f"<IIII{IO_NEEDLES}Q{IO_NEEDLES}Q{IO_NEEDLES}I")   # struct kf_io_t
MAX_CLAUSES = 64
_CFG = struct.Struct("<II8QQQQQ")       # struct kf_cfg_t


_CFG_FIELDS = 14                         # enabled, track, live[8], anypath, suffix, relpass, named


def _bare_cfg(enabled: int, track: int) -> bytes:
    """A kf_cfg_t entry with only its two flags set (no clauses)."""
    return _CFG.pack(enabled, track, *([0] * (_CFG_FIELDS - 2)))
#: entries of kf_names (bpf/falconet.bpf.c)
NAME_ENTRIES = 4096
_KEY = struct.Struct(f"<I{TRIE_KEY_LEN}s")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
assert KEY_LEN < TRIE_KEY_LEN
#: plan epochs written to kf_rel (directory verdicts carry theirs; 0 = none)
_EPOCHS = itertools.count(1)


@dataclass
class KernelTables:
    """The numbers :func:`tables` computes from a plan (no kernel involved: unit-testable)."""

    cfg: dict[int, bytes] = field(default_factory=dict)        # event id -> struct kf_cfg_t
    io: dict[int, bytes] = field(default_factory=dict)         # event id -> struct kf_io_t
    trie: dict[bytes, int] = field(default_factory=dict)       # entry bytes -> clause bits
    rtrie: dict[bytes, int] = field(default_factory=dict)      # reversed suffix -> clause bits
    names: dict[bytes, int] = field(default_factory=dict)      # comm (16 bytes) -> clause bits
    filtered: dict[str, int] = field(default_factory=dict)     # event type -> id
    skipped: dict[str, str] = field(default_factory=dict)      # event type -> why not loaded
    relative: bool = False      # directory verdicts kept (relative opens filtered)


def _class_ok(c: Clause, cls: int) -> bool:
    rd, wr, ok = bool(cls & 1), bool(cls >> 1 & 1), bool(cls >> 2 & 1)
    return ((not c.need_read or rd) and (not c.need_write or wr)
            and (not c.need_success or ok))


def tables(plan: FilterPlan, event_ids: dict[str, int], close_id: int | None) -> KernelTables:
    """Clause bits, per-type configs and trie entries for ``plan``."""
    out = KernelTables()
    bit = 0
    entries: dict[bytes, int] = {}
    rentries: dict[bytes, int] = {}
    track = 1 if plan.filter_close else 0
    out.relative = rel = relative_filtering(plan)
    n_names = len({n for tf in plan.types.values() for c in tf.clauses for n in c.names or ()})
    use_names = n_names <= NAME_ENTRIES       # else every name term holds (weaker: sound)
    for etype in sorted(plan.types):
        tf = plan.types[etype]
        eid = event_ids.get(etype)
        if eid is None or eid >= MAX_IDS:
            out.skipped[etype] = "not produced by this collector"
            continue
        if bit + len(tf.clauses) > MAX_CLAUSES:
            out.skipped[etype] = f"more than {MAX_CLAUSES} clauses in all"
            continue
        live = [0] * 8
        anypath = suffix = relpass = named = 0
        for c in tf.clauses:
            b = 1 << bit
            bit += 1
            for cls in range(8):
                if _class_ok(c, cls):
                    live[cls] |= b
            if c.names is not None and use_names:
                named |= b
                for nm in c.names:
                    raw = nm.encode("utf-8", "surrogateescape")
                    if len(raw) < COMM_LEN:      # longer: never a comm, no entry
                        k = raw.ljust(COMM_LEN, b"\0")
                        out.names[k] = out.names.get(k, 0) | b
            if c.any_path:
                anypath |= b
                continue
            if clause_relpass(c):
                relpass |= b
            if rel:
                for a in ancestor_keys(c):
                    raw = a.encode("utf-8", "surrogateescape") + b"\0"
                    if len(raw) <= KEY_LEN:
                        entries[raw] = entries.get(raw, 0) | b
                for x in suffix_tails(c):
                    raw = x.encode("utf-8", "surrogateescape")[::-1] + b"\0"
                    if len(raw) <= KEY_LEN:
                        rentries[raw] = rentries.get(raw, 0) | b
                        suffix |= b
            for e in c.exact:
                raw = e.encode("utf-8", "surrogateescape") + b"\0"
                if len(raw) <= KEY_LEN:          # longer texts are irregular: they always pass
                    entries[raw] = entries.get(raw, 0) | b
            for p in c.prefixes:
                raw = p.encode("utf-8", "surrogateescape")
                if raw and len(raw) < KEY_LEN:
                    entries[raw] = entries.get(raw, 0) | b
            for x in c.suffixes:
                raw = x.encode("utf-8", "surrogateescape")[::-1]
                if raw and len(raw) < KEY_LEN:
                    rentries[raw] = rentries.get(raw, 0) | b
                    suffix |= b
        out.cfg[eid] = _CFG.pack(1, track, *live, anypath, suffix, relpass, named)
        out.filtered[etype] = eid
    # LPM returns the longest match only: fold each shorter prefix entry into the longer ones
    prefixes = {k: v for k, v in entries.items() if not k.endswith(b"\0")}
    rprefixes = {k: v for k, v in rentries.items() if not k.endswith(b"\0")}
    for k in entries:
        mask = entries[k]
        for n in range(1, len(k)):
            mask |= prefixes.get(k[:n], 0)
        out.trie[k] = mask
    for k in rentries:
        mask = rentries[k]
        for n in range(1, len(k)):
            mask |= rprefixes.get(k[:n], 0)
        out.rtrie[k] = mask
    if track and close_id is not None and any(t in plan.types for t in out.filtered):
        out.cfg[close_id] = _bare_cfg(0, 1)
    for etype in sorted(plan.io):
        f = plan.io[etype]
        eid = event_ids.get(etype)
        if eid is None or eid >= MAX_IDS:
            out.skipped[etype] = "not produced by this collector"
            continue
        # the kernel scans needles only where the state learns nothing from the data
        needles = [] if etype in IO_STATE_TYPES else [n[:8] for n in f.needles]
        if len(needles) > IO_NEEDLES or any(not n for n in needles):
            needles = []                  # too many (or an empty one): any data passes
            if not f.sockets_only:
                out.skipped[etype] = f"more than {IO_NEEDLES} data needles"
                continue
        lits = [int.from_bytes(n.ljust(8, b"\0"), "little") for n in needles]
        masks = [(1 << (8 * len(n))) - 1 for n in needles]
        pad = IO_NEEDLES - len(needles)
        out.io[eid] = _IO.pack(1, 1 if f.sockets_only else 0, len(needles), 0,
                               *lits, *([0] * pad), *masks, *([0] * pad),
                               *(len(n) for n in needles), *([0] * pad))
        out.filtered[etype] = eid
    for etype in sorted(plan.child_clones):
        # emit_clone: enabled = drop the child's return (res 0); the rest of the entry unused
        eid = event_ids.get(etype)
        if eid is None or eid >= MAX_IDS:
            out.skipped[etype] = "not produced by this collector"
            continue
        out.cfg[eid] = _bare_cfg(1, 0)
        out.filtered[etype] = eid
    return out


def load(plan: FilterPlan, fds: dict[str, int], event_ids: dict[str, int],
         close_id: int | None) -> KernelTables:
    """Write the plan into the maps (``map:kf_paths`` and ``map:kf_cfg`` fds): trie first."""
    t = tables(plan, event_ids, close_id)
    trie_fd, cfg_fd = fds["map:kf_paths"], fds["map:kf_cfg"]
    for eid, value in t.io.items():
        map_update(fds["map:kf_io"], _U32.pack(eid), value)
    for raw, mask in t.trie.items():
        map_update(trie_fd, _KEY.pack(len(raw) * 8, raw), _U64.pack(mask))
    for raw, mask in t.rtrie.items():
        map_update(fds["map:kf_rpaths"], _KEY.pack(len(raw) * 8, raw), _U64.pack(mask))
    for raw, mask in t.names.items():
        map_update(fds["map:kf_names"], raw, _U64.pack(mask))
    for eid, value in sorted(t.cfg.items(), key=lambda kv: kv[0] == close_id):
        map_update(cfg_fd, _U32.pack(eid), value)
    if t.relative and any(e in plan.types for e in t.filtered) and "map:kf_rel" in fds:
        epoch = next(_EPOCHS) % 0xFFFFFFFF or 1
        map_update(fds["map:kf_rel"], _U32.pack(0), _U32.pack(epoch))
    return t


def unload(t: KernelTables, fds: dict[str, int]) -> None:
    """Undo :func:`load` (before a new plan): every type's config off first, so each event
    passes while the tries are emptied."""
    off = _bare_cfg(0, 0)
    if "map:kf_rel" in fds:
        map_update(fds["map:kf_rel"], _U32.pack(0), _U32.pack(0))
    for eid in t.cfg:
        map_update(fds["map:kf_cfg"], _U32.pack(eid), off)
    for eid in t.io:
        map_update(fds["map:kf_io"], _U32.pack(eid), bytes(_IO.size))
    for raw in t.trie:
        map_delete(fds["map:kf_paths"], _KEY.pack(len(raw) * 8, raw))
    for raw in t.rtrie:
        map_delete(fds["map:kf_rpaths"], _KEY.pack(len(raw) * 8, raw))
    for raw in t.names:
        map_delete(fds["map:kf_names"], raw)


class FilterCounters:
    """Reads ``kf_counts`` (per-CPU u64, index id * len(REASONS) + reason) for the filtered ids
    only."""

    def __init__(self, map_fd: int, ids: dict[str, int]) -> None:
        self.ids = dict(ids)
        self._counts = PerCpuU64Array(map_fd, MAX_IDS * len(REASONS))
        nr = len(REASONS)
        #: (event type, reason, element) of every counter of a filtered id (read in one batch)
        self._cells = [(etype, reason, eid * nr + r) for etype, eid in self.ids.items()
                       for r, reason in enumerate(REASONS) if reason]
        self._keys = [c[2] for c in self._cells]

    def read(self) -> dict[tuple[str, str], int]:
        """``{(event type, reason): events filtered since start}``."""
        try:
            vals = self._counts.sums(self._keys)
        except OSError:
            return {}
        return {(etype, reason): n
                for (etype, reason, _), n in zip(self._cells, vals, strict=True) if n}


def set_sleeping(ctl_fd: int, worker: int = 0) -> None:
    """Tell the producers the consumer (worker ``worker``'s, with collector.workers > 1)
    sleeps: the next record into its rings wakes it (``ctl[worker] = 1``)."""
    map_update(ctl_fd, _U32.pack(worker), _U32.pack(1))
