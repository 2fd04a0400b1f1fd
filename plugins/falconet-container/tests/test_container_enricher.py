"""The hot-path parser, the lookup worker and the fields, with fake cgroup files and a fake
resolver (fast). The same paths run against real runtimes in tests/containers/."""

import time

import pytest
from container_helpers import event, proc_cgroup_file, thread
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet_container.enricher import ContainerEnricher
from falconet_container.errors import LookupMiss, LookupTimeout
from falconet_container.fields import field_defs
from falconet_container.model import FAILED, ContainerInfo
from falconet_container.resolver import PartialResult
from falconet_container.worker import LookupWorker

A = "a1" * 32
B = "b2" * 32


class FakeResolver:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def resolve(self, full_id, hint=""):
        self.calls.append((full_id, hint))
        a = self.answers.get(full_id)
        if isinstance(a, Exception):
            raise a
        if a is None:
            raise LookupMiss("unknown")
        return a


def make(cgroups, answers=None, **kw):
    reads = []

    def read(pid):
        reads.append(pid)
        return cgroups.get(pid)
    m = EngineMetrics()
    states = []
    enr = ContainerEnricher(metrics=m, emit_state=lambda p, d: states.append((p, d)),
                            read_cgroup=read, **kw)
    worker = LookupWorker(FakeResolver(answers or {}), enr.containers.__contains__,
                          retry_delays=())
    enr.worker, enr._done = worker, worker.done
    reg = FieldRegistry()
    reg.register_all(field_defs(enr))
    return enr, worker, m, reg, reads, states


def val(reg, evt, name):
    return reg.resolve(name).extract(evt)


def test_container_event_then_metadata():
    info = ContainerInfo(A, type="docker", name="web", image="nginx:1.25",
                         image_repository="nginx", image_tag="1.25", labels={"app": "shop"},
                         k8s_pod_name="web-0", k8s_ns_name="prod", status="resolved")
    enr, worker, m, reg, reads, states = make({100: proc_cgroup_file(f"/docker/{A}")}, {A: info})
    t = thread(100, cgroup_id=77)
    e1 = event(t)
    enr.parse(e1)
    assert t.container_id == A
    assert val(reg, e1, "container.id") == A[:12]
    assert val(reg, e1, "container.full_id") == A
    assert val(reg, e1, "container.name") is None       # lookup not finished: missing value
    assert val(reg, e1, "container.type") == "docker"   # the cgroup said so already
    assert worker.queue.qsize() == 1
    worker.lookup_once(*worker.queue.get_nowait())
    e2 = event(t)
    enr.parse(e2)
    assert val(reg, e2, "container.name") == "web"
    assert val(reg, e2, "container.image.repository") == "nginx"
    assert val(reg, e2, "container.image.tag") == "1.25"
    assert val(reg, e2, "container.label.app") == "shop"
    assert reg.resolve("container.label", "app").extract(event(t)) == "shop"
    assert val(reg, e2, "k8s.pod.name") == "web-0" and val(reg, e2, "k8s.ns.name") == "prod"
    assert m.enrichment[("container", "hit")] == 1
    assert ("container", {"pid": 100, "container_id": A}) in states
    assert any(d.get("container", {}).get("name") == "web" for _, d in states)
    assert reads == [100]


def test_host_process():
    enr, worker, m, reg, reads, _ = make({200: "4:memory:/process_api/" + "f" * 32 + "\n0::/\n"})
    t = thread(200, cgroup_id=1)
    e = event(t)
    enr.parse(e)
    assert val(reg, e, "container.id") == "host"
    assert val(reg, e, "container.name") == "host"
    assert val(reg, e, "container.image.repository") is None
    assert worker.queue.qsize() == 0


def test_cgroup_cache_avoids_proc_reads():
    enr, worker, m, reg, reads, _ = make({301: proc_cgroup_file(f"/default/{A}")})
    for pid in (301, 302, 303):               # three processes of one container (one cgroup)
        enr.parse(event(thread(pid, cgroup_id=55)))
    assert reads == [301]
    assert enr.members[A] == {301, 302, 303}
    assert worker.queue.qsize() == 1


def test_warm_cache_no_reads_for_known_pid():
    enr, worker, m, reg, reads, _ = make({400: proc_cgroup_file(f"/docker/{A}")})
    t = thread(400)                           # no cgroup id (pure v1 host): keyed by pid
    for _ in range(5):
        enr.parse(event(t))
    assert reads == [400]


