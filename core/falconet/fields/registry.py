"""The field registry: every field a rule or output may name, with its type and its extractor.

One registry serves the rule compiler (to reject unknown fields and wrong types at load time) and
the hot loop (to extract values). Providers (core state, plugins) declare :class:`FieldDef` objects;
the compiler asks :meth:`FieldRegistry.resolve` once per field token at load time and gets back a
plain callable ``extract(event) -> value | None``. ``None`` means "no value" (Falco's failed
extraction), which makes every comparison on it false.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from falconet.events import Event

Extractor = Callable[[Event], Any]


class FieldType(enum.Enum):
    """Value types, after libsinsp's. The compiler checks operators against them."""

    STRING = "string"      # CHARBUF
    PATH = "path"          # FSPATH: a string that pmatch/glob treat as a path
    INT64 = "int64"
    UINT64 = "uint64"
    UINT32 = "uint32"
    PORT = "port"          # uint16
    BOOL = "bool"
    ABSTIME = "abstime"    # ns since epoch
    RELTIME = "reltime"    # ns duration
    IPADDR = "ipaddr"      # str (dotted quad or IPv6 text)
    IPNET = "ipnet"        # ipaddr matched against networks
    BYTEBUF = "bytebuf"    # bytes
    # PT_DOUBLE: numeric, and its values parse as libsinsp parses them there: decimal integers
    # only (Falco 0.44.1: `thread.cpu > 1.5` is "1.5 is not a valid number")
    DOUBLE = "double"

    @property
    def is_numeric(self) -> bool:
        return self in _NUMERIC

    @property
    def is_string(self) -> bool:
        return self in (FieldType.STRING, FieldType.PATH)


_NUMERIC = {FieldType.INT64, FieldType.UINT64, FieldType.UINT32, FieldType.PORT,
            FieldType.ABSTIME, FieldType.RELTIME, FieldType.DOUBLE}


class ArgKind(enum.Enum):
    NONE = "none"          # proc.name
    OPTIONAL = "optional"  # proc.aname or proc.aname[2]
    REQUIRED = "required"  # evt.arg[0] / evt.arg.flags


class UnknownFieldError(LookupError):
    """Raised by :meth:`FieldRegistry.resolve`; the message is Falco's wording."""


@dataclass(frozen=True, slots=True)
class FieldDef:
    """Declaration of one field (or one family, for dotted-argument fields).

    Attributes:
        name: full name, e.g. ``proc.aname``. For fields whose argument follows a dot
            (``evt.arg.flags``, ``container.label.app``) set ``dotted_arg=True`` and name the
            stem (``evt.arg``).
        type: value type.
        desc: one-line description shown by ``falconet fields``.
        make_extractor: called at load time with the argument (``None`` when absent, else the
            string inside ``[...]`` or after the dot) and returns ``extract(event) -> value|None``.
            Raise ``ValueError`` with a message for an invalid argument.
        arg: whether an argument is taken.
        arg_is_index: the argument is a number (``proc.aname[2]``); validated as int by resolve.
        dotted_arg: the argument may also be given as ``name.<arg>`` (``evt.arg.flags``).
        is_list: multi-valued (returns a tuple); supports only ``in``, ``intersects``, ``exists``.
        ancestor: without an argument the field is existential over ancestors (``proc.aname``):
            the extractor returns a tuple of ancestor values and comparisons are true if any is.
        provider: who provides it (``core``, or a plugin name).
        sources: event sources the field applies to.
        suggested: appended to every alert of those sources by ``append_output`` (Falco's
            plugin ``addOutput``), e.g. ``container.id``.
        cache: whether values are cached per event (off for trivial attribute reads).
        no_transformer: transformers and ``val()`` are not allowed on it (EPF_NO_TRANSFORMER).
        compile_check: optional ``(arg, op, values) -> check(evt) -> bool | None``, called by the
            rule compiler at load time for ``field op <constants>`` (no transformer, no
            modifier); a non-``None`` result replaces the generic comparison of the extracted
            value. For fields whose comparison is not on the extracted value, e.g.
            ``fd.sip.name = "x"`` is true when the server IP is one of x's resolved addresses
            (:mod:`falconet.state.dns`). Raise ``ValueError`` for an invalid value.
    """

    name: str
    type: FieldType
    desc: str
    make_extractor: Callable[[str | None], Extractor]
    arg: ArgKind = ArgKind.NONE
    arg_is_index: bool = False
    dotted_arg: bool = False
    is_list: bool = False
    ancestor: bool = False
    provider: str = "core"
    sources: frozenset[str] = frozenset({"syscall"})
    suggested: bool = False
    cache: bool = True
    no_transformer: bool = False
    compile_check: Callable[[str | None, str, list[str]], Callable[[Event], bool] | None] | None = None


