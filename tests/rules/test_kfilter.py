"""The kernel filter: the decision procedure (falconet.kfilter) and its derivation from rules
(falconet.rules.kfilter), atom by atom, on the real field registry."""

from __future__ import annotations

import random
from typing import Any

import pytest
from falconet import kfilter as K
from falconet.events import Event
from falconet.kfilter import (
    Clause,
    FdTracker,
    FilterPlan,
    TypeFilter,
    irregular_path,
    open_event_passes,
    open_passes,
)
from falconet.rules.kfilter import derive
from falconet.state import flags as F
from kfhelp import Engine, open_event, rule

E = Engine()
ALL = "evt.type in (open, openat, openat2, creat)"


def clauses(cond: str, t: str = "openat", **kw) -> tuple[Clause, ...]:
    plan = E.plan(rule(cond), **kw)
    assert t in plan.types, plan.unfiltered
    return plan.types[t].clauses


def one(cond: str, t: str = "openat") -> Clause:
    [c] = clauses(cond, t)
    return c


def C(exact=(), prefixes=(), r=False, w=False, s=False, any_path=False) -> Clause:
    return Clause(any_path, frozenset(exact), frozenset(prefixes), r, w, s)


# ------------------------------------------------------------------------------ the decision
def test_flag_helpers_match_the_state() -> None:
    rnd = random.Random(7)
    for _ in range(5000):
        f = rnd.getrandbits(24)
        assert K.is_open_read(f) == F.is_open_read(f)
        assert K.is_open_write(f) == F.is_open_write(f)
    assert K.CREAT_FLAGS == 0o1101


@pytest.mark.parametrize("raw,irregular", [
    ("/etc/shadow", False), ("/", False), ("etc/shadow", True), ("", True), ("/etc//x", True),
    ("/etc/./x", True), ("/etc/../x", True), ("/etc/", True), ("/a../b", True),
    ("/" + "a" * 253, False), ("/" + "a" * 254, True), ("/é" + "a" * 252, True)])
def test_irregular_path(raw: str, irregular: bool) -> None:
    assert irregular_path(raw) is irregular


def test_open_passes() -> None:
    tf = TypeFilter("openat", (C(exact={"/etc/shadow"}, prefixes={"/etc/ssh/"}, r=True, s=True),
                               C(any_path=True, w=True)))
    assert open_passes(tf, "/etc/shadow", 0, 3, False) is None
    assert open_passes(tf, "/etc/ssh/key", 0, 3, False) is None
    assert open_passes(tf, "/usr/lib/x.so", 0, 3, False) == "path"
    assert open_passes(tf, "/usr/lib/x.so", 0, -2, False) == "failed"
    assert open_passes(tf, "/usr/lib/x.so", 0o1, 3, False) is None          # a write: any path
    assert open_passes(tf, "/usr/lib", 0, 3, True) is None                  # a directory
    assert open_passes(tf, "/usr/lib", 0, -2, True) == "failed"             # failed: no dir pass
    assert open_passes(tf, "lib/x.so", 0, 3, False) is None                 # relative
    assert open_passes(tf, "/usr/lib/x.so", 0o10000000, 3, False) == "flags"   # O_PATH
    assert open_passes(TypeFilter("open", ()), "/x", 0, 3, False) == "flags"
    assert open_passes(TypeFilter("open", ()), "/x", 0, 3, True) is None


def test_plan_describe_and_json() -> None:
    plan = E.plan(rule(f"{ALL} and fd.name = /etc/shadow and evt.is_open_read = true"))
    lines = plan.describe()
    assert "openat: passes if (directory) or any of:" in lines
    assert "  - read, path = /etc/shadow" in lines
    assert plan.filter_close and lines[-1].startswith("close: closes of fds")
    assert lines[-2] == ("relative opens: decided by the directory verdict of their dirfd "
                         "or of the cwd")
    d = plan.to_dict()
    assert d["relative_opens"] is True
    assert d["types"]["open"] == [{"any_path": False, "exact": ["/etc/shadow"], "prefixes": [],
                                   "suffixes": [], "need_read": True, "need_write": False,
                                   "need_success": False, "proc_names": None}]


