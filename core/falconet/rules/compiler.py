"""Stage 3 of loading rules (Falco's ``rule_loader_compiler``): what the collector gathered →
compiled rules (:mod:`falconet.rules.model`).

In order: lists (items may name earlier lists), macros (in order; a macro sees only earlier
macros), rules: condition + exceptions (as text, like Falco) → list substitution → parse
(:mod:`~falconet.rules.parser`) → macro expansion and event types
(:mod:`~falconet.rules.resolvers`) → check (:mod:`~falconet.rules.codegen`, else the closures of
:mod:`~falconet.rules.condition`); the output is compiled too (:mod:`~falconet.rules.formatter`).
Errors and warnings go to the collector's messages, each at the position of what caused it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from falconet.fields.registry import FieldRegistry, UnknownFieldError
from falconet.rules import errors as E
from falconet.rules import limits
from falconet.rules.ast import Field
from falconet.rules.codegen import generate
from falconet.rules.collector import Collector, ExceptionItem, RuleItem, is_modifier
from falconet.rules.condition import ConditionCompiler
from falconet.rules.errors import FilterCompileError, FilterSyntaxError, Location, RuleLoadError
from falconet.rules.formatter import CONDITION_EVT_DIR_WARNING, OUTPUT_EVT_DIR_WARNING, compile_output
from falconet.rules.kfilter import rule_facts
from falconet.rules.model import CompiledRule, RuleDescription
from falconet.rules.parser import LIST_OPS, parse_condition, parse_field_token
from falconet.rules.resolvers import event_types, expand_macros
from falconet.rules.views import needs_path_view
from falconet.rules.yamlnodes import offset_location
from falconet.syscalls import ALL_EVENT_TYPES

# ConditionCompiler (condition.py) is this stage's tool for conditions: other users of Falco
# filters (alert matchers) may import it from here
__all__ = ["USE_CODEGEN", "ConditionCompiler", "compile_check", "compile_loaded",
           "exception_condition", "substitute_lists"]

TOO_MANY_EVTTYPES = 100
#: compile conditions to generated functions (falls back to closures); for benchmarks
USE_CODEGEN = True


# ------------------------------------------------------------------------------ exceptions
def _quote_exc_value(v: Any) -> str:
    s = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    if s.startswith(("'", '"')):
        return s
    # Falco quotes a value only when it has a space: `tolower(proc.pname)` stays a transformer
    # (a field comparison), `a(b` is a syntax error there as here
    if s == "" or " " in s:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def exception_condition(e: ExceptionItem) -> str:
    """The ``and not (...)`` text Falco builds for one exception ('' when it has no values)."""
    if not e.values:
        return ""
    if not isinstance(e.fields, list):
        vals = ", ".join(_quote_exc_value(v) for v in e.values)
        return f" and not {e.fields} {e.comps} ({vals})"
    ors = []
    for tup in e.values:
        ands = []
        for f, c, v in zip(e.fields, e.comps, tup, strict=True):
            c = str(c)
            is_list_op = c in LIST_OPS or is_modifier(c)
            if isinstance(v, list):
                vs = "(" + ", ".join(_quote_exc_value(x) for x in v) + ")"
            elif is_list_op:
                vs = f"({_quote_exc_value(v)})"
            else:
                vs = _quote_exc_value(v)
            ands.append(f" {f} {c} {vs}")
        ors.append("(" + " and ".join(ands) + ")")
    return " and not (" + " or ".join(ors) + ")"


# ------------------------------------------------------------------------------ list substitution
_TOKEN_RE = re.compile(r"[^\s(),=]+")
_MODIFIERS = ("oneof", "anyof", "allof")


def _after_modifier(text: str, pos: int) -> bool:
    """Whether the text before ``pos`` ends with a modifier word and blanks
    (``startswith oneof <pos>``). Walks back from ``pos``: O(1) for the usual ``(name``."""
    j = pos
    while j > 0 and text[j - 1].isspace():
        j -= 1
    if j == pos or j < 5 or text[j - 5:j] not in _MODIFIERS:
        return False
    return j == 5 or text[j - 6].isspace()


def substitute_lists(text: str, lists: dict[str, list[str]], used: set[str]) -> str:
    """Falco's textual list substitution: a list name bounded by blanks, ``(``, ``)``, ``,``,
    ``=`` or the string ends becomes ``item1, item2``; an empty list also eats one comma.
    Right after a modifier (``startswith oneof list_name``) it becomes ``(item1, item2)``."""
    if any(not _TOKEN_RE.fullmatch(name) for name in lists):
        text = _substitute_spaced_names(text, lists, used)
    out: list[str] = []
    last = 0
    drop_comma = False
    size = len(text)
    for m in _TOKEN_RE.finditer(text):
        items = lists.get(m.group(0))
        if items is None:
            continue
        used.add(m.group(0))
        size += sum(map(len, items)) + 2 * len(items) + 2       # what this use adds, at most
        if size > limits.MAX_CONDITION_CHARS:
            raise limits.ConditionTooLarge
        chunk = text[last:m.start()]
        if drop_comma:
            chunk = re.sub(r"^\s*,", "", chunk, count=1)
            drop_comma = False
        if _after_modifier(text, m.start()):
            # `<strop> oneof list_name` (Falco 0.44): the list becomes a parenthesised list
            out.append(chunk)
            out.append("(" + ", ".join(_quote_list_item(i) for i in items) + ")")
        elif items:
            out.append(chunk)
            out.append(", ".join(_quote_list_item(i) for i in items))
        else:
            stripped = re.sub(r",\s*$", "", chunk, count=1)
            if stripped == chunk:
                drop_comma = True
            out.append(stripped)
        last = m.end()
    chunk = text[last:]
    if drop_comma:
        chunk = re.sub(r"^\s*,", "", chunk, count=1)
    out.append(chunk)
    return "".join(out)


def _substitute_spaced_names(text: str, lists: dict[str, list[str]], used: set[str]) -> str:
    """List names with blanks or delimiters (`my list`): Falco's ``resolve_list`` finds the name
    as a substring bounded by ``blanks(),=`` or the string ends, so they work too (with the
    invalid-name warning)."""
    for name, items in lists.items():
        if not name or _TOKEN_RE.fullmatch(name):
            continue
        start = text.find(name)
        while start >= 0:
            end = start + len(name)
            if (start == 0 or text[start - 1] in _DELIMS) and \
                    (end >= len(text) or text[end] in _DELIMS):
                used.add(name)
                sub = ", ".join(_quote_list_item(i) for i in items)
                if _after_modifier(text, start):
                    sub = f"({sub})"
                if len(text) + len(sub) > limits.MAX_CONDITION_CHARS:
                    raise limits.ConditionTooLarge
                text = text[:start] + sub + text[end:]
                start = text.find(name, start + len(sub))
            else:
                start = text.find(name, start + 1)
    return text


_DELIMS = " \t\n\r(),="


def _quote_list_item(item: str) -> str:
    if " " in item and not item.startswith(("'", '"')):
        return f'"{item}"'
    return item


# ------------------------------------------------------------------------------ phase 2: compile
@dataclass
class _Extras:
    text: str
    getters: list[tuple[str, Any]]
    consts: dict[str, Any]


def _norm_append_output(cfg: Any) -> list[dict[str, Any]]:
    if cfg is None:
        return [{"suggested_output": True}]
    if not isinstance(cfg, list) or not all(isinstance(e, dict) for e in cfg):
        raise RuleLoadError("append_output must be a list of mappings")
    return cfg


def _extras(ld: Collector, entries: list[dict[str, Any]], r: RuleItem) -> _Extras:
    text: list[str] = []
    getters: list[tuple[str, Any]] = []
    consts: dict[str, Any] = {}
    for entry in entries:
        match = entry.get("match") or {}
        if "source" in match and str(match["source"]) != r.source:
            continue
        if "tags" in match and not {str(t) for t in (match["tags"] or [])} <= r.tags:
            continue
        if "rule" in match and str(match["rule"]) != r.name:
            continue
        if entry.get("suggested_output"):
            for f in ld.registry.suggested(r.source):
                text.append(f" {f.name.replace('.', '_')}=%{f.name}")
        if entry.get("extra_output"):
            text.append(" " + str(entry["extra_output"]).strip())
        for ef in entry.get("extra_fields") or []:
            if isinstance(ef, dict):
                consts.update({str(k): v for k, v in ef.items()})
            else:
                getters.append((str(ef), _extra_field_getter(ld.registry, str(ef), r.source)))
    return _Extras("".join(text), getters, consts)


def _extra_field_getter(registry: FieldRegistry, token: str, source: str) -> Any:
    """Bind one ``extra_fields`` entry: a field token as written in an output, argument included
    (``proc.aname[2]``, ``evt.arg.flags``, ``proc.env[HOME]``), like Falco accepts."""
    def fail(why: str) -> FilterCompileError:
        return FilterCompileError(f"append_output extra_fields: {why}", unknown_filter=True,
                                  code=E.LOAD_ERR_COMPILE_OUTPUT)

    parsed = parse_field_token(token.strip(), 0)
    if parsed is None or parsed[1] != len(token.strip()) or not isinstance(parsed[0], Field):
        raise fail(f"'{token}' is not a field name (expected e.g. proc.name or proc.aname[2])")
    node = parsed[0]
    try:
        return registry.resolve(node.name, node.arg, source).extract
    except UnknownFieldError as e:
        raise fail(str(e)) from None


def _capture_getters(registry: FieldRegistry, tokens: list[str], source: str
                     ) -> tuple[tuple[str, Any], ...]:
    """Extractors of the capture tokens that exist for ``source`` (others are skipped: a
    ``match:`` condition on them is simply false for alerts of that source)."""
    out = []
    for tok in tokens:
        try:
            out.append((tok, _extra_field_getter(registry, tok, source)))
        except FilterCompileError:
            continue
    return tuple(out)


def compile_check(cc: ConditionCompiler, ast: Any, name: str) -> Any:
    """Generated code when possible (faster), else the closure tree (same semantics)."""
    if USE_CODEGEN:
        try:
            return generate(cc, ast, name)
        except (RecursionError, MemoryError, SyntaxError, ValueError):
            cc.fields.clear()
            cc.warnings.clear()
            cc.na_checks.clear()
    return cc.compile(ast)


def _parse_located(ld: Collector, raw: Any, text: str, fallback: Location) -> Any:
    """Parse ``text`` (the substituted condition); on a syntax error, locate it in ``raw``."""
    try:
        return parse_condition(text)
    except FilterSyntaxError as e:
        loc, msg = getattr(raw, "loc", None) or fallback, e.message
        try:
            parse_condition(str(raw))
        except FilterSyntaxError as e2:
            lines = ld.source_lines.get(loc.file, [])
            loc = offset_location(raw, e2.pos, lines) or loc
            msg = e2.message
        raise RuleLoadError(msg, loc, E.LOAD_ERR_COMPILE_CONDITION) from None


_NONEXISTENT_FIELD_RE = re.compile(r"nonexistent field (\S+)")


def _output_error_loc(ld: Collector, ri: RuleItem, message: str) -> Location:
    """Where an output error is: the unknown field's ``%token`` in the output text when it can
    be found in the lines of the output value, else where the output starts (else the rule)."""
    base = ri.output_loc or ri.loc
    m = _NONEXISTENT_FIELD_RE.search(message)
    lines = ld.source_lines.get(base.file)
    if m is None or not lines or base.line < 1:
        return base
    token = m.group(1)
    for i in range(base.line - 1, min(len(lines), base.line + 30)):
        col = lines[i].find(f"%{token}")
        if col >= 0:
            return Location(base.file, i + 1, col + 1)
    return base


_UNDEFINED_MACRO_RE = re.compile(r"Undefined macro '(.+)' used in filter\.")


def _undefined_macro_hint(message: str, ld: Collector, user: str | None,
                          compiled: dict[str, Any]) -> str:
    """Say why a macro that *is* in the files counts as undefined: it uses itself, is defined
    after the macro ``user`` (macros only see earlier macros, as in Falco, so loops cannot
    form), or failed to compile (reported on its own)."""
    m = _UNDEFINED_MACRO_RE.fullmatch(message)
    if m is None or m.group(1) not in ld.macros:
        return message
    ref = m.group(1)
    if ref == user:
        return f"{message} (a macro cannot use itself)"
    order = list(ld.macros)
    if ref not in compiled and (user is None or order.index(ref) < order.index(user)):
        return f"{message} (macro '{ref}' has errors, reported on its own)"
    loc = ld.macros[ref].loc
    return (f"{message} (macro '{ref}' is defined later, at {loc.file}:{loc.line}; a macro can "
            "only use macros defined before it)")


def compile_loaded(ld: Collector, append_output: Any = None, capture_fields: Any = (),
                   ) -> tuple[list[CompiledRule], list[RuleDescription]]:
    """Compile what the :class:`Collector` ``ld`` collected; errors and warnings go to ``ld``.
    ``capture_fields``: field tokens whose values every alert carries in ``match_fields``
    (tokens not valid for a rule's source are skipped for that rule)."""
    capture_tokens = sorted(set(capture_fields or ()))
    capture_by_source: dict[str, tuple[tuple[str, Any], ...]] = {}
    try:
        out_entries = _norm_append_output(append_output)
    except RuleLoadError as e:
        ld.error(e.message, Location("<config>", 0, 0), E.LOAD_ERR_VALIDATE, ("append_output", ""))
        out_entries = []
    # lists: items may name earlier lists
    lists: dict[str, list[str]] = {}
    used_lists: set[str] = set()
    for name, li in ld.lists.items():
        items: list[str] = []
        try:
            limits.check_list_size(name, len(li.items))
            for it in li.items:
                if it in lists:
                    limits.check_list_size(name, len(items) + len(lists[it]))
                    items.extend(lists[it])
                    used_lists.add(it)
                else:
                    items.append(it)
        except RuleLoadError as e:
            ld.error(e.message, li.loc, e.code, ("list", name))
            continue
        lists[name] = items
    budget = limits.NodeBudget()        # the whole load's, macros' text included
    # macros: in order, each sees only earlier macros
    macros: dict[str, Any] = {}
    used_macros: set[str] = set()
    for name, mi in ld.macros.items():
        item = ("macro", name)
        try:
            text = substitute_lists(str(mi.condition), lists, used_lists)
            budget.spend_text(len(text))
            ast = _parse_located(ld, mi.condition, text, mi.loc)
            expanded = expand_macros(ast, macros, used_macros)
            limits.check_condition(expanded, "Macro condition")
            macros[name] = expanded
        except RuleLoadError as e:
            ld.error(_undefined_macro_hint(e.message, ld, name, macros), e.loc or mi.loc, e.code,
                     item)
        except Exception as e:  # noqa: BLE001 - never let one macro stop the load
            ld.error(f"cannot compile macro: {type(e).__name__}: {e}", mi.loc,
                     E.LOAD_ERR_COMPILE_CONDITION, item)
    compiled: list[CompiledRule] = []
    described: list[RuleDescription] = []
    for name, ri in ld.rules.items():
        item = ("rule", name)
        if ld.sources is not None and ri.source not in ld.sources:
            ld.warn(E.LOAD_UNKNOWN_SOURCE, f"Unknown source {ri.source}, skipping", ri.loc, item)
            continue
        cond_loc = getattr(ri.condition, "loc", None) or ri.loc
        try:
            exc = "".join(exception_condition(e) for e in ri.exceptions)
            full = f"({ri.condition}){exc}" if exc else str(ri.condition)
            text = substitute_lists(full, lists, used_lists)
            budget.spend_text(len(text))
            ast = _parse_located(ld, ri.condition, text, ri.loc)
            ast = expand_macros(ast, macros, used_macros)
            budget.spend(limits.check_condition(ast, "Condition"))
            cc = ConditionCompiler(ld.registry, ri.source)
            check = compile_check(cc, ast, name)
            types: frozenset[str] | None = None
            if ri.source == "syscall":
                types = event_types(ast, ALL_EVENT_TYPES)
            extras = _extras(ld, out_entries, ri)
            try:
                fmt = compile_output(ri.output + extras.text, ld.registry, ri.source)
            except FilterCompileError as e:
                e.code = E.LOAD_ERR_COMPILE_OUTPUT
                raise
        except FilterCompileError as e:
            if e.unknown_filter and ri.skip_if_unknown_filter:
                ld.warn(E.LOAD_UNKNOWN_FILTER, e.message, cond_loc, item)
                continue
            ld.error(_undefined_macro_hint(e.message, ld, None, macros),
                     cond_loc if e.code != E.LOAD_ERR_COMPILE_OUTPUT else _output_error_loc(ld, ri,
                                                                                  e.message),
                     e.code, item)
            continue
        except RuleLoadError as e:
            ld.error(e.message, e.loc or cond_loc, e.code, item)
            continue
        except Exception as e:  # noqa: BLE001 - e.g. a plugin's make_extractor raising
            ld.error(f"cannot compile rule: {type(e).__name__}: {e}", cond_loc,
                     E.LOAD_ERR_COMPILE_CONDITION, item)
            continue
        for w in cc.warnings:
            ld.warn(E.LOAD_COMPILE_CONDITION, w, cond_loc, item)
        for w in dict.fromkeys(cc.na_checks):
            ld.warn(E.LOAD_UNSAFE_NA_CHECK, w, cond_loc, item)
        for w in fmt.warnings:
            # Falco 0.44.1 puts %container.info's warning on the rule, evt.dir's on the output
            ld.warn(E.LOAD_DEPRECATED_ITEM, w,
                    (ri.output_loc or ri.loc) if w == OUTPUT_EVT_DIR_WARNING else ri.loc, item)
        if any(f.fdef.name == "evt.dir" for f in cc.fields):
            ld.warn(E.LOAD_DEPRECATED_ITEM, CONDITION_EVT_DIR_WARNING, cond_loc, item)
        unknown_types = sorted(types - ALL_EVENT_TYPES) if types is not None else []
        if unknown_types:
            ld.warn(E.LOAD_UNKNOWN_FILTER, "unknown event type(s) "
                    f"{', '.join(unknown_types)}: the rule can never match them", cond_loc, item)
        if types is not None and ri.warn_evttypes and len(types) > TOO_MANY_EVTTYPES:
            ld.warn(E.LOAD_NO_EVTTYPE, "Rule matches too many evt.type values. This has a "
                    "significant performance penalty.", cond_loc, item)
        if types is not None and types >= ALL_EVENT_TYPES:
            types = None
        file = ld.rule_files.get(name, "")
        cr = CompiledRule(name, ri.priority, ri.source, sorted(ri.tags), ri.desc,
                          os.path.basename(file), ri.enabled, check, fmt, types,
                          str(ri.condition), ri.output, ri.capture,
                          ri.capture_duration * 1_000_000)
        cr.extra_fields = {"getters": extras.getters, "consts": extras.consts}
        if ri.source == "syscall":
            cr.kfacts = rule_facts(ast)
            cr.path_view = needs_path_view(f.fdef.name for f in cc.fields)
        if capture_tokens:
            if ri.source not in capture_by_source:
                capture_by_source[ri.source] = _capture_getters(ld.registry, capture_tokens,
                                                                ri.source)
            cr.capture_getters = capture_by_source[ri.source]
        compiled.append(cr)
        described.append(RuleDescription(name, ri.priority, ri.source, sorted(ri.tags),
                                         ri.enabled, sorted(types) if types is not None else None,
                                         file, ri.desc))
    for name, mi in ld.macros.items():
        if name not in used_macros and name in macros:
            ld.warn(E.LOAD_UNUSED_MACRO, "Macro not referred to by any other rule/macro", mi.loc,
                    ("macro", name))
    for name, li in ld.lists.items():
        if name not in used_lists:
            ld.warn(E.LOAD_UNUSED_LIST, "List not referred to by any other rule/macro", li.loc,
                    ("list", name))
    return compiled, described
