"""Derive the kernel filter (:class:`falconet.kfilter.FilterPlan`) from the loaded rules.

For every open-family type, the plan's clauses are a *necessary* condition of every enabled
syscall rule on that type: an event that fails all of them can match no rule. The condition of
each rule (its syntax tree, lists substituted, macros expanded, exceptions appended) is read
as a disjunction of clauses over what the kernel can test cheaply — the event type, the path
(exact names and prefixes of ``fd.name``), ``evt.is_open_read``/``evt.is_open_write`` and
success — with negations pushed to the leaves (De Morgan: a compiled condition is a plain
boolean of its checks):

- ``a and b``: the clauses of both, conjoined pairwise (path sets intersected exactly, the
  ``need_*`` flags united, the types intersected); ``a or b``: the clauses of either;
- atoms: ``fd.name``/``fd.nameraw`` ``=``/``in``/``startswith``/``pmatch``/``glob`` (the
  literal part), ``fd.directory`` ``=``/``in`` (``X`` or below ``X/``), ``startswith``,
  ``pmatch``, ``glob``; ``contains`` of ``//``, ``/.`` or ``../`` (only irregular paths);
  ``evt.is_open_read/write = true``; success: ``fd.num >= 0`` (and ``> -1``, ``!= -1``, ``= n``,
  ``in`` non-negatives), ``evt.rawres >= 0`` (likewise), ``evt.res = SUCCESS``,
  ``evt.failed = false``; ``evt.type`` (also negated) narrows the types; ``proc.name``
  ``=``/``in`` (the process's exec-time name: the kernel records it at ``execve``);
- anything else — other fields, other operators, transformers, case-insensitive operators,
  fields on the right, negated atoms, unknown constructs — is *true*: never narrower.

Opens are only filtered when the fds they would have created are needed by no rule: a rule
on an fd-consuming type (``close``, ``dup*``, ``fchmod``, ``connect``...) that reads the fd
table (``fd.*``, an fd argument's rendering in ``evt.args``/``evt.arg.*``) must prove the fd is
a socket (sockets are never filtered); ``proc.fdopencount`` and ``fd.types`` read the whole
table and turn open filtering off wherever they appear. See docs/kernel-filter.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from falconet.kfilter import (
    CLONE_TYPES,
    IO_STATE_TYPES,
    IO_TYPES,
    MAX_NEEDLES,
    NEEDLE_LEN,
    OPEN_TYPES,
    RECOVERED_FD_TYPES,
    Clause,
    FilterPlan,
    IoFilter,
    TypeFilter,
)
from falconet.rules.ast import (
    And,
    Binary,
    Field,
    ListValue,
    MultiTransform,
    Not,
    Or,
    Transform,
    TransformList,
    Unary,
    Val,
    Value,
)
from falconet.syscalls import EVENTS

__all__ = ["RuleFacts", "derive", "rule_facts", "socket_proven", "state_dependence"]

#: at most this many clauses per rule; beyond, clauses of equal flags are merged, then all
MAX_CLAUSES = 32
#: a path set intersection larger than this keeps the smaller operand instead (still sound)
MAX_PATHS = 4096
#: a clause naming more exact names and prefixes than this (the kernel's map sizes) becomes
#: "any path" (weaker, so still sound)
MAX_PATH_ENTRIES = 8192
#: a clause naming more processes than this has no name term (weaker: sound)
MAX_NAMES = 1024
#: clauses of one flag class with different name sets: beyond this many, their names united
MAX_NAME_GROUPS = 4

_ALL = OPEN_TYPES


_Paths = tuple[frozenset[str], frozenset[str], frozenset[str]]


@dataclass(frozen=True, slots=True)
class _C:
    """A clause while deriving: ``types`` among the open types, ``paths`` None = any path.

    ``paths`` constrains the fd's path fields (``fd.name``...), which the resolved-path view
    (:mod:`falconet.rules.views`) binds to the requested or to the resolved path; ``rpaths``
    constrains ``fd.resolved_name``. They are met separately (a requested path in one set and
    a resolved path in the other is no path in their meet); the plan's clause keeps one of
    them (:func:`_collapse`) and passes when the requested or the resolved path is in it."""

    types: frozenset[str]
    paths: _Paths | None      # (exact, prefixes, suffixes); None = any path
    r: bool
    w: bool
    s: bool
    rpaths: _Paths | None = None
    names: frozenset[str] | None = None     # proc.name in these (None: any process)


_TRUE = (_C(_ALL, None, False, False, False),)
_FALSE: tuple[_C, ...] = ()
_E: frozenset[str] = frozenset()
_NO_PATH: _Paths = (_E, _E, _E)   # irregular only


def _in_paths(p: str, paths: _Paths) -> bool:
    return (p in paths[0] or any(p.startswith(x) for x in paths[1])
            or any(p.endswith(x) for x in paths[2]))


def _size(x: _Paths) -> int:
    return len(x[0]) + len(x[1]) + len(x[2])


def _meet_paths(a: _Paths | None, b: _Paths | None) -> _Paths | None:
    """The paths in both sets (exactly without suffixes; with them, or when the exact meet
    grows too large, the smaller operand, which holds the meet: still sound)."""
    if a is None:
        return b
    if b is None:
        return a
    if a[2] or b[2]:
        return min(a, b, key=_size)
    exact = {e for e in a[0] if _in_paths(e, b)} | {e for e in b[0] if _in_paths(e, a)}
    prefixes: set[str] = set()
    for p in a[1]:
        for q in b[1]:
            if p.startswith(q):
                prefixes.add(p)
            elif q.startswith(p):
                prefixes.add(q)
    if len(exact) + len(prefixes) > MAX_PATHS:
        return min(a, b, key=_size)
    return (frozenset(exact), frozenset(prefixes), _E)


def _join_paths(a: _Paths | None, b: _Paths | None) -> _Paths | None:
    if a is None or b is None:
        return None
    return (a[0] | b[0], a[1] | b[1], a[2] | b[2])


def _union_paths(cs: list[_C], resolved: bool = False) -> _Paths | None:
    """The paths (``resolved``: the rpaths) of all of ``cs`` (None: any path), built once."""
    ps = [c.rpaths if resolved else c.paths for c in cs]
    if any(p is None for p in ps):
        return None
    return (frozenset().union(*(p[0] for p in ps if p is not None)),
            frozenset().union(*(p[1] for p in ps if p is not None)),
            frozenset().union(*(p[2] for p in ps if p is not None)))


def _meet_names(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return b if a is None else a if b is None else a & b


def _union_names(cs: Iterable[_C]) -> frozenset[str] | None:
    out: set[str] = set()
    for c in cs:
        if c.names is None:
            return None
        out |= c.names
    return frozenset(out)


def _and2(x: _C, y: _C) -> _C | None:
    types = x.types & y.types
    names = _meet_names(x.names, y.names)
    if not types or (names is not None and not names):
        return None
    return _C(types, _meet_paths(x.paths, y.paths), x.r or y.r, x.w or y.w, x.s or y.s,
              _meet_paths(x.rpaths, y.rpaths), names)


def _hull(cs: Iterable[_C]) -> _C:
    """One clause implied by each of ``cs`` (types and paths united, flags all need)."""
    cs = list(cs)
    return _C(frozenset().union(*(c.types for c in cs)), _union_paths(cs),
              all(c.r for c in cs), all(c.w for c in cs), all(c.s for c in cs),
              _union_paths(cs, True), _union_names(cs))


def _normalise(cs: Iterable[_C]) -> tuple[_C, ...]:
    """Merge clauses of equal types and flags (paths united); bound their number. A clause
    on the path fields and one on ``fd.resolved_name`` stay apart (united, each would lose
    its constraint; the plan unites them as paths either path may be in)."""
    groups: dict[tuple[frozenset[str], bool, bool, bool, bool, bool,
                       frozenset[str] | None], list[_C]] = {}
    for c in cs:
        groups.setdefault((c.types, c.r, c.w, c.s, c.paths is None, c.rpaths is None, c.names),
                          []).append(c)
    out = tuple(g[0] if len(g) == 1 else _C(k[0], _union_paths(g), k[1], k[2], k[3],
                                            _union_paths(g, True), k[6])
                for k, g in groups.items())
    if len(out) > MAX_CLAUSES:
        by_flags: dict[tuple[bool, bool, bool], list[_C]] = {}
        for c in out:
            by_flags.setdefault((c.r, c.w, c.s), []).append(c)
        out = tuple(_hull(g) for g in by_flags.values())
    return out


def _conj(parts: list[tuple[_C, ...]]) -> tuple[_C, ...]:
    acc: tuple[_C, ...] = _TRUE
    for p in parts:
        if not p:
            return _FALSE
        if len(acc) * len(p) > MAX_CLAUSES * 4:
            acc, p = (_hull(acc),), (_hull(p),)
        nxt = [c for a in acc for b in p if (c := _and2(a, b)) is not None]
        acc = _normalise(nxt)
        if not acc:
            return _FALSE
    return acc


def _disj(parts: list[tuple[_C, ...]]) -> tuple[_C, ...]:
    return _normalise(c for p in parts for c in p)


# ------------------------------------------------------------------------------ atoms
_GLOB_CHARS = "*?[\\"
#: a path containing one of these is irregular (falconet.kfilter.irregular_path): always passes
_IRREGULAR_ONLY = ("//", "../", "/./")


def _pmatch_paths(v: str) -> _Paths | None:
    """``pmatch v`` (path components, globs allowed) as exact names and prefixes. Components
    ignore a leading ``/``, so a relative name (``fd.nameraw``, or ``fd.name`` of an unknown
    base) matches too: the relative forms are listed as well (relative opens then pass)."""
    comps = [c for c in v.split("/") if c]
    lit: list[str] = []
    for c in comps:
        if any(ch in c for ch in "*?["):
            rel = "/".join(lit) + "/" if lit else ""
            return (_E, frozenset({"/" + rel, rel}), _E)
        lit.append(c)
    if not lit:
        return None                 # `pmatch (/)`: every path
    rel = "/".join(lit)
    return (frozenset({"/" + rel, rel}), frozenset({"/" + rel + "/", rel + "/"}), _E)


def _glob_paths(v: str) -> _Paths | None:
    i = min((v.find(ch) for ch in _GLOB_CHARS if ch in v), default=-1)
    if i < 0:
        return (frozenset({v}), _E, _E)
    if i == 0:
        return None
    return (_E, frozenset({v[:i]}), _E)


def _name_paths(op: str, v: str) -> _Paths | None:
    """``fd.name``/``fd.nameraw`` ``op v`` for one value (None: not expressible, any path)."""
    if op in ("=", "==", "in", "intersects"):
        return (frozenset({v}), _E, _E)
    if op == "startswith":
        return (_E, frozenset({v}), _E)
    if op == "endswith" and v:
        return (_E, _E, frozenset({v}))
    if op == "pmatch":
        return _pmatch_paths(v)
    if op == "glob":
        return _glob_paths(v)
    if op == "contains" and any(x in v for x in _IRREGULAR_ONLY):
        return _NO_PATH             # a regular path contains none of these
    return None


def _directory_paths(op: str, v: str) -> _Paths | None:
    """``fd.directory op v``: the directory is the name itself (an ``O_DIRECTORY`` open) or
    its dirname, a prefix of the name in both cases."""
    if op in ("=", "==", "in", "intersects"):
        if v == "/":
            return (_E, frozenset({"/"}), _E)
        return (frozenset({v}), frozenset({v + "/"}), _E)
    if op == "startswith":
        return (_E, frozenset({v}), _E)
    if op == "pmatch":
        return _pmatch_paths(v)
    if op == "glob":
        g = _glob_paths(v)
        if g is not None and g[0]:
            return _directory_paths("=", v)
        return g
    return None


def _filename_paths(op: str, v: str) -> _Paths | None:
    """``fd.filename op v``: the last component of a regular path; ``= x`` is the suffix
    ``/x`` of the name, ``endswith x`` the suffix ``x``."""
    if "/" in v or not v:
        return None
    if op in ("=", "==", "in", "intersects"):
        return (_E, _E, frozenset({"/" + v}))
    if op == "endswith":
        return (_E, _E, frozenset({v}))
    return None


_PATH_FIELDS = {"fd.name": _name_paths, "fd.nameraw": _name_paths,
                "fd.directory": _directory_paths, "fd.filename": _filename_paths,
                "fd.resolved_name": _name_paths}
#: path fields about the kernel's path only (their constraint goes to ``_C.rpaths``)
_RESOLVED_FIELDS = frozenset({"fd.resolved_name"})


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _implies_success(name: str, op: str, values: list[str]) -> bool:
    """``fd.num``/``evt.rawres`` ``op values`` holds only when the call returned >= 0
    (``fd.num`` is the result, or -1 for a failed open)."""
    nums = [_int(v) for v in values]
    if not nums or any(n is None for n in nums):
        return False
    ns = [n for n in nums if n is not None]
    if op == ">=":
        return ns[0] >= 0
    if op == ">":
        return ns[0] >= -1
    if op in ("=", "==", "in", "intersects"):
        return all(n >= 0 for n in ns)
    if op == "!=" and name == "fd.num":
        return ns[0] == -1
    return False


def _bool_true(op: str, values: list[str]) -> bool | None:
    """The truth value a boolean comparison demands (``= true``, ``!= false``...), if one."""
    vals = [v.strip().lower() for v in values]
    truth = {"true": True, "1": True, "false": False, "0": False}
    if not vals or any(v not in truth for v in vals):
        return None
    want = {truth[v] for v in vals}
    if op in ("=", "==", "in", "intersects") and len(want) == 1:
        return want.pop()
    if op == "!=" and len(want) == 1:
        return not want.pop()
    return None


def _is_evt_type(node: object) -> bool:
    return isinstance(node, Field) and node.name in ("evt.type", "syscall.type") and \
        node.arg is None


def _types_atom(node: Unary | Binary, neg: bool) -> tuple[_C, ...]:
    """``evt.type`` checks, as :func:`falconet.rules.resolvers.event_types` reads them."""
    if isinstance(node, Unary):
        return _FALSE if neg else _TRUE
    if node.op in ("=", "==", "in", "!="):
        right = node.right
        vals = right.values if isinstance(right, ListValue) else \
            [right.text] if isinstance(right, Value) else []
        s = frozenset(vals) & _ALL
        if node.op == "!=":
            neg = not neg
        types = (_ALL - s) if neg else s
        return (_C(types, None, False, False, False),) if types else _FALSE
    return _TRUE


def _path_atom(fn: Any, base: str, modifier: str, values: list[str]) -> tuple[_C, ...]:
    """A comparison of a path field (``fn`` turns one value into paths)."""
    if modifier in ("oneof", "anyof") or (not modifier and base in ("in", "intersects",
                                                                   "pmatch")):
        one = [fn(base, v) for v in values]
        if any(p is None for p in one):
            return _TRUE
        if not one:
            return _FALSE
        return (_C(_ALL, _union_paths([_C(_ALL, p, False, False, False) for p in one]),
                   False, False, False),)
    if modifier == "allof":
        if not values:
            return _FALSE
        return _conj([(_C(_ALL, p, False, False, False),) for v in values
                      if (p := fn(base, v)) is not None])
    if modifier or len(values) != 1:
        return _TRUE
    p = fn(base, values[0])
    return _TRUE if p is None else (_C(_ALL, p, False, False, False),)


def _atom(node: Unary | Binary) -> tuple[_C, ...]:
    """A positive comparison: its clauses (``_TRUE`` when it says nothing we can test)."""
    if not isinstance(node, Binary) or not isinstance(node.left, Field) or node.left.arg:
        return _TRUE
    right = node.right
    if not isinstance(right, Value | ListValue):
        return _TRUE                            # val(), transformers: a field on the right
    name = node.left.name
    values = right.values if isinstance(right, ListValue) else [right.text]
    base, _, modifier = node.op.partition(" ")
    fn = _PATH_FIELDS.get(name)
    if fn is not None:
        clauses = _path_atom(fn, base, modifier, values)
        if name in _RESOLVED_FIELDS:
            return tuple(_C(c.types, None, c.r, c.w, c.s, c.paths) for c in clauses)
        return clauses
    if modifier:
        return _TRUE
    if name in ("fd.num", "evt.rawres"):
        if _implies_success(name, base, values):
            return (_C(_ALL, None, False, False, True),)
        return _TRUE
    if name == "evt.res":
        if base in ("=", "==", "in", "intersects") and values and \
                all(v.strip() == "SUCCESS" for v in values):
            return (_C(_ALL, None, False, False, True),)
        return _TRUE
    if name == "evt.failed":
        if _bool_true(base, values) is False:
            return (_C(_ALL, None, False, False, True),)
        return _TRUE
    if name == "proc.name":
        # the exec-time comm (falconet.state: prctl(PR_SET_NAME) does not change it), which
        # the kernel records at each successful execve (kf_exec): an exact test there
        if base in ("=", "==", "in", "intersects") and values:
            return (_C(_ALL, None, False, False, False, None, frozenset(values)),)
        return _TRUE
    if name == "evt.is_io_uring" and _bool_true(base, values) is True:
        # only io_uring events (emitted by the io_uring programs, which the filter never
        # sees): no open of the syscall path the kernel filter decides on can match
        return _FALSE
    if name in ("evt.is_open_read", "evt.is_open_write"):
        if _bool_true(base, values) is True:
            read = name == "evt.is_open_read"
            return (_C(_ALL, None, read, not read, False),)
        return _TRUE
    return _TRUE


def necessary(node: Any, neg: bool = False) -> tuple[_C, ...]:
    """The clauses of ``node`` (``neg``: of ``not node``), negations pushed to the leaves."""
    if isinstance(node, Not):
        return necessary(node.child, not neg)
    if isinstance(node, And | Or):
        parts = [necessary(c, neg) for c in node.children]
        return _conj(parts) if isinstance(node, And) != neg else _disj(parts)
    if isinstance(node, Unary | Binary):
        left = node.left
        if _is_evt_type(left):
            return _types_atom(node, neg)
        return _TRUE if neg else _atom(node)
    return _TRUE                                # Ident or anything unknown


# ------------------------------------------------------------------------------ fd state
def socket_proven(node: Any) -> bool:
    """Whether ``node`` holds only when the event's fd is a socket (``fd.type``/``fd.typechar``
    of socket kinds, or a comparison of a field only sockets have a value for)."""
    if isinstance(node, And):
        return any(socket_proven(c) for c in node.children)
    if isinstance(node, Or):
        return bool(node.children) and all(socket_proven(c) for c in node.children)
    if not isinstance(node, Unary | Binary) or not isinstance(node.left, Field):
        return False
    name = node.left.name
    if name in _SOCKET_ONLY_FIELDS:
        return True                     # no value for other fds: every check is false
    kinds = _SOCKET_VALUES.get(name)
    if kinds is not None and isinstance(node, Binary) and \
            node.op in ("=", "==", "in", "intersects") and \
            isinstance(node.right, Value | ListValue):
        vals = node.right.values if isinstance(node.right, ListValue) else [node.right.text]
        return bool(vals) and all(v.lower() in kinds for v in vals)
    return False


#: fields with a value for every fd, but values that only a socket has: an equality with such
#: values is false for a file (fd.l4proto is "<NA>", fd.is_server/fd.connected false there)
_SOCKET_VALUES: dict[str, frozenset[str]] = {
    "fd.type": frozenset({"ipv4", "ipv6", "unix"}), "fd.typechar": frozenset({"4", "6", "u"}),
    "fd.l4proto": frozenset({"tcp", "udp", "icmp", "raw"}),
    "fd.is_server": frozenset({"true", "1"}), "fd.connected": frozenset({"true", "1"})}
#: fields whose extractor returns a value only for socket fds (fd.py: ``net``/``typechar in``)
_SOCKET_ONLY_FIELDS = frozenset({
    "fd.cip", "fd.sip", "fd.lip", "fd.rip", "fd.cport", "fd.sport", "fd.lport",
    "fd.rport", "fd.cnet", "fd.snet", "fd.lnet", "fd.rnet", "fd.ip", "fd.net", "fd.port",
    "fd.sockfamily"})

#: fields that read the whole fd table of the process (any event type)
TABLE_FIELDS = frozenset({"proc.fdopencount", "fd.types"})
#: types whose state handler takes the event's fd from the fd table
_FDINFO_HANDLER_TYPES = frozenset({"dup", "dup2", "dup3", "fcntl", "close", "fchdir", "connect",
                                   "accept", "accept4", "bind", "listen", "sendto", "sendmsg",
                                   "recvfrom", "recvmsg"})
#: types whose state handler never takes the event's fd from the table (a new fd, or none)
_FRESH_FD_TYPES = OPEN_TYPES | frozenset({
    "open_by_handle_at", "procfork", "clone", "clone3", "fork", "vfork", "execve", "execveat",
    "procexit", "memfd_create", "socket", "userfaultfd", "eventfd", "eventfd2", "signalfd",
    "signalfd4", "epoll_create", "epoll_create1", "inotify_init", "inotify_init1",
    "io_uring_setup", "pipe", "pipe2", "socketpair", "pidfd_open", "pidfd_getfd", "timerfd_create",
    "chdir", "setuid", "setgid", "setreuid", "setregid",
    "setresuid", "setresgid", "capset"})


def _fdinfo_from_table(t: str) -> bool:
    if t in _FDINFO_HANDLER_TYPES:
        return True
    if t in _FRESH_FD_TYPES:
        return False
    schema = EVENTS.get(t)
    return schema is None or "fd" in schema.param_names     # the generic path: args["fd"]


def _fd_inputs(t: str) -> frozenset[str] | None:
    """Arguments of ``t`` that name an existing fd (rendered from the table); None: unknown."""
    schema = EVENTS.get(t)
    if schema is None:
        return None
    names = {p.name for p in schema.params if p.type == "fd"}
    if t in _FRESH_FD_TYPES:
        names.discard("fd")                 # the result: a fresh entry
    return frozenset(names)


def _tokens(node: Any, out: set[tuple[str, str | None]]) -> None:
    if isinstance(node, And | Or):
        for c in node.children:
            _tokens(c, out)
    elif isinstance(node, Not):
        _tokens(node.child, out)
    elif isinstance(node, Unary):
        _tokens(node.left, out)
    elif isinstance(node, Binary):
        _tokens(node.left, out)
        _tokens(node.right, out)
    elif isinstance(node, Field):
        out.add((node.name, node.arg))
    elif isinstance(node, Transform):
        _tokens(node.child, out)
    elif isinstance(node, Val):
        _tokens(node.field, out)
    elif isinstance(node, MultiTransform):
        for a in node.args:
            _tokens(a, out)
    elif isinstance(node, TransformList):
        for a in node.items:
            _tokens(a, out)


def _token_field(tok: str) -> tuple[str, str | None]:
    """An output token (``fd.name``, ``proc.aname[2]``, ``evt.arg.flags``) as (name, arg)."""
    name, sep, rest = tok.partition("[")
    return (name, rest.rstrip("]")) if sep else (name, None)


def rule_fields(rule: Any, facts: RuleFacts) -> set[tuple[str, str | None]]:
    """Every field a rule reads: its condition, its output, its ``append_output`` fields."""
    out: set[tuple[str, str | None]] = set(facts.fields)
    fmt = getattr(rule, "fmt", None)
    for tok, _g in getattr(fmt, "fields", None) or ():
        out.add(_token_field(tok))
    extra = getattr(rule, "extra_fields", None) or {}
    for tok, _g in extra.get("getters", ()):
        out.add(_token_field(tok))
    return out


def _reads_fd_of(t: str, fields: set[tuple[str, str | None]]) -> str | None:
    """The first field (token) by which a rule on type ``t`` reads the fd table, if any."""
    inputs = _fd_inputs(t)
    for name, arg in sorted(fields, key=lambda f: (f[0], f[1] or "")):
        if name.startswith("fd.") and _fdinfo_from_table(t):
            return name
        if name == "evt.args" and (inputs is None or inputs):
            return name
        if name == "evt.arg":           # evt.arg[N]: any argument
            if inputs is None or inputs or (arg in (None, "0") and _fdinfo_from_table(t)):
                return f"evt.arg[{arg}]"
        if name.startswith("evt.arg."):
            a = name[len("evt.arg."):]
            if inputs is None or a in inputs or (a == "fd" and _fdinfo_from_table(t)):
                return name
    return None


def state_dependence(rule: Any) -> str | None:
    """Why the rule needs the fds of every open (open filtering must be off), or None."""
    facts = _facts(rule)
    if facts is None:
        return f"rule '{rule.name}' has no condition tree to derive from"
    fields = rule_fields(rule, facts)
    for name, _arg in fields:
        if name in TABLE_FIELDS:
            return f"rule '{rule.name}' reads {name} (the whole fd table)"
    types = sorted(rule.event_types) if rule.event_types is not None else sorted(EVENTS)
    for t in types:
        if t in OPEN_TYPES:
            continue            # the open's own fd entry is fresh (see docs/kernel-filter.md)
        tok = _reads_fd_of(t, fields)
        if tok is not None and t in RECOVERED_FD_TYPES:
            tok = _reads_fd_of(t, set(facts.fields))      # the condition's own fields only
        if tok is not None and not facts.socket:
            return (f"rule '{rule.name}' reads {tok} on {t} (an fd a filtered open may have "
                    "created) and its condition does not prove the fd is a socket")
    return None


# ------------------------------------------------------------------------------ per rule
@dataclass(frozen=True, slots=True)
class RuleFacts:
    """What the derivation needs of one rule's condition, computed when the rule compiles (so
    the compiled rule keeps no syntax tree): its clauses, the fields it reads, and whether it
    proves the event's fd is a socket."""

    clauses: tuple[_C, ...]
    fields: frozenset[tuple[str, str | None]]
    socket: bool
    #: I/O: byte strings one of which its data must contain (None: not derivable)
    needles: frozenset[bytes] | None = None


