"""The per-CPU counter reads the engine makes every stats tick, against a real kernel map.

A batched lookup (one system call for a range of elements) must give exactly what reading the
elements one by one gives, on every range the engine asks for, and the per-element path is
what a kernel without batches gets."""

from __future__ import annotations

import os
import struct

import pytest
from conftest import need_root
from falconet.collector import bpfsyscall
from falconet.collector.bpfsys import PerCpuU64Array, possible_cpus
from falconet.collector.kfilter_maps import REASONS, FilterCounters

BPF_MAP_TYPE_PERCPU_ARRAY = 6


@pytest.fixture
def percpu_map():
    need_root()
    fd = bpfsyscall.map_create(bpfsyscall.MapSpec("t_percpu", BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8,
                                                  64 * len(REASONS), 0))
    ncpu = possible_cpus()
    expected = {}
    for key in range(0, 64 * len(REASONS), 3):          # every third element, distinct per CPU
        per_cpu = [key * 1000 + cpu + 1 for cpu in range(ncpu)]
        bpfsyscall.map_update(fd, struct.pack("<I", key), struct.pack(f"<{ncpu}Q", *per_cpu))
        expected[key] = sum(per_cpu)
    yield fd, expected
    os.close(fd)


def test_batched_sums_equal_element_reads(percpu_map):
    fd, expected = percpu_map
    size = 64 * len(REASONS)
    arr = PerCpuU64Array(fd, size)
    want = [expected.get(k, 0) for k in range(size)]
    assert [arr.sum(k) for k in range(size)] == want
    assert arr.sums() == want                                      # the whole map, to its end
    assert arr.sums(range(5, 40)) == want[5:40]                    # a range inside it
    assert arr.sums(range(5, 40)) == want[5:40]                    # its buffers are reused
    assert arr.sums(range(size - 3, size)) == want[size - 3:]      # up to the map's end
    assert arr.sums([]) == []
    assert arr.sums([30, 3, 59]) == [want[30], want[3], want[59]]  # some, in that order
    assert arr._batches, "this kernel has batched lookups: the batch path must have run"


def test_without_batches_elements_are_read_one_by_one(percpu_map):
    fd, expected = percpu_map
    arr = PerCpuU64Array(fd, 64 * len(REASONS))
    arr._batches = False                                           # a kernel without them
    assert arr.sums(range(2, 30)) == [expected.get(k, 0) for k in range(2, 30)]
    assert arr.sums([9, 3]) == [expected.get(9, 0), expected.get(3, 0)]


def test_filter_counters_read_only_the_filtered_ids(percpu_map):
    fd, expected = percpu_map
    ids = {"openat": 3, "close": 9}
    got = FilterCounters(fd, ids).read()
    want = {(etype, reason): expected[eid * len(REASONS) + r]
            for etype, eid in ids.items() for r, reason in enumerate(REASONS)
            if expected.get(eid * len(REASONS) + r)}
    assert got == want and got
