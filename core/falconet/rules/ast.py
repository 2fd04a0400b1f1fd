"""The condition language's syntax tree: what :mod:`falconet.rules.parser` builds and every later
stage reads (:mod:`~falconet.rules.resolvers` expands macros and finds event types,
:mod:`~falconet.rules.condition` and :mod:`~falconet.rules.codegen` compile it into checks).

Plain data, no behaviour: the parser never evaluates and the compiler never parses, they meet
here. :data:`Node` is every node; :data:`Expr` a boolean expression, :data:`Operand` what a
comparison reads (left-hand side, or a transformer on the right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(slots=True)
class And:
    children: list[Expr]


@dataclass(slots=True)
class Or:
    children: list[Expr]


@dataclass(slots=True)
class Not:
    child: Expr


@dataclass(slots=True)
class Ident:
    """A bare identifier: a macro reference (replaced by the macro's AST at compile time)."""

    name: str
    pos: int = 0


@dataclass(slots=True)
class Field:
    name: str
    arg: str | None = None
    pos: int = 0

    @property
    def token(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


@dataclass(slots=True)
class Transform:
    """``tolower(x)``: ``child`` is a Field, another Transform or a MultiTransform
    (``tolower(concat(a, b))``)."""

    name: str
    child: Operand


@dataclass(slots=True)
class MultiTransform:
    """A multivalue transformer (libsinsp ``field_transformer_expr`` with several arguments):
    ``join(sep, (a, b))``, ``concat(a, b, ...)``, ``getopt(args, optstring)[opt]``.

    ``args`` are Field, Transform, MultiTransform, Value (a quoted string or a number) or
    TransformList; ``arg`` is the ``[...]`` after the closing parenthesis (getopt's selector)."""

    name: str
    args: list[MultiArg]
    arg: str | None = None
    pos: int = 0


@dataclass(slots=True)
class TransformList:
    """``(a, "b", tolower(c))`` inside a multivalue transformer: fields, transformers, values."""

    items: list[MultiArg]


@dataclass(slots=True)
class Val:
    """``val(field)`` on the right-hand side: compare against another field's value."""

    field: Field


@dataclass(slots=True)
class Value:
    text: str


@dataclass(slots=True)
class ListValue:
    values: list[str]


@dataclass(slots=True)
class Unary:
    left: Operand
    op: str


@dataclass(slots=True)
class Binary:
    left: Operand
    op: str             # operator, with modifier when given: "startswith oneof"
    right: RightHand
    pos: int = 0


#: what a comparison reads: a field, or a transformer of fields
Operand: TypeAlias = Field | Transform | MultiTransform
#: a multivalue transformer's argument (or an item of its ``(a, b)`` list)
MultiArg: TypeAlias = Field | Transform | MultiTransform | Value | TransformList
#: the right-hand side of a comparison (``Ident``: a list name left unsubstituted)
RightHand: TypeAlias = Value | ListValue | Val | Transform | MultiTransform | Ident
#: a boolean expression: what a condition or a macro is
Expr: TypeAlias = And | Or | Not | Ident | Unary | Binary
#: every node of the tree
Node: TypeAlias = Expr | Operand | Value | ListValue | Val | TransformList