def rule_facts(ast: Any) -> RuleFacts | None:
    """The :class:`RuleFacts` of a (macro-expanded) condition; ``None`` when it is nested too
    deeply to walk (the loader accepts what the parser's limit allows): its types then stay
    unfiltered, and open filtering is off (what it reads is unknown)."""
    try:
        fields: set[tuple[str, str | None]] = set()
        _tokens(ast, fields)
        return RuleFacts(necessary(ast), frozenset(fields), socket_proven(ast), needles(ast))
    except (RecursionError, MemoryError):
        return None


def _facts(rule: Any) -> RuleFacts | None:
    facts = getattr(rule, "kfacts", None)
    if facts is None and getattr(rule, "ast", None) is not None:
        facts = rule_facts(rule.ast)
    return facts if isinstance(facts, RuleFacts) else None


# ------------------------------------------------------------------------------ the plan
def _clause(c: _C) -> Clause:
    names = c.names if c.names is None or len(c.names) <= MAX_NAMES else None
    if c.paths is None or _size(c.paths) > MAX_PATH_ENTRIES:
        return Clause(True, frozenset(), frozenset(), c.r, c.w, c.s, names=names)
    return Clause(False, c.paths[0], c.paths[1], c.r, c.w, c.s, c.paths[2], names)


def _subsumed(c: Clause, by: Clause) -> bool:
    """Every event passing ``c`` passes ``by`` (``by`` needs less, on at least its paths)."""
    if c is by or (by.need_read and not c.need_read) or (by.need_write and not c.need_write) \
            or (by.need_success and not c.need_success):
        return False
    if by.names is not None and (c.names is None or not c.names <= by.names):
        return False
    if by.any_path:
        return True
    if c.any_path:
        return False
    return all(e in by.exact or any(e.startswith(p) for p in by.prefixes)
               or any(e.endswith(p) for p in by.suffixes) for e in c.exact) and \
        all(any(p.startswith(q) for q in by.prefixes) for p in c.prefixes) and \
        all(any(p.endswith(q) for q in by.suffixes) for p in c.suffixes)


