"""Candidate predicates ("atoms") of one event, for synthesis.

An atom is ``(field, op, value)`` rendered as ``field op value`` (``("macro", "", name)`` for a
macro of the loaded rules, ``("list", field, name)`` for ``field in (list)``). Each event is
described by the set of atoms true on it; a condition is a conjunction of atoms. Values are
taken from the engine's own field extraction after its state parser ran, so ``proc.pname`` or
``fd.name`` mean what they mean to the rules.

Volatile values (pids, random temporary names, timestamps) are never atoms; paths contribute
their directory prefixes (``fd.name startswith /etc/``), which synthesis uses to generalise
only as far as the negatives allow.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from falconet.events import Event

Atom = tuple[str, str, str]

#: (field, cost, kind): string fields compared with "="; kind "path" adds prefix atoms
STRING_FIELDS: tuple[tuple[str, float, str], ...] = (
    ("proc.name", 1.0, "str"),
    ("proc.exepath", 1.3, "path"),
    ("proc.pname", 1.3, "str"),
    ("proc.pexepath", 1.6, "path"),
    ("fd.name", 1.2, "path"),
    ("fd.typechar", 1.5, "str"),
    ("fd.l4proto", 1.6, "str"),
    ("container.image.repository", 1.6, "str"),
    ("user.name", 2.2, "str"),
)
BOOL_FIELDS: tuple[tuple[str, float], ...] = (
    ("evt.is_open_read", 1.2), ("evt.is_open_write", 1.2), ("evt.is_open_exec", 1.2),
    ("proc.is_exe_upper_layer", 1.2), ("proc.is_exe_from_memfd", 1.2),
)
PORT_FIELDS: tuple[tuple[str, float], ...] = (("fd.sport", 1.3),)
#: event arguments worth a predicate (flags, modes, requests, paths); fds, pids, sizes never
ARG_NAMES = frozenset({"request", "nstype", "flags", "mode", "domain", "type", "proto", "cmd",
                       "option", "uargs"})
SEMANTIC_ARGS = frozenset({"request", "nstype", "domain", "cmd", "option"})
PATH_ARGS = frozenset({"name", "path", "filename", "oldpath", "newpath", "target", "linkpath",
                       "dir", "dev"})
ANCESTRY_DEPTH = 4
#: the kernel's ephemeral port range starts at 32768: such a port is chosen at random
EPHEMERAL_PORTS = 32768
MAX_TOKENS = 6

COST = {"macro": 0.8, "list": 0.9, "evt.type": 1.0, "startswith": 1.0, "endswith": 1.1, "proc.aname": 2.2,
        "proc.args": 2.0, "evt.arg": 1.6, "evt.arg_semantic": 1.1, "proc.tty": 1.4, "container.id": 1.1}

_VOLATILE = re.compile(r"\d{4,}|[0-9a-f]{10,}|tmp[a-z0-9_]{6,}|[A-Za-z0-9]{20,}")


#: a mktemp-style random suffix: 6+ letters/digits of at least two kinds after a separator
_RANDOM_SUFFIX = re.compile(r"[._-]([A-Za-z0-9]{6,})(?=/|$)")


def _random_token(tok: str) -> bool:
    kinds = (any(ch.islower() for ch in tok) + any(ch.isupper() for ch in tok)
             + any(ch.isdigit() for ch in tok))
    return kinds >= 2


@functools.lru_cache(maxsize=65536)
def volatile(value: str) -> bool:
    """A value that will not be the same next time (pids, random names, hashes)."""
    if _VOLATILE.search(value) or len(value) > 120:
        return True
    return any(_random_token(m.group(1)) for m in _RANDOM_SUFFIX.finditer(value))


@functools.lru_cache(maxsize=65536)
def prefixes(path: str) -> tuple[str, ...]:
    """Directory prefixes of ``path``, longest first, at least one level deep
    (``/a/b/c`` -> ``/a/b/``, ``/a/``)."""
    out = []
    i = path.rfind("/")
    while i > 0:
        out.append(path[:i + 1])
        i = path.rfind("/", 0, i)
    keep: list[str] = []
    for p in out:
        if not volatile(p):
            keep.append(p)
            continue
        # /tmp/falconet-sim-mZgRvj/ -> /tmp/falconet-sim- (the stable part of a random name)
        m = next((m for m in _RANDOM_SUFFIX.finditer(p) if _random_token(m.group(1))), None)
        if m is not None:
            stem = p[:m.start(1)]
            if len(stem) - stem.rfind("/") > 3 and not volatile(stem):
                keep.append(stem)
    return tuple(dict.fromkeys(keep))


_EXT = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


def suffix(path: str) -> str | None:
    """A file extension (``.lua``, ``.so``), the part of a random name that is stable."""
    m = _EXT.search(path.rsplit("/", 1)[-1])
    return m.group(0) if m else None


def _field_cost(name: str) -> float:
    for f, cost, _k in STRING_FIELDS:
        if f == name:
            return cost
    return 1.5


def atom_cost(a: Atom) -> float:
    f, op, _v = a
    if f == "macro":
        return COST[f]
    if f == "list":       # a loaded list on proc.name is cheapest; on other fields, their cost
        return COST[f] if a[1] == "proc.name" else max(COST[f], _field_cost(a[1]) - 0.1)
    if op in ("startswith", "endswith"):
        return COST[op]
    for name, cost, _k in STRING_FIELDS:
        if name == f:
            return cost
    for name, cost in (*BOOL_FIELDS, *PORT_FIELDS):
        if name == f:
            return cost
    if f.startswith("evt.arg."):
        # a syscall's own request/flags say what it did: as telling as a process name
        return COST["evt.arg_semantic"] if f[8:] in SEMANTIC_ARGS else COST["evt.arg"]
    return COST.get(f, 1.5)


def generality(a: Atom) -> int:
    """Higher = more general, among atoms on the same field (exact < long prefix < short)."""
    if a[1] == "startswith":
        return 1000 - len(a[2])
    if a[1] == "endswith":
        return 500
    if a[0] == "list":
        return 2000
    return 0


def field_of(a: Atom) -> str:
    return a[1] if a[0] == "list" else a[0]


class Extractor:
    """Atoms of events, with the field getters of one replay's engine. ``lists``: the loaded
    rules' lists (name -> expanded items) offered as ``field in (list)`` atoms."""

    def __init__(self, resolve: Callable[..., Any], lists: dict[str, list[str]],
                 macro_rules: Any = None, macro_prefix: str = "") -> None:
        def get(name: str, arg: str | None = None) -> Callable[[Event], Any] | None:
            try:
                return resolve(name, arg).extract
            except Exception:  # noqa: BLE001 - a field a plugin did not provide: no atoms
                return None
        self.strings = [(f, get(f), k) for f, _c, k in STRING_FIELDS]
        self.bools = [(f, get(f)) for f, _c in BOOL_FIELDS]
        self.ports = [(f, get(f)) for f, _c in PORT_FIELDS]
        self.type = get("evt.type")
        self.args = get("proc.args")
        self.tty = get("proc.tty")
        self.cid = get("container.id")
        self.anc = [get("proc.aname", str(i)) for i in range(1, ANCESTRY_DEPTH + 1)]
        self.arg_getters: dict[str, Callable[[Event], Any] | None] = {}
        self.resolve = get
        # list membership: value -> list names holding it (small lists of names only)
        self.member: dict[str, list[str]] = {}
        for name, items in lists.items():
            for it in items:
                self.member.setdefault(it, []).append(name)
        self.macro_rules = macro_rules
        self.macro_prefix = macro_prefix

    def _arg(self, name: str) -> Callable[[Event], Any] | None:
        if name not in self.arg_getters:
            self.arg_getters[name] = self.resolve("evt.arg." + name)
        return self.arg_getters[name]

    def atoms(self, evt: Event) -> frozenset[Atom]:
        out: set[Atom] = set()
        t = self.type(evt) if self.type else evt.type
        out.add(("evt.type", "=", str(t)))
        for f, g, kind in self.strings:
            v = g(evt) if g else None
            if v is None or v == "" or not isinstance(v, str):
                continue
            if not volatile(v):
                out.add((f, "=", v))
                for lst in self.member.get(v, ()):
                    out.add(("list", f, lst))
            if kind == "path" and v.startswith("/"):
                for p in prefixes(v):
                    out.add((f, "startswith", p))
                ext = suffix(v)
                if ext:
                    out.add((f, "endswith", ext))
        for f, g in self.bools:
            if g is not None and g(evt) is True:
                out.add((f, "=", "true"))
        for f, g in self.ports:
            v = g(evt) if g else None
            if isinstance(v, int) and 0 < v < EPHEMERAL_PORTS:
                out.add((f, "=", str(v)))
        if self.tty is not None:
            v = self.tty(evt)
            if isinstance(v, int) and v != 0:
                out.add(("proc.tty", "!=", "0"))
        if self.cid is not None:
            v = self.cid(evt)
            if isinstance(v, str) and v and v != "host":
                out.add(("container.id", "!=", "host"))
        for g in self.anc:
            v = g(evt) if g else None
            if isinstance(v, str) and v and not volatile(v):
                out.add(("proc.aname", "=", v))
        if self.args is not None:
            v = self.args(evt)
            if isinstance(v, str) and v:
                for tok in v.split()[:MAX_TOKENS]:
                    if 3 <= len(tok) <= 60 and not volatile(tok) and '"' not in tok:
                        out.add(("proc.args", "contains", tok))
        for name in evt.args:
            if name in ARG_NAMES or name in PATH_ARGS:
                g = self._arg(name)
                v = g(evt) if g else None
                if v is None or v == "":
                    continue
                v = str(v)
                if name in PATH_ARGS:
                    if v.startswith("/"):
                        for p in prefixes(v):
                            out.add(("evt.arg." + name, "startswith", p))
                    if not volatile(v):
                        out.add(("evt.arg." + name, "=", v))
                elif not volatile(v) and len(v) <= 80:
                    out.add(("evt.arg." + name, "=", v))
        if self.macro_rules is not None:
            n = len(self.macro_prefix)
            for a in self.macro_rules.match(evt):
                out.add(("macro", "", a.rule[n:]))
        return frozenset(out)


_SAFE_BARE = re.compile(r"[A-Za-z0-9/._+:@%-]+")
_NAME_LIKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def quote(v: str) -> str:
    """A value as a condition token: bare when unambiguous, else double-quoted."""
    if _SAFE_BARE.fullmatch(v) and not _NAME_LIKE.fullmatch(v) and v not in ("and", "or", "not"):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(a: Atom) -> str:
    f, op, v = a
    if f == "macro":
        return v
    if f == "list":
        return f"{op} in ({v})"
    if op in ("!=",) and f in ("proc.tty", "container.id"):
        return f"{f} != {v}"
    return f"{f} {op} {quote(v)}"


def render_all(atoms: Iterable[Atom]) -> str:
    return " and ".join(render(a) for a in atoms)
