"""Cases where Falco 0.44.1 (libs 0.25.4) was run (`falco -V`) and Falconet must agree (issue 17).

Every expectation here was checked against the upstream binary in ``../shared/falco-bin``."""

from __future__ import annotations

import pytest
from falconet.rules.errors import FilterSyntaxError
from falconet.rules.parser import as_string, parse_condition
from rulehelp import errors, load, loaded, matcher, rule, warnings
from stubfields import event, proc

# ------------------------------------------------------------------ string comparator modifiers
# libs 0.25: the modifier needs a blank on both sides and a list (or list name) after it;
# otherwise the word is the plain value and what follows is an unexpected token.
REJECTED_BY_FALCO = [
    ("proc.name ==oneof (cat, nginx)", "unexpected token after 'oneof', expecting 'or', 'and'"),
    ("proc.name == oneof(cat, nginx)", "unexpected token after 'oneof', expecting 'or', 'and'"),
    ("proc.name contains oneof(cat, nginx)",
     "unexpected token after 'oneof', expecting 'or', 'and'"),
    ("proc.name startswith oneof(cat)", "unexpected token after 'oneof', expecting 'or', 'and'"),
    ("proc.name == anyof fd.name", "unexpected token after 'fd', expecting 'or', 'and'"),
    # messages: a field argument without its closing bracket
    ('evt.arg["x" = value', "expected a ']' token"),
    ('getopt(proc.args, "nt:")["t" = x', "expected a ']' token"),
]


@pytest.mark.parametrize("cond, msg", REJECTED_BY_FALCO)
def test_rejected_as_falco_rejects(cond: str, msg: str) -> None:
    with pytest.raises(FilterSyntaxError) as ei:
        parse_condition(cond)
    assert msg in str(ei.value)


@pytest.mark.parametrize("cond, printed", [
    ("proc.name == anyof and fd.name exists", "(proc.name == anyof and fd.name exists)"),
    ("proc.name == anyof or fd.name exists", "(proc.name == anyof or fd.name exists)"),
    ("proc.name == anyof", "proc.name == anyof"),
    ("proc.name ==  oneof  (cat)", "proc.name == oneof (cat)"),
    ("proc.name == oneof\t(cat)", "proc.name == oneof (cat)"),
    ("proc.name == oneof\n(cat)", "proc.name == oneof (cat)"),
    ("proc.name == anyof foo and fd.name exists", "(proc.name == anyof foo and fd.name exists)"),
    # lexing: `exists` is a prefix, as every libsinsp operator
    ("test.op existsand macro", "(test.op exists and macro)"),
    # AST printing as libsinsp's string_visitor: field args go through escape_str
    ('evt.arg["a b"] exists', 'evt.arg["a b"] exists'),
    ('getopt(proc.args, "nt:")[t] exists', 'getopt(proc.args, "nt:")[t] exists'),
    ('getopt(proc.args, "nt:")["t"] exists', 'getopt(proc.args, "nt:")[t] exists'),
])
def test_accepted_as_falco_accepts(cond: str, printed: str) -> None:
    node = parse_condition(cond)
    assert as_string(node) == printed
    assert as_string(parse_condition(as_string(node))) == printed


def test_anyof_without_list_is_a_plain_value() -> None:
    m = matcher("proc.name == anyof and proc.name exists")
    assert m(event("execve", proc("anyof"))) is True
    assert m(event("execve", proc("bash"))) is False


def test_allof_empty_list_is_false() -> None:
    # libsinsp: allof over no element is false, not vacuously true
    assert matcher("proc.name == allof ()")(event("execve", proc("bash"))) is False
    assert matcher("proc.name contains allof ()")(event("execve", proc("bash"))) is False
    assert matcher("not proc.name == allof ()")(event("execve", proc("bash"))) is True


def test_unsubstituted_list_name_is_a_value() -> None:
    # Falco loads `proc.name in foo` / `startswith oneof foo` with foo not a list
    assert matcher("proc.name in bash")(event("execve", proc("bash"))) is True
    assert matcher("proc.name startswith oneof ba")(event("execve", proc("bash"))) is True


# ------------------------------------------------------------------------- loader warnings
def test_output_warnings_are_falcos() -> None:
    w = warnings(rule("evt.type = execve and proc.name = x", output="o %evt.dir %container.info"))
    assert any("usage of deprecated field 'evt.dir' has been detected in the rule output" in m
               for m in w), w
    assert any("%container.info is deprecated and no more useful, and will be dropped by Falco "
               "1.0.0. The container plugin will automatically add required fields to the "
               "output message." in m for m in w), w


