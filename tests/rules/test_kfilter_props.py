"""Soundness of the kernel filter, by property: for random rules (the atoms the derivation
reads, plus opaque ones, under and/or/not) and random open events (relative, ``//``, ``/./``,
``../``, long paths; any flags, results, directories), whenever the real engine (core fields,
state parser, compiled rule) matches the event, the derived filter lets it pass. And the fd
tracking never drops a close of an fd userspace knows."""

from __future__ import annotations

from typing import Any

from falconet.events import Event
from falconet.kfilter import FdTracker, open_event_passes
from falconet.state.parser import StateParser
from falconet.state.tables import StateTables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kfhelp import Engine, ftype, rule

SEGS = ["etc", "shadow", "pam.d", "usr", "lib", "x.so", "tmp", "a..", "id_rsa", "root", ".ssh",
        "var", "log", "sudoers.d", "b"]
TYPES = ["open", "openat", "openat2", "creat"]
#: paths both the rules and the kernel's path walk pick often (so that the case "only the
#: resolved path matches" is common)
COMMON = ["/etc", "/etc/shadow", "/root/.ssh", "/var/log", "/etc/pam.d/b"]


@st.composite
def paths(draw: st.DrawFn) -> str:
    segs = draw(st.lists(st.sampled_from(SEGS + ["..", ".", ""]), min_size=0, max_size=5))
    p = "/".join(segs)
    if draw(st.booleans()) or not p:
        p = "/" + p
    if draw(st.integers(0, 9)) == 0:
        p += "/"
    if draw(st.integers(0, 14)) == 0:
        p = "/" + "/".join(["verylongsegment"] * 17) + p     # past the kernel's key length
    return p


@st.composite
def rule_paths(draw: st.DrawFn) -> str:
    """Values the rules compare paths with: often absolute, sometimes odd."""
    if draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(COMMON))
    segs = draw(st.lists(st.sampled_from(SEGS), min_size=0, max_size=3))
    p = "/" + "/".join(segs)
    k = draw(st.integers(0, 8))
    if k == 0:
        p += "/"
    elif k == 1:
        p = p.lstrip("/")
    return p


def q(v: str) -> str:
    return '"' + v + '"'


@st.composite
def atoms(draw: st.DrawFn, kinds: int = 12,
          values: st.SearchStrategy[str] | None = None) -> str:
    kind = draw(st.integers(0, kinds))
    if kind <= 3:
        f = draw(st.sampled_from(["fd.name", "fd.nameraw", "fd.directory", "fd.resolved_name"]))
        op = draw(st.sampled_from(["=", "in", "startswith", "pmatch", "glob", "contains",
                                   "endswith", "icontains", "startswith oneof", "iglob"]))
        vals = draw(st.lists(values if values is not None else rule_paths(), min_size=1,
                             max_size=3))
        if op == "glob" or op == "iglob":
            v = vals[0]
            i = draw(st.integers(0, len(v)))
            return f"{f} {op} {q(v[:i] + draw(st.sampled_from(['*', '?', '[a-z]', '*/*'])) + v[i:])}"
        if op == "contains":
            return f"{f} contains {q(draw(st.sampled_from(['../', '//', '/.', 'a..', 'etc'])))}"
        if op in ("in", "pmatch", "startswith oneof"):
            return f"{f} {op} ({', '.join(q(v) for v in vals)})"
        return f"{f} {op} {q(vals[0])}"
    if kind == 4:
        f = draw(st.sampled_from(["evt.is_open_read", "evt.is_open_write", "evt.failed"]))
        return f"{f} {draw(st.sampled_from(['=', '!=']))} {draw(st.sampled_from(['true', 'false']))}"
    if kind == 5:
        f = draw(st.sampled_from(["fd.num", "evt.rawres"]))
        op = draw(st.sampled_from([">=", ">", "=", "!=", "<", "in"]))
        n = draw(st.integers(-3, 4))
        return f"{f} in ({n}, {n + 1})" if op == "in" else f"{f} {op} {n}"
    if kind == 6:
        return f"evt.res {draw(st.sampled_from(['=', '!=']))} " \
               f"{draw(st.sampled_from(['SUCCESS', 'ENOENT']))}"
    if kind == 7:
        ts = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3))
        op = draw(st.sampled_from(['in', '!=', '=']))
        return f"evt.type in ({', '.join(ts)})" if op == "in" else f"evt.type {op} {ts[0]}"
    # opaque
    return draw(st.sampled_from(["proc.name = cat", "fd.typechar = f", "fd.type = directory",
                                 "evt.arg.flags contains O_CREAT", "fd.filename = shadow",
                                 "tolower(fd.name) startswith /etc", "proc.cwd = /tmp"]))


