"""Core field declarations: coverage of what Falco's stable rules use, types, argument handling,
generic evt.* fields on every source, and docs/fields.md kept in sync with the code."""

from __future__ import annotations

import re
import time

import pytest
from conftest import REPO, SHARED
from falconet.events import Event
from falconet.fields.registry import FieldRegistry, FieldType, UnknownFieldError
from falconet.state.fields import core_field_defs, markdown_table
from falconet.state.tables import FdInfo, StateTables, ThreadInfo

REFERENCE = SHARED / "reference" / "falco-fields-used.md"

#: the families and names the brief asks for (beyond the stable rules)
EXPECTED = """
evt.type evt.num evt.time evt.time.s evt.time.iso8601 evt.rawtime evt.dir evt.res evt.rawres
evt.failed evt.arg evt.rawarg evt.args evt.is_open_read evt.is_open_write evt.is_open_exec
evt.source evt.hostname evt.datetime
proc.name proc.exe proc.exepath proc.args proc.cmdline proc.pname proc.pexe proc.pexepath
proc.pcmdline proc.ppid proc.pid proc.vpid proc.sid proc.sname proc.vpgid proc.tty proc.cwd
proc.duration proc.aname proc.aexe proc.aexepath proc.acmdline proc.apid proc.env proc.loginshellid
proc.is_exe_from_memfd proc.is_exe_upper_layer proc.is_exe_writable proc.exe_ino proc.exe_ino.ctime
proc.exe_ino.mtime proc.exe_ino.ctime_duration_proc_start proc.pidns_init_start_ts
thread.tid thread.vtid thread.cap_effective thread.cap_permitted thread.cap_inheritable
user.uid user.name user.loginuid user.loginname user.homedir user.shell group.gid group.name
fd.num fd.type fd.typechar fd.name fd.nameraw fd.directory fd.filename fd.sip fd.cip fd.lip fd.rip
fd.sport fd.cport fd.lport fd.rport fd.l4proto fd.is_server fd.sockfamily fd.ip fd.net fd.snet
fd.cnet fd.port fd.connected fd.name_changed fd.sip.name fd.types fd.ino fd.dev
""".split()


@pytest.fixture(scope="module")
def reg() -> FieldRegistry:
    r = FieldRegistry()
    r.register_all(core_field_defs(hostname="h"))
    return r


def _reference_fields() -> list[tuple[str, str]]:
    rows = re.findall(r"^\| \d+ \| `([a-z0-9_.]+)` \| (\w+) \|", REFERENCE.read_text(), re.M)
    return [(n, t) for n, t in rows if not n.startswith(("container.", "k8s."))]


_FALCO_TYPES = {"CHARBUF": {FieldType.STRING, FieldType.PATH}, "UINT32": {FieldType.UINT32},
                "INT64": {FieldType.INT64}, "UINT64": {FieldType.UINT64}, "BOOL": {FieldType.BOOL},
                "PORT": {FieldType.PORT}, "ABSTIME": {FieldType.ABSTIME},
                "RELTIME": {FieldType.RELTIME}, "IPADDR": {FieldType.IPADDR},
                "IPNET": {FieldType.IPNET}}


def test_every_field_of_the_stable_rules_is_declared_with_falcos_type(reg: FieldRegistry) -> None:
    rows = _reference_fields()
    assert len(rows) >= 50
    for name, ftype in rows:
        fdef = reg.fields.get(name)
        assert fdef is not None, f"{name} missing"
        if name == "evt.arg":
            continue
        assert fdef.type in _FALCO_TYPES[ftype], f"{name}: {fdef.type} vs Falco {ftype}"


def test_exact_tokens_of_the_stable_rules_resolve(reg: FieldRegistry) -> None:
    text = REFERENCE.read_text()
    tokens = set(re.findall(r"`((?:evt\.arg\.|proc\.a\w+\[)[\w\]]+)`", text))
    assert "proc.aname[2]" in tokens and "evt.arg.flags" in tokens
    for tok in tokens:
        name, _, arg = tok.partition("[")
        reg.resolve(name, arg.rstrip("]") or None)


def test_brief_field_list_is_covered(reg: FieldRegistry) -> None:
    missing = [n for n in EXPECTED if n not in reg.fields]
    assert not missing


def test_argument_rules(reg: FieldRegistry) -> None:
    assert reg.resolve("proc.aname", "3").fdef.ancestor
    assert reg.resolve("proc.aname").multi
    assert not reg.resolve("proc.aname", "1").multi
    with pytest.raises(UnknownFieldError):
        reg.resolve("proc.aname", "x")
    with pytest.raises(UnknownFieldError):
        reg.resolve("proc.aname", "-1")
    with pytest.raises(UnknownFieldError):
        reg.resolve("evt.arg")
    with pytest.raises(UnknownFieldError):
        reg.resolve("proc.name", "1")
    assert reg.resolve("evt.arg.flags").arg == "flags"
    assert reg.resolve("evt.arg", "0").arg == "0"
    assert reg.resolve("proc.env", "HOME").fdef.name == "proc.env"
    assert reg.resolve("fd.types", "0").fdef.is_list


