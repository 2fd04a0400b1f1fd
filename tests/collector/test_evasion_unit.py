"""Fast tests of the issue-19 parts without a kernel: io_uring and resolved-open records, the
fixed-file slots of the state parser, prctl names, and the evasion fields."""

from __future__ import annotations

import struct

import pytest
from falconet import syscalls
from falconet.collector import program
from falconet.collector.decoder import HDR, RecordDecoder, _make_generic
from falconet.events import Event
from falconet.state.fields import core_field_defs
from falconet.state.parser import StateParser
from falconet.state.tables import StateTables

M64 = 2**64 - 1


def _record(eid: int, res: int, words: tuple[int, ...], strings: list[bytes]) -> bytes:
    lens = [len(s) for s in strings] + [0] * (3 - len(strings))
    return HDR.pack(1_000, 42, res, 100, 99, eid, *lens, *words, 1) + b"".join(strings)


def _dec(resolve: bool = False) -> RecordDecoder:
    return RecordDecoder(path_len=512, argv_len=4096, env_len=0, resolve_paths=resolve)


# ------------------------------------------------------------------------------- records
def test_io_uring_records_decode_as_the_syscall_marked_via_io_uring():
    d = _dec()
    ring = 0xABCD1234
    raw = _record(program.IOU_IDS["iou_openat"], 5, ((-100) & M64, 0, 0o100000, 0, 0, 0),
                  [b"/etc/shadow\0"])
    e = d.decode(memoryview(raw), 0)
    assert (e.type, e.res) == ("openat", 5)
    assert e.args["name"] == "/etc/shadow" and e.args["fd"] == 5 and e.args["via"] == "io_uring"
    assert "slot" not in e.args
    # into fixed slot 2 of a ring: no fd of its own
    raw = _record(program.IOU_IDS["iou_openat"], 0, ((-100) & M64, 0, 0, 0, 0, (ring << 32) | 3),
                  [b"/etc/group\0"])
    e = d.decode(memoryview(raw), 0)
    assert e.args["fd"] == -1 and e.args["slot"] == 2 and e.args["ring"] == ring
    # FIXED_FD_INSTALL: dup3 from the slot to the new fd
    raw = _record(program.IOU_IDS["iou_fixed_fd_install"], 0, (M64, M64, 0o2000000, 0, 0,
                                                               (ring << 32) | 3), [])
    e = d.decode(memoryview(raw), 0)
    assert e.type == "dup3" and e.args["newfd"] == 0 and e.args["oldfd"] == -1
    assert e.args["slot"] == 2 and e.args["flags"] == 0o2000000


def test_every_io_uring_record_reports_a_known_event_type():
    assert set(program.IOU_EVENTS.values()) <= set(syscalls.EVENTS)
    assert min(program.IOU_IDS.values()) > max(program.EVENT_IDS.values())
    assert max(program.IOU_IDS.values()) < 2**16


@pytest.mark.parametrize("res, strings", [(7, [b"/tmp/l\0", b"/etc/shadow\0"]),
                                          (-2, [b"/nope\0"]), (3, [b"rel\0", b"\0"])])
def test_resolved_openat_hot_decoder_matches_the_generic_one(res, strings):
    d = _dec(resolve=True)
    raw = memoryview(b"\0" * 8 + _record(program.EVENT_IDS["openat"], res,
                                         ((-100) & M64, 0, 0, 0o644, 0, 0), strings))
    generic = _make_generic("openat", program.RESOLVED_OPENS["openat"], d.boot_offset, hot=False)
    fast, slow = d.decode(raw, 8), generic(raw, 8)
    assert list(fast.args.items()) == list(slow.args.items())
    assert (fast.type, fast.ts, fast.res) == (slow.type, slow.ts, slow.res)


def test_resolved_opens_decode_the_schema_params_plus_resolved():
    for name, spec in program.RESOLVED_OPENS.items():
        keys = {"cgroup_id", "cpu"} | {i.partition("=")[0] for i in spec.decode.split()}
        assert keys == set(syscalls.EVENTS[name].param_names) | {"resolved"}, name