def test_exec_re_resolves():
    # runc's init process starts on the host, joins the container cgroup, then execs
    cg = {500: "0::/\n"}
    enr, worker, m, reg, reads, _ = make(cg)
    t = thread(500, cgroup_id=1)
    enr.parse(event(t))
    assert t.container_id == ""
    cg[500] = proc_cgroup_file(f"/kubepods/besteffort/pod1/{A}")
    enr.parse(event(t, "execve", cgroup_id=88))
    assert t.container_id == A
    assert enr.members[A] == {500}


def test_an_exec_whose_process_is_gone_takes_its_cgroup_ids_container():
    # `docker exec <c> /bin/true`: runc's init starts on the host, and the exec'd process has
    # exited before /proc/<pid>/cgroup is read; the exec record's cgroup id still names it
    cg = {600: "0::/\n"}
    paths = {88: f"/docker/{A}", 1: "/"}
    enr, *_ = make(cg, cgroup_path=paths.get)
    t = thread(600, cgroup_id=1)
    enr.parse(event(t))
    assert t.container_id == ""
    del cg[600]                                      # gone
    enr.parse(event(t, "execve", cgroup_id=88))
    assert t.container_id == A and enr.by_cgroup[88] == A
    # a gone process of a host (or removed) cgroup keeps what it inherited
    t2 = thread(601, cgroup_id=1)
    t2.container_id = ""
    enr.parse(event(t2, "execve", cgroup_id=99))
    assert t2.container_id == "" and 99 not in enr.by_cgroup


def test_last_exit_drops_the_container():
    enr, worker, m, reg, reads, _ = make({1: proc_cgroup_file(f"/docker/{A}"),
                                          2: proc_cgroup_file(f"/docker/{A}")})
    t1, t2 = thread(1, cgroup_id=9), thread(2, cgroup_id=9)
    enr.parse(event(t1))
    enr.parse(event(t2))
    ex = event(t1, "procexit")
    enr.parse(ex)
    assert val(reg, ex, "container.id") == A[:12]   # the exit event still has its container
    enr.parse(event(t2))
    assert A in enr.containers
    enr.parse(event(t2, "procexit"))
    enr.parse(event(thread(3, cgroup_id=1)))       # any later event applies the drop
    assert A not in enr.containers and 9 not in enr.by_cgroup


def test_exit_before_lookup_is_a_counted_miss():
    enr, worker, m, reg, reads, _ = make({1: proc_cgroup_file(f"/docker/{A}")}, {A: ContainerInfo(A)})
    t = thread(1, cgroup_id=9)
    enr.parse(event(t))
    enr.parse(event(t, "procexit"))
    enr.parse(event(thread(2, cgroup_id=1)))
    assert A not in enr.containers
    done = worker.lookup_once(*worker.queue.get_nowait())
    assert done.result == "miss" and worker.resolver.calls == []   # the runtime is not asked
    enr.parse(event(thread(2, cgroup_id=1)))
    assert m.enrichment[("container", "miss")] == 1
    assert A not in enr.containers                                  # and nothing is re-added


def test_runtime_that_does_not_know_the_container_is_a_counted_miss():
    enr, worker, m, reg, *_ = make({1: proc_cgroup_file(f"/docker/{B}")})
    enr.parse(event(thread(1, cgroup_id=9)))
    worker.lookup_once(*worker.queue.get_nowait())
    enr.drain_now()
    assert m.enrichment[("container", "miss")] == 1
    assert enr.containers[B].status == FAILED


def test_timeout_and_error_are_counted_and_events_go_on():
    enr, worker, m, reg, reads, _ = make(
        {1: proc_cgroup_file(f"/docker/{A}"), 2: proc_cgroup_file(f"/docker/{B}")},
        {A: LookupTimeout("hung"), B: RuntimeError("bug")})
    enr.parse(event(thread(1, cgroup_id=5)))
    enr.parse(event(thread(2, cgroup_id=6)))
    while worker.queue.qsize():
        worker.lookup_once(*worker.queue.get_nowait())
    e = event(thread(1, cgroup_id=5))
    enr.parse(e)
    assert m.enrichment[("container", "timeout")] == 1
    assert m.enrichment[("container", "error")] == 1
    assert val(reg, e, "container.id") == A[:12] and val(reg, e, "container.name") is None


