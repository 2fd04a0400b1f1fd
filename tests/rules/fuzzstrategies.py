"""Hypothesis strategies and properties for fuzzing the condition parser and the rules loader.

Shared by the short fuzz test (tests/rules/test_rules_fuzz.py) and the long runs
(bench/fuzz_rules.py, bench/fuzz_inputs.py). The property: whatever the input, parsing raises
nothing but ``FilterSyntaxError`` and loading raises nothing at all (problems are
``LoadResult.errors``), also for files shaped like the attacks on the loader's limits
(:func:`limit_documents`: macro chains that blow up, doubling lists, deep nesting, alias chains,
random bytes).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml
from falconet.rules import load_rules, load_rules_text
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
       "startswith oneof", "contains allof", "regex anyof", "endswith oneof"]
WORDS = ["and", "or", "not", "(", ")", ",", "val(", "tolower(", "toupper(", "b64(", "basename(",
         "len(", "join(", "concat(", "getopt(", ")[t]", "oneof", "anyof", "allof", "macro1",
         "list1", '"quoted value"', "'q'", "0x1f", "-3", "1.5e+3", "*.log", "/etc/", "10.0.0.0/8",
         "::1", "\\", '"', "'", "[", "]", "%", "\x00", "é", "\n"]
#: regex operands: valid RE2 POSIX, what RE2 rejects (backreferences, lookaround, Perl classes,
#: inline flags), catastrophic-backtracking shapes, and random text
REGEXES = ["'ba.h'", "'[[:alpha:]]+'", "'(x+x+)+y'", "'(a|aa)*b'", "'(a)\\\\1'", "'a(?=b)'",
           "'(?<!a)b'", "'(?i)bash'", "'(?:a)'", "'\\\\d+'", "'[z-a]'", "'['", "'a{1001}'",
           "'.*'", "''", "'\\xff'", "'é+'"]
#: arguments of the multivalue transformers join/concat/getopt, valid and not
MV_ARGS = ['"-"', '","', '""', "12", "proc.name", "fd.name", "fd.types", "evt.num",
           "user.loginname", "proc.aname", "proc.nosuch", "toupper(proc.name)", "()",
           '("a", proc.name)', '("-t", "v", "-n")', '(fd.types)', '("-ab", 3)', "bare"]

tokens = st.sampled_from(FIELDS + OPS + WORDS)
values = st.one_of(st.sampled_from(["bash", "0", "/etc", "true", "10.0.0.1", "6869", "x y"]),
                   st.text(max_size=8))


@st.composite
def multivalue(draw: Any, depth: int = 0) -> str:
    """``join(...)``, ``concat(...)``, ``getopt(...)[x]`` with any mix of arguments."""
    name = draw(st.sampled_from(["join", "concat", "getopt"]))
    arg = st.sampled_from(MV_ARGS) if depth else st.one_of(st.sampled_from(MV_ARGS),
                                                           multivalue(depth + 1))
    args = draw(st.lists(arg, max_size=4))
    selector = draw(st.sampled_from(["", "", "[t]", "[n]", "[ab]", "['x']"]))
    return f"{name}({', '.join(args)}){selector}"


@st.composite
def operands(draw: Any) -> str:
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        return draw(st.sampled_from(FIELDS))
    if kind == 3:
        return f"{draw(st.sampled_from(['tolower', 'len', 'b64']))}({draw(multivalue())})"
    return draw(multivalue())


@st.composite
def checks(draw: Any) -> str:
    f = draw(operands())
    op = draw(st.sampled_from(OPS))
    if op == "exists":
        return f"{f} exists"
    if op.endswith(("oneof", "allof", "anyof")) and draw(st.booleans()):
        return f"{f} {op} list1"                    # `<strop> oneof list_name`
    if op in ("in", "intersects", "pmatch") or op.endswith(("oneof", "allof", "anyof")):
        vs = draw(st.lists(st.sampled_from(REGEXES) if op.startswith("regex") else values,
                           max_size=3))
        return f"{f} {op} ({', '.join(vs)})"
    if op == "regex":
        return f"{f} regex {draw(st.one_of(st.sampled_from(REGEXES), values))}"
    if draw(st.integers(0, 4)) == 0:
        return f"{f} {op} {draw(multivalue())}"        # a transformer on the right
    return f"{f} {op} {draw(values)}"


@st.composite
def valid_checks(draw: Any) -> str:
    """Checks that compile (so generated rules load often enough to compare verdicts)."""
    mv_single = st.sampled_from([
        'join("-", (proc.name, fd.name))', 'join(",", fd.types)', 'join(proc.name, ())',
        'concat(proc.name, "x", fd.name)', 'concat(toupper(proc.name), fd.directory)',
        'getopt(("-t", "v", "-n"), "nt:")[t]', 'getopt(("-ab", proc.name), "ab:")[b]',
        'getopt(("-x", "-n"), "n")[n]', 'concat(user.loginname, "x")', 'tolower(join("", ()))'])
    mv_list = st.sampled_from(['getopt(("-t", "v", "-n"), "nt:")', 'getopt(fd.types, "f4")',
                               'getopt(("-nt"), ":nt:")'])
    kind = draw(st.integers(0, 4))
    if kind == 0:
        op = draw(st.sampled_from(["=", "!=", "contains", "startswith", "endswith", "glob",
                                   "in", "regex"]))
        rhs = draw(st.sampled_from(["bash", "/etc/shadow", "bash-/etc/shadow", "v", "n", '""',
                                    "(bash, v)", "'b.*'", "'[[:alpha:]]+'"]))
        if op == "in" and not rhs.startswith("("):
            rhs = f"({rhs})"
        if op != "in" and rhs.startswith("("):
            rhs = "bash"
        return f"{draw(mv_single)} {op} {rhs}"
    if kind == 1:
        return f"{draw(mv_list)} {draw(st.sampled_from(['in', 'intersects']))} (t, v, n, '?')"
    if kind == 2:
        pattern = draw(st.sampled_from(["'ba.h'", "'[[:alpha:]]+'", "'(x+x+)+y'", "'.*/sh.*'",
                                        "'(a|aa)*b'", "'é+'"]))
        return f"{draw(st.sampled_from(['proc.name', 'fd.name', 'proc.args']))} regex {pattern}"
    if kind == 3:
        op = draw(st.sampled_from(["startswith", "contains", "endswith", "regex", "="]))
        mod = draw(st.sampled_from(["oneof", "anyof", "allof"]))
        return f"{draw(st.sampled_from(['proc.name', 'fd.name']))} {op} {mod} " + \
            draw(st.sampled_from(["list1", "list2", "empty", "(list1)", "(ba, zsh)"]))
    return f"proc.name {draw(st.sampled_from(['=', 'startswith']))} {draw(mv_single)}"


@st.composite
def conditions(draw: Any, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 3 else 1))
    if kind == 0:
        return draw(st.one_of(checks(), valid_checks()))
    if kind == 1:
        return draw(valid_checks())
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


#: items that generated conditions can refer to (``list1`` for ``startswith oneof list1``)
PRELUDE = [{"list": "list1", "items": ["ba", "/etc", "x y", "list2"]},
           {"list": "list2", "items": ["zsh"]}, {"list": "empty", "items": []}]


def rule_document(cond: str) -> str:
    return yaml.safe_dump(PRELUDE + [{"rule": "r", "desc": "d", "condition": cond,
                                      "output": "o %proc.name", "priority": "INFO"}])


#: events for verdict comparisons: a process with arguments, an open file, a socket, nothing
def _events() -> list[Any]:
    from falconet.state.tables import FdInfo
    from stubfields import event, proc
    t = proc("bash", "/usr/bin/bash", ["-t", "v", "-n", "x"], uid=1000,
             ancestors=[proc("sshd", pid=50)])
    t.fds = {0: FdInfo(0, "f"), 1: FdInfo(1, "4")}
    return [event("openat", t, fd=FdInfo(3, "f", "/etc/shadow", "/etc/shadow"),
                  args={"flags": "O_RDONLY"}),
            event("connect", t, fd=FdInfo(4, "4", "x", sip="10.0.0.5", dip="10.1.2.3",
                                          dport=22, l4proto="tcp")),
            event("execve", proc("zsh")), event("openat", None)]


def check_compilers_agree(cond: str) -> None:
    """A condition that loads gives the same verdicts with generated code and with closures,
    and evaluating it never raises (errors would be counted as rule_error drops)."""
    import falconet.rules.loader as loader_mod
    verdicts = []
    for codegen in (True, False):
        old = loader_mod.USE_CODEGEN
        loader_mod.USE_CODEGEN = codegen
        try:
            res = load_rules_text([rule_document(cond)], REG)
        finally:
            loader_mod.USE_CODEGEN = old
        if not res.ok:
            return
        verdicts.append([bool(res.ruleset.match(e)) for e in _events()])
        assert not res.ruleset.eval_errors, (cond, res.ruleset.eval_errors)
    assert verdicts[0] == verdicts[1], (cond, verdicts)


def check_load(docs: list[str]) -> None:
    """Loading never raises; every problem is a LoadMessage; a successful ruleset can match."""
    res = load_rules_text(docs, REG)
    for m in res.errors + res.warnings:
        assert isinstance(str(m), str)
    if res.ok:
        from stubfields import event, proc
        for t in ("execve", "openat", "connect"):
            res.ruleset.match(event(t, proc("bash")))


# ------------------------------------------------------------------------------------ rules files
@st.composite
def limit_documents(draw: Any) -> bytes:
    """Rules files shaped like the attacks on the loader, at random sizes around the limits."""
    kind = draw(st.integers(0, 6))
    rule = ("- rule: r\n  desc: d\n  condition: evt.type = openat and {c}\n  output: o\n"
            "  priority: WARNING\n")
    if kind == 0:               # macro chains: each uses the previous `fanout` times
        n, fan = draw(st.integers(1, 40)), draw(st.integers(1, 3))
        op = draw(st.sampled_from([" or ", " and ", " and not "]))
        text = "- macro: m0\n  condition: proc.name = a\n" + "".join(
            f"- macro: m{i}\n  condition: {op.join([f'm{i - 1}'] * fan)}\n" for i in range(1, n))
        return (text + rule.format(c=f"m{n - 1}")).encode()
    if kind == 1:               # lists that double
        n = draw(st.integers(1, 40))
        text = "- list: l0\n  items: [a, b]\n" + "".join(
            f"- list: l{i}\n  items: [l{i - 1}, l{i - 1}]\n" for i in range(1, n))
        return (text + rule.format(c=f"proc.name in (l{n - 1})")).encode()
    if kind == 2:               # condition nesting
        n = draw(st.integers(1, 1500))
        shape = draw(st.sampled_from(["(", "not (", "proc.name = z or ("]))
        return rule.format(c=shape * n + "proc.name = bash" + ")" * n).encode()
    if kind == 3:               # YAML nesting, flow and block
        n = draw(st.integers(1, 200))
        if draw(st.booleans()):
            return ("- rule: r\n  desc: " + "[" * n + "]" * n + "\n").encode()
        return ("- rule: r\n  desc:\n" + "".join("  " * (i + 2) + f"k{i}:\n"
                                                for i in range(n))).encode()
    if kind == 4:               # alias chains
        n = draw(st.integers(1, 40))
        key = draw(st.sampled_from(["tags", "desc", "exceptions", "junk", "condition"]))
        text = "- list: anchors\n  items: []\n  x:\n    a0: &a0 [x, x]\n" + "".join(
            f"    a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, n))
        return (text + rule.format(c="proc.name = a") + f"  {key}: *a{n - 1}\n").encode()
    if kind == 5:               # random bytes, sometimes after a valid start
        return draw(st.sampled_from([b"", rule.format(c="x").encode()])) + draw(st.binary(
            max_size=200))
    return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")


def check_rules_file(data: bytes) -> None:
    """Loading a file never raises; every error names the file with a line (>= 1 unless it is
    about the whole file) and column."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.yaml")
        with open(path, "wb") as f:
            f.write(data)
        res = load_rules([path], REG)
    for m in res.errors + res.warnings:
        assert m.file in (path, "<config>"), str(m)
        assert isinstance(str(m), str)
        assert m.line >= 0 and m.col >= 0, str(m)