_EVT_DIR_COND = ("due to the drop of enter events, 'evt.dir = <' always evaluates to true, and "
                 "'evt.dir = >' always evaluates to false. The rule expression can be simplified "
                 "by removing the condition on 'evt.dir'")


def test_evt_dir_warnings_are_falcos_and_where_falco_puts_them() -> None:
    # Falco 0.44.1 `-V` on this text: the condition warning (also for evt.dir reached through
    # a macro) at the condition (0-based 2:13 and 14:13), the output one at the output (8:10)
    text = """- rule: cond dir
  desc: d
  condition: evt.type=open and evt.dir=<
  output: x %proc.name
  priority: INFO
- rule: out dir
  desc: d
  condition: evt.type=open
  output: x %evt.dir
  priority: INFO
- macro: m_dir
  condition: evt.dir=>
- rule: macro dir
  desc: d
  condition: evt.type=open and m_dir
  output: x
  priority: INFO
"""
    got = sorted((w.item_name, w.code, w.message, w.line, w.col) for w in load(text).warnings)
    assert got == [
        ("cond dir", "LOAD_DEPRECATED_ITEM", _EVT_DIR_COND, 3, 14),
        ("macro dir", "LOAD_DEPRECATED_ITEM", _EVT_DIR_COND, 15, 14),
        ("out dir", "LOAD_DEPRECATED_ITEM",
         "usage of deprecated field 'evt.dir' has been detected in the rule output", 9, 11),
    ]


def test_evt_dir_warning_follows_the_macro_that_wins() -> None:
    # incubating redefines spawned_process with evt.dir, sandbox (loaded after it) without:
    # Falco warns on the rules using it only while the evt.dir definition is the last one
    with_dir = "- macro: sp\n  condition: evt.type = execve and evt.dir = <\n"
    without = "- macro: sp\n  condition: evt.type = execve\n"
    r = rule("sp and proc.name = x")
    assert any(w.message == _EVT_DIR_COND for w in load([without + r, with_dir]).warnings)
    assert not any(w.message == _EVT_DIR_COND
                   for w in load([without + r, with_dir, without]).warnings)


def test_container_info_renders_as_nothing() -> None:
    # Falco 0.44.1 run live: output "X %container.info Y" printed "X  Y"
    res = loaded(rule("proc.name = bash", output="X %container.info Y"))
    alerts = res.ruleset.match(event("execve", proc("bash")))
    assert alerts and alerts[0].output == "X  Y"


def test_quoted_transformer_value_warns() -> None:
    w = warnings(rule('evt.type = execve and proc.name = "tolower(proc.name)"'))
    assert any("'tolower(proc.name)' may be a valid field transformer misused as a const string "
               "value" in m for m in w), w
    assert not any("transformer misused" in m
                   for m in warnings(rule('evt.type = execve and proc.name = "tolower(x"')))


# ------------------------------------------------------------------------------ rule loader
_EXC_RULE = """- rule: r
  desc: d
  condition: evt.type = execve and proc.name startswith ba
  output: o
  priority: INFO
  exceptions:
"""


def test_transformers_in_exception_fields_and_values() -> None:
    # Falco 0.44.1 loads both; an unquoted value is parsed as written (a transformer compares
    # fields), only a value with a space is quoted
    res = loaded(_EXC_RULE + """    - name: e1
      fields: [tolower(proc.name), toupper(proc.pname)]
      values: [[bash, SSHD]]
    - name: e2
      fields: [proc.name]
      comps: [=]
      values: [[toupper(proc.name)]]
""")
    rs = res.ruleset
    assert not rs.match(event("execve", proc("bash", ancestors=[proc("sshd")])))   # e1
    assert rs.match(event("execve", proc("bash", ancestors=[proc("init")])))
    assert not rs.match(event("execve", proc("BASH")))        # e2: BASH = toupper(BASH)


def test_exception_value_with_parenthesis_is_a_syntax_error_as_in_falco() -> None:
    res = load(_EXC_RULE + """    - name: e1
      fields: [proc.name, proc.pname]
      values: [[x, "a(b"]]
""")
    assert not res.ok


