"""Output formats (``output:`` of a rule), compiled once at load time.

``%field``, ``%field[arg]``, ``%evt.arg.x``, ``%transformer(field)``, ``%<N>field`` (pad/truncate to
N characters) and ``%%`` (a literal ``%``). The field token is the longest prefix that names a
field, so ``%proc.name)`` is ``proc.name`` followed by ``)``. Missing values print ``<NA>``.

A compiled format (:class:`falconet.rules.model.OutputFormat`) renders to the text and the typed
``output_fields`` (keyed by the token as written; transformer tokens are not included, as in
Falco). Every string value goes through the output policy (:mod:`falconet.encoding`: bytes that
are not UTF-8 as ``\\xNN``, control, separator and bidi characters escaped, length bounded) so
that an attacker-controlled file name cannot forge log lines, break an output's encoding or
inflate an alert. Conditions never see this: they read the raw values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falconet.fields.registry import FieldRegistry, UnknownFieldError
from falconet.rules.condition import TRANSFORMER_FUNCS, ConditionCompiler
from falconet.rules.errors import LOAD_ERR_COMPILE_OUTPUT, FilterCompileError
from falconet.rules.model import OutputFormat
from falconet.rules.parser import Field, MultiTransform, Transform, parse_field_token

DEPRECATED_OUTPUT_FIELDS = frozenset({"container.info"})

# Falco 0.44.1's LOAD_DEPRECATED_ITEM texts for evt.dir (libs 0.25 dropped enter events): the
# output one is reported at the output, the condition one (also when evt.dir comes from a
# macro) at the condition
OUTPUT_EVT_DIR_WARNING = "usage of deprecated field 'evt.dir' has been detected in the rule output"
CONDITION_EVT_DIR_WARNING = (
    "due to the drop of enter events, 'evt.dir = <' always evaluates to true, and "
    "'evt.dir = >' always evaluates to false. The rule expression can be simplified by "
    "removing the condition on 'evt.dir'")


def compile_output(text: str, registry: FieldRegistry, source: str) -> OutputFormat:
    """Compile a format string. Raises :class:`FilterCompileError` (code
    LOAD_ERR_COMPILE_OUTPUT; ``unknown_filter`` for unknown fields)."""
    pieces: list[Any] = []
    fields: list[tuple[str, Callable[[Any], Any]]] = []
    warnings: list[str] = []
    seen: set[str] = set()
    lit: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "%":
            j = text.find("%", i)
            j = n if j < 0 else j
            lit.append(text[i:j])
            i = j
            continue
        if i + 1 >= n:
            raise FilterCompileError("invalid formatting token: the format ends with '%'",
                                     code=LOAD_ERR_COMPILE_OUTPUT)
        if text[i + 1] == "%":
            lit.append("%")
            i += 2
            continue
        j = i + 1
        while j < n and text[j].isdigit():
            j += 1
        pad = int(text[i + 1:j]) if j > i + 1 else 0
        getter, token, end, in_fields = _token(text, j, registry, source, warnings)
        if lit:
            pieces.append("".join(lit))
            lit = []
        if getter is not None:
            pieces.append((getter, pad))
            if in_fields and token not in seen:
                seen.add(token)
                fields.append((token, getter))
        i = end
    if lit:
        pieces.append("".join(lit))
    return OutputFormat(text, pieces, fields, warnings)


def _token(text: str, pos: int, registry: FieldRegistry, source: str,
           warnings: list[str]) -> tuple[Callable[[Any], Any] | None, str, int, bool]:
    parsed = parse_field_token(text, pos)
    if parsed is None:
        raise FilterCompileError(f"invalid formatting token at {pos}: expected a field after '%'",
                                 code=LOAD_ERR_COMPILE_OUTPUT)
    node, end = parsed
    if isinstance(node, Field) and node.name in DEPRECATED_OUTPUT_FIELDS:
        # Falco 0.44 renders %container.info as nothing (the container plugin's suggested
        # fields are appended instead) with this warning
        warnings.append("%container.info is deprecated and no more useful, and will be dropped "
                        "by Falco 1.0.0. The container plugin will automatically add required "
                        "fields to the output message.")
        return None, node.name, end, False
    if isinstance(node, Field) and node.name == "evt.dir":
        warnings.append(OUTPUT_EVT_DIR_WARNING)
    if isinstance(node, Transform | MultiTransform):
        return _transformed(node, registry, source), text[pos:end], end, False
    assert isinstance(node, Field)
    name, arg = node.name, node.arg
    while True:
        try:
            rf = registry.resolve(name, arg, source)
            break
        except UnknownFieldError as e:
            # longest prefix that names a field: drop trailing ".component"s (no argument only)
            if arg is None and name.count(".") > 1:
                name = name.rsplit(".", 1)[0]
                end = pos + len(name)
                continue
            raise FilterCompileError(f"unknown filter: {e}", unknown_filter=True,
                                     code=LOAD_ERR_COMPILE_OUTPUT) from None
    return rf.extract, text[pos:end], end, True


def _transformed(node: Any, registry: FieldRegistry, source: str) -> Callable[[Any], Any]:
    if isinstance(node, Field):
        try:
            return registry.resolve(node.name, node.arg, source).extract
        except UnknownFieldError as e:
            raise FilterCompileError(f"unknown filter: {e}", unknown_filter=True,
                                     code=LOAD_ERR_COMPILE_OUTPUT) from None
    if isinstance(node, MultiTransform):       # join/concat/getopt: the compiler's checks
        try:
            return ConditionCompiler(registry, source).multi_operand(node).get
        except FilterCompileError as e:
            raise FilterCompileError(str(e), unknown_filter=e.unknown_filter,
                                     code=LOAD_ERR_COMPILE_OUTPUT) from None
    inner = _transformed(node.child, registry, source)
    fn = TRANSFORMER_FUNCS[node.name]

    def get(evt: Any, _g: Callable[[Any], Any] = inner, _f: Callable[[Any], Any] = fn) -> Any:
        v = _g(evt)
        if v is None:
            return None
        try:
            return _f(v)
        except (AttributeError, TypeError):
            return None
    return get
