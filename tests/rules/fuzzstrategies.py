"""Hypothesis strategies and properties for fuzzing the condition parser and the rules loader.

Shared by the short fuzz test (tests/rules/test_rules_fuzz.py) and the long run
(bench/fuzz_rules.py). The property: whatever the input, parsing raises nothing but
``FilterSyntaxError`` and loading raises nothing at all (problems are ``LoadResult.errors``).
"""

from __future__ import annotations

from typing import Any

import yaml
from falconet.rules import load_rules_text
from falconet.rules.errors import FilterSyntaxError
from falconet.rules.parser import parse_condition
from hypothesis import strategies as st
from stubfields import stub_registry

REG = stub_registry()

FIELDS = ["proc.name", "proc.aname", "proc.aname[2]", "fd.name", "evt.type", "user.uid",
          "evt.arg.flags", "evt.arg[0]", "fd.sip", "fd.net", "fd.types", "evt.buffer",
          "fd.connected", "proc.nosuch", "a.b", "evt.num", "proc.args"]
OPS = ["=", "==", "!=", "<", "<=", ">", ">=", "contains", "icontains", "bcontains", "startswith",
       "bstartswith", "endswith", "glob", "iglob", "regex", "in", "intersects", "pmatch", "exists",
       "startswith oneof", "contains allof"]
WORDS = ["and", "or", "not", "(", ")", ",", "val(", "tolower(", "toupper(", "b64(", "basename(",
         "len(", "macro1", "list1", '"quoted value"', "'q'", "0x1f", "-3", "1.5e+3", "*.log",
         "/etc/", "10.0.0.0/8", "::1", "\\", '"', "'", "[", "]", "%", "\x00", "é", "\n"]

tokens = st.sampled_from(FIELDS + OPS + WORDS)
values = st.one_of(st.sampled_from(["bash", "0", "/etc", "true", "10.0.0.1", "6869", "x y"]),
                   st.text(max_size=8))


@st.composite
def checks(draw: Any) -> str:
    f = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(OPS))
    if op == "exists":
        return f"{f} exists"
    if op in ("in", "intersects", "pmatch") or op.endswith(("oneof", "allof")):
        vs = draw(st.lists(values, max_size=3))
        return f"{f} {op} ({', '.join(vs)})"
    return f"{f} {op} {draw(values)}"


@st.composite
def conditions(draw: Any, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 3 else 1))
    if kind <= 1:
        return draw(checks())
    if kind == 2:
        return "not " + draw(conditions(depth + 1))
    if kind == 3:
        return "(" + draw(conditions(depth + 1)) + ")"
    joiner = draw(st.sampled_from([" and ", " or ", " and not ", "or(", " and("]))
    return draw(conditions(depth + 1)) + joiner + draw(conditions(depth + 1))


token_soup = st.lists(tokens, max_size=20).map(" ".join)
any_condition = st.one_of(conditions(), token_soup, st.text(max_size=60))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=12),
                    st.sampled_from(["append", "replace", "INFO", "warning", "syscall", "=", "in"]))
KEYS = ["rule", "macro", "list", "condition", "output", "desc", "priority", "tags", "enabled",
        "source", "exceptions", "override", "append", "items", "warn_evttypes",
        "skip-if-unknown-filter", "capture", "capture_duration", "required_engine_version",
        "required_plugin_versions", "name", "fields", "comps", "values", "version",
        "alternatives"]
yaml_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=20)


@st.composite
def rule_items(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["rule", "macro", "list"]))
    item: dict[str, Any] = {kind: draw(st.sampled_from(["r1", "r2", "m1", "list1", "macro1"]))}
    if kind == "list":
        item["items"] = draw(st.lists(values, max_size=4))
    else:
        item["condition"] = draw(any_condition)
    if kind == "rule":
        item.update(output=draw(st.sampled_from(["%proc.name %fd.name", "x %", "%%",
                                                 "%proc.aname[2]", "%toupper(proc.name)"])),
                    desc="d", priority=draw(st.sampled_from(["INFO", "bad", "Critical"])))
    extra = draw(st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=3))
    item.update({k: v for k, v in extra.items() if k not in item})
    return item


documents = st.one_of(
    st.lists(rule_items(), max_size=6).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.lists(yaml_values, max_size=4).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.text(max_size=200),
)


def check_parse(text: str) -> None:
    """Parsing raises nothing but the engine's own error."""
    try:
        parse_condition(text)
    except FilterSyntaxError:
        pass


def check_load(docs: list[str]) -> None:
    """Loading never raises; every problem is a LoadMessage; a successful ruleset can match."""
    res = load_rules_text(docs, REG)
    for m in res.errors + res.warnings:
        assert isinstance(str(m), str)
    if res.ok:
        from stubfields import event, proc
        for t in ("execve", "openat", "connect"):
            res.ruleset.match(event(t, proc("bash")))
