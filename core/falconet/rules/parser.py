"""Parser of the condition language (libsinsp's filter grammar, ``filter/parser.cpp``).

Grammar (precedence ``not`` > ``and`` > ``or``)::

    Expr     ::= OrExpr
    OrExpr   ::= AndExpr ( 'or' (blank AndExpr | '(' Expr ')') )*
    AndExpr  ::= NotExpr ( 'and' (blank NotExpr | '(' Expr ')') )*
    NotExpr  ::= ('not' blank+)* ( 'not(' Expr ')' | Check )
    Check    ::= '(' Expr ')' | Field Condition | Transformer Condition | Identifier

The parser only builds an AST; it knows nothing of fields, macros or lists. It is a hand-written
recursive-descent parser over the raw text (no eval, no regex on untrusted input beyond simple
anchored token patterns) and raises :class:`FilterSyntaxError` with the offset of the problem.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Literal, overload

from falconet.rules.ast import (
    And,
    Binary,
    Expr,
    Field,
    Ident,
    ListValue,
    MultiArg,
    MultiTransform,
    Node,
    Not,
    Operand,
    Or,
    RightHand,
    Transform,
    TransformList,
    Unary,
    Val,
    Value,
)
from falconet.rules.errors import FilterSyntaxError

MAX_DEPTH = 1000          # Falco's limit for rule conditions

TRANSFORMERS = ("tolower", "toupper", "b64", "basename", "len")
#: Falco 0.44 multivalue transformers: several arguments, see :class:`MultiTransform`
MULTI_TRANSFORMERS = ("join", "concat", "getopt")
UNARY_OPS = ("exists",)
NUM_OPS = ("<=", "<", ">=", ">")
STR_OPS = ("==", "=", "!=", "contains", "icontains", "bcontains", "startswith", "bstartswith",
           "endswith", "glob", "iglob", "regex")
LIST_OPS = ("intersects", "in", "pmatch")
MODIFIERS = ("oneof", "anyof", "allof")
ALL_OPS = frozenset(UNARY_OPS + NUM_OPS + STR_OPS + LIST_OPS)
#: word operators must be followed by a blank; symbols and in/intersects/pmatch need not
_WORD_STR_OPS = frozenset(op for op in STR_OPS if op[0].isalpha())


# ----------------------------------------------------------------------------------- lexing
_BLANKS = " \t\b\r\n"
_FIELD_RE = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
_IDENT_RE = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_BARE_RE = re.compile(r"[^()\"'\s=,]+")
_BARE_ARG_RE = re.compile(r"[^\]\[\"'\s]+")
_NUM_RE = re.compile(r"0[xX][0-9a-fA-F]+|[+-]?[0-9]+\.?[0-9]*(?:[eE][+-][0-9]+)?")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "\\": "\\", "/": "/"}


class _Parser:
    __slots__ = ("text", "pos", "depth", "last_token")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.last_token = ""

    # -- helpers
    def error(self, msg: str, pos: int | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(msg, self.pos if pos is None else pos)

    def blank(self) -> bool:
        t, p, n = self.text, self.pos, len(self.text)
        while p < n and t[p] in _BLANKS:
            p += 1
        moved = p != self.pos
        self.pos = p
        return moved

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def lit(self, s: str) -> bool:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            self.last_token = s
            return True
        return False

    def regex(self, rx: re.Pattern[str]) -> str | None:
        m = rx.match(self.text, self.pos)
        if m is None or not m.group(0):
            return None
        self.pos = m.end()
        self.last_token = m.group(0)
        return m.group(0)

    def eof(self) -> bool:
        return self.pos >= len(self.text)

    def push(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"exceeded max depth limit of {MAX_DEPTH}")

    # -- grammar
    def parse(self) -> Expr:
        if not self.text.strip(_BLANKS):
            raise self.error("filter input string is empty", 0)
        node = self.parse_or()
        self.blank()
        if not self.eof():
            raise self.error(f"unexpected token after '{self.last_token}', expecting 'or', 'and'")
        return node

    def embedded(self) -> Expr:
        """After an opening '(': an expression and its closing ')'."""
        node = self.parse_or()
        self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token")
        return node

    def parse_or(self) -> Expr:
        return self._chain("or", self.parse_and, Or)

    def parse_and(self) -> Expr:
        return self._chain("and", self.parse_not, And)

    def _chain(self, keyword: str, operand: Callable[[], Expr], node: type[And | Or]) -> Expr:
        """``operand (keyword operand)*``: the operator needs a blank or a ``(`` after it."""
        self.push()
        children = [operand()]
        while True:
            save = self.pos
            self.blank()
            if self._keyword(keyword):
                if self.blank():
                    children.append(operand())
                    continue
                if self.lit("("):
                    children.append(self.embedded())
                    continue
                raise self.error(f"expected blank or '(' after '{keyword}'")
            self.pos = save
            break
        self.depth -= 1
        return children[0] if len(children) == 1 else node(children)

    def _keyword(self, kw: str) -> bool:
        """``and``/``or`` as a keyword: the word is recognised by prefix, as libsinsp does."""
        return self.lit(kw)

    def parse_not(self) -> Expr:
        self.push()
        negate = False
        self.blank()
        while True:
            save = self.pos
            if self.lit("not"):
                if self.blank():
                    negate = not negate
                    continue
                if self.lit("("):
                    child = self.embedded()
                    self.depth -= 1
                    return child if negate else Not(child)
                self.pos = save          # "notb": an identifier that starts with "not"
            break
        child = self.parse_check()
        self.depth -= 1
        return Not(child) if negate else child

    def parse_check(self) -> Expr:
        self.blank()
        start = self.pos
        if self.lit("("):
            return self.embedded()
        left = self._transformer_or_field(allow_val=False)
        if left is not None:
            return self.parse_condition(left, start)
        name = self.regex(_IDENT_RE)
        if name is not None:
            return Ident(name, start)
        raise self.error("expected a '(' token, a field check, or an identifier")

    @overload
    def _transformer_or_field(self, allow_val: Literal[False]) -> Operand | None: ...
    @overload
    def _transformer_or_field(self, allow_val: bool) -> Operand | Val | None: ...

    def _transformer_or_field(self, allow_val: bool) -> Operand | Val | None:
        """A field, ``transformer(...)`` or (right side only) ``val(field)``, or None."""
        start = self.pos
        m = _IDENT_RE.match(self.text, self.pos)
        if m is not None and self.text.startswith("(", m.end()):
            name = m.group(0)
            if name == "val" and allow_val:
                self.pos = m.end() + 1
                self.blank()
                fld = self.parse_field()
                if fld is None:
                    raise self.error("expected a field name inside val()")
                self.blank()
                if not self.lit(")"):
                    raise self.error("expected a ')' token")
                return Val(fld)
            if name in MULTI_TRANSFORMERS:
                self.pos = m.end() + 1
                return self._multi_transformer(name, start)
            if name in TRANSFORMERS:
                self.pos = m.end() + 1
                self.blank()
                inner = self._nested_transformer_or_field()     # depth-limited, as libsinsp
                if inner is None:
                    raise self.error(f"expected a field or a transformer inside '{name}'")
                self.blank()
                if not self.lit(")"):
                    raise self.error("expected a ')' token")
                if self.peek("["):
                    raise self.error(f"transformer '{name}' does not support field arguments")
                self.last_token = ")"
                return Transform(name, inner)
        self.pos = start
        return self.parse_field()

    def _multi_transformer(self, name: str, start: int) -> MultiTransform:
        """After ``join(``: comma-separated arguments, ``)``, an optional ``[arg]``
        (libsinsp ``parse_field_or_transformer_remainder``)."""
        args: list[MultiArg] = []
        while True:
            self.blank()
            args.append(self._multi_arg())
            self.blank()
            if not self.lit(","):
                break
        if not self.lit(")"):
            raise self.error("expected a ')' token closing the transformer")
        self.last_token = ")"
        arg = None
        if self.lit("["):
            arg = self._field_arg()
            self.last_token = "]"
        return MultiTransform(name, args, arg, start)

    def _multi_arg(self) -> MultiArg:
        """FieldTransformerArg ::= NumValue | QuotedStr | TransformerList | FieldTransformer |
        Field (in libsinsp's order)."""
        num = self._number()
        if num is not None:
            return Value(num)
        if self.peek('"') or self.peek("'"):
            return Value(self._quoted())
        if self.lit("("):
            return self._transformer_list()
        node = self._nested_transformer_or_field()
        if node is None:
            raise self.error("expected field transformer argument: field, transformer, quoted "
                             "string, number, or transformer list")
        return node

    def _transformer_list(self) -> TransformList:
        """After ``(``: TransformerListArg (',' TransformerListArg)* ``)``, or ``()``."""
        items: list = []
        self.blank()
        if self.lit(")"):
            return TransformList(items)
        while True:
            node: MultiArg | None = self._nested_transformer_or_field()
            if node is None:
                if self.peek('"') or self.peek("'"):
                    node = Value(self._quoted())
                else:
                    num = self._number()
                    if num is None:
                        raise self.error("expected transformer list argument: field, "
                                         "transformer, quoted string, or number")
                    node = Value(num)
            items.append(node)
            self.blank()
            if self.lit(")"):
                return TransformList(items)
            if not self.lit(","):
                raise self.error("expected ')'")
            self.blank()

    def _nested_transformer_or_field(self) -> Operand | None:
        self.push()
        try:
            return self._transformer_or_field(allow_val=False)
        finally:
            self.depth -= 1

    def _number(self) -> str | None:
        """A number (decimal or hex) not directly followed by bare-string characters."""
        save = self.pos
        num = self.regex(_NUM_RE)
        if num is not None and self._continues_bare():
            self.pos = save
            return None
        return num

    def parse_field(self) -> Field | None:
        start = self.pos
        name = self.regex(_FIELD_RE)
        if name is None:
            return None
        arg = None
        if self.lit("["):
            arg = self._field_arg()
            self.last_token = f"{name}[{arg}]"
        return Field(name, arg, start)

    def _field_arg(self) -> str:
        """After ``[``: the argument and ``]``, with libsinsp's two messages
        (``parse_field_remainder``)."""
        arg = self._quoted() if self.peek('"') or self.peek("'") else self.regex(_BARE_ARG_RE)
        if arg is None:
            raise self.error("expected a valid field argument: a quoted string or a bare string")
        if not self.lit("]"):
            raise self.error("expected a ']' token")
        return arg

    def parse_condition(self, left: Operand, start: int) -> Unary | Binary:
        self.blank()
        op_pos = self.pos
        # libsinsp lexes the unary operator as a plain prefix (lex_helper_str_list): no word
        # boundary, so `a.b existsand macro` is `a.b exists and macro`
        if self.lit("exists"):
            return Unary(left, "exists")
        for op in NUM_OPS:
            if self.lit(op):
                self.blank()
                rhs = self._transformer_or_field_rhs()
                if rhs is None:
                    num = self.regex(_NUM_RE)
                    if num is None or self._continues_bare():
                        raise self.error("expected a number value")
                    rhs = Value(num)
                return Binary(left, op, rhs, op_pos)
        for op in STR_OPS:
            if self._word_op(op, need_blank=op in _WORD_STR_OPS):
                blank = self.blank()
                mod = self._modifier() if blank else None
                if mod is not None:
                    return Binary(left, f"{op} {mod}", self._list_rhs(), op_pos)
                rhs = self._transformer_or_field_rhs()
                if rhs is None:
                    rhs = self._str_value()
                return Binary(left, op, rhs, op_pos)
        for op in LIST_OPS:
            if self._word_op(op, need_blank=False):
                self.blank()
                return Binary(left, op, self._list_rhs(), op_pos)
        raise self.error("expected a valid operator")

    def _continues_bare(self) -> bool:
        """A number followed directly by bare-string characters (``12ab``) is not a number."""
        m = _BARE_RE.match(self.text, self.pos)
        return m is not None and bool(m.group(0))

    def _word_op(self, op: str, need_blank: bool) -> bool:
        save = self.pos
        if not self.lit(op):
            return False
        if op[0].isalpha():
            nxt = self.text[self.pos:self.pos + 1]
            if need_blank and (not nxt or nxt not in _BLANKS):
                if nxt and (nxt.isalnum() or nxt == "_"):
                    self.pos = save      # a longer word: not this operator
                    return False
                raise self.error(f"expected blank after '{op}'")
            if not need_blank and nxt and (nxt.isalnum() or nxt == "_"):
                self.pos = save
                return False
        return True

    def _modifier(self) -> str | None:
        """``<strop> <blank> oneof|anyof|allof <blank>`` followed by a list or a list name.
        As Falco 0.44 (libs 0.25): the modifier needs a blank on both sides (`==oneof (a)` and
        `== oneof(a)` are the value `oneof` followed by an unexpected token), and without a list
        after it the word is a plain value (`proc.name == anyof and fd.name exists`)."""
        save = self.pos
        for mod in MODIFIERS:
            if self.lit(mod):
                if self.blank() and (self.peek("(") or self._list_name_follows()):
                    return mod
                self.pos = save
        return None

    def _list_name_follows(self) -> bool:
        m = _IDENT_RE.match(self.text, self.pos)
        return m is not None and m.group(0) not in ("and", "or")

    def _transformer_or_field_rhs(self) -> RightHand | None:
        m = _IDENT_RE.match(self.text, self.pos)
        if m is not None and self.text.startswith("(", m.end()) and \
                (m.group(0) in TRANSFORMERS or m.group(0) in MULTI_TRANSFORMERS or
                 m.group(0) == "val"):
            node = self._transformer_or_field(allow_val=True)
            assert not isinstance(node, Field)      # the name is a transformer or val()
            return node
        return None

    def _list_rhs(self) -> RightHand:
        if self.lit("("):
            values: list[str] = []
            self.blank()
            if self.lit(")"):
                return ListValue(values)
            while True:
                self.blank()
                v = self._plain_value()
                if v is None:
                    raise self.error("expected a list value")
                values.append(v)
                self.blank()
                if self.lit(")"):
                    return ListValue(values)
                if not self.lit(","):
                    raise self.error("expected a ',' or a ')' token")
        rhs = self._transformer_or_field_rhs()
        if rhs is not None:
            return rhs
        # an identifier here is a list name that was not substituted: libsinsp keeps it as a
        # plain value (`proc.name in foo` is `proc.name in (foo)`), it is not an error
        name = self.regex(_IDENT_RE)
        if name is not None:
            return Value(name)
        raise self.error("expected a list, a list name, a transformer or val()")

    def _str_value(self) -> Value:
        v = self._plain_value()
        if v is None:
            raise self.error("expected a string value")
        return Value(v)

    def _plain_value(self) -> str | None:
        if self.peek('"') or self.peek("'"):
            return self._quoted()
        return self.regex(_BARE_RE)

    def _quoted(self) -> str:
        """A quoted string with libsinsp's escapes (``filter/escaping.cpp``)."""
        t = self.text
        q = t[self.pos]
        start = self.pos
        p = self.pos + 1
        out: list[str] = []
        n = len(t)
        while p < n:
            c = t[p]
            if c == q:
                self.pos = p + 1
                self.last_token = t[start:self.pos]
                return "".join(out)
            if c == "\\":
                if p + 1 >= n:
                    break
                e = t[p + 1]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    p += 2
                elif e == q:
                    out.append(q)
                    p += 2
                elif e == " ":
                    out.append("\\ ")        # legacy: a backslash before a blank is kept
                    p += 2
                elif e in "'\"":
                    # Falco 0.44.1's wording; it has no `\xHH` escape either (libs 0.25.4)
                    raise self.error(f"invalid \\{e} escape in {q}-quoted string", p)
                else:
                    raise self.error(f"unsupported string escape sequence: \\{e}", p)
                continue
            out.append(c)
            p += 1
        raise self.error("unterminated quoted string", start)


def parse_condition(text: str) -> Node:
    """Parse a condition into an AST. Raises :class:`FilterSyntaxError`."""
    old = sys.getrecursionlimit()
    if old < 20000:
        sys.setrecursionlimit(20000)       # our own depth limit (MAX_DEPTH) stops first
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise FilterSyntaxError(f"exceeded max depth limit of {MAX_DEPTH}", 0) from None
    finally:
        if old < 20000:
            sys.setrecursionlimit(old)


def parse_field_token(text: str, pos: int = 0) -> tuple[Node, int] | None:
    """For output formats: parse a field (with argument) or a transformer at ``pos``.
    Returns ``(node, end)`` or ``None`` if there is none."""
    p = _Parser(text)
    p.pos = pos
    try:
        node = p._transformer_or_field(allow_val=False)
    except (FilterSyntaxError, RecursionError):     # nested past the depth limit: not a field
        return None
    if node is None:
        return None
    return node, p.pos


# ----------------------------------------------------------------------------------- printing
_NEEDS_QUOTE = re.compile(r"[\s\\\"'(),=]")


def _q(v: str) -> str:
    if v == "" or _NEEDS_QUOTE.search(v):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return v


def as_string(node: object) -> str:
    """Falco's canonical form of an AST (``ast::as_string``), e.g. ``(a = 1 and b in (x, y))``."""
    if isinstance(node, And):
        return "(" + " and ".join(as_string(c) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " or ".join(as_string(c) for c in node.children) + ")"
    if isinstance(node, Not):
        return "not " + as_string(node.child)
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Field):  # libsinsp: field "[" escape_str(arg) "]"
        return node.name if node.arg is None else f"{node.name}[{_q(node.arg)}]"
    if isinstance(node, Transform):
        return f"{node.name}({as_string(node.child)})"
    if isinstance(node, MultiTransform):
        out = f"{node.name}({', '.join(_mv_string(a) for a in node.args)})"
        return out if node.arg is None else f"{out}[{_q(node.arg)}]"
    if isinstance(node, TransformList):
        return "(" + ", ".join(_mv_string(i) for i in node.items) + ")"
    if isinstance(node, Val):
        return f"val({node.field.token})"
    if isinstance(node, Value):
        return _q(node.text)
    if isinstance(node, ListValue):
        return "(" + ", ".join(_q(v) for v in node.values) + ")"
    if isinstance(node, Unary):
        return f"{as_string(node.left)} {node.op}"
    if isinstance(node, Binary):
        return f"{as_string(node.left)} {node.op} {as_string(node.right)}"
    raise TypeError(f"not an AST node: {node!r}")


def _mv_string(node: object) -> str:
    """Inside a multivalue transformer a string is always quoted: bare strings are not allowed
    there, so the printed form parses back to the same AST."""
    if isinstance(node, Value):
        return '"' + node.text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return as_string(node)
