"""Static checks on a condition that the loader does not make (or stops at the first of):

- every field exists in the registry (all unknown fields, not only the first);
- every bare identifier is a defined macro (all of them);
- no value is an undefined list or macro name written as a bare word: ``proc.name in
  (shell_binaries)`` without a ``shell_binaries`` list compares with the literal string
  "shell_binaries" and silently never fires. Falco does not warn about it.

A bare value counts as a name when it looks like one: lower-case, at least one ``_``, no ``.``
or ``/`` (``PTRACE_ATTACH`` and ``/etc/x`` are values). Quote a value to say it is a literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from falconet.fields.registry import FieldRegistry, UnknownFieldError
from falconet.rules import parser as P  # noqa: N812 - the AST node classes
from falconet.rules.parser import parse_condition

_NAME_LIKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


@dataclass(frozen=True)
class NameProblem:
    kind: str          # unknown_field | undefined_macro | undefined_name
    name: str
    message: str


def _walk(node: object) -> Iterator[object]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, P.And | P.Or):
            stack.extend(n.children)
        elif isinstance(n, P.Not):
            stack.append(n.child)
        elif isinstance(n, P.Binary):
            stack += [n.left, n.right]
        elif isinstance(n, P.Unary):
            stack.append(n.left)
        elif isinstance(n, P.Transform):
            stack.append(n.child)
        elif isinstance(n, P.MultiTransform):
            stack.extend(n.args)
        elif isinstance(n, P.TransformList):
            stack.extend(n.items)
        elif isinstance(n, P.Val):
            stack.append(n.field)


def _unquoted(text: str, word: str) -> bool:
    return re.search(r"(?<![\"'\w./-])" + re.escape(word) + r"(?![\"'\w./-])", text) is not None


def check_names(condition: str, registry: FieldRegistry, macros: set[str], lists: set[str]
                ) -> list[NameProblem]:
    """Problems of ``condition`` (empty when it does not parse: the loader reports that)."""
    try:
        ast = parse_condition(condition)
    except Exception:  # noqa: BLE001 - syntax errors are the loader's to report, with location
        return []
    out: list[NameProblem] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, name: str, message: str) -> None:
        if (kind, name) not in seen:
            seen.add((kind, name))
            out.append(NameProblem(kind, name, message))

    for n in _walk(ast):
        if isinstance(n, P.Field):
            try:
                registry.lookup(n.name, n.arg)
            except UnknownFieldError:
                add("unknown_field", n.token, f"unknown field '{n.token}' (see `falconet fields`)")
            except (LookupError, ValueError) as e:
                add("unknown_field", n.token, f"field '{n.token}': {e}")
        elif isinstance(n, P.Ident):
            if n.name not in macros and n.name not in lists:
                add("undefined_macro", n.name, f"undefined macro or list '{n.name}' used as a "
                    "bare word (define it, or load the rules file that does)")
        elif isinstance(n, P.Binary):
            vals = (n.right.values if isinstance(n.right, P.ListValue) else
                    [n.right.text] if isinstance(n.right, P.Value) else [])
            for v in vals:
                if _NAME_LIKE.fullmatch(v) and v not in lists and v not in macros \
                        and _unquoted(condition, v):
                    add("undefined_name", v, f"'{v}' looks like a list or macro name but none "
                        "is defined: as a bare word it is compared as the literal string "
                        f"\"{v}\" and the rule may never fire (define the list, or quote the "
                        "value if the literal is meant)")
    return out