def conditions(leaves: st.SearchStrategy[str] | None = None,
               max_leaves: int = 8) -> st.SearchStrategy[str]:
    """``leaves`` (default: :func:`atoms`) under and/or/not."""
    return st.recursive(atoms() if leaves is None else leaves, lambda sub: st.one_of(
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: "(" + " and ".join(xs) + ")"),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: "(" + " or ".join(xs) + ")"),
        sub.map(lambda x: f"not {x}")), max_leaves=max_leaves)


@st.composite
def kernel_paths(draw: st.DrawFn) -> str:
    """What the kernel's path walk reports: absolute, no "."/".." components, no "//" (a
    name may end in "..": "a.."), sometimes past the key length; "" = unknown."""
    k = draw(st.integers(0, 4))
    if k == 0:
        return ""
    if k <= 2:
        return draw(st.sampled_from(COMMON))
    # short: often one of the rules' paths (the case where only the resolved path matches)
    segs = draw(st.lists(st.sampled_from(SEGS), min_size=0, max_size=2))
    p = "/" + "/".join(segs)
    if draw(st.integers(0, 14)) == 0:
        p = "/" + "/".join(["verylongsegment"] * 17) + (p if p != "/" else "")
    return p


@st.composite
def open_events(draw: st.DrawFn) -> tuple[str, str, int, int, bool, str]:
    t = draw(st.sampled_from(TYPES))
    flags = draw(st.sampled_from([0, 0o1, 0o2, 0o1101, 0o1000, 0o10000000, 0o200000, 0o100,
                                  0o20200000, 0o2000000]))
    res = draw(st.sampled_from([3, 0, -2, -13, 7]))
    resolved = draw(kernel_paths()) if res >= 0 else ""
    return t, draw(paths()), flags, res, draw(st.booleans()), resolved


E = Engine()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions(), st.lists(open_events(), min_size=1, max_size=12),
       st.sampled_from(TYPES))
def test_a_matching_event_always_passes(cond: str, events: list, restrict: str) -> None:
    # the rule is on the open family (else no type is filtered); sometimes on one type only
    types = f"evt.type = {restrict}" if len(cond) % 3 == 0 else \
        "evt.type in (open, openat, openat2, creat)"
    rs = E.load(rule(f"{types} and {cond}"))
    from falconet.rules.kfilter import derive
    plan = derive(rs)
    for i, (t, path, flags, res, is_dir, resolved) in enumerate(events):
        args = {"fd": res, "name": path, "mode": 0}
        if resolved:                    # the kernel's path: the rules see it too (views)
            args["resolved"] = resolved
        if t != "creat":
            args["flags"] = flags
        if t in ("openat", "openat2"):
            args["dirfd"] = -100
        if is_dir is not None:
            args["ftype"] = ftype(is_dir)
        evt = Event("syscall", t, 10 + i, 100, 100, args, res)
        E.parser(evt)
        matched = bool(rs.match(evt))
        tf = plan.types.get(t)
        if matched and tf is not None:
            assert open_event_passes(tf, evt) is None, (cond, t, path, flags, res, is_dir,
                                                        resolved, tf.clauses)


def _lowest(fds: set[int]) -> int:
    """The fd number a new file gets: the lowest free one from 3."""
    fd = 3
    while fd in fds:
        fd += 1
    return fd


