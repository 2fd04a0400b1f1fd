"""Compile a parsed, macro-expanded condition into a Python closure ``check(evt) -> bool``.

Everything that can be decided at load time is: fields are resolved through the registry (their
extractors cache per event), right-hand sides are parsed into the field's type, ``in`` sets become
frozensets, ``pmatch`` prefixes a path-component trie, globs and regexes are compiled. Nothing of
the rule text is ever evaluated as code: each check is a closure over constants.

Semantics follow libsinsp (see docs/rules.md): a field without a value (extractor returns
``None``) makes its check false for every operator (``!=`` and ``exists`` included), ancestor
fields without index (``proc.aname``) are true if any ancestor satisfies the check, list fields
(``is_list``) support only ``in`` (every value in the set), ``intersects`` (any) and ``exists``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any

from falconet.fields.registry import FieldRegistry, FieldType, ResolvedField, UnknownFieldError
from falconet.rules import multivalue
from falconet.rules.ast import (
    And,
    Binary,
    Field,
    Ident,
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
from falconet.rules.errors import FilterCompileError
from falconet.rules.parser import as_string, parse_field_token
from falconet.rules.regex import compile_regex

Check = Callable[[Any], bool]
Getter = Callable[[Any], Any]

# ------------------------------------------------------------------------- operator/type table
_NUM_OK = frozenset({"=", "==", "!=", "<", "<=", ">", ">=", "in", "intersects", "exists"})
_BOOL_OK = frozenset({"=", "==", "!=", "in", "intersects", "exists"})
_BUF_OK = frozenset({"=", "==", "!=", "contains", "in", "exists", "startswith", "endswith",
                     "intersects", "bcontains", "bstartswith"})
_IP_OK = frozenset({"=", "==", "!=", "in", "exists", "intersects"})
_STR_BAD = frozenset({"bcontains", "bstartswith"})
_LIST_FIELD_OK = frozenset({"in", "intersects", "exists"})


def check_op_type(op: str, ftype: FieldType) -> None:
    """Falco's ``flt_is_comparable``: raise with its wording when ``op`` does not suit ``ftype``."""
    base = op.split(" ", 1)[0]
    if ftype.is_numeric:
        ok, kind = base in _NUM_OK, "numeric"
    elif ftype is FieldType.BOOL:
        ok, kind = base in _BOOL_OK, "boolean"
    elif ftype is FieldType.BYTEBUF:
        ok, kind = base in _BUF_OK, "buffer"
    elif ftype in (FieldType.IPADDR, FieldType.IPNET):
        ok, kind = base in _IP_OK, "ip address and network"
        if " " in op and base not in ("=", "==", "!="):
            ok = False
    else:
        ok, kind = base not in _STR_BAD, "string"
    if not ok:
        raise FilterCompileError(f"filter error: '{base}' operator not supported for {kind} filters")


# ------------------------------------------------------------------------------ value parsing
def parse_number(text: str, ftype: FieldType) -> int | float:
    """A decimal integer, as libsinsp's number parser for integer fields: Falco 0.44.1 rejects
    `0x10`, `1.5` and `1e+3` there with "<text> is not a valid number" (the parser lexes them,
    the field's value parser refuses them)."""
    t = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", t):
        return int(t)
    raise FilterCompileError(f"{text} is not a valid number")


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise FilterCompileError(f"filter error: '{text}' is not a valid boolean")


def parse_hex(text: str) -> bytes:
    try:
        if len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
            raise ValueError
        return bytes.fromhex(text)
    except ValueError:
        raise FilterCompileError("filter error: bcontains and bstartswith operator support hex "
                                 "strings only") from None


@functools.lru_cache(maxsize=65536)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class _IpSet:
    """Addresses and networks of an IP comparison, parsed at load time."""

    __slots__ = ("addrs", "nets")

    def __init__(self, values: list[str]) -> None:
        addrs: set[Any] = set()
        nets: list[Any] = []
        for v in values:
            try:
                if "/" in v:
                    nets.append(ipaddress.ip_network(v, strict=False))
                else:
                    addrs.add(ipaddress.ip_address(v))
            except ValueError:
                raise FilterCompileError(f"filter error: '{v}' is not a valid IP address or "
                                         "network") from None
        self.addrs = frozenset(addrs)
        self.nets = tuple(nets)

    def __contains__(self, value: Any) -> bool:
        a = value if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) \
            else _ip(str(value))
        if a is None:
            return False
        if a in self.addrs:
            return True
        return any(a.version == n.version and a in n for n in self.nets)