def test_partial_answer_with_a_plain_lookup_error_is_a_counted_error():
    """The docker path can fail with any LookupError (a KeyError from a malformed answer): the
    partial answer from the runc state is used and counted as an error, and the worker goes on."""
    partial = ContainerInfo(A, type="docker", name="web", status="resolved")
    enr, worker, m, reg, reads, _ = make({1: proc_cgroup_file(f"/docker/{A}")},
                                         {A: PartialResult(partial, KeyError("Config"))})
    enr.parse(event(thread(1, cgroup_id=5)))
    done = worker.lookup_once(*worker.queue.get_nowait())
    assert done.result == "error" and done.info is partial
    e = event(thread(1, cgroup_id=5))
    enr.parse(e)
    assert m.enrichment[("container", "error")] == 1
    assert val(reg, e, "container.name") == "web"


def test_background_thread_never_blocks_the_parser():
    class Slow(FakeResolver):
        def resolve(self, full_id, hint=""):
            time.sleep(0.5)
            return ContainerInfo(full_id, name="slow", status="resolved")
    enr, worker, m, reg, reads, _ = make({1: proc_cgroup_file(f"/docker/{A}")})
    worker.resolver = Slow({})
    worker.start()
    try:
        t = thread(1, cgroup_id=5)
        t0 = time.perf_counter()
        for _ in range(1000):
            enr.parse(event(t))
        assert time.perf_counter() - t0 < 0.25
        deadline = time.monotonic() + 3
        while enr.containers[A].name is None and time.monotonic() < deadline:
            enr.parse(event(t))
            time.sleep(0.01)
        assert enr.containers[A].name == "slow"
    finally:
        worker.stop()


def test_capture_and_restore_round_trip():
    info = ContainerInfo(A, type="podman", name="pc1", image="busybox:1", image_repository="busybox",
                         image_tag="1", status="resolved")
    enr, worker, m, reg, reads, states = make({1: proc_cgroup_file(f"/libpod_parent/libpod-{A}")},
                                              {A: info})
    enr.parse(event(thread(1, cgroup_id=5)))
    worker.lookup_once(*worker.queue.get_nowait())
    enr.drain_now()
    snapshot = enr.capture_state()

    replay, rworker, rm, rreg, rreads, _ = make({})
    replay.worker = None
    replay.restore(snapshot)
    t = thread(1, cgroup_id=5)              # the capture's thread snapshot has no id here
    e = event(t)
    replay.parse(e)
    assert val(rreg, e, "container.name") == "pc1"
    assert rreads == []                     # replay never reads this host's /proc
    # per-event records (new container during the recording) work the same way
    replay.restore({"pid": 2, "container_id": B})
    replay.restore({"container": ContainerInfo(B, name="late").to_dict()})
    e2 = event(thread(2))
    replay.parse(e2)
    assert val(rreg, e2, "container.name") == "late"
    with pytest.raises(ValueError):
        replay.restore(["not", "a", "dict"])


def test_non_syscall_events_are_ignored():
    from falconet.events import Event
    enr, worker, m, reg, reads, _ = make({})
    enr.parse(Event("k8s_audit", "audit", 1, pid=1))
    assert reads == [] and enr.pid_cid == {}


def test_suggested_fields_order():
    enr, *_ , reg, reads, states = make({})
    assert [f.name for f in reg.suggested("syscall")] == [
        "container.id", "container.name", "container.image.repository", "container.image.tag",
        "k8s.pod.name", "k8s.ns.name"]


def test_replay_exec_keeps_the_recorded_container():
    """As recorded: the pid record precedes runc init's exec; the state parser then clears
    ``container_id`` because the exec changed cgroup. The recorded id must win."""
    enr, worker, m, reg, reads, _ = make({})
    enr.worker = None
    enr.restore({"containers": [], "pids": {}})
    t = thread(9, cgroup_id=1)
    enr.parse(event(t, "clone"))               # runc init, still on the host
    assert t.container_id == ""
    enr.restore({"pid": 9, "container_id": A})  # written before the exec event
    t.container_id = ""                         # the state parser on the exec (cgroup changed)
    e = event(t, "execve", cgroup_id=77)
    enr.parse(e)
    assert val(reg, e, "container.id") == A[:12]
    assert reads == []
