"""The partitioner, the merger and the `workers` setting (no processes)."""

from __future__ import annotations

import pytest
from falconet.collector.source import CollectorConfig
from falconet.syscalls import BASE_STATE, EVENTS
from falconet.workers import AUTO_MIN_BYTES, LIFECYCLE, Partitioner, parse_workers, workers_for
from falconet.workers import partition as part_mod
from falconet.workers.merge import AlertMerger


def test_lifecycle_is_every_state_event_and_the_identity_calls() -> None:
    assert BASE_STATE <= LIFECYCLE
    for name in ("clone", "clone3", "fork", "vfork", "procfork", "execve", "execveat",
                 "procexit", "setuid", "setresgid", "setsid", "setpgid", "chdir", "fchdir",
                 "chroot", "capset", "prctl"):
        assert name in LIFECYCLE, name
    # fd-creating events stay with their process's worker
    for name, e in EVENTS.items():
        if e.file or e.net:
            assert name not in LIFECYCLE, name


def test_tgid_owner_is_stable_and_spreads() -> None:
    p = Partitioner(2, "tgid")
    owners = [p.owner(pid) for pid in range(1000, 1200)]
    assert owners == [p.owner(pid) for pid in range(1000, 1200)]
    assert 60 < sum(owners) < 140                      # both workers get a fair share


def _pair(p: Partitioner, same: bool) -> tuple[int, int]:
    parent = 1000
    for child in range(2000, 3000):
        if (p.owner(child) == p.owner(parent)) == same:
            p.owners.pop(child, None)
            return parent, child
        p.owners.pop(child, None)
    raise AssertionError("no such pid")


def test_tgid_fork_to_another_worker_is_a_handoff_once() -> None:
    p = Partitioner(2, "tgid")
    parent, child = _pair(p, same=False)
    fork = {"child_tid": child, "child_pid": child, "parent_tid": parent, "parent_pid": parent}
    h = p.observe("procfork", parent, parent, fork, None)
    assert h == (p.owner(parent), p.owner(child), child)
    # the parent's clone exit names the same fork: no second handoff
    assert p.observe("clone", parent, parent, {"child_tid": child, "flags": 17}, child) is None
    # a thread is no new process
    assert p.observe("clone", parent, parent, {"flags": 0x10000}, 5555) is None
    # the child's own return (res 0) is nothing
    assert p.observe("clone", child, child, {}, 0) is None


def test_tgid_fork_on_the_same_worker_needs_no_handoff() -> None:
    p = Partitioner(2, "tgid")
    parent, child = _pair(p, same=True)
    assert p.observe("clone", parent, parent, {"child_tid": child, "flags": 17}, child) is None


def test_lineage_keeps_children_with_their_parent() -> None:
    p = Partitioner(4)
    assert p.key == "lineage"                           # the default
    w = p.owner(1)
    for child in range(100, 140):
        assert p.observe("procfork", 1, 1, {"child_pid": child, "parent_pid": 1}, None) is None
        assert p.owner(child) == w


def test_exit_forgets_an_owner_later_and_a_reused_pid_forks_again(monkeypatch) -> None:
    monkeypatch.setattr(part_mod, "_MAX_EXITED", 2)
    p = Partitioner(2, "tgid")
    parent, child = _pair(p, same=False)
    fork = {"child_pid": child, "parent_pid": parent}
    assert p.observe("procfork", parent, parent, fork, None) is not None
    p.observe("procexit", child, child, {}, None)
    # the pid comes back in a new fork: a new handoff
    assert p.observe("procfork", parent, parent, fork, None) is not None
    # a thread's exit is not its process's
    p.observe("procexit", child + 1, child, {}, None)
    assert child in p.owners
    for pid in (7001, 7002, 7003):
        p.owner(pid)
        p.observe("procexit", pid, pid, {}, None)
    assert 7001 not in p.owners


def test_unknown_key_and_zero_workers_are_errors() -> None:
    with pytest.raises(ValueError, match="partition key"):
        Partitioner(2, "cpu")
    with pytest.raises(ValueError):
        Partitioner(0)


def test_merger_releases_in_event_order_once_no_busy_worker_can_precede() -> None:
    m = AlertMerger(2)
    m.add(0, 10, [(3, "a3"), (9, "a9")])
    assert m.pop_ready([True, True]) == []               # worker 1 has acknowledged nothing
    m.add(1, 5, [(4, "b4")])
    assert m.pop_ready([True, True]) == ["a3", "b4"]     # both are past 5
    assert m.pop_ready([True, False]) == ["a9"]           # worker 1 idle: only 0 can precede
    m.add(1, 20, [(12, "b12"), (12, "b12bis")])
    assert m.drain() == ["b12", "b12bis"]                 # one event's alerts keep their order


def test_workers_setting() -> None:
    assert parse_workers("auto") is None and parse_workers(None) is None
    assert parse_workers(3) == 3 and parse_workers("2") == 2
    for bad in (0, -1, "x", 1.5, True, 1000):
        with pytest.raises(ValueError):
            parse_workers(bad)
    assert CollectorConfig.from_dict({"workers": 2}).workers == 2
    assert CollectorConfig.from_dict({}).workers == "auto"
    for bad in (0, "many", True):
        with pytest.raises(ValueError, match="workers"):
            CollectorConfig.from_dict({"workers": bad})