class PathTrie:
    """``pmatch``: prefix match over path components; components may be globs (``/opt/*/x``).

    ``/opt/dir`` matches ``/opt/dir`` and ``/opt/dir/sub/file`` but not ``/opt/dirt``.
    """

    __slots__ = ("root",)

    def __init__(self, prefixes: list[str]) -> None:
        # node: [terminal: bool, exact children: dict, glob children: list[(matcher, node)]]
        self.root: list[Any] = [False, {}, []]
        for p in prefixes:
            node = self.root
            for comp in _components(p):
                if any(ch in comp for ch in "*?["):
                    rx = glob_regex(comp).match
                    for m, child in node[2]:
                        if m is rx:
                            node = child
                            break
                    else:
                        child = [False, {}, []]
                        node[2].append((rx, child))
                        node = child
                else:
                    node = node[1].setdefault(comp, [False, {}, []])
            node[0] = True

    def match(self, path: str) -> bool:
        return self._walk(self.root, _components(path), 0)

    def _walk(self, node: list[Any], comps: list[str], i: int) -> bool:
        while True:
            if node[0]:
                return True
            if i >= len(comps):
                return False
            c = comps[i]
            if node[2]:
                for m, child in node[2]:
                    if m(c) and self._walk(child, comps, i + 1):
                        return True
            node = node[1].get(c)
            if node is None:
                return False
            i += 1


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A whole-string regex for an fnmatch(3) pattern as libc reads it without flags: ``*`` and
    ``?`` also match ``/``, ``[...]`` classes with ``!`` or ``^`` negation, ``\\`` escapes."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            j = i
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:                      # no closing bracket: a literal '['
                out.append("\\[")
                continue
            body = pattern[i:j]
            neg = body[:1] in ("!", "^")
            if neg:
                body = body[1:]
            # '[' inside a class is a literal: escaped so Python's re does not read a nested set
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append(("[^" if neg else "[") + body + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
    return re.compile("(?s:" + "".join(out) + r")\Z", re.IGNORECASE if ignore_case else 0)


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


# ------------------------------------------------------------------------------ transformers
def _t_tolower(v: Any) -> Any:
    return v.lower()


def _t_toupper(v: Any) -> Any:
    return v.upper()


def _t_b64(v: Any) -> Any:
    data = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
    if len(data) % 4 and not data.endswith(b"="):
        data += b"=" * (-len(data) % 4)       # libsinsp decodes unpadded input too
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "replace") if isinstance(v, str) else raw


def _t_basename(v: Any) -> Any:
    return "" if v.endswith("/") else os.path.basename(v)


def _t_len(v: Any) -> Any:
    return len(v)


TRANSFORMER_FUNCS: dict[str, Callable[[Any], Any]] = {
    "tolower": _t_tolower, "toupper": _t_toupper, "b64": _t_b64, "basename": _t_basename,
    "len": _t_len,
}


class _Operand:
    """A compiled left operand (or ``val()``/transformed right operand)."""

    __slots__ = ("get", "type", "is_list", "multi", "field", "transformed")

    def __init__(self, get: Getter, type: FieldType, is_list: bool, multi: bool,
                 field: ResolvedField | None, transformed: bool) -> None:
        self.get = get
        self.type = type
        self.is_list = is_list
        self.multi = multi
        self.field = field
        self.transformed = transformed