def _collapse(c: _C) -> _C:
    """One path set for the plan: the one of ``paths`` and ``rpaths`` that constrains (the
    smaller when both do). Either holds for the path that matched, requested or resolved."""
    if c.rpaths is None:
        return c
    p = c.rpaths if c.paths is None else min(c.paths, c.rpaths, key=_size)
    return _C(c.types, p, c.r, c.w, c.s, None, c.names)


def _merge(cs: list[_C]) -> tuple[Clause, ...]:
    """A type's clauses: equal ``need_*`` flags and names merged (paths united), subsumed ones
    removed. More than :data:`MAX_NAME_GROUPS` name sets on one flag class: united."""
    groups: dict[tuple[bool, bool, bool, frozenset[str] | None], list[_C]] = {}
    for c in map(_collapse, cs):
        groups.setdefault((c.r, c.w, c.s, c.names), []).append(c)
    per_flags: dict[tuple[bool, bool, bool], int] = {}
    for k in groups:
        per_flags[k[:3]] = per_flags.get(k[:3], 0) + 1
    if any(n > MAX_NAME_GROUPS for n in per_flags.values()):
        wide: dict[tuple[bool, bool, bool, frozenset[str] | None], list[_C]] = {}
        for k, g in groups.items():
            kk = k if per_flags[k[:3]] <= MAX_NAME_GROUPS else (*k[:3], _union_names(
                c for (f, gg) in groups.items() if f[:3] == k[:3] for c in gg))
            wide.setdefault(kk, []).extend(g)
        groups = wide
    out = [_clause(_C(g[0].types, _union_paths(g), *k[:3], None, k[3]))
           for k, g in groups.items()]
    uniq = list(dict.fromkeys(out))
    kept = [c for c in uniq if not any(_subsumed(c, o) for o in uniq if o != c)]
    return tuple(sorted(kept, key=lambda c: (c.need_read, c.need_write, c.need_success,
                                             c.names is not None, sorted(c.names or ()))))