@st.composite
def fd_sequences(draw: st.DrawFn) -> list[Event]:
    """What two processes' real fd tables allow: a new fd is the lowest free number, a close
    of a free fd fails (EBADF), dup2 replaces newfd; after an exit, the next process of the
    slot has a new pid."""
    real: dict[int, set[int]] = {100: set(), 200: set()}
    slot = {100: 100, 200: 200}         # an exited process's slot continues with a new pid
    out = []

    def lowest(pid: int) -> int:
        return _lowest(real[pid])
    for i in range(draw(st.integers(1, 30))):
        k = draw(st.integers(0, 5))
        s = draw(st.sampled_from([100, 200]))
        pid = slot[s]
        real.setdefault(pid, set())
        fd = draw(st.integers(3, 7))
        if k <= 1:
            new = lowest(pid)
            real[pid].add(new)
            p = draw(st.sampled_from(["/keep", "/drop", "rel"]))
            out.append(Event("syscall", "openat", i, pid, pid,
                             {"fd": new, "dirfd": -100, "name": p, "flags": 0,
                              "ftype": ftype(False)}, new))
        elif k == 2:
            ok = fd in real[pid]
            real[pid].discard(fd)
            out.append(Event("syscall", "close", i, pid, pid, {"fd": fd}, 0 if ok else -9))
        elif k == 3:
            old = draw(st.integers(3, 7))
            if old in real[pid]:
                real[pid].add(fd)
                out.append(Event("syscall", "dup2", i, pid, pid,
                                 {"fd": fd, "oldfd": old, "newfd": fd}, fd))
        elif k == 4:
            new = lowest(pid)
            real[pid].add(new)
            out.append(Event("syscall", "socket", i, pid, pid, {"fd": new, "domain": 2}, new))
        else:
            out.append(Event("syscall", "procexit", i, pid, pid, {"status": 0}, 0))
            slot[s] = pid + 1000
    return out


@settings(max_examples=300, deadline=None)
@given(fd_sequences())
def test_a_dropped_close_is_of_an_fd_userspace_does_not_know(events: list[Event]) -> None:
    """Userspace fed only what passes never has the fd of a dropped close in its table."""
    plan = E.plan(rule("evt.type = openat and fd.name = /keep"))
    assert plan.filter_close
    tracker = FdTracker(plan)
    tables = StateTables()
    parser = StateParser(tables)
    for evt in events:
        why = tracker.verdict(evt)
        if why is None:
            parser(evt)
            continue
        if evt.type == "close":
            t = tables.threads.get(evt.tid)
            assert t is None or evt.args["fd"] not in t.fds, (why, evt)


#: directories a process opens by absolute path (some irregular, some with rule paths below)
DIRS = ["/etc", "/usr/lib", "/usr", "/root", "/root/.ssh", "/var/log", "/tmp", "/etc/pam.d",
        "/", "/etc/./pam.d", "/usr/../etc", "/etc/", "//etc"]
#: rule values near those directories and names
NEAR = st.sampled_from(["/etc", "/etc/shadow", "/etc/pam.d", "/etc/pam.d/x", "/root/.ssh/id_rsa",
                        "/root/.ssh", "/usr/lib/x.so", "/var/log", "/var/log/x.log", "/usr",
                        "/tmp/b", "shadow", "/shadow", "/.ssh/id_rsa", "/x.log", "/etc/"])
RELS = SEGS + ["..", ".", "", "../etc", "./shadow", "pam.d/x", "a//b", "lib/", ".ssh/id_rsa",
               "log/x.log", "/etc/shadow"] + ["shadow", "id_rsa", "x.log", "../etc", "../etc/shadow",
                                              "./shadow", ".", "..", "etc/shadow"] * 3