# ------------------------------------------------------------------------------ the compiler
class ConditionCompiler:
    """Turns a macro-expanded AST into a closure, for one event source."""

    def __init__(self, registry: FieldRegistry, source: str) -> None:
        self.registry = registry
        self.source = source
        self.fields: list[ResolvedField] = []
        self.warnings: list[str] = []
        self.na_checks: list[str] = []      # LOAD_UNSAFE_NA_CHECK

    # -- operands
    def resolve(self, f: Field) -> ResolvedField:
        try:
            rf = self.registry.resolve(f.name, f.arg, self.source)
        except UnknownFieldError as e:
            raise FilterCompileError(str(e), unknown_filter=True) from None
        self.fields.append(rf)
        return rf

    def operand(self, node: Any) -> _Operand:
        if isinstance(node, Field):
            rf = self.resolve(node)
            return _Operand(rf.extract, rf.type, rf.fdef.is_list, rf.multi, rf, False)
        if isinstance(node, Val):
            op = self.operand(node.field)
            assert op.field is not None         # a field's operand always has it
            if op.field.fdef.no_transformer or op.multi:
                raise FilterCompileError(f"filter error: field '{op.field.token}' does not "
                                         "support val()")
            return op
        if isinstance(node, MultiTransform):
            return self.multi_operand(node)
        if isinstance(node, Transform):
            inner = self.operand(node.child)
            if inner.field is not None and (inner.field.fdef.no_transformer or inner.multi):
                raise FilterCompileError(f"filter error: field '{inner.field.token}' does not "
                                         f"support transformer '{node.name}'")
            fn = TRANSFORMER_FUNCS[node.name]
            if node.name == "len":
                if not (inner.type.is_string or inner.type is FieldType.BYTEBUF or inner.is_list):
                    raise FilterCompileError(f"filter error: transformer 'len' is not "
                                             f"supported on {inner.type.value} fields")
                out_type = FieldType.UINT64
            else:
                if inner.type is FieldType.BYTEBUF and node.name != "b64":
                    # libsinsp: only b64 takes a byte buffer (Falco 0.44.1's message)
                    where = inner.field.token if inner.field is not None else as_string(node.child)
                    raise FilterCompileError("can't add field transformer: type 'BYTEBUF' is not "
                                             f"supported by '{node.name}' transformer applied on "
                                             f"field '{where}'")
                if not (inner.type.is_string or inner.type is FieldType.BYTEBUF):
                    raise FilterCompileError(f"filter error: transformer '{node.name}' is not "
                                             f"supported on {inner.type.value} fields")
                out_type = inner.type
                if inner.is_list:
                    # libsinsp applies the transformer to every value of a list field
                    gl = inner.get

                    def get_each(evt: Any, _g: Getter = gl, _f: Callable[[Any], Any] = fn) -> Any:
                        vs = _g(evt)
                        return None if vs is None else tuple(_f(v) for v in vs)
                    return _Operand(get_each, out_type, True, False, inner.field, True)
            g = inner.get

            def get(evt: Any, _g: Getter = g, _f: Callable[[Any], Any] = fn) -> Any:
                v = _g(evt)
                return None if v is None else _f(v)
            return _Operand(get, out_type, False, False, inner.field, True)
        raise FilterCompileError(f"filter error: unexpected operand {type(node).__name__}")

    def multi_operand(self, node: MultiTransform) -> _Operand:
        """``join``/``concat``/``getopt``: argument count and type checks with libsinsp's
        messages (``sinsp_filtercheck_multivalue_transformer.cpp``), then one getter."""
        name = node.name
        if node.arg is not None and name != "getopt":
            raise FilterCompileError(f"filter error: transformer '{name}' does not support "
                                     "field arguments")
        args = [self.mv_argument(a, name) for a in node.args]
        n = len(args)
        if name == "join":
            if n != 2:
                raise _mv_error("join() requires exactly 2 arguments: separator and list")
            if args[0].is_list:
                raise _mv_error("join() first argument (separator) must be a single value, "
                                "not a list")
            if not args[1].is_list:
                raise _mv_error("join() second argument must be a list")
            gs, gl = args[0].get, args[1].get

            def get_join(evt: Any, _s: Getter = gs, _l: Getter = gl) -> Any:
                sep = _s(evt)
                if sep is None:
                    return None
                vals = _l(evt)
                return None if vals is None else multivalue.join(multivalue.as_text(sep), vals)
            return _Operand(get_join, FieldType.STRING, False, False, None, True)
        if name == "concat":
            if n < 2:
                raise _mv_error("concat() requires at least 2 arguments")
            if any(a.is_list or not a.type.is_string for a in args):
                raise _mv_error("concat() arguments must be strings")
            getters = tuple(a.get for a in args)

            def get_concat(evt: Any, _gs: tuple[Getter, ...] = getters) -> Any:
                vals = _all_values(_gs, evt)
                return None if vals is None else multivalue.concat(vals)
            return _Operand(get_concat, FieldType.STRING, False, False, None, True)
        # getopt
        if n != 2:
            raise _mv_error("getopt() requires exactly 2 arguments: args list and optstring")
        if not args[0].is_list:
            raise _mv_error("getopt() first argument must be a list")
        if args[1].is_list:
            raise _mv_error("getopt() second argument (optstring) must be a single value")
        if not (args[0].type.is_string and args[1].type.is_string):
            raise _mv_error("getopt() arguments must be strings")
        if node.arg is not None and len(node.arg) != 1:
            raise _mv_error("getopt() field argument must be a single option character")
        selector = node.arg
        ga, go = args[0].get, args[1].get
        const = node.args[1].text if isinstance(node.args[1], Value) else None
        getter: Getter
        if const is not None:          # a literal optstring is decoded once, at load time
            opts = multivalue.OptString(const)

            def get_getopt(evt: Any, _a: Getter = ga, _o: multivalue.OptString = opts,
                           _sel: str | None = selector) -> Any:
                argv = _a(evt)
                return None if argv is None else multivalue.getopt(argv, _o, _sel)
            getter = get_getopt
        else:
            decode = functools.lru_cache(maxsize=64)(multivalue.OptString)

            def get_getopt_decoded(evt: Any, _a: Getter = ga, _g: Getter = go,
                                   _d: Callable[[str], multivalue.OptString] = decode,
                                   _sel: str | None = selector) -> Any:
                optstring = _g(evt)
                if optstring is None:
                    return None
                argv = _a(evt)
                if argv is None:
                    return None
                return multivalue.getopt(argv, _d(multivalue.as_text(optstring)), _sel)
            getter = get_getopt_decoded
        return _Operand(getter, FieldType.STRING, selector is None, False, None, True)

    def mv_argument(self, node: Any, transformer: str) -> _Operand:
        """One argument of a multivalue transformer: a constant (quoted string or number, a
        string for libsinsp), a ``(...)`` list (a list of strings), a field or a transformer."""
        if isinstance(node, Value):
            text = node.text

            def get_text(evt: Any, _t: str = text) -> str:
                return _t
            return _Operand(get_text, FieldType.STRING, False, False, None, True)
        if isinstance(node, TransformList):
            items = [self.mv_argument(i, transformer) for i in node.items]
            if any(i.is_list for i in items):
                raise _mv_error(f"{transformer}() list elements must be single values, not lists")
            getters = tuple(i.get for i in items)

            def get_list(evt: Any, _gs: tuple[Getter, ...] = getters) -> Any:
                return _all_values(_gs, evt)
            return _Operand(get_list, FieldType.STRING, True, False, None, True)
        op = self.operand(node)
        if op.field is not None and not op.transformed and (op.multi or
                                                            op.field.fdef.no_transformer):
            raise FilterCompileError(f"filter error: field '{op.field.token}' does not support "
                                     f"transformer '{transformer}'")
        return op

    # -- boolean structure
    def compile(self, node: Any) -> Check:
        if isinstance(node, And):
            return _and([self.compile(c) for c in node.children])
        if isinstance(node, Or):
            return _or([self.compile(c) for c in node.children])
        if isinstance(node, Not):
            inner = self.compile(node.child)

            def negate(evt: Any, _c: Check = inner) -> bool:
                return not _c(evt)
            return negate
        if isinstance(node, Ident):
            raise FilterCompileError(f"filter error: unexpected identifier '{node.name}'")
        if isinstance(node, Unary):
            left = self.operand(node.left)
            g = left.get

            def exists(evt: Any, _g: Getter = g) -> bool:
                return _g(evt) is not None
            return exists
        if isinstance(node, Binary):
            return self.binary(node)
        raise FilterCompileError(f"filter error: unexpected node {type(node).__name__}")

    # -- comparisons
    def binary(self, node: Binary) -> Check:
        left = self.operand(node.left)
        op = node.op
        if left.is_list and op not in _LIST_FIELD_OK:
            raise FilterCompileError(f"filter error: '{op}' operator not supported for list "
                                     "filters")
        check_op_type(op, left.type)
        right = node.right
        if isinstance(right, Val | Transform | MultiTransform):
            return self.field_to_field(left, op, self.operand(right))
        if isinstance(right, Ident):
            raise FilterCompileError(f"filter error: unexpected identifier '{right.name}'")
        if isinstance(right, Value) and right.text.count(".") and self._is_field_name(right.text):
            self.warnings.append(f"'{right.text}' may be a valid field misused as a const "
                                 "string value")
        elif isinstance(right, Value) and "(" in right.text and \
                self._is_transformer_text(right.text):
            # Falco 0.44.1: `proc.name = "tolower(proc.name)"` warns like a misused field
            self.warnings.append(f"'{right.text}' may be a valid field transformer misused as a "
                                 "const string value")
        base, _, modifier = op.partition(" ")
        values = right.values if isinstance(right, ListValue) else [right.text]
        if "<NA>" in values and left.field is not None and \
                left.field.fdef.name.startswith(("ka.", "jevt.")):
            self.na_checks.append(f"comparing '{left.field.token}' with '<NA>' is unsafe: a "
                                  "missing value never equals '<NA>'; use 'exists' instead")
        custom = self.field_check(left, base, modifier, values)
        if custom is not None:
            return custom
        if base in ("=", "==") and not modifier and not left.multi and not left.is_list and \
                left.type not in (FieldType.IPADDR, FieldType.IPNET):
            c = self.converter(left.type)(values[0])   # fast path: None never equals a constant
            g = left.get

            def equals(evt: Any, _g: Getter = g, _c: Any = c) -> bool:
                return _g(evt) == _c
            return equals
        if modifier:
            preds = [self.value_pred(base, [v], left) for v in values]
            pred = _modifier_pred(modifier, preds)
        else:
            pred = self.value_pred(base, values, left)
        return self.wrap(left, base, pred)

    @staticmethod
    def field_check(left: _Operand, op: str, modifier: str, values: list[str]) -> Check | None:
        """The field's own comparison (``FieldDef.compile_check``, e.g. ``fd.sip.name`` against
        resolved addresses), for a plain field compared with constants; ``None`` otherwise."""
        if left.field is None or left.transformed:      # multivalue transformers have no field
            return None
        fn = left.field.fdef.compile_check
        if fn is None or modifier:
            return None
        try:
            return fn(left.field.arg, op, values)
        except ValueError as e:
            raise FilterCompileError(f"filter error: {e}") from None

    def _is_field_name(self, text: str) -> bool:
        try:
            self.registry.lookup(text)
            return True
        except UnknownFieldError:
            return False

    def _is_transformer_text(self, text: str) -> bool:
        """The whole text parses as a transformer of known fields (``tolower(proc.name)``)."""
        parsed = parse_field_token(text)
        if parsed is None or parsed[1] != len(text) or \
                not isinstance(parsed[0], Transform | MultiTransform):
            return False
        try:
            self.operand(parsed[0])
            return True
        except FilterCompileError:
            return False

    def value_pred(self, op: str, values: list[str], left: _Operand) -> Callable[[Any], bool]:
        """``pred(v) -> bool`` for a present value ``v`` (None handled by the caller)."""
        t = left.type
        if op in ("bcontains", "bstartswith"):
            c = parse_hex(values[0])
            if op == "bcontains":
                def bcontains(v: Any, _c: bytes = c) -> bool:
                    return _c in _as_bytes(v)
                return bcontains

            def bstartswith(v: Any, _c: bytes = c) -> bool:
                return _as_bytes(v).startswith(_c)
            return bstartswith
        if t in (FieldType.IPADDR, FieldType.IPNET):
            ips = _IpSet(values)
            if op == "!=":
                def not_in(v: Any, _s: _IpSet = ips) -> bool:
                    return v not in _s
                return not_in
            return ips.__contains__
        conv = self.converter(t)
        if op in ("in", "intersects"):
            s = frozenset(conv(v) for v in values)
            return s.__contains__
        if op == "pmatch":
            return PathTrie([str(v) for v in values]).match
        c = conv(values[0])
        if op in ("=", "=="):
            def eq(v: Any, _c: Any = c) -> bool:
                return v == _c
            return eq
        if op == "!=":
            def ne(v: Any, _c: Any = c) -> bool:
                return v != _c
            return ne
        if op == "<":
            def lt(v: Any, _c: Any = c) -> bool:
                return v < _c
            return lt
        if op == "<=":
            def le(v: Any, _c: Any = c) -> bool:
                return v <= _c
            return le
        if op == ">":
            def gt(v: Any, _c: Any = c) -> bool:
                return v > _c
            return gt
        if op == ">=":
            def ge(v: Any, _c: Any = c) -> bool:
                return v >= _c
            return ge
        if op == "contains":
            def contains(v: Any, _c: Any = c) -> bool:
                return _c in v
            return contains
        if op == "icontains":
            lc = str(c).lower()

            def icontains(v: Any, _c: str = lc) -> bool:
                return _c in v.lower()
            return icontains
        if op == "startswith":
            def startswith(v: Any, _c: Any = c) -> bool:
                return v.startswith(_c)
            return startswith
        if op == "endswith":
            def endswith(v: Any, _c: Any = c) -> bool:
                return v.endswith(_c)
            return endswith
        if op in ("glob", "iglob"):
            rx = glob_regex(str(c), ignore_case=op == "iglob")

            def glob(v: Any, _m: Callable[[str], object] = rx.match) -> bool:
                return _m(v) is not None
            return glob
        if op == "regex":
            matcher = compile_regex(str(c))       # RE2, POSIX syntax, full match (as libsinsp)
            if re.fullmatch(r"[\w/ .-]*", str(c)):
                self.warnings.append(f"regex check with '{c}' may be optimized with simpler "
                                     "operators such as '=', 'contains', 'startswith', 'endswith'")
            return matcher
        raise FilterCompileError(f"filter error: unknown operator '{op}'")

    @staticmethod
    def converter(t: FieldType) -> Callable[[str], Any]:
        if t.is_numeric:
            def number(s: str, _t: FieldType = t) -> int | float:
                return parse_number(s, _t)
            return number
        if t is FieldType.BOOL:
            return parse_bool
        if t is FieldType.BYTEBUF:
            return lambda s: s.encode("utf-8", "surrogateescape")
        def as_str(s: str) -> str:
            if "\x00" in s:
                raise FilterCompileError("filter error: string values can not contain NUL bytes")
            return s
        return as_str

    def wrap(self, left: _Operand, op: str, pred: Callable[[Any], bool]) -> Check:
        """Combine the extractor with ``pred``, with the three-way missing-value semantics."""
        g = left.get
        if left.multi:      # ancestors: true if any ancestor satisfies the check
            def any_ancestor(evt: Any, _g: Getter = g, _p: Callable[[Any], bool] = pred) -> bool:
                vals = _g(evt)
                if not vals:
                    return False
                for v in vals:
                    if v is not None and _p(v):
                        return True
                return False
            return any_ancestor
        if left.is_list:
            if op == "in":
                def all_in(evt: Any, _g: Getter = g, _p: Callable[[Any], bool] = pred) -> bool:
                    vals = _g(evt)
                    return bool(vals) and all(_p(v) for v in vals)
                return all_in

            def any_in(evt: Any, _g: Getter = g, _p: Callable[[Any], bool] = pred) -> bool:
                vals = _g(evt)
                return bool(vals) and any(_p(v) for v in vals)
            return any_in
        owner = getattr(pred, "__self__", None)
        if op in ("in", "intersects") and isinstance(owner, frozenset):
            s: frozenset[Any] = owner
            if None not in s:          # a missing value (None) is never in a set of constants
                def in_set(evt: Any, _g: Getter = g, _s: frozenset[Any] = s) -> bool:
                    return _g(evt) in _s
                return in_set

        def check(evt: Any, _g: Getter = g, _p: Callable[[Any], bool] = pred) -> bool:
            v = _g(evt)
            return v is not None and _p(v)
        return check

    def field_to_field(self, left: _Operand, op: str, right: _Operand) -> Check:
        base = op.split(" ", 1)[0]
        if left.multi or right.multi or left.is_list or right.is_list or " " in op:
            raise FilterCompileError(f"filter error: '{op}' with val() or a transformer is not "
                                     "supported on this field")
        if base not in _FIELD_OPS:
            raise FilterCompileError(f"filter error: operator '{base}' is not supported with "
                                     "val() or a transformer on the right-hand side")
        fn = _FIELD_OPS[base]
        gl, gr = left.get, right.get

        def check(evt: Any, _l: Getter = gl, _r: Getter = gr,
                  _f: Callable[[Any, Any], bool] = fn) -> bool:
            a = _l(evt)
            if a is None:
                return False
            b = _r(evt)
            return b is not None and _f(a, b)
        return check