def derive(ruleset: Any, unfiltered_types: Iterable[str] | dict[str, str] = frozenset()
           ) -> FilterPlan:
    """The kernel filter of ``ruleset``'s enabled syscall rules.

    ``unfiltered_types``: event types plugins need whole (from the
    ``falconet_unfiltered_event_types`` hook), as a set or as ``{type: plugin name}``; an
    open type there is never filtered, ``close`` there keeps every close."""
    plugin_of = dict(unfiltered_types) if isinstance(unfiltered_types, dict) else \
        {t: "" for t in unfiltered_types}
    rules = [r for r in getattr(ruleset, "rules", ()) if getattr(r, "source", "") == "syscall"]
    unfiltered: dict[str, str] = {}
    for t in sorted(OPEN_TYPES & set(plugin_of)):
        who = plugin_of[t]
        unfiltered[t] = f"needed by plugin {who}" if who else "needed by a plugin"
    off: str | None = None
    for r in rules:
        off = state_dependence(r)
        if off is not None:
            break
    per_type: dict[str, list[_C]] = {t: [] for t in OPEN_TYPES}
    any_close = "close" in plugin_of
    for r in rules:
        types = r.event_types
        if types is None:
            any_close = True
            for t in OPEN_TYPES:
                unfiltered.setdefault(t, f"rule '{r.name}' matches every event type")
            continue
        any_close = any_close or "close" in types
        on_open = OPEN_TYPES & types
        if not on_open:
            continue
        facts = _facts(r)
        if facts is None:
            for t in on_open:
                unfiltered.setdefault(t, f"rule '{r.name}' has no condition tree")
            continue
        for c in facts.clauses:
            for t in c.types & on_open:
                per_type[t].append(c)
    if off is not None:
        for t in OPEN_TYPES:
            unfiltered.setdefault(t, f"open filtering is off: {off}")
    filtered = {t: TypeFilter(t, _merge(cs)) for t, cs in sorted(per_type.items())
                if t not in unfiltered}
    # a type whose clauses are (any flags, any path) filters nothing: say so
    for t, tf in list(filtered.items()):
        if any(c.any_path and not (c.need_read or c.need_write or c.need_success)
               and c.names is None for c in tf.clauses):
            del filtered[t]
            unfiltered[t] = "a rule on it can match any open (no path, flags, success or " \
                            "process name condition can be derived)"
    notes: tuple[str, ...] = ()
    if any_close and filtered:
        notes = ("close: a rule or plugin reads close events: every close passes",)
    return FilterPlan(filtered, unfiltered, bool(filtered) and not any_close, notes,
                      io=derive_io(rules, plugin_of),
                      child_clones=_child_clones(rules, plugin_of))