# ------------------------------------------------------------------------------ atoms
@pytest.mark.parametrize("cond,want", [
    ("fd.name = /etc/shadow", C(exact={"/etc/shadow"})),
    ("fd.nameraw = /etc/shadow", C(exact={"/etc/shadow"})),
    ("fd.name in (/a, /b)", C(exact={"/a", "/b"})),
    ("fd.name startswith /etc/", C(prefixes={"/etc/"})),
    # pmatch compares components (a leading "/" is not one): relative names match too
    ("fd.name pmatch (/etc, /usr/lib)", C(exact={"/etc", "/usr/lib", "etc", "usr/lib"},
                                          prefixes={"/etc/", "/usr/lib/", "etc/", "usr/lib/"})),
    ("fd.name pmatch (/opt/*/bin)", C(prefixes={"/opt/", "opt/"})),
    ("fd.name glob /etc/*.conf", C(prefixes={"/etc/"})),
    ("fd.name glob /etc/hosts", C(exact={"/etc/hosts"})),
    ("fd.directory = /etc", C(exact={"/etc"}, prefixes={"/etc/"})),
    ("fd.directory in (/, /x)", C(exact={"/x"}, prefixes={"/", "/x/"})),
    ("fd.directory startswith /var/log", C(prefixes={"/var/log"})),
    ("fd.nameraw contains ../", C()),
    ("fd.name contains //", C()),
    ("fd.name startswith oneof (/a, /b)", C(prefixes={"/a", "/b"})),
    ("evt.is_open_read = true", C(any_path=True, r=True)),
    ("evt.is_open_write != false", C(any_path=True, w=True)),
    ("fd.num >= 0", C(any_path=True, s=True)),
    ("fd.num > -1", C(any_path=True, s=True)),
    ("fd.num != -1", C(any_path=True, s=True)),
    ("evt.rawres >= 0", C(any_path=True, s=True)),
    ("evt.rawres in (3, 4)", C(any_path=True, s=True)),
    ("evt.res = SUCCESS", C(any_path=True, s=True)),
    ("evt.failed = false", C(any_path=True, s=True)),
])
def test_atoms(cond: str, want: Clause) -> None:
    # each atom with a read requirement, so the clause is never "any open" (unfiltered)
    base = f"{ALL} and evt.is_open_read = true and ({cond})"
    got = one(base)
    assert got == Clause(want.any_path, want.exact, want.prefixes, True, want.need_write,
                         want.need_success)


@pytest.mark.parametrize("cond", [
    "fd.name contains /etc", "fd.name endswith ''", "fd.name icontains /etc",
    "fd.name iglob /etc/*", "tolower(fd.name) = /etc/shadow", "fd.name = val(fd.nameraw)",
    "proc.name != cat", "not fd.name = /etc/shadow", "fd.num = -1", "evt.rawres != 0",
    "evt.res != SUCCESS", "evt.is_open_read = false", "fd.typechar = f",
    "fd.filename startswith sh", "fd.name glob *shadow", "fd.name pmatch (/)",
    "evt.arg.flags contains O_RDONLY"])
def test_opaque_atoms_are_true(cond: str) -> None:
    assert one(f"{ALL} and evt.is_open_read = true and ({cond})") == C(any_path=True, r=True)


@pytest.mark.parametrize("cond,suffixes", [
    ("fd.name endswith shadow", {"shadow"}),
    ("fd.filename = release_agent", {"/release_agent"}),
    ("fd.filename in (a, b)", {"/a", "/b"}),
    ("fd.filename endswith _history", {"_history"}),
    ("fd.name endswith x or fd.filename = y", {"x", "/y"}),
])
def test_suffix_atoms(cond: str, suffixes: set[str]) -> None:
    got = one(f"{ALL} and evt.is_open_read = true and ({cond})")
    assert not got.any_path and got.suffixes == frozenset(suffixes) and not got.exact
    tf = TypeFilter("openat", (got,))
    for s in suffixes:
        assert open_passes(tf, "/some/dir" + s, 0, 3, False) is None
    assert open_passes(tf, "/some/dir/other", 0, 3, False) == "path"