def _mv_error(message: str) -> FilterCompileError:
    return FilterCompileError(f"filter error: {message}")


def _as_bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes | bytearray) else str(v).encode("utf-8", "surrogateescape")


def _modifier_pred(modifier: str, preds: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if modifier == "anyof":
        def anyof(v: Any, _ps: list[Callable[[Any], bool]] = preds) -> bool:
            return any(p(v) for p in _ps)
        return anyof
    if modifier == "allof":
        if not preds:
            # libsinsp: `allof ()` is false (no element to satisfy), not vacuously true
            return lambda v: False

        def allof(v: Any, _ps: list[Callable[[Any], bool]] = preds) -> bool:
            return all(p(v) for p in _ps)
        return allof

    def oneof(v: Any, _ps: list[Callable[[Any], bool]] = preds) -> bool:
        return sum(1 for p in _ps if p(v)) == 1
    return oneof


_FIELD_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "contains": lambda a, b: b in a,
    "icontains": lambda a, b: b.lower() in a.lower(), "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b), "in": lambda a, b: a == b,
    "intersects": lambda a, b: a == b,
    "glob": lambda a, b: glob_regex(b).match(a) is not None,
    "iglob": lambda a, b: glob_regex(b, True).match(a) is not None,
}


def _all_values(getters: tuple[Getter, ...], evt: Any) -> tuple[Any, ...] | None:
    """Every getter's value for ``evt``, or None when one is missing: a multivalue
    transformer's argument list is missing as a whole, as in libsinsp."""
    vals = []
    for g in getters:
        v = g(evt)
        if v is None:
            return None
        vals.append(v)
    return tuple(vals)


def _and(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks

        def both(evt: Any, _a: Check = a, _b: Check = b) -> bool:
            return _a(evt) and _b(evt)
        return both
    if len(checks) == 3:
        a, b, c = checks

        def all3(evt: Any, _a: Check = a, _b: Check = b, _c: Check = c) -> bool:
            return _a(evt) and _b(evt) and _c(evt)
        return all3
    cs = tuple(checks)

    def all_of(evt: Any, _cs: tuple[Check, ...] = cs) -> bool:
        for c in _cs:
            if not c(evt):
                return False
        return True
    return all_of


def _or(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks

        def either(evt: Any, _a: Check = a, _b: Check = b) -> bool:
            return _a(evt) or _b(evt)
        return either
    if len(checks) == 3:
        a, b, c = checks

        def any3(evt: Any, _a: Check = a, _b: Check = b, _c: Check = c) -> bool:
            return _a(evt) or _b(evt) or _c(evt)
        return any3
    cs = tuple(checks)

    def any_of(evt: Any, _cs: tuple[Check, ...] = cs) -> bool:
        for c in _cs:
            if c(evt):
                return True
        return False
    return any_of