def test_duplicate_exception_name_is_a_warning_and_both_apply() -> None:
    res = load(_EXC_RULE + """    - name: e1
      fields: [proc.name]
      values: [[bash]]
    - name: e1
      fields: [proc.pname]
      values: [[sshd]]
""")
    assert res.ok, [str(e) for e in res.errors]
    assert any("Multiple definitions of exception 'e1' in the same rule" in str(w)
               for w in res.warnings)
    rs = res.ruleset
    assert not rs.match(event("execve", proc("bash")))
    assert not rs.match(event("execve", proc("bax", ancestors=[proc("sshd")])))
    assert rs.match(event("execve", proc("bax", ancestors=[proc("init")])))


def test_list_name_with_spaces_is_substituted() -> None:
    res = load("- list: my list\n  items: [bash, zsh]\n" +
               rule("evt.type = execve and proc.name in (my list)"))
    assert res.ok, [str(e) for e in res.errors]
    assert [w.message for w in res.warnings] == [
        "List has an invalid name. List names should match a regular expression: "
        "([^()\"'[:space:]=,]+)"]
    assert res.ruleset.match(event("execve", proc("zsh")))


def test_capture_yes_and_padded_comps_load() -> None:
    res = loaded(_EXC_RULE.replace("  exceptions:\n", '  capture: "yes"\n  exceptions:\n') +
                 """    - name: e1
      fields: [proc.name]
      comps: ["  contains  "]
      values: [[as]]
""")
    assert res.compiled[0].capture is True
    assert not res.ruleset.match(event("execve", proc("bash")))
    assert res.ruleset.match(event("execve", proc("ba")))
    assert errors(rule("evt.type = execve", capture='"maybe"'))


def test_redefinition_with_another_source_is_falcos_error() -> None:
    errs = errors(rule("evt.type = execve") + rule("evt.type = execve", source="k8s_audit"))
    assert any("Rule has been re-defined with a different source" in e for e in errs), errs


def test_empty_source_is_falcos_error() -> None:
    errs = errors(rule("evt.type = execve") .replace("  priority", "  source:\n  priority"))
    assert any("Mapping for key 'source' is empty" in e for e in errs), errs


# ----------------------------------------------------------------------- transformer typing
def _with_fds() -> object:
    from falconet.state.tables import FdInfo  # noqa: PLC0415

    t = proc("cat")
    t.fds = {3: FdInfo(3, "f", "/etc/hosts"), 4: FdInfo(4, "4", "1.2.3.4:1->5.6.7.8:2")}
    return event("read", t)


def test_string_transformers_apply_to_each_value_of_a_list_field() -> None:
    # Falco 0.44.1 loads toupper/tolower/basename/b64 on fd.types; the result is a list
    e = _with_fds()
    assert matcher("toupper(fd.types) intersects (F)")(e) is True
    assert matcher("tolower(fd.types) intersects (F)")(e) is False
    assert matcher("len(toupper(fd.types)) = 2")(e) is True
    errs = errors(rule("toupper(fd.types) = F"))
    assert any("operator not supported" in m for m in errs), errs


@pytest.mark.parametrize("name", ["tolower", "toupper", "basename"])
def test_string_transformers_refuse_byte_buffers(name: str) -> None:
    errs = errors(rule(f"evt.type = read and {name}(evt.buffer) = x"))
    assert errs[0].endswith(f"can't add field transformer: type 'BYTEBUF' is not supported by "
                            f"'{name}' transformer applied on field 'evt.buffer'"), errs


def test_b64_and_len_take_byte_buffers() -> None:
    loaded(rule("evt.type = read and b64(evt.buffer) = x and len(evt.buffer) > 1"))


# ---------------------------------------------------------------------------- escapes
@pytest.mark.parametrize("cond, msg", [
    (r'proc.name = "a\x41"', r"unsupported string escape sequence: \x"),   # no \xHH in 0.44.1
    (r'proc.name = "a\q"', r"unsupported string escape sequence: \q"),
    (r"proc.name = 'a\"b'", "invalid \\\" escape in '-quoted string"),
    (r'proc.name = "a\'b"', "invalid \\' escape in \"-quoted string"),
])
def test_escape_errors_are_falcos(cond: str, msg: str) -> None:
    with pytest.raises(FilterSyntaxError) as ei:
        parse_condition(cond)
    assert str(ei.value).endswith(msg), str(ei.value)


def test_escaped_quote_and_backslash_make_one_string() -> None:
    node = parse_condition(r"proc.name = 'multiple escape single quote \' \\'")
    assert node.right.text == "multiple escape single quote ' \\"