@st.composite
def rel_sequences(draw: st.DrawFn) -> list[Event]:
    """Directory opens (absolute, relative to a dirfd), relative and absolute file opens
    under them, closes, dup2 over a directory fd, exits (the next process of the slot has a
    new pid), chdir, fchdir and execve — as a real fd table allows (the lowest free
    number)."""
    real: dict[int, set[int]] = {}
    dirs: dict[int, set[int]] = {}
    slot = {100: 100, 200: 200}
    out: list[Event] = []

    def lowest(pid: int) -> int:
        return _lowest(real[pid])
    n_dirs = draw(st.integers(1, 3))
    for i in range(n_dirs + draw(st.integers(1, 24))):
        k = 0 if i < n_dirs else draw(st.integers(0, 12))
        s = 100 if i < n_dirs else draw(st.sampled_from([100, 100, 100, 200]))
        pid = slot[s]
        fds = real.setdefault(pid, set())
        dfds = dirs.setdefault(pid, set())
        dfds &= fds
        # mostly a directory fd (often one with a verdict), sometimes any fd, the cwd, a hole
        pool = sorted(dfds) * 4 + sorted(fds) + [-100, -100, -100, 9]
        some_fd = draw(st.sampled_from(pool))
        new = lowest(pid)
        dfds.discard(new)
        if k <= 1:
            name = draw(st.sampled_from(DIRS))
            fds.add(new)
            dfds.add(new)
            out.append(Event("syscall", "openat", i, pid, pid,
                             {"fd": new, "dirfd": -100, "name": name, "flags": 0o200000,
                              "ftype": ftype(True)}, new))
        elif k == 2:
            fds.add(new)
            dfds.add(new)
            out.append(Event("syscall", "openat", i, pid, pid,
                             {"fd": new, "dirfd": some_fd, "name": draw(st.sampled_from(RELS)),
                              "flags": 0, "ftype": ftype(True)}, new))
        elif k <= 6:
            t = draw(st.sampled_from(TYPES))
            res = draw(st.sampled_from([new, new, -2]))
            flags = draw(st.sampled_from([0, 0o1, 0o2, 0o1101, 0o10000000]))
            args = {"fd": res, "name": draw(st.sampled_from(RELS)), "mode": 0, "ftype":
                    ftype(False)}
            if t != "creat":
                args["flags"] = flags
            if t in ("openat", "openat2"):
                args["dirfd"] = some_fd
            if res >= 0:
                fds.add(res)
            out.append(Event("syscall", t, i, pid, pid, args, res))
        elif k == 7:
            fd = draw(st.integers(3, 7))
            ok = fd in fds
            fds.discard(fd)
            out.append(Event("syscall", "close", i, pid, pid, {"fd": fd}, 0 if ok else -9))
        elif k == 8:
            fd = draw(st.integers(3, 7))
            if some_fd in fds:
                fds.add(fd)
                dfds.discard(fd)
                if some_fd in dfds:
                    dfds.add(fd)
                out.append(Event("syscall", "dup2", i, pid, pid,
                                 {"fd": fd, "oldfd": some_fd, "newfd": fd}, fd))
        elif k == 9:
            out.append(Event("syscall", "procexit", i, pid, pid, {"status": 0}, 0))
            slot[s] = pid + 1000
        elif k == 10:
            path = draw(st.sampled_from(DIRS * 3 + RELS))
            out.append(Event("syscall", "chdir", i, pid, pid, {"path": path},
                             draw(st.sampled_from([0, 0, -2]))))
        elif k == 11:
            out.append(Event("syscall", "fchdir", i, pid, pid, {"fd": some_fd},
                             0 if some_fd in dfds else -20))
        else:
            # an exec: the state takes the cwd from /proc, the resolved path, which need not
            # be the lexical one chdir gave (a symlink)
            out.append(Event("syscall", "execve", i, pid, pid,
                             {"filename": "/bin/x", "argv": ["x"], "comm": "x",
                              "cwd": draw(st.sampled_from(DIRS))}, 0))
    return out


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(conditions(), atoms(3, NEAR), st.lists(atoms(4, NEAR), min_size=2,
                                                        max_size=3).map(
    lambda xs: "(" + " or ".join(xs) + ")")), rel_sequences())
def test_relative_opens_under_directory_verdicts_are_sound(cond: str,
                                                           events: list[Event]) -> None:
    """Directory verdicts: whenever the engine fed every event matches, the tracker passes
    the event; and an engine fed only what passes matches exactly the same events (the
    directory fds it resolves relative names with are the same)."""
    _full_and_seen(cond, events, lambda t: t.dirs)