def test_io_uring_programs_need_the_tracepoint_fields(tmp_path):
    fmt = tmp_path / "events" / "io_uring"
    for tp, body in (("io_uring_submit_req", "void * req;\toffset:16;\tsize:8;\n"
                      "\tfield:u8 opcode;\toffset:32;\tsize:1;\n"
                      "\tfield:unsigned long long flags;\toffset:40;\tsize:8;"),
                     ("io_uring_complete", "void * req;\toffset:16;\tsize:8;\n"
                      "\tfield:int res;\toffset:32;\tsize:4;")):
        (fmt / tp).mkdir(parents=True)
        (fmt / tp / "format").write_text(f"format:\n\tfield:{body}\n")
    offsets = dict.fromkeys(__import__("falconet.collector.btf", fromlist=["x"]).IOURING_OFFSETS, 8)
    flags = program.iouring_cflags(str(tmp_path), offsets)
    assert flags is not None and "-DIOU_TP_SUBMIT_OPCODE=32" in flags
    assert "-DIOU_TP_COMPLETE_RES=32" in flags and "-DWANT_IOURING" in flags
    assert program.iouring_cflags(str(tmp_path), {}) is None          # BTF lacks the structs
    assert program.iouring_cflags(None, offsets) is None
    # only the opcodes of traced event types
    only = program.iouring_cflags(str(tmp_path), offsets, {"openat", "close"})
    assert only is not None and "-DIOU_WANT_OPENAT" in only and "-DIOU_WANT_CLOSE" in only
    assert "-DIOU_WANT_CONNECT" not in only and "-DIOU_WANT_FIXED_FD_INSTALL" not in only
    assert program.iouring_cflags(str(tmp_path), offsets, {"execve"}) is None


# ------------------------------------------------------------------------------- state
def _evt(typ: str, args: dict, res: int | None = 0, ts: int = 1) -> Event:
    return Event("syscall", typ, ts, 10, 10, {"cgroup_id": 1, **args}, res)


def test_fixed_slots_stay_out_of_the_fd_table_and_install_copies_them():
    p = StateParser(StateTables())
    iou = {"via": "io_uring", "ring": 7}
    o = _evt("openat", {"name": "/etc/shadow", "dirfd": -100, "flags": 0, "fd": -1, "slot": 1,
                        **iou}, res=0)
    p(o)
    t = p.tables.threads[10]
    assert o.fdinfo.num == 1 and o.fdinfo.name == "/etc/shadow" and 1 not in t.fds
    s = _evt("socket", {"domain": 2, "type": 1, "proto": 0, "fd": -1, "slot": 2, **iou})
    p(s)
    c = _evt("connect", {"fd": -1, "family": 2, "sip": "", "sport": 0, "dip": "10.0.0.9",
                         "dport": 4444, "slot": 2, **iou})
    p(c)
    assert c.fdinfo.typechar == "4" and c.fdinfo.dip == "10.0.0.9" and c.fdinfo.connected
    inst = _evt("dup3", {"oldfd": -1, "newfd": 0, "flags": 0, "fd": 0, "slot": 2, **iou}, res=0)
    p(inst)
    assert t.fds[0].typechar == "4" and t.fds[0].dport == 4444 and inst.fdinfo is t.fds[0]
    p(_evt("close", {"fd": -1, "slot": 1, **iou}))
    later = _evt("dup3", {"oldfd": -1, "newfd": 5, "flags": 0, "fd": 5, "slot": 1, **iou}, res=5)
    p(later)
    assert later.fdinfo is None and 5 not in t.fds     # the slot was closed
    # another ring's slot 2 is another file
    other = _evt("dup3", {"oldfd": -1, "newfd": 6, "flags": 0, "fd": 6, "slot": 2,
                          "via": "io_uring", "ring": 8}, res=6)
    p(other)
    assert other.fdinfo is None


def test_plain_io_uring_fds_go_through_the_normal_handlers():
    p = StateParser(StateTables())
    iou = {"via": "io_uring"}
    p(_evt("openat", {"name": "/etc/a", "dirfd": -100, "flags": 0, "fd": 4, **iou}, res=4))
    p(_evt("close", {"fd": 4, **iou}))
    p(_evt("openat", {"name": "/etc/b", "dirfd": -100, "flags": 0, "fd": 4, **iou}, res=4))
    cl = _evt("close", {"fd": 4})
    p(cl)
    assert cl.fdinfo.name == "/etc/b"