def test_generic_evt_fields_apply_to_plugin_sources(reg: FieldRegistry) -> None:
    e = Event("k8s_audit", "audit", 1_700_000_000_123_456_789, raw={"x": 1})
    e.num = 7
    assert reg.resolve("evt.num", source="k8s_audit").extract(e) == 7
    assert reg.resolve("evt.source", source="k8s_audit").extract(e) == "k8s_audit"
    assert reg.resolve("evt.time.iso8601", source="k8s_audit").extract(e) == "2023-11-14T22:13:20.123456789Z"
    assert reg.resolve("evt.hostname", source="k8s_audit").extract(e) == "h"
    with pytest.raises(UnknownFieldError):
        reg.resolve("proc.name", source="k8s_audit")
    # still a conflict when a plugin re-declares a generic field for syscall
    dup = FieldRegistry(dict(reg.fields))
    with pytest.raises(ValueError):
        dup.register(reg.fields["evt.num"])


def test_time_fields_and_missing_values(reg: FieldRegistry) -> None:
    ts = 1_700_000_000_000_000_042
    e = Event("syscall", "openat", ts, 5, 5, {}, None)
    local = time.localtime(1_700_000_000)
    assert reg.resolve("evt.time").extract(e) == time.strftime("%H:%M:%S", local) + ".000000042"
    assert reg.resolve("evt.time.s").extract(e) == time.strftime("%H:%M:%S", local)
    assert reg.resolve("evt.datetime").extract(e).startswith(time.strftime("%Y-%m-%d", local))
    assert reg.resolve("evt.rawtime").extract(e) == ts
    assert reg.resolve("evt.rawtime.ns").extract(e) == 42
    assert reg.resolve("evt.dir").extract(e) == "<"
    # no thread / fd / res: every state field is missing (None), never an exception
    for name, fdef in reg.fields.items():
        if fdef.arg.value == "required":
            continue
        v = reg.resolve(name).extract(e)
        if name.startswith(("proc.", "thread.", "user.", "group.", "fd.")) and name != "fd.name_changed":
            assert v is None, name
    assert reg.resolve("evt.res").extract(e) is None


def test_ancestors_stop_at_loops_and_missing_parents() -> None:
    tables = StateTables()
    reg = FieldRegistry()
    reg.register_all(core_field_defs(tables, hostname="h"))
    a = ThreadInfo(tid=10, pid=10, ptid=11, comm="a")
    b = ThreadInfo(tid=11, pid=11, ptid=10, comm="b")       # a loop: must not hang
    tables.add(a)
    tables.add(b)
    e = Event("syscall", "x", 1, 10, 10)
    e.thread = a
    assert reg.resolve("proc.aname").extract(e) == ("b",)
    assert reg.resolve("proc.aname", "1").extract(e) == "b"
    assert reg.resolve("proc.aname", "2").extract(e) is None
    assert reg.resolve("proc.pname").extract(e) == "b"


def test_fd_net_fields_only_for_ip_sockets() -> None:
    reg = FieldRegistry()
    reg.register_all(core_field_defs(hostname="h"))
    e = Event("syscall", "read", 1, 1, 1, {"fd": 3})
    e.thread = ThreadInfo(tid=1, pid=1)
    e.fdinfo = FdInfo(3, "f", "/etc/passwd")
    for n in ("fd.sip", "fd.cip", "fd.lport", "fd.ip", "fd.port"):
        assert reg.resolve(n).extract(e) is None, n
    # what Falco 0.44.1 gives for a file (tests/fields/test_vs_falco.py): values, not missing
    assert reg.resolve("fd.l4proto").extract(e) == "<NA>"
    assert reg.resolve("fd.is_server").extract(e) is False
    assert reg.resolve("fd.connected").extract(e) is False
    assert reg.resolve("fd.sip.name").extract(e) is None
    e = Event("syscall", "read", 1, 1, 1, {"fd": 3})        # a new event: values are cached per event
    e.fdinfo = FdInfo(3, "4", "10.0.0.1:1000->10.0.0.2:443", l4proto="tcp", sip="10.0.0.1",
                      sport=1000, dip="10.0.0.2", dport=443, connected=True)
    assert reg.resolve("fd.port").extract(e) == (1000, 443)
    assert reg.resolve("fd.snet").extract(e) == "10.0.0.2"
    assert reg.resolve("fd.sip.name").extract(e) is None     # no reverse DNS (documented)


def test_docs_fields_md_is_generated_from_the_code() -> None:
    doc = (REPO / "docs" / "fields.md").read_text()
    table = markdown_table(core_field_defs(hostname="host"))
    assert table in doc, "docs/fields.md is stale: python -m falconet.state.fields"


