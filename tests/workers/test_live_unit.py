"""The live workers' pieces without a kernel: the program generated for N workers (its rings,
the lifecycle broadcast set, the BPF cache key), the timestamp merge with its bounded delay, and
what ``collector.workers`` means for a live run."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from falconet import syscalls
from falconet.collector import bpfcache, program
from falconet.workers import MAX_LIVE_WORKERS, live_workers_for, prepare
from falconet.workers.live import LiveMerger

KEY_ARGS = {"btf": "b", "release": "r", "kversion": "v", "bcc": "0.26", "falconet": "1.0",
            "toolchain": []}


def _build(workers: int) -> program.BuiltProgram:
    return program.build({"openat", "execve", "procfork", "procexit"}, self_tgid=1, offsets={},
                         rings=2, workers=workers)


def test_n_workers_get_n_groups_of_rings_and_a_new_cache_key():
    one, two = _build(1), _build(2)
    assert "-DNR_WORKERS=1" in one.cflags and "-DNR_RINGS=2" in one.cflags
    assert "-DNR_WORKERS=2" in two.cflags and "-DNR_RINGS=4" in two.cflags
    assert re.findall(r"BPF_RINGBUF_OUTPUT\((events\d+)", two.text) == \
        ["events0", "events1", "events2", "events3"]
    assert "#define RINGS_PER_WORKER 2" in two.text
    # the worker count is compiled in, so a cached program of another count is never reused
    keys = {bpfcache.cache_key(b.text, bpfcache.compile_cflags(b.cflags)[0], **KEY_ARGS)
            for b in (one, two, _build(3))}
    assert len(keys) == 3


def test_every_lifecycle_event_and_nothing_else_is_broadcast():
    text = _build(2).text
    body = text[text.index("static __always_inline int is_bcast"):]
    body = body[:body.index("}\n}\n")]
    cases = {int(x) for x in re.findall(r"case (\d+):", body)}
    assert cases == {program.EVENT_IDS[e] for e in syscalls.LIFECYCLE if e in program.EVENT_IDS}
    assert program.EVENT_IDS["procfork"] in cases and program.EVENT_IDS["setuid"] in cases
    assert program.EVENT_IDS["openat"] not in cases and program.EVENT_IDS["dup2"] not in cases
    # one worker: no broadcast at all
    assert "int is_bcast(u32 id) { return 0; }" in _build(1).text


def _alert(t: int) -> SimpleNamespace:
    return SimpleNamespace(time_ns=t)


def test_merge_releases_in_timestamp_order_once_every_worker_passed():
    m = LiveMerger(2, delay=10.0)
    a, b, c = _alert(30), _alert(10), _alert(20)
    m.add(0, 30, [a], now=0.0)
    m.add(1, 10, [b], now=0.0)
    assert m.pop_ready(now=0.1) == [b]          # worker 1 may still send something before 30
    m.add(1, 25, [c], now=0.2)
    assert m.pop_ready(now=0.3) == [c]
    m.add(1, 40, [], now=0.4)                   # an idle worker's mark
    assert m.pop_ready(now=0.5) == [a]
    assert len(m) == 0


def test_merge_waits_for_a_slow_worker_no_longer_than_its_delay():
    m = LiveMerger(2, delay=0.2)
    a = _alert(50)
    m.add(0, 50, [a], now=1.0)
    assert m.pop_ready(now=1.1) == []           # worker 1 has said nothing yet
    assert m.pop_ready(now=1.25) == [a]
    m.add(0, 60, [_alert(60), _alert(55)], now=2.0)
    assert [x.time_ns for x in m.drain()] == [55, 60]


def test_live_worker_count():
    assert live_workers_for("auto", {}) == 1     # measured: docs/performance.md, "Live"
    assert live_workers_for(2, {}) == 2
    assert live_workers_for("auto", {"workers": 3}) == 3
    with pytest.raises(ValueError, match=f"at most {MAX_LIVE_WORKERS} workers"):
        live_workers_for(MAX_LIVE_WORKERS + 1, {})


def test_a_live_source_on_one_worker_forks_nothing():
    app = SimpleNamespace(config=SimpleNamespace(data={"collector": {"workers": 1}}))
    src = SimpleNamespace(live=True, live_workers=True)
    assert prepare(app, src, None, {}) is None


def test_a_live_run_refuses_the_tgid_key_with_its_place(tmp_path):
    """``tgid``'s fork handoff is replay only (measured deadlocking live: LIVE_KEYS)."""
    from falconet.config import load_config  # noqa: PLC0415
    from falconet.workers import LIVE_KEYS  # noqa: PLC0415
    assert LIVE_KEYS == ("lineage", "cgroup")
    f = tmp_path / "f.yaml"
    f.write_text("collector:\n  workers: 2\n  partition: tgid\n")
    app = SimpleNamespace(config=load_config(str(f)))
    src = SimpleNamespace(live=True, live_workers=True)
    with pytest.raises(ValueError) as e:
        prepare(app, src, None, {})
    assert str(e.value).startswith(f"{f}:3:3: error: collector.partition: 'tgid' is not "
                                   "available for a live run with more than one worker")
    # one live worker routes nothing: any key is fine
    f.write_text("collector:\n  workers: 1\n  partition: tgid\n")
    assert prepare(SimpleNamespace(config=load_config(str(f))), src, None, {}) is None
    # the program for a live key
    assert "-DPARTITION_KEY=2" in program.build({"openat"}, self_tgid=1, offsets={}, rings=1,
                                                 workers=2, partition="cgroup").cflags