def test_prctl_name_is_thread_comm_and_proc_name_keeps_the_exec_name():
    defs = {d.name: d for d in core_field_defs()}
    tables = StateTables()
    p = StateParser(tables)
    ex = _evt("execve", {"filename": "/usr/bin/python3", "argv": ["python3"], "comm": "python3",
                         "exepath": "/usr/bin/python3.11"})
    p(ex)
    pr = _evt("prctl", {"option": 15, "arg2_str": "sshd", "arg2_int": 0})
    p(pr)
    name = defs["proc.name"].make_extractor(None)
    comm = core_field_defs(tables)
    tc = {d.name: d for d in comm}["thread.comm"].make_extractor(None)
    assert name(pr) == "python3" and tc(pr) == "sshd"
    fork = Event("syscall", "procfork", 2, 10, 10, {"child_tid": 11, "child_pid": 11,
                                                     "parent_tid": 10, "parent_pid": 10,
                                                     "child_comm": "sshd", "cgroup_id": 1}, None)
    p(fork)
    child = tables.threads[11]
    assert child.comm == "python3"
    ev = Event("syscall", "close", 3, 11, 11, {"fd": 9, "cgroup_id": 1}, 0)
    p(ev)
    assert tc(ev) == "sshd"
    p(Event("syscall", "execve", 4, 11, 11, {"filename": "/bin/cat", "argv": ["cat"],
                                              "comm": "cat", "exepath": "/usr/bin/cat",
                                              "cgroup_id": 1}, 0))
    ev2 = Event("syscall", "close", 5, 11, 11, {"fd": 9, "cgroup_id": 1}, 0)
    p(ev2)
    assert tc(ev2) == "cat"


# ------------------------------------------------------------------------------- fields
def _fields(tables: StateTables) -> dict:
    from falconet.fields.registry import ArgKind  # noqa: PLC0415
    return {d.name: d.make_extractor(None) for d in core_field_defs(tables)
            if d.arg is not ArgKind.REQUIRED}


def test_exe_mismatch_and_resolved_name_and_fs_paths():
    tables = StateTables()
    p = StateParser(tables)
    f = _fields(tables)
    ex = _evt("execve", {"filename": "/tmp/x/sshd", "argv": ["sshd", "/etc/shadow"],
                         "comm": "sshd", "exepath": "/tmp/x/sshd"})
    p(ex)
    assert f["proc.exe_mismatch"](ex) is False
    ex2 = _evt("execve", {"filename": "/bin/cat", "argv": ["sshd"], "comm": "cat",
                          "exepath": "/usr/bin/cat"})
    p(ex2)
    assert f["proc.exe_mismatch"](ex2) is True          # exec -a sshd cat
    t = tables.threads[10]
    t.cwd = "/work"
    o = _evt("openat", {"name": "lnk", "dirfd": -100, "flags": 0, "fd": 3,
                        "resolved": "/etc/shadow"}, res=3)
    p(o)
    assert f["fd.name"](o) == "/work/lnk" and f["fd.resolved_name"](o) == "/etc/shadow"
    assert f["fs.path.name"](o) == "/work/lnk"
    mv = _evt("renameat2", {"olddirfd": -100, "oldpath": "staged", "newdirfd": 3,
                            "newpath": "../etc/x", "flags": 0})
    p(mv)
    assert f["fs.path.source"](mv) == "/work/staged"
    assert f["fs.path.target"](mv) == "/work/etc/x"      # dirfd 3 is /work/lnk (the requested name)
    sl = _evt("symlinkat", {"target": "/etc/.", "linkdirfd": -100, "linkpath": "cfg"})
    p(sl)
    assert f["fs.path.source"](sl) == "/etc/." and f["fs.path.target"](sl) == "/work/cfg"
    io = _evt("openat", {"name": "/a", "dirfd": -100, "flags": 0, "fd": 4, "via": "io_uring"},
              res=4)
    p(io)
    assert f["evt.is_io_uring"](io) is True and f["evt.is_io_uring"](o) is False


def test_open_by_handle_at_names_the_fd_by_its_path():
    tables = StateTables()
    p = StateParser(tables)
    f = _fields(tables)
    e = _evt("open_by_handle_at", {"fd": 5, "mountfd": 3, "flags": 0, "path": "/etc/shadow"},
             res=5)
    p(e)
    assert f["fd.name"](e) == "/etc/shadow" and f["evt.is_open_read"](e) is True
    assert f["fd.resolved_name"](e) == "/etc/shadow"     # its only path is the kernel's
    o = _evt("openat", {"name": "/tmp/lnk", "dirfd": -100, "flags": 0, "fd": 6,
                        "resolved": "/etc/shadow"}, res=6)
    p(o)
    d = _evt("dup2", {"oldfd": 6, "newfd": 9}, res=9)
    p(d)
    assert f["fd.name"](d) == "/tmp/lnk" and f["fd.resolved_name"](d) == "/etc/shadow"
    assert struct.calcsize("<Q") == 8