def test_and_or_not() -> None:
    got = clauses(f"{ALL} and ((fd.name = /a and evt.is_open_read = true) or "
                  "(fd.name startswith /b/ and evt.is_open_write = true and fd.num >= 0))")
    assert set(got) == {C(exact={"/a"}, r=True), C(prefixes={"/b/"}, w=True, s=True)}
    # a conjunction of path sets is their intersection
    assert one(f"{ALL} and evt.is_open_read = true and fd.name startswith /etc and "
               "fd.name in (/etc/shadow, /usr/x)") == C(exact={"/etc/shadow"}, r=True)
    # an or of a path and no path: any path; need_* only if both sides need it
    assert one(f"{ALL} and evt.is_open_read = true and fd.num >= 0 and (fd.name = /a or "
               "proc.cwd = x)") == C(any_path=True, r=True, s=True)
    # De Morgan: not (a or b) = not a and not b: both opaque
    assert one(f"{ALL} and evt.is_open_read = true and not (fd.name = /a or fd.num >= 0)") == \
        C(any_path=True, r=True)
    # equal flags merge, a weaker clause swallows a stronger one
    got = clauses(f"{ALL} and evt.is_open_read = true and (fd.name = /a or fd.name = /b or "
                  "(fd.name = /c and fd.num >= 0))")
    assert got == (C(exact={"/a", "/b"}, r=True), C(exact={"/c"}, r=True, s=True))


def test_event_types_narrow() -> None:
    plan = E.plan(rule("(evt.type = open and fd.name = /a and fd.num >= 0) or "
                       "(evt.type = openat and fd.name = /b and fd.num >= 0)"))
    assert plan.types["open"].clauses == (C(exact={"/a"}, s=True),)
    assert plan.types["openat"].clauses == (C(exact={"/b"}, s=True),)
    assert plan.types["creat"].clauses == ()
    plan = E.plan(rule(f"{ALL} and not evt.type in (open, openat) and fd.num >= 0"))
    assert set(plan.types["open"].clauses) == set() and plan.types["creat"].clauses
    plan = E.plan(rule("evt.type != open and evt.type in (open, openat) and fd.num >= 0"))
    assert plan.types["open"].clauses == ()


def test_macros_lists_exceptions() -> None:
    text = """
- list: secrets
  items: [/etc/shadow, /etc/sudoers]
- macro: open_read
  condition: (evt.type in (open, openat, openat2) and evt.is_open_read=true and fd.num>=0)
- rule: r
  desc: d
  condition: open_read and fd.name in (secrets)
  output: o
  priority: warning
  exceptions:
    - name: known
      fields: [proc.name, fd.name]
      values: [[cat, /etc/shadow]]
"""
    plan = E.plan(text)
    assert plan.types["openat"].clauses == (C(exact={"/etc/shadow", "/etc/sudoers"}, r=True,
                                                s=True),)
    assert plan.types["creat"].clauses == ()
    assert plan.unfiltered == {}


def test_unfilterable_rules() -> None:
    # a rule on every event type
    plan = E.plan(rule("proc.name = x"))
    assert plan.types == {} and "matches every event type" in plan.unfiltered["openat"]
    assert not plan.filter_close
    # an open rule with no testable condition: that type filters nothing
    plan = E.plan(rule("evt.type = openat and proc.cwd = x"))
    assert "openat" not in plan.types and "openat" in plan.unfiltered
    # plugins
    plan = E.plan(rule(f"{ALL} and fd.num >= 0"), unfiltered_types={"openat": "learning"})
    assert plan.unfiltered["openat"] == "needed by plugin learning"
    assert "open" in plan.types


def test_fd_consuming_rules_turn_open_filtering_off() -> None:
    opens = rule(f"{ALL} and fd.num >= 0 and fd.name = /a", name="o")
    for cond, out in [("evt.type = fchmod and fd.name startswith /tmp", "x"),
                      ("evt.type = close and fd.name startswith /etc", "x"),
                      ("evt.type = dup2 and fd.typechar = f", "x"),
                      ("evt.type in (unlinkat) and evt.args contains x", "x"),
                      ("evt.type = execve", "n=%proc.fdopencount")]:
        plan = E.plan(opens + rule(cond, name="c", output=out))
        assert plan.types == {}, cond
        assert "open filtering is off: rule 'c'" in plan.unfiltered["openat"]
    # socket-proven fd reads, fd.* on types whose fd never comes from the table: fine
    for cond, out in [("evt.type = dup2 and fd.type in (ipv4, ipv6)", "%fd.name %evt.args"),
                      ("evt.type = connect and (fd.typechar = 4 or fd.typechar = 6)", "%fd.name"),
                      ("evt.type = sendto and fd.sport = 22", "%fd.name"),
                      ("evt.type = execve", "%fd.name %evt.args %evt.arg.flags"),
                      ("evt.type = unlinkat", "%evt.arg.name"),
                      # fd-consuming calls whose unknown fd the state reads back from /proc
                      # (RECOVERED_FD_TYPES): fd.* in the output only
                      ("evt.type = fchmod and evt.rawres >= 0", "file=%fd.name")]:
        plan = E.plan(opens + rule(cond, name="c", output=out))
        assert "openat" in plan.types, (cond, plan.unfiltered)


