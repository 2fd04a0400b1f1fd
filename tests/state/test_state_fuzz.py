"""Property tests: any sequence of well-typed syscall events (including impossible orders) keeps the
parser exception-free and the tables keyed consistently and bounded; every field extracts."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from state_helpers import MiniEngine

TIDS = st.integers(min_value=100, max_value=110)
FDS = st.integers(min_value=-1, max_value=6)
RES = st.integers(min_value=-13, max_value=6)
PATHS = st.sampled_from(["/etc/passwd", "rel/x", "../up", "/a//b/./c", "", "/", "d/"])
IPS = st.sampled_from(["", "127.0.0.1", "10.0.0.1", "::1"])
PORTS = st.integers(min_value=0, max_value=65535)

EVENTS = st.one_of(
    st.tuples(st.just("procfork"), TIDS, st.none(), st.fixed_dictionaries(
        {"child_tid": TIDS, "child_pid": TIDS, "parent_tid": TIDS, "parent_pid": TIDS})),
    st.tuples(st.sampled_from(["clone", "fork", "vfork", "clone3"]), TIDS, RES,
              st.fixed_dictionaries({"child_tid": TIDS, "child_pid": TIDS,
                                     "flags": st.sampled_from([0, 0x400, 0x8000, 0x10f00, 0x20000000])})),
    st.tuples(st.sampled_from(["execve", "execveat"]), TIDS, RES, st.fixed_dictionaries(
        {"filename": PATHS, "argv": st.lists(st.text(max_size=5), max_size=3),
         "cgroup_id": st.integers(0, 3), "uid": st.sampled_from([0, 1000, 4294967295])})),
    st.tuples(st.just("procexit"), TIDS, st.none(), st.just({"status": 0})),
    st.tuples(st.sampled_from(["open", "openat", "openat2", "creat"]), TIDS, RES,
              st.fixed_dictionaries({"name": PATHS, "dirfd": st.sampled_from([-100, 3, 5]),
                                     "flags": st.integers(0, 0o40000000)})),
    st.tuples(st.just("socket"), TIDS, RES, st.fixed_dictionaries(
        {"domain": st.sampled_from([1, 2, 10, 16, 17]), "type": st.integers(0, 10),
         "proto": st.integers(0, 6)})),
    st.tuples(st.sampled_from(["connect", "bind", "sendto", "recvfrom", "accept", "accept4"]), TIDS,
              RES, st.fixed_dictionaries({"fd": FDS, "listenfd": FDS,
                                          "family": st.sampled_from([0, 1, 2, 10]), "sip": IPS,
                                          "sport": PORTS, "dip": IPS, "dport": PORTS, "path": PATHS})),
    st.tuples(st.sampled_from(["dup", "dup2", "dup3", "close", "fchdir", "listen"]), TIDS, RES,
              st.fixed_dictionaries({"fd": FDS, "oldfd": FDS, "newfd": FDS})),
    st.tuples(st.sampled_from(["chdir", "setuid", "setresgid", "capset", "memfd_create", "ptrace"]),
              TIDS, RES, st.fixed_dictionaries({"path": PATHS, "uid": st.integers(0, 5), "name": PATHS,
                                                "cap_effective": st.integers(0, 2**40),
                                                "request": st.integers(0, 20)})),
)

SAMPLE_FIELDS = ["proc.name", "proc.pname", "proc.aname", "proc.cmdline", "fd.name", "fd.types",
                 "fd.directory", "fd.lport", "fd.ip", "evt.args", "evt.res", "user.name",
                 "proc.sname", "thread.cap_effective", "proc.loginshellid", "proc.vpgid.name"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, max_size=60))
def test_random_sequences_are_safe_and_bounded(seq: list) -> None:
    m = MiniEngine(max_threads=8)
    m.tables.max_dead = 3
    for etype, tid, res, args in seq:
        e = m.evt(etype, tid, res, **dict(args))
        for f in SAMPLE_FIELDS:
            name, _, arg = f.partition("[")
            m.field(e, name, arg.rstrip("]") or None)
        m.field(e, "proc.aname", "2")
        m.field(e, "evt.arg", "flags")
        m.field(e, "evt.arg", "0")
    tables = m.tables
    assert len(tables.threads) <= 8
    assert len(tables.dead) <= 3 + 1
    for tid, t in tables.threads.items():
        assert t.tid == tid