def _child_clones(rules: list[Any], plugin_of: dict[str, str]) -> frozenset[str]:
    """The clone types whose child-side return (res 0) the kernel may drop: types no rule can
    match (a rule without an ``evt.type`` restriction can match all) and no plugin needs
    whole. The state never needs that return: ``procfork`` (sched_process_fork, in the
    parent before the child runs) creates the child, the parent's return adds the flags."""
    if any(r.event_types is None for r in rules):
        return frozenset()
    read = set(plugin_of).union(*(r.event_types for r in rules))
    return frozenset(CLONE_TYPES - read)


# ------------------------------------------------------------------------------ I/O
#: fields that hold the raw data snapshot (``evt.arg.data`` renders it, '.' for other bytes:
#: a needle on its text is not a needle on the bytes)
_BUFFER_FIELDS = frozenset({"evt.buffer", "evt.rawarg.data"})


def needles(node: Any, neg: bool = False) -> frozenset[bytes] | None:
    """Byte strings one of which the data of every event ``node`` matches contains (their first
    :data:`NEEDLE_LEN` bytes), or ``None`` (no such set can be derived)."""
    if isinstance(node, Not):
        return needles(node.child, not neg)
    if isinstance(node, And | Or):
        parts = [needles(c, neg) for c in node.children]
        if isinstance(node, And) != neg:
            known = [p for p in parts if p is not None]
            return min(known, key=len) if known else None
        if any(p is None for p in parts):
            return None
        return frozenset().union(*parts) if parts else frozenset()   # type: ignore[arg-type]
    if neg or not isinstance(node, Binary) or not isinstance(node.left, Field):
        return None
    name = node.left.name if node.left.arg is None else f"{node.left.name}.{node.left.arg}"
    if name not in _BUFFER_FIELDS or node.op != "contains" or not isinstance(node.right, Value):
        return None
    lit = node.right.text.encode("utf-8", "surrogateescape")
    return frozenset({lit[:NEEDLE_LEN]}) if lit else None