def test_filter_close() -> None:
    opens = rule(f"{ALL} and fd.num >= 0 and fd.name = /a", name="o")
    assert E.plan(opens).filter_close
    assert not E.plan(opens + rule("evt.type = close and proc.name = x", name="c")).filter_close
    assert not E.plan(opens, unfiltered_types={"close": "p"}).filter_close


# ------------------------------------------------------------------------------ fd tracking
def _ev(t: str, args: dict, res: int, pid: int = 100, tid: int | None = None):
    from falconet.events import Event
    return Event("syscall", t, 1, tid or pid, pid, args, res)


def test_fd_tracker() -> None:
    plan = FilterPlan({"openat": TypeFilter("openat", (C(exact={"/a"}),))}, {}, True)
    tr = FdTracker(plan)
    assert tr.verdict(open_event("openat", "/b", res=5)) == "path"
    assert tr.verdict(open_event("openat", "/a", res=6)) is None
    assert tr.verdict(_ev("close", {"fd": 6}, 0)) is None
    assert tr.verdict(_ev("close", {"fd": 5}, 0)) == "untracked_fd"
    assert tr.verdict(_ev("close", {"fd": 5}, 0)) is None              # once
    tr.verdict(open_event("openat", "/b", res=7))
    tr.verdict(_ev("dup2", {"oldfd": 3, "newfd": 7}, 7))                 # fd 7 reused
    assert tr.verdict(_ev("close", {"fd": 7}, 0)) is None
    tr.verdict(open_event("openat", "/b", res=8))
    tr.verdict(_ev("procexit", {}, 0, tid=101))                          # not the leader
    assert (100, 8) in tr.untracked
    tr.verdict(_ev("procexit", {}, 0))
    assert not tr.untracked
    tr.verdict(open_event("openat", "/b", res=9))
    tr.verdict(_ev("pipe", {"fd1": 9, "fd2": 10}, 0))
    assert not tr.untracked
    assert tr.filtered == {("openat", "path"): 4, ("close", "untracked_fd"): 1}
    no_close = FdTracker(FilterPlan(plan.types, {}, False))
    no_close.verdict(open_event("openat", "/b", res=5))
    assert no_close.verdict(_ev("close", {"fd": 5}, 0)) is None


def test_unknown_is_dir_passes() -> None:
    tf = TypeFilter("openat", (C(exact={"/a"}),))
    assert K.open_event_passes(tf, open_event("openat", "/b", is_dir=None)) is None
    assert K.open_event_passes(tf, open_event("openat", "/b", is_dir=False)) == "path"
    assert K.open_event_passes(tf, open_event("creat", "/b", is_dir=False)) == "path"


def _reference(tf: TypeFilter, raw: str, flags: int, res: int, is_dir: bool) -> str | None:
    """The decision as docs/kernel-filter.md states it, written plainly."""
    read, write, ok = F.is_open_read(flags), F.is_open_write(flags), res >= 0
    if ok and is_dir:
        return None
    def meets(c: Clause, ok: bool) -> bool:
        return (read or not c.need_read) and (write or not c.need_write) and \
            (ok or not c.need_success)
    live = [c for c in tf.clauses if meets(c, ok)]
    if not live:
        return "failed" if any(meets(c, True) for c in tf.clauses) else "flags"
    if any(c.any_path for c in live) or irregular_path(raw):
        return None
    if any(raw in c.exact or any(raw.startswith(p) for p in c.prefixes) for c in live):
        return None
    return "path"