def test_evt_args_and_indexed_args(reg: FieldRegistry) -> None:
    t = ThreadInfo(tid=1, pid=1)
    f = t.fds[3] = FdInfo(3, "f", "/etc/passwd")
    e = Event("syscall", "openat", 1, 1, 1, {"fd": 3, "dirfd": -100, "name": "/etc/passwd",
                                             "flags": 0o1101, "mode": 0o644, "cgroup_id": 9}, 3)
    e.thread, e.fdinfo = t, f
    assert reg.resolve("evt.args").extract(e) == (
        "fd=3(<f>/etc/passwd) dirfd=-100(AT_FDCWD) name=/etc/passwd "
        "flags=577(O_TRUNC|O_CREAT|O_WRONLY) mode=420(0644)")
    assert reg.resolve("evt.arg", "0").extract(e) == "<f>/etc/passwd"
    assert reg.resolve("evt.arg", "2").extract(e) == "/etc/passwd"
    assert reg.resolve("evt.arg", "9").extract(e) is None
    assert reg.resolve("evt.rawarg", "3").extract(e) == 0o1101
    assert reg.resolve("evt.arg.mode").extract(e) == "0644"
    assert reg.resolve("evt.arg.nope").extract(e) is None
    assert reg.resolve("evt.is_open_exec").extract(e) is False
    c = Event("syscall", "connect", 1, 1, 1, {"fd": 3, "family": 2, "dip": "1.2.3.4", "dport": 22},
              -111)
    # no thread attached: the fd renders as its number
    assert reg.resolve("evt.args").extract(c) == ("res=-111(ECONNREFUSED) fd=3 family=2(AF_INET) "
                                                  "dip=1.2.3.4 dport=22")
    assert reg.resolve("evt.arg.res").extract(c) == "ECONNREFUSED"
    assert reg.resolve("evt.rawarg.res").extract(c) == -111
    p = Event("syscall", "ptrace", 1, 1, 1, {"request": 16, "pid": 5}, 0)
    assert reg.resolve("evt.arg.request").extract(p) == "PTRACE_ATTACH"
    s = Event("syscall", "socket", 1, 1, 1, {"fd": 4, "domain": 17, "type": 3, "proto": 0}, 4)
    assert reg.resolve("evt.arg.domain").extract(s) == "AF_PACKET"


def test_evt_cpu_is_the_header_cpu_and_hidden_from_evt_args(reg: FieldRegistry) -> None:
    e = Event("syscall", "close", 1, 5, 5, {"fd": 3, "cgroup_id": 1, "cpu": 1}, 0)
    assert reg.resolve("evt.cpu").extract(e) == 1
    assert reg.resolve("evt.args").extract(e) == "res=0 fd=3"
    older = Event("syscall", "close", 1, 5, 5, {"fd": 3, "cgroup_id": 1}, 0)  # an older capture
    assert reg.resolve("evt.cpu").extract(older) is None


def test_thread_cpu_is_cpu_usage_of_procinfo_events_so_always_missing(reg: FieldRegistry) -> None:
    """libsinsp's thread.cpu* are CPU *usage* (PT_DOUBLE), extracted on PPME_PROCINFO_E only;
    no syscall source emits those, so Falco prints <NA> (tests/fields/test_vs_falco.py)."""
    t = ThreadInfo(tid=5, pid=5)
    e = Event("syscall", "close", 1, 5, 5, {"fd": 3, "cgroup_id": 1, "cpu": 1}, 0)
    e.thread = t
    for name in ("thread.cpu", "thread.cpu.user", "thread.cpu.system"):
        f = reg.resolve(name)
        assert f.type is FieldType.DOUBLE and f.extract(e) is None


@pytest.mark.parametrize("cond, error", [
    # Falco 0.44.1 (falco -V): the double field parses its values as integers, like evt.cpu
    ("thread.cpu > 1.5", "1.5 is not a valid number"),
    ("evt.cpu = 0x10", "0x10 is not a valid number"),
    ("thread.cpu contains 2", "'contains' operator not supported for numeric filters"),
    ("evt.cpu = 70000", None),
    ("evt.cpu = -1", None),
    ("thread.cpu in (1, 2)", None),
    ("thread.cpu.user >= 0 or thread.cpu.system exists", None),
])
def test_cpu_fields_load_as_falco_loads_them(reg: FieldRegistry, cond: str, error: str | None
                                            ) -> None:
    from falconet.rules import load_rules_text  # noqa: PLC0415

    text = (f"- rule: r\n  desc: d\n  condition: evt.type = open and {cond}\n"
            "  output: x %evt.cpu %thread.cpu\n  priority: WARNING\n")
    res = load_rules_text(text, reg, append_output=[])
    msgs = [str(m) for m in res.errors]
    if error is None:
        assert res.ok, msgs
    else:
        assert any(error in m for m in msgs), msgs