def _full_and_seen(cond: str, events: list[Event], show: Any) -> None:
    """Whenever the engine fed every event matches an open, the tracker passes it; an engine
    fed only what passes matches the same opens (``show``: the tracker state to report)."""
    text = rule(f"evt.type in (open, openat, openat2, creat) and {cond}")
    full, seen = Engine(), Engine()
    rs_full, rs_seen = full.load(text), seen.load(text)
    from falconet.rules.kfilter import derive
    tracker = FdTracker(derive(rs_full))
    for evt in events:
        why = tracker.verdict(evt)
        full.parser(evt)
        matched = bool(rs_full.match(evt)) if evt.type in TYPES else False
        if matched:
            assert why is None, (cond, evt, show(tracker))
        if why is None:
            copy = Event(evt.source, evt.type, evt.ts, evt.pid, evt.tid, dict(evt.args),
                         evt.res)
            seen.parser(copy)
            if evt.type in TYPES:
                assert bool(rs_seen.match(copy)) == matched, (cond, evt, show(tracker))


NAMES = ["sh", "cat", "python3", "kf-a", "a-name-of-16-bytes"]


@st.composite
def name_atoms(draw: st.DrawFn) -> str:
    k = draw(st.integers(-2, 3))
    if k <= 0:
        return f"proc.name = {draw(st.sampled_from(NAMES))}"
    if k == 1:
        vals = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
        return f"proc.name in ({', '.join(vals)})"
    if k == 2:
        return f"proc.name {draw(st.sampled_from(['!=', 'startswith', 'icontains']))} " \
               f"{draw(st.sampled_from(NAMES))}"
    return draw(atoms(7))


def name_conditions() -> st.SearchStrategy[str]:
    return conditions(name_atoms(), 6)


@st.composite
def name_sequences(draw: st.DrawFn) -> list[Event]:
    """Execs (their comm, failed ones, an empty comm: the state then names the process after
    the file), renames (prctl PR_SET_NAME), forks, exits and opens of two processes."""
    out: list[Event] = []
    slot = {100: 100, 200: 200}
    for i in range(draw(st.integers(1, 20))):
        k = draw(st.integers(0, 9))
        s = draw(st.sampled_from([100, 200]))
        pid = slot[s]
        if k <= 1:
            comm = draw(st.sampled_from(NAMES[:4] + [""]))
            out.append(Event("syscall", "execve", i, pid, pid,
                             {"filename": "/bin/" + draw(st.sampled_from(NAMES)),
                              "argv": ["x"], "comm": comm}, draw(st.sampled_from([0, 0, -2]))))
        elif k == 2:
            out.append(Event("syscall", "prctl", i, pid, pid,
                             {"option": 15, "arg2_str": draw(st.sampled_from(NAMES))}, 0))
        elif k == 3:
            child = pid + 1
            out.append(Event("syscall", "procfork", i, pid, pid,
                             {"child_tid": child, "child_pid": child, "parent_pid": pid,
                              "child_comm": draw(st.sampled_from(NAMES))}, 0))
            out.append(Event("syscall", "openat", i, child, child,
                             {"fd": 3, "dirfd": -100, "name": "/tmp/c", "flags": 0o1,
                              "ftype": ftype(False)}, 3))
        elif k == 4:
            out.append(Event("syscall", "procexit", i, pid, pid, {"status": 0}, 0))
            slot[s] = pid + 1000
        else:
            t = draw(st.sampled_from(TYPES))
            res = draw(st.sampled_from([3, 3, -2]))
            args = {"fd": res, "name": draw(st.sampled_from(["/tmp/c", "/etc/shadow", "/x"])),
                    "mode": 0, "ftype": ftype(False)}
            if t != "creat":
                args["flags"] = draw(st.sampled_from([0, 0o1, 0o2]))
            if t in ("openat", "openat2"):
                args["dirfd"] = -100
            out.append(Event("syscall", t, i, pid, pid, args, res))
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(name_conditions(), st.tuples(name_atoms(), name_conditions()).map(
    lambda x: f"({x[0]} and {x[1]})")), name_sequences())
def test_proc_name_terms_never_drop_a_matching_open(cond: str, events: list[Event]) -> None:
    """The tracker tests the comm of each process's last successful exec (what the kernel
    records); whenever the engine fed every event matches an open, the tracker passes it; an
    engine fed only what passes matches the same opens."""
    _full_and_seen(cond, events, lambda t: t.comms)