def test_decision_matches_its_statement() -> None:
    rnd = random.Random(11)
    names = ["/a", "/a/b", "/ab", "/etc/shadow", "/etc/", "/", "a", "/x//y", "/a/../b"]
    for _ in range(20000):
        cs = tuple(Clause(rnd.random() < 0.2, frozenset(rnd.sample(names, rnd.randint(0, 2))),
                          frozenset(rnd.sample(names, rnd.randint(0, 2))), rnd.random() < 0.4,
                          rnd.random() < 0.4, rnd.random() < 0.5)
                   for _ in range(rnd.randint(0, 3)))
        tf = TypeFilter("openat", cs)
        args = (rnd.choice(names + ["/a/b/c", "/etc/shadowx"]),
                rnd.choice([0, 1, 2, 0o1000, 0o10000000, 0o1101]), rnd.choice([3, -2]),
                rnd.random() < 0.2)
        assert open_passes(tf, *args) == _reference(tf, *args), (cs, args)


def test_fd_tracker_forgets_a_reused_pid() -> None:
    plan = FilterPlan({"openat": TypeFilter("openat", (C(exact={"/a"}),))}, {}, True)
    tr = FdTracker(plan)
    tr.verdict(open_event("openat", "/b", res=5, pid=300))
    tr.verdict(_ev("procfork", {"child_tid": 301, "child_pid": 300, "parent_tid": 1,
                                "parent_pid": 1}, None, pid=1))          # a thread of 300
    assert (300, 5) in tr.untracked
    tr.verdict(_ev("clone", {"child_tid": 300, "child_pid": 300, "flags": 0}, 300, pid=1))
    assert not tr.untracked


def test_too_deep_a_condition_leaves_opens_whole() -> None:
    from types import SimpleNamespace

    from falconet.rules.ast import Binary, Field, Not, Value
    from falconet.rules.kfilter import derive, rule_facts

    node = Binary(Field("proc.name"), "=", Value("x"))
    for _ in range(5000):
        node = Not(node)
    assert rule_facts(node) is None
    r = SimpleNamespace(name="deep", source="syscall", event_types=frozenset({"openat"}),
                        kfacts=None, ast=None, fmt=None, extra_fields={})
    plan = derive(SimpleNamespace(rules=[r]))
    assert plan.types == {} and "rule 'deep' has no condition tree" in plan.unfiltered["openat"]


def test_socket_value_fields_only_prove_a_socket_with_socket_values() -> None:
    """fd.l4proto, fd.is_server, fd.connected have values for files too ("<NA>", false, as
    Falco 0.44.1 gives them): only socket values prove the fd is a socket."""
    from falconet.rules.kfilter import socket_proven  # noqa: PLC0415
    from falconet.rules.parser import parse_condition  # noqa: PLC0415

    for cond, socket in (("fd.l4proto = tcp", True), ("fd.l4proto in (udp, raw)", True),
                         ("fd.l4proto = '<NA>'", False), ("fd.l4proto exists", False),
                         ("fd.is_server = true", True), ("fd.is_server = false", False),
                         ("fd.connected = true", True), ("fd.connected exists", False),
                         ("fd.sip exists", True)):
        assert socket_proven(parse_condition(cond)) is socket, cond

# ------------------------------------------------------------------------------ resolved paths
def _resolved_open(name: str, resolved: str, res: int = 3) -> Any:
    e = open_event("openat", name, res=res)
    if resolved:
        e.args["resolved"] = resolved
    return e


def test_the_kernel_path_passes_what_the_requested_path_does_not() -> None:
    """The rules see the path the kernel opened (falconet.rules.views): a symlink's open whose
    target is a rule's path passes, in the decision and in the replay's emulation."""
    E = Engine()
    rs = E.load(rule("evt.type = openat and evt.is_open_read = true and fd.name = /etc/shadow"))
    tf = derive(rs).types["openat"]
    assert open_passes(tf, "/tmp/l", 0, 3, False) == "path"
    assert open_passes(tf, "/tmp/l", 0, 3, False, "/etc/shadow") is None
    assert open_passes(tf, "/tmp/l", 0, 3, False, "/etc/passwd") == "path"
    assert open_passes(tf, "/tmp/l", 0, 3, False, "/" + "x/" * 130 + "y") is None   # too long
    assert open_passes(tf, "/tmp/l", 0, -2, False, "/etc/shadow") == "path"  # failed: unknown
    assert open_passes(tf, "/tmp/l", 0o1, 3, False, "/etc/shadow") == "flags"
    t = FdTracker(derive(rs))
    e = _resolved_open("/tmp/l", "/etc/shadow")
    E.parser(e)
    assert rs.match(e) and t.verdict(e) is None
    assert t.verdict(_resolved_open("/tmp/l", "/etc/passwd", 4)) == "path"


