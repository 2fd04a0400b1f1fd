"""Generated Python for rule conditions: one function per rule, built from the AST.

Why: a tree of closures pays one Python call per ``and``/``or``/``not`` node; a generated
function evaluates the whole boolean structure inline (``a and (b or not c)``) and inlines the
common leaf checks (``=``, ``!=``, ``in``, ``startswith``, ``contains``, ``endswith``,
``exists``). Measured on the stable ruleset: see docs/rules.md.

Safety: the generated source contains **no rule text at all** — only names this module makes up
(``_g3``, ``_c3``...) bound to load-time objects in the function's namespace: extractors,
constants already parsed into the field's type, frozensets, and compiled closures for every
other check. Rule text is never evaluated. If generation fails for any reason (an extremely deep
condition), the caller falls back to the closure tree.
"""

from __future__ import annotations

from typing import Any

from falconet.fields.registry import FieldType
from falconet.rules.ast import And, Binary, Field, ListValue, Not, Or, Unary, Value
from falconet.rules.condition import Check, ConditionCompiler

_INLINE_STR_OPS = {"startswith": "{v}.startswith({c})", "endswith": "{v}.endswith({c})",
                   "contains": "{c} in {v}"}
_NO_INLINE_TYPES = (FieldType.IPADDR, FieldType.IPNET, FieldType.BYTEBUF)
#: "not in the per-event cache" (any private object works: only our own lookups see it)
_MISSING = object()


class _Gen:
    def __init__(self, cc: ConditionCompiler) -> None:
        self.cc = cc
        self.ns: dict[str, Any] = {}
        self.n = 0

    def bind(self, prefix: str, obj: Any) -> str:
        name = f"_{prefix}{self.n}"
        self.n += 1
        self.ns[name] = obj
        return name

    def expr(self, node: Any) -> str:
        if isinstance(node, And):
            return "(" + " and ".join(self.expr(c) for c in node.children) + ")"
        if isinstance(node, Or):
            return "(" + " or ".join(self.expr(c) for c in node.children) + ")"
        if isinstance(node, Not):
            return f"(not {self.expr(node.child)})"
        inline = self.inline_leaf(node)
        if inline is not None:
            return inline
        return f"{self.bind('p', self.cc.compile(node))}(evt)"

    def getter(self, left: Any) -> str:
        """An expression for the operand's value. Cached fields read the per-event cache inline
        (a dict lookup, no Python call, when another check already extracted the value) and call
        the registry's caching extractor only on a miss. The registry caches under the token
        (``ResolvedField.token``); if it ever keyed differently this would only be slower."""
        g = self.bind("g", left.get)
        rf = left.field
        if not rf.fdef.cache or left.transformed:
            return f"{g}(evt)"
        k = self.bind("k", rf.token)
        v = f"_v{self.n}"
        self.n += 1
        return f"({v} if ({v} := _cache.get({k}, _MISSING)) is not _MISSING else {g}(evt))"

    def inline_leaf(self, node: Any) -> str | None:
        """An inline expression for the common simple checks on plain fields, else None."""
        if isinstance(node, Unary) and isinstance(node.left, Field):
            left = self.cc.operand(node.left)
            if left.multi or left.is_list:
                return None
            return f"({self.getter(left)} is not None)"
        if not (isinstance(node, Binary) and isinstance(node.left, Field)):
            return None
        op = node.op
        if op not in ("=", "==", "!=", "in", "intersects", *_INLINE_STR_OPS):
            return None
        if not isinstance(node.right, Value | ListValue):
            return None
        left = self.cc.operand(node.left)
        self.cc.fields.pop()          # operand() recorded it; compile() below records it again
        assert left.field is not None      # a field's operand always has it
        if left.multi or left.is_list or left.type in _NO_INLINE_TYPES:
            return None
        if left.field.fdef.compile_check is not None:
            return None               # the field compiles its own check (fd.sip.name = x)
        if op in _INLINE_STR_OPS and not left.type.is_string:
            return None
        # type checks and value parsing exactly as the closure compiler does them
        self.cc.compile(node)
        conv = self.cc.converter(left.type)
        g = self.getter(left)
        if op in ("in", "intersects"):
            if not isinstance(node.right, ListValue):
                return None
            s = frozenset(conv(v) for v in node.right.values)
            return f"({g} in {self.bind('s', s)})"
        if not isinstance(node.right, Value):
            return None
        c = self.bind("c", conv(node.right.text))
        if op in ("=", "=="):
            return f"({g} == {c})"
        v = f"_v{self.n}"
        self.n += 1
        if op == "!=":
            return f"(({v} := {g}) is not None and {v} != {c})"
        body = _INLINE_STR_OPS[op].format(v=v, c=c)
        return f"(({v} := {g}) is not None and {body})"


def generate(cc: ConditionCompiler, ast: Any, name: str = "rule") -> Check:
    """Compile ``ast`` into one generated function ``check(evt) -> bool``.
    Raises whatever the closure compiler raises for bad conditions (same errors)."""
    gen = _Gen(cc)
    body = gen.expr(ast)
    src = f"def check(evt):\n    _cache = evt.cache\n    return bool({body})\n"
    ns = dict(gen.ns)
    ns["_MISSING"] = _MISSING
    code = compile(src, f"<rule {name!r}>", "exec")
    exec(code, ns)  # noqa: S102 - generated from our own identifiers only, see module docstring
    fn = ns["check"]
    fn.__falconet_source__ = src
    return fn
