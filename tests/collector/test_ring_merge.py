"""Timestamp order across ring buffers when the rings are behind (falconet.collector.merge):
each read takes at most ``batch`` records per ring, and a quiet CPU's ring covers more time per
batch than a busy one's, so sorting each read alone yields events out of order. Property test
over backlogs of any shape: the merged stream is every event once, in timestamp order."""

from __future__ import annotations

from types import SimpleNamespace

from falconet.collector.merge import TimestampMerge
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