def test_resolved_name_and_name_are_not_met_as_one_path() -> None:
    """`fd.name startswith /tmp and fd.resolved_name startswith /etc` holds for /tmp/l ->
    /etc/shadow: the clause keeps one of the two sets (not their empty meet)."""
    E = Engine()
    rs = E.load(rule("evt.type = openat and fd.name startswith /tmp/ and "
                     "fd.resolved_name startswith /etc/"))
    [c] = derive(rs).types["openat"].clauses
    assert c.prefixes in ({"/tmp/"}, {"/etc/"})
    e = _resolved_open("/tmp/l", "/etc/shadow")
    E.parser(e)
    assert rs.match(e)
    assert FdTracker(derive(rs)).verdict(e) is None
    # fd.resolved_name alone narrows the path (read filtering of the default rules)
    rs2 = E.load(rule("evt.type = openat and fd.resolved_name in (/etc/shadow, /etc/gshadow)"))
    [c2] = derive(rs2).types["openat"].clauses
    assert c2.exact == {"/etc/shadow", "/etc/gshadow"} and not c2.any_path


def test_relative_opens_suffix_tails_relative_names_and_io_uring() -> None:
    plan = E.plan(rule(f"{ALL} and (fd.name endswith /.ssh/id_rsa or fd.name startswith /etc/ "
                       "or (evt.is_open_write = true and fd.nameraw = shadow))"))
    tr = FdTracker(plan)

    def op(name: str, res: int, dirfd: int = -100, is_dir: bool = False, flags: int = 0
           ) -> str | None:
        e = open_event("openat", name, flags, res, is_dir=is_dir)
        e.args["dirfd"] = dirfd
        return tr.verdict(e)
    assert op("/root/.ssh", 3, is_dir=True) is None
    assert op("id_rsa", 4, 3) is None                   # "/id_rsa" completes the suffix
    assert op("known_hosts", 5, 3) == "path"
    assert op("/root", 6, is_dir=True) is None
    assert op(".ssh/id_rsa", 7, 6) is None              # the suffix itself
    assert op("shadow", 8, 6, flags=1) is None          # fd.nameraw = shadow: relative
    assert op("shadow", 8, 6) == "path"
    assert op("x", 9, 6) == "path"
    assert op("/usr", 10, is_dir=True) is None
    assert op("x", 11, 10) == "path"
    assert K.clause_below(C(prefixes={"/etc/"}), "/et") is False
    assert K.clause_below(C(exact={"/etc/a"}), "/etc") and K.clause_below(C(prefixes={"/e"}),
                                                                         "/etc")
    # an io_uring close of the directory fd (not seen by the kernel filter's handlers)
    iou = _ev("close", {"fd": 10, "via": "io_uring"}, 0)
    assert tr.verdict(iou) is None and (100, 10) not in tr.dirs
    # a new process with the pid forgets every verdict of the old one
    tr.verdict(_ev("procfork", {"child_pid": 100, "child_tid": 100}, 0, pid=1))
    assert not tr.dirs


def test_relative_filtering_off_when_the_ancestor_keys_overflow(monkeypatch) -> None:
    monkeypatch.setattr(K, "TRIE_ENTRIES", 1)
    plan = E.plan(rule(f"{ALL} and fd.name startswith /etc/"))
    assert not K.relative_filtering(plan)
    tr = FdTracker(plan)
    tr.verdict(open_event("openat", "/usr", 0, 3, is_dir=True))
    e = open_event("openat", "x", 0, 4)
    e.args["dirfd"] = 3
    assert not tr.dirs and tr.verdict(e) is None