@dataclass(slots=True)
class ResolvedField:
    """A field token bound at load time: what the compiler and formatter work with."""

    token: str              # as written: proc.aname[2], evt.arg.flags
    fdef: FieldDef
    arg: str | None
    extract: Extractor      # cached per event when fdef.cache

    @property
    def type(self) -> FieldType:
        return self.fdef.type

    @property
    def multi(self) -> bool:
        """Existential over ancestors (no index given on an ancestor field)."""
        return self.fdef.ancestor and self.arg is None


_MISSING = object()


def _cached(key: str, fn: Extractor) -> Extractor:
    def extract(evt: Event, _key: str = key, _fn: Extractor = fn, _m: object = _MISSING) -> Any:
        c = evt.cache
        v = c.get(_key, _m)
        if v is _m:
            v = c[_key] = _fn(evt)
        return v
    return extract


@dataclass
class FieldRegistry:
    """All declared fields, by name. Built at start from core and every plugin's
    ``falconet_fields`` hook; read-only afterwards."""

    fields: dict[str, FieldDef] = field(default_factory=dict)

    def register(self, fdef: FieldDef) -> None:
        """Declare a field. A second declaration of the same name for an overlapping source is
        an error (plugins must prefix their fields)."""
        prev = self.fields.get(fdef.name)
        if prev is not None and prev.sources & fdef.sources:
            raise ValueError(f"field '{fdef.name}' is already declared by {prev.provider}")
        self.fields[fdef.name] = fdef

    def register_all(self, fdefs: Iterable[FieldDef]) -> None:
        for f in fdefs:
            self.register(f)

    def lookup(self, name: str, arg: str | None = None) -> tuple[FieldDef, str | None]:
        """Find the declaration for ``name`` (``evt.arg.flags`` finds the ``evt.arg`` stem with
        argument ``flags``). Raises :class:`UnknownFieldError`."""
        fdef = self.fields.get(name)
        if fdef is None and arg is None:
            # dotted argument: longest declared stem that allows it
            parts = name.split(".")
            for i in range(len(parts) - 1, 1, -1):
                stem = ".".join(parts[:i])
                cand = self.fields.get(stem)
                if cand is not None and cand.dotted_arg:
                    fdef, arg = cand, ".".join(parts[i:])
                    break
        if fdef is None:
            raise UnknownFieldError(f"filter_check called with nonexistent field {name}")
        if arg is None and fdef.arg is ArgKind.REQUIRED:
            raise UnknownFieldError(f"filter_check called with nonexistent field {name}: "
                                    f"field '{name}' requires an argument")
        if arg is not None and fdef.arg is ArgKind.NONE:
            raise UnknownFieldError(f"filter_check called with nonexistent field {name}[{arg}]: "
                                    f"field '{name}' does not take an argument")
        if arg is not None and fdef.arg_is_index and not arg.lstrip("-").isdigit():
            raise UnknownFieldError(f"filter_check called with nonexistent field {name}[{arg}]: "
                                    f"the argument of '{name}' must be a number")
        return fdef, arg

    def resolve(self, name: str, arg: str | None = None, source: str = "syscall") -> ResolvedField:
        """Bind a field token at load time. Raises :class:`UnknownFieldError` for unknown
        fields, bad arguments, or fields not available for ``source``."""
        fdef, arg = self.lookup(name, arg)
        if source not in fdef.sources:
            raise UnknownFieldError(f"filter_check called with nonexistent field {name} "
                                    f"for source '{source}'")
        try:
            fn = fdef.make_extractor(arg)
        except ValueError as e:
            raise UnknownFieldError(f"filter_check called with nonexistent field {name}: {e}") from None
        token = name if arg is None else (f"{fdef.name}[{arg}]" if name == fdef.name else name)
        if fdef.cache:
            fn = _cached(token, fn)
        return ResolvedField(token, fdef, arg, fn)

    def for_source(self, source: str) -> list[FieldDef]:
        return sorted((f for f in self.fields.values() if source in f.sources), key=lambda f: f.name)

    def suggested(self, source: str) -> list[FieldDef]:
        """Fields appended to every alert of ``source`` (``append_output: suggested_output``)."""
        return [f for f in self.fields.values() if f.suggested and source in f.sources]


def attr_field(name: str, type: FieldType, desc: str, getter: Callable[[Event], Any],
               **kw: Any) -> FieldDef:
    """Shorthand for a field without argument whose extractor is ``getter``."""
    def make(_arg: str | None, _g: Extractor = getter) -> Extractor:
        return _g
    return FieldDef(name, type, desc, make, **kw)
