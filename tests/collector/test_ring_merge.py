"""Timestamp order across ring buffers when the rings are behind (falconet.collector.merge):
each read takes at most ``batch`` records per ring, and a quiet CPU's ring covers more time per
batch than a busy one's, so sorting each read alone yields events out of order. And the rings
are read one after another, so a record can land in a ring already read that is older than one
read next (a parent's fork and its child's first call on another CPU). Property tests over
backlogs of any shape and over records committed while a read is under way: the merged stream
is every event once, in timestamp order."""

from __future__ import annotations

from types import SimpleNamespace

from falconet.collector.merge import IN_FLIGHT_NS, TimestampMerge
from hypothesis import given, settings
from hypothesis import strategies as st


def read_rounds(rings: list[list[int]], batch: int) -> list[int]:
    """The consumer loop of collector/source.py over backlogged rings, as timestamps."""
    pos = [0] * len(rings)
    merge = TimestampMerge()
    out: list[int] = []
    while True:
        got: list[SimpleNamespace] = []
        frontier = None
        for i, ring in enumerate(rings):
            taken = ring[pos[i]: pos[i] + batch]
            pos[i] += len(taken)
            got.extend(SimpleNamespace(ts=t) for t in taken)
            if len(taken) >= batch and got:
                frontier = got[-1].ts if frontier is None else min(frontier, got[-1].ts)
        if not got and not merge.held:
            break
        out.extend(e.ts for e in merge.order(got, frontier))
    out.extend(e.ts for e in merge.drain())
    return out


rings_st = st.lists(st.lists(st.integers(0, 10_000)).map(sorted), min_size=2, max_size=5)


@settings(max_examples=400, deadline=None)
@given(rings=rings_st, batch=st.integers(1, 8))
def test_backlogged_rings_come_out_in_timestamp_order(rings: list[list[int]], batch: int) -> None:
    out = read_rounds(rings, batch)
    assert out == sorted(t for r in rings for t in r)


def test_sorting_each_read_alone_is_not_enough() -> None:
    """The case the merge exists for: a busy ring (1..8) and a quiet one (5, 100), batch 2."""
    busy, quiet = list(range(1, 9)), [5, 100]
    naive: list[int] = []
    for k in range(0, 8, 2):
        naive += sorted(busy[k:k + 2] + quiet[k:k + 2])
    assert naive != sorted(naive)                     # 100 comes before 5..8
    assert read_rounds([busy, quiet], 2) == sorted(busy + quiet)


def test_nothing_is_held_when_no_ring_is_left_with_records() -> None:
    m = TimestampMerge()
    got = [SimpleNamespace(ts=t) for t in (3, 1, 2)]
    assert [e.ts for e in m.order(got, None)] == [1, 2, 3] and not m.held
    got = [SimpleNamespace(ts=t) for t in (9, 4)]
    assert [e.ts for e in m.order(got, 4)] == [4] and [e.ts for e in m.held] == [9]
    assert [e.ts for e in m.order([], None)] == [9] and not m.drain()


def read_while_committing(rings: list[list[tuple[int, int]]], batch: int, costs: list[int],
                          gaps: list[int], bounded: bool = True) -> list[int]:
    """The same loop on rings that fill while it reads: each ring holds ``(ts, commit)``
    records (stamped at ``ts``, visible from ``commit``), each ring's read takes a cost from
    ``costs`` and each pass is followed by a gap from ``gaps`` (cycled; every gap > 0, so the
    clock passes the last commit)."""
    pos = [0] * len(rings)
    merge = TimestampMerge()
    out: list[int] = []
    clock, k = 0, 0
    last = max((c for r in rings for _, c in r), default=0)
    while clock <= last + IN_FLIGHT_NS or merge.held or any(
            pos[i] < len(r) for i, r in enumerate(rings)):
        started = clock
        got: list[SimpleNamespace] = []
        frontier = None
        for i, ring in enumerate(rings):
            clock += costs[k % len(costs)]
            k += 1
            taken = []
            while pos[i] < len(ring) and len(taken) < batch and ring[pos[i]][1] <= clock:
                taken.append(ring[pos[i]][0])
                pos[i] += 1
            got.extend(SimpleNamespace(ts=t) for t in taken)
            if len(taken) >= batch and got:
                frontier = got[-1].ts if frontier is None else min(frontier, got[-1].ts)
        if got or merge.held:
            out.extend(e.ts for e in merge.order(got, frontier, started if bounded else None))
        clock += gaps[k % len(gaps)]
    out.extend(e.ts for e in merge.drain())
    return out


@st.composite
def committing_rings(draw: st.DrawFn) -> list[list[tuple[int, int]]]:
    """Per-CPU rings: stamps in order, each record visible at most IN_FLIGHT_NS after its
    stamp and never before the one ahead of it (one CPU commits in order)."""
    rings = []
    for _ in range(draw(st.integers(2, 4))):
        ts = sorted(draw(st.lists(st.integers(0, 40 * IN_FLIGHT_NS), max_size=30)))
        commit, ring = 0, []
        for t in ts:
            commit = max(commit, t + draw(st.integers(0, IN_FLIGHT_NS)))
            ring.append((t, commit))
        rings.append(ring)
    return rings


@settings(max_examples=400, deadline=None)
@given(rings=committing_rings(), batch=st.integers(1, 8),
       costs=st.lists(st.integers(0, 3 * IN_FLIGHT_NS), min_size=1, max_size=5),
       gaps=st.lists(st.integers(IN_FLIGHT_NS // 10, 5 * IN_FLIGHT_NS), min_size=1,
                       max_size=5))
def test_records_committed_during_a_read_come_out_in_timestamp_order(
        rings: list[list[tuple[int, int]]], batch: int, costs: list[int],
        gaps: list[int]) -> None:
    out = read_while_committing(rings, batch, costs, gaps)
    assert out == sorted(t for r in rings for t, _ in r)


def test_a_fork_committed_behind_the_read_comes_before_its_childs_call() -> None:
    """Ring 0 (the parent's CPU) is read empty; the parent forks (stamp 2.0 ms) and its child
    calls dup2 on CPU 1 (2.1 ms) before ring 1 is read. Without the bound of the read's start
    the dup2 goes out first, and the state meets a child it has no fork for."""
    ms = IN_FLIGHT_NS
    rings = [[(2 * ms, 2 * ms)], [(21 * ms // 10, 21 * ms // 10)]]
    costs, gaps = [19 * ms // 10 + ms // 20, ms // 4], [ms]   # ring 0 at 1.95 ms, 1 at 2.2
    assert read_while_committing(rings, 8, costs, gaps, bounded=False) == [21 * ms // 10, 2 * ms]
    assert read_while_committing(rings, 8, costs, gaps) == [2 * ms, 21 * ms // 10]