def test_cwd_verdicts_chdir_fchdir_and_exec() -> None:
    tr = FdTracker(E.plan(rule(f"{ALL} and fd.name = /etc/shadow")))

    def op(name: str, res: int = 9) -> str | None:
        return tr.verdict(open_event("open", name, 0, res))
    assert op("x") is None                                  # the cwd has no verdict yet
    tr.verdict(_ev("chdir", {"path": "/usr/lib"}, 0))
    assert op("x") == "path"
    tr.verdict(_ev("chdir", {"path": "python3"}, 0))        # plain: inherits
    assert op("x") == "path"
    tr.verdict(_ev("chdir", {"path": "/etc"}, -2))          # failed: unchanged
    assert op("x") == "path"
    tr.verdict(_ev("chdir", {"path": "../../../etc"}, 0))   # "..": no verdict
    assert op("shadow") is None and op("x") is None
    tr.verdict(_ev("chdir", {"path": "/usr/lib"}, 0))
    # after an exec the state takes the cwd from /proc (the resolved path: /usr/lib may be a
    # symlink to /etc): no verdict
    tr.verdict(_ev("execve", {"filename": "/bin/cat", "cwd": "/etc"}, 0))
    assert op("shadow") is None
    e = open_event("openat", "/usr/lib", 0, 3, is_dir=True)
    tr.verdict(e)
    tr.verdict(_ev("fchdir", {"fd": 3}, 0))
    assert op("x") == "path"
    tr.verdict(_ev("fchdir", {"fd": 4}, 0))                  # no verdict for fd 4
    assert op("x") is None


def test_a_relative_drop_still_passes_on_the_kernel_path() -> None:
    """Issues 18 and 19 compose by OR: a relative open its directory's verdict drops passes
    when the kernel's path passes (step 6), in the decision and in FdTracker."""
    tf = E.plan(rule(f"{ALL} and evt.is_open_read = true and fd.name = /etc/shadow")
                ).types["openat"]
    assert open_passes(tf, "l", 0, 3, False, below="/tmp") == "path"
    assert open_passes(tf, "l", 0, 3, False, "/etc/shadow", below="/tmp") is None
    assert open_passes(tf, "l", 0, 3, False, "/etc/passwd", below="/tmp") == "path"
    assert open_passes(tf, "l", 0, -2, False, "/etc/shadow", below="/tmp") == "path"
    tr = FdTracker(E.plan(rule(f"{ALL} and evt.is_open_read = true and fd.name = /etc/shadow")))
    tr.verdict(open_event("openat", "/tmp", 0, 3, is_dir=True))

    def op(name: str, resolved: str, res: int) -> str | None:
        e = open_event("openat", name, 0, res)
        e.args["dirfd"] = 3
        if resolved:
            e.args["resolved"] = resolved
        return tr.verdict(e)
    assert op("l", "/etc/shadow", 4) is None
    assert op("m", "/tmp/m", 5) == "path"
    assert (100, 5) in tr.untracked and (100, 4) not in tr.untracked


# ------------------------------------------------------------------------------ proc.name
def test_proc_name_terms_are_derived_only_where_necessary() -> None:
    got = one(f"{ALL} and evt.is_open_write = true and fd.name startswith /tmp/ and "
              "proc.name in (sh, bash)")
    assert got.names == frozenset({"sh", "bash"}) and got.prefixes == frozenset({"/tmp/"})
    # "=" and "in" intersect; an empty intersection: no clause
    assert one(f"{ALL} and fd.num >= 0 and proc.name in (a, b) and proc.name = b").names == \
        frozenset({"b"})
    assert clauses(f"{ALL} and fd.name = /x and proc.name = a and proc.name = b", t="openat"
                   ) == ()
    # negations, other operators, other fields: no term
    for cond in ("not proc.name in (a, b)", "proc.name != a", "proc.name startswith a",
                 "proc.name icontains a", "proc.pname = a", "proc.aname = a",
                 "thread.comm = a", "(proc.name = a or fd.num >= 0)"):
        assert one(f"{ALL} and fd.name = /x and fd.num >= 0 and {cond}").names is None, cond
    # an or keeps both sides apart (different names), a name term alone filters the type
    got = clauses(f"{ALL} and ((proc.name = a and fd.name = /x) or (proc.name = b and "
                  "fd.name = /y))")
    assert {(c.names, c.exact) for c in got} == {(frozenset({"a"}), frozenset({"/x"})),
                                                 (frozenset({"b"}), frozenset({"/y"}))}
    got = one(f"{ALL} and proc.name = a")
    assert got.any_path and got.names == frozenset({"a"})
    assert any("proc.name in (a)" in line for line in E.plan(rule(f"{ALL} and proc.name = a")
                                                            ).describe())


