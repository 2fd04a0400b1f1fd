"""Resolvers: passes over a parsed condition that need no fields (libsinsp's
``filter_macro_resolver`` and ``filter_evttype_resolver``).

:func:`expand_macros` replaces macro references by their trees; :func:`event_types` computes the
event types a condition can match, the key the ruleset indexes rules by.
"""

from __future__ import annotations

from falconet.rules.ast import (
    And,
    Binary,
    Expr,
    Field,
    Ident,
    ListValue,
    MultiTransform,
    Not,
    Or,
    Transform,
    Unary,
    Val,
    Value,
)
from falconet.rules.errors import FilterCompileError


def expand_macros(node: Expr, macros: dict[str, Expr], used: set[str] | None = None) -> Expr:
    """Replace every identifier by the (already expanded) AST of the macro of that name.
    Raises :class:`FilterCompileError` ``Undefined macro 'X' used in filter.``"""
    if isinstance(node, Ident):
        m = macros.get(node.name)
        if m is None:
            raise FilterCompileError(f"Undefined macro '{node.name}' used in filter.")
        if used is not None:
            used.add(node.name)
        return m
    if isinstance(node, And):
        return And([expand_macros(c, macros, used) for c in node.children])
    if isinstance(node, Or):
        return Or([expand_macros(c, macros, used) for c in node.children])
    if isinstance(node, Not):
        return Not(expand_macros(node.child, macros, used))
    return node


def identifiers(node: Expr) -> list[str]:
    """Macro names referenced by an AST (not expanded)."""
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Ident):
            out.append(n.name)
        elif isinstance(n, And | Or):
            stack.extend(n.children)
        elif isinstance(n, Not):
            stack.append(n.child)
    return out


def event_types(node: Expr, universe: frozenset[str], negated: bool = False) -> frozenset[str]:
    """The event types a condition can match (libsinsp ``ppm_codes.cpp`` set algebra):
    ``and`` intersects, ``or`` unites, negations are pushed to the leaves, ``evt.type`` checks give
    their set (complement when negated or ``!=``), other checks are neutral (the universe)."""
    if isinstance(node, Not):
        return event_types(node.child, universe, not negated)
    if isinstance(node, And | Or):
        sets = [event_types(c, universe, negated) for c in node.children]
        intersect = isinstance(node, And) != negated
        out = sets[0]
        for s in sets[1:]:
            out = out & s if intersect else out | s
        return out
    if isinstance(node, Unary):
        if _is_evt_type(node.left):
            return frozenset() if negated else universe
        return universe
    if isinstance(node, Binary):
        left = node.left
        if isinstance(left, Transform) and _is_evt_type(left.child):
            raise FilterCompileError("filter error: evt.type can not be used with a transformer")
        if _is_evt_type(left):
            if isinstance(node.right, Val | Transform | MultiTransform):
                raise FilterCompileError("filter error: evt.type can not be compared with val() "
                                         "or a transformer")
            if node.op in ("=", "==", "in", "!="):
                vals = node.right.values if isinstance(node.right, ListValue) else \
                    [node.right.text] if isinstance(node.right, Value) else []
                s = frozenset(vals)
                if node.op == "!=":
                    negated = not negated
                return (universe - s) if negated else s
            return universe
        # `evt.num` checks are neutral, whatever the value: Falco 0.44.1 (`--dry-run`, debug
        # log "syscalls in rules") gives `evt.type = open and evt.num = 0` the set {open} and
        # `evt.num in (0)`, `evt.num in ()`, `evt.num = -1` every event type
        return universe
    return universe


def _is_evt_type(node: object) -> bool:
    return isinstance(node, Field) and node.name in ("evt.type", "syscall.type") and node.arg is None