class _Src:
    partitionable = True
    name = "replay"


class _Live:
    name = "ebpf"


def test_auto_is_one_per_core_for_a_big_capture_and_one_otherwise(tmp_path, monkeypatch) -> None:
    import falconet.workers as w  # noqa: PLC0415
    big, small = tmp_path / "big.fcap", tmp_path / "small.fcap"
    big.write_bytes(b"x" * AUTO_MIN_BYTES)
    small.write_bytes(b"x")
    monkeypatch.setattr(w, "cpu_count", lambda: 2)
    assert workers_for("auto", _Src(), {"path": str(big)}) == 2
    assert workers_for("auto", _Src(), {"path": str(small)}) == 1
    assert workers_for(3, _Src(), {"path": str(small)}) == 3          # explicit wins
    assert workers_for("auto", _Src(), {"path": str(small), "workers": 2}) == 2
    assert workers_for(4, _Live(), {}) == 1                            # live: one, for now
    monkeypatch.setattr(w, "cpu_count", lambda: 1)
    assert workers_for("auto", _Src(), {"path": str(big)}) == 1        # one core: one worker


def test_merger_releases_what_precedes_every_unacknowledged_event() -> None:
    """A worker whose buffer fills slowly must not hold the stream: an alert before the first
    event any worker still has to acknowledge is ready."""
    m = AlertMerger(2)
    m.add(0, 100, [(50, "a50"), (90, "a90")])
    # worker 1 acknowledged nothing, but its first pending event is 60
    assert m.pop_ready([False, True], [None, 60]) == ["a50"]
    assert m.pop_ready([False, True], [None, 95]) == ["a90"]


def test_cgroup_key_routes_by_the_events_cgroup_and_never_hands_off() -> None:
    p = Partitioner(2, "cgroup")
    groups = [p.route(1234, cg) for cg in range(100, 300)]
    assert 60 < sum(groups) < 140                       # cgroups spread over both workers
    # one cgroup, any process: one worker; a process is routed by the cgroup it is in now
    assert {p.route(pid, 4242) for pid in range(1000, 1100)} == {p.route(1, 4242)}
    a, b = next((x, y) for x in range(100, 200) for y in range(200, 300)
                if p.group(x) != p.group(y))
    assert p.route(7, a) != p.route(7, b)
    # a fork changes nothing (the child starts in its parent's cgroup): no handoff
    fork = {"child_pid": 8, "parent_pid": 7, "cgroup_id": a}
    assert p.observe("procfork", 7, 7, fork, None) is None
    assert p.route(8, a) == p.route(7, a)
    # the kernel folds the 64-bit id the same way (bpf/falconet.bpf.c, owner_of)
    x = 0x1_0000_0005
    assert part_mod.cgroup_hash(x) == part_mod._mix(0x1 ^ 0x5)


def test_partition_setting_is_checked_with_its_place(tmp_path) -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from falconet.config import load_config  # noqa: PLC0415
    from falconet.workers import partition_for  # noqa: PLC0415
    assert part_mod.parse_key(None) == part_mod.DEFAULT_KEY == "lineage"
    for key in ("lineage", "tgid", "cgroup"):
        assert part_mod.parse_key(key) == key
        assert CollectorConfig.from_dict({"partition": key}).partition == key
    cfg_file = tmp_path / "f.yaml"
    cfg_file.write_text("collector:\n  workers: 2\n  partition: pid\n")
    app = SimpleNamespace(config=load_config(str(cfg_file)))
    with pytest.raises(ValueError) as e:
        partition_for(app, {})
    assert str(e.value) == (f"{cfg_file}:3:3: error: collector.partition: expected one of "
                            "lineage, tgid, cgroup, got 'pid'")
    # --partition-key wins over the file
    assert partition_for(app, {"partition_key": "tgid"}) == "tgid"
    with pytest.raises(ValueError, match="partition"):
        CollectorConfig.from_dict({"partition": "pid"})
    app = SimpleNamespace(config=load_config(None, ["collector.partition=cgroup"]))
    assert partition_for(app, {}) == "cgroup"


def test_the_kernel_program_is_built_for_the_key() -> None:
    from falconet.collector import program  # noqa: PLC0415

    def build(workers: int, key: str) -> list[str]:
        return program.build({"openat", "procfork"}, self_tgid=1, offsets={}, rings=1,
                             workers=workers, partition=key).cflags
    assert [f for f in build(2, "cgroup") if "PARTITION_KEY" in f] == ["-DPARTITION_KEY=2"]
    assert "-DPARTITION_KEY=1" in build(2, "tgid")
    assert "-DPARTITION_KEY=0" in build(2, "lineage")
    # one worker routes nothing: its program (and cache key) is the same for every key
    assert build(1, "cgroup") == build(1, "lineage")
    assert not any("PARTITION_KEY" in f for f in build(1, "tgid"))