def test_a_clause_with_a_name_term_is_live_only_for_its_processes() -> None:
    tf = E.plan(rule(f"{ALL} and evt.is_open_write = true and fd.name startswith /tmp/ and "
                     "proc.name = sh")).types["openat"]
    w = open_event("openat", "/tmp/a", 0o1)
    assert open_event_passes(tf, w, comm="sh") is None
    assert open_event_passes(tf, w) is None                 # unknown name: the term holds
    assert open_event_passes(tf, w, comm="cat") == "process"
    # the earlier steps keep their reasons; the path is decided after the name
    assert open_event_passes(tf, open_event("openat", "/tmp/a", 0), comm="cat") == "flags"
    assert open_event_passes(tf, open_event("openat", "/etc/a", 0o1), comm="sh") == "path"
    # a directory passes whatever the name
    assert open_event_passes(tf, open_event("openat", "/tmp", 0o1, is_dir=True),
                             comm="cat") is None


def test_the_tracker_tests_the_comm_of_the_last_successful_exec() -> None:
    plan = E.plan(rule(f"{ALL} and evt.is_open_write = true and fd.name startswith /tmp/ and "
                       "proc.name = sh"))
    tr = FdTracker(plan)
    w = open_event("openat", "/tmp/a", 0o1, pid=100, ts=2)

    def exe(comm: str, res: int = 0, pid: int = 100) -> Event:
        return Event("syscall", "execve", 1, pid, pid, {"filename": "/bin/" + comm,
                                                        "argv": [comm], "comm": comm}, res)
    assert tr.verdict(w) is None                            # no exec seen: unknown
    tr.verdict(exe("cat"))
    assert tr.verdict(w) == "process"
    tr.verdict(exe("sh", res=-2))                           # a failed exec changes nothing
    assert tr.verdict(w) == "process"
    tr.verdict(exe("sh"))
    assert tr.verdict(w) is None
    tr.verdict(exe("cat"))
    tr.verdict(Event("syscall", "procexit", 3, 100, 100, {"status": 0}, 0))
    assert tr.verdict(w) is None                            # forgotten with the process
    assert tr.filtered[("openat", "process")] == 2

# ------------------------------------------------------------------------------ child returns
def test_child_clone_returns_drop_only_for_types_no_rule_or_plugin_reads() -> None:
    plan = E.plan(rule(f"{ALL} and fd.name = /etc/shadow"))
    assert plan.child_clones == K.CLONE_TYPES
    assert "clone: the child's return (res 0) is dropped: no rule or plugin reads clone" \
        in plan.describe()
    assert plan.to_dict()["child_clones"] == sorted(K.CLONE_TYPES)
    on_clone = E.plan(rule("evt.type in (clone, openat) and proc.name = x"))
    assert on_clone.child_clones == K.CLONE_TYPES - {"clone"}
    assert E.plan(rule("proc.name = x")).child_clones == frozenset()     # every type
    needed = derive(E.load(rule(f"{ALL} and fd.name = /etc/shadow")), {"vfork": "p"})
    assert needed.child_clones == K.CLONE_TYPES - {"vfork"}


def _clone(t: str, res: int, pid: int) -> Any:
    from falconet.events import Event  # noqa: PLC0415
    child = (res, res) if res > 0 else (pid, pid)
    return Event("syscall", t, 1, pid, pid, {"child_tid": child[0], "child_pid": child[1],
                                            "flags": 0}, res)


def test_replay_emulation_drops_child_returns_like_the_kernel() -> None:
    plan = FilterPlan(types={}, unfiltered={}, filter_close=False,
                      child_clones=frozenset({"clone"}))
    counts: dict[tuple[str, str], int] = {}
    tr = FdTracker(plan, counts)
    assert tr.verdict(_clone("clone", 0, 200)) == K.REASON_CHILD
    assert tr.verdict(_clone("clone", 200, 100)) is None          # the parent's return passes
    assert tr.verdict(_clone("clone", -11, 100)) is None          # a failure passes
    assert tr.verdict(_clone("clone3", 0, 201)) is None           # a type a rule reads passes
    assert counts == {("clone", "child"): 1}