def derive_io(rules: list[Any], plugin_of: dict[str, str]) -> dict[str, IoFilter]:
    """The I/O filters: per traced I/O type, whether every rule on it proves a socket fd
    (:func:`socket_proven`) and which needles every rule's data must contain."""
    per: dict[str, list[tuple[bool, frozenset[bytes] | None]]] = {}
    for r in rules:
        types = r.event_types
        if types is None:
            return {}                       # a rule on every type: no I/O type is filtered
        on_io = IO_TYPES & types
        if not on_io:
            continue
        facts = _facts(r)
        if facts is None:
            for t in on_io:
                per.setdefault(t, []).append((False, None))
            continue
        sock, need = facts.socket, facts.needles
        for t in on_io:
            per.setdefault(t, []).append((sock, need))
    out: dict[str, IoFilter] = {}
    for t, items in sorted(per.items()):
        if t in plugin_of:
            continue
        sockets_only = all(sock for sock, _n in items)
        found: set[bytes] = set()
        ok = t not in IO_STATE_TYPES
        for _s, n in items:
            if n is None:
                ok = False
                break
            found |= n
        found = {n for n in found if not any(o != n and n.startswith(o) for o in found)}
        picked = tuple(sorted(found)) if ok and 0 < len(found) <= MAX_NEEDLES else ()
        if sockets_only or picked:
            out[t] = IoFilter(t, sockets_only, picked)
    return out
