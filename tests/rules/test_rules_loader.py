"""Loader features: items, override/append, exceptions, versions, messages with locations."""

from __future__ import annotations

import textwrap

import pytest
from falconet.priorities import Priority
from falconet.rules.loader import exception_condition, substitute_lists
from falconet.state.tables import FdInfo
from rulehelp import errors, load, loaded, rule, warnings
from stubfields import event, proc


def y(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def names(res) -> list[str]:
    return [r.name for r in res.rules]


def cond_of(res, name: str) -> str:
    return next(r.condition for r in res.compiled if r.name == name)


BASE = y("""
    - list: shells
      items: [bash, sh]
    - macro: spawned
      condition: evt.type in (execve, execveat)
    - rule: Shell
      desc: a shell
      condition: spawned and proc.name in (shells)
      output: shell %proc.name
      priority: WARNING
      tags: [shell, b, a]
""")


def ex(comm: str = "bash", **kw):
    return event("execve", proc(comm, **kw))


# ------------------------------------------------------------------------------ basics
def test_counts_and_basic_match() -> None:
    res = loaded(BASE)
    assert res.counts == {"rules": 1, "macros": 1, "lists": 1}
    assert len(res.ruleset.match(ex())) == 1
    assert res.ruleset.match(ex("zsh")) == []
    r = res.rules[0]
    assert (r.name, r.priority, r.source, r.tags, r.enabled) == \
        ("Shell", Priority.WARNING, "syscall", ["a", "b", "shell"], True)
    assert r.event_types == ["execve", "execveat"]


def test_lists_nest_earlier_lists_and_substitute_anywhere() -> None:
    res = loaded(y("""
        - list: a
          items: [x1]
        - list: b
          items: [a, x2, "with space"]
        - rule: R
          desc: d
          condition: evt.type = execve and proc.name in (b) or proc.name = a
          output: o
          priority: INFO
    """))
    assert res.ruleset.match(ex("x1")) and res.ruleset.match(ex("x2"))
    assert res.ruleset.match(ex("with space"))
    assert not res.ruleset.match(ex("a"))           # 'a' itself was substituted


def test_list_substitution_text() -> None:
    used: set[str] = set()
    lists = {"l": ["a", "b c"], "empty": []}
    assert substitute_lists("x.y in (l)", lists, used) == 'x.y in (a, "b c")'
    assert substitute_lists("x.y in (q, empty)", lists, used) == "x.y in (q)"
    assert substitute_lists("x.y in (empty, q)", lists, used) == "x.y in ( q)"
    assert substitute_lists("x.y in (empty)", lists, used) == "x.y in ()"
    assert substitute_lists("x.y=l", lists, used) == 'x.y=a, "b c"'
    assert substitute_lists("x.ly in (ll)", lists, used) == "x.ly in (ll)"
    assert used == {"l", "empty"}


def test_list_defined_after_use_is_substituted() -> None:
    res = loaded(y("""
        - rule: R
          desc: d
          condition: evt.type = execve and proc.name in (late)
          output: o
          priority: INFO
        - list: late
          items: [zsh]
    """))
    assert res.ruleset.match(ex("zsh"))


def test_macro_sees_only_earlier_macros_rules_see_all() -> None:
    errs = errors(y("""
        - macro: m1
          condition: m2
        - macro: m2
          condition: proc.name = x
    """))
    assert any("macro 'm1': Undefined macro 'm2' used in filter." in e for e in errs)
    res = loaded(y("""
        - rule: R
          desc: d
          condition: evt.type = execve and m_late
          output: o
          priority: INFO
        - macro: m_late
          condition: proc.name = late
    """))
    assert res.ruleset.match(ex("late"))


def test_macro_precedence_is_a_group() -> None:
    # m = a or b; "m and c" must be "(a or b) and c"
    res = loaded(y("""
        - macro: m
          condition: proc.name = a or proc.name = b
        - rule: R
          desc: d
          condition: evt.type = execve and m and user.uid = 5
          output: o
          priority: INFO
    """))
    assert not res.ruleset.match(ex("a", uid=0))
    assert res.ruleset.match(ex("b", uid=5))


# ------------------------------------------------------------------------------ override/append
def test_override_append_and_replace() -> None:
    res = loaded([BASE, y("""
        - list: shells
          items: [zsh]
          override:
            items: append
        - macro: spawned
          condition: or evt.type = clone
          override:
            condition: append
        - rule: Shell
          condition: and user.uid = 0
          output: "uid=%user.uid"
          priority: ERROR
          tags: [extra]
          override:
            condition: append
            output: append
            priority: replace
            tags: append
    """)])
    r = res.rules[0]
    assert r.priority == Priority.ERROR and r.tags == ["a", "b", "extra", "shell"]
    assert "clone" in r.event_types
    assert res.ruleset.match(ex("zsh", uid=0))
    assert not res.ruleset.match(ex("zsh", uid=1))
    alert = res.ruleset.match(ex("zsh", uid=0))[0]
    assert alert.output == "shell zsh uid=0"


def test_macro_append_is_plain_concatenation() -> None:
    res = loaded([BASE, y("""
        - macro: spawned
          condition: and proc.name = bash
          override:
            condition: append
    """)])
    # flat text "evt.type in (...) and proc.name = bash": precedence of the flat result
    assert res.ruleset.match(ex("bash")) and not res.ruleset.match(ex("sh"))


def test_deprecated_append_warns_and_works() -> None:
    res = load([BASE, y("""
        - rule: Shell
          condition: and user.uid = 0
          append: true
        - list: shells
          items: [zsh]
          append: true
    """)])
    assert res.ok
    assert sum("'append' key is deprecated" in str(w) for w in res.warnings) == 2
    assert res.ruleset.match(ex("zsh", uid=0)) and not res.ruleset.match(ex("zsh", uid=3))


def test_redefinition_replaces_but_keeps_position() -> None:
    two = BASE + rule("evt.type = execve", name="Second", output="second")
    res = loaded([two, rule("evt.type = execve and proc.name = bash", name="Shell",
                            output="redefined")])
    assert names(res) == ["Shell", "Second"]
    # rule_matching first: the earliest rule by position wins
    assert res.ruleset.match(ex("bash"))[0].output == "redefined"
    assert res.ruleset.match(ex("zsh"))[0].output == "second"


def test_enabled_override_and_legacy_form() -> None:
    res = loaded([BASE, y("""
        - rule: Shell
          enabled: false
          override:
            enabled: replace
    """)])
    assert res.rules[0].enabled is False and res.ruleset.match(ex()) == []
    res = load([BASE, "- rule: Shell\n  enabled: false\n"])
    assert res.ok and res.rules[0].enabled is False
    assert any("standalone 'enabled' key usage is deprecated" in str(w) for w in res.warnings)
    assert any("Rule has 'enabled' key but no rule by that name already exists" in e
               for e in errors("- rule: Nope\n  enabled: false\n"))


def test_disabled_rules_are_still_compiled() -> None:
    errs = errors(rule("proc.nosuch = 1", enabled="false"))
    assert any("nonexistent field proc.nosuch" in e for e in errs)


@pytest.mark.parametrize("extra, msg", [
    ("- rule: Nope\n  condition: and x\n  override:\n    condition: append\n",
     "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists"),
    ("- rule: Nope\n  priority: INFO\n  override:\n    priority: replace\n",
     "An 'override.<key>: replace' to a rule was requested but no rule by that name already exists"),
    ("- rule: Shell\n  priority: INFO\n  override:\n    priority: append\n",
     "Key 'priority' cannot be appended to, use 'replace' instead"),
    ("- rule: Shell\n  source: x\n  override:\n    source: replace\n",
     "Key 'source' cannot be replaced"),
    ("- rule: Shell\n  desc: x\n  override:\n    desc: merge\n",
     "Invalid override operation for key 'desc': 'merge'. Allowed values are: append replace "),
    ("- rule: Shell\n  override:\n    desc: replace\n",
     "An replace override for 'desc' was specified but 'desc' is not defined"),
    ("- rule: Shell\n  desc: x\n  priority: INFO\n  override:\n    desc: replace\n",
     "Unexpected key 'priority': no corresponding entry under 'override' is defined."),
    ("- rule: Shell\n  condition: x\n  append: true\n  override:\n    condition: append\n",
     "Keys 'override' and 'append: true' cannot be used together."),
    ("- macro: nope\n  condition: x\n  override:\n    condition: append\n",
     "Macro uses 'append' or 'override.condition: append' but no macro by that name already exists"),
    ("- list: nope\n  items: [x]\n  override:\n    items: append\n",
     "List uses 'append' or 'override.items: append' but no list by that name already exists"),
    ("- rule: Shell\n  source: k8s_audit\n  condition: and x\n  append: true\n",
     "Rule has been re-defined with a different source"),
    ("- rule: Shell\n  desc: x\n  append: true\n",
     "Appended rule must have exceptions or condition property"),
])
def test_override_errors(extra: str, msg: str) -> None:
    errs = errors([BASE, extra], sources=["syscall", "k8s_audit"])
    assert any(msg in e for e in errs), errs


def test_macro_and_list_replace_without_previous_definition() -> None:
    res = loaded(y("""
        - macro: m
          condition: proc.name = x
          override:
            condition: replace
        - list: l
          items: [a]
          override:
            items: replace
    """) + rule("evt.type = execve and m and proc.name in (l)"))
    assert res.counts["macros"] == 1


# ------------------------------------------------------------------------------ exceptions
EXC_RULE = y("""
    - rule: Write below etc
      desc: d
      condition: evt.type = openat and fd.name startswith /etc
      output: "%proc.name wrote %fd.name"
      priority: ERROR
      exceptions:
        - name: proc_writer
          fields: [proc.name, fd.directory]
          comps: [=, in]
          values:
            - [my-yum, /etc/yum]
            - [apt, [/etc/apt, /etc/dpkg]]
        - name: filenames
          fields: fd.filename
          comps: in
          values: [hosts, "with space"]
        - name: names_only
          fields: [proc.name]
          values: []
""")


def op(comm: str, path: str):
    return event("openat", proc(comm), fd=FdInfo(3, "f", path))


def test_exceptions_semantics() -> None:
    res = load(EXC_RULE)
    assert res.ok, [str(e) for e in res.errors]
    m = res.ruleset.match
    assert m(op("vi", "/etc/passwd"))
    assert not m(op("my-yum", "/etc/yum/x.conf"))
    assert m(op("my-yum", "/etc/apt/x"))
    assert not m(op("vi", "/etc/hosts"))                 # scalar form: fd.filename in (...)
    assert not m(op("vi", "/etc/with space"))


def test_exceptions_with_list_comp_and_nested_values() -> None:
    res = loaded(y("""
        - list: trusted
          items: [apt, dpkg]
        - rule: R
          desc: d
          condition: evt.type = openat
          output: o
          priority: ERROR
          exceptions:
            - name: e1
              fields: [proc.name, fd.name]
              comps: [in, pmatch]
              values:
                - [trusted, [/etc/apt, /var/lib/dpkg]]
                - [vi, /tmp]
    """))
    m = res.ruleset.match
    assert not m(op("dpkg", "/var/lib/dpkg/status"))
    assert m(op("dpkg", "/etc/passwd"))
    assert not m(op("vi", "/tmp/x"))


def test_exception_condition_text() -> None:
    from falconet.rules.loader import ExceptionItem, Location
    e = ExceptionItem("x", ["proc.cmdline"], ["contains"], [["curl 127.0.0.1"]], Location("f"))
    assert exception_condition(e) == ' and not (( proc.cmdline contains "curl 127.0.0.1"))'
    e2 = ExceptionItem("y", "proc.name", "in", ["a", "b"], Location("f"))
    assert exception_condition(e2) == " and not proc.name in (a, b)"
    assert exception_condition(ExceptionItem("z", "proc.name", "in", [], Location("f"))) == ""


def test_exception_append_values_and_errors() -> None:
    res = loaded([EXC_RULE, y("""
        - rule: Write below etc
          exceptions:
            - name: proc_writer
              values:
                - [vi, /etc]
          override:
            exceptions: append
    """)])
    assert not res.ruleset.match(op("vi", "/etc/passwd"))
    errs = errors([EXC_RULE, y("""
        - rule: Write below etc
          exceptions:
            - name: proc_writer
              fields: [proc.name]
              values: [[x]]
          override:
            exceptions: append
    """)])
    assert any("Can not append exception fields to existing exception, only values" in e
               for e in errs)
    ws = warnings([EXC_RULE, y("""
        - rule: Write below etc
          exceptions:
            - name: proc_writer
          override:
            exceptions: append
    """)])
    assert any("Overriding/appending exception with no values" in w for w in ws)


def test_exceptions_replace() -> None:
    res = loaded([EXC_RULE, y("""
        - rule: Write below etc
          exceptions:
            - name: only
              fields: proc.name
              values: [vi]
          override:
            exceptions: replace
    """)])
    assert not res.ruleset.match(op("vi", "/etc/passwd"))
    assert res.ruleset.match(op("my-yum", "/etc/yum/x"))     # old exceptions are gone


@pytest.mark.parametrize("exc, msg", [
    ("fields: [proc.name, fd.name]\n      comps: [=]\n      values: [[a, b]]",
     "Fields and comps lists must have equal length"),
    ("fields: [proc.name]\n      comps: [frobulate]\n      values: [[a]]",
     "'frobulate' is not a supported comparison operator"),
    ("fields: [proc.nosuch]\n      values: [[a]]", "'proc.nosuch' is not a supported filter field"),
    ("fields: proc.name\n      comps: [in]\n      values: [a]",
     "Fields and comps must both be strings"),
    ("fields: proc.name\n      comps: '='\n      values: [a]",
     "When fields is a single value, comps must be one of (in, pmatch, intersects)"),
    ("fields: [proc.name, fd.name]\n      values: [[a]]",
     "Fields and values lists must have equal length"),
    ("values: [[a]]", "Item has no mapping for key 'fields'"),
])
def test_exception_validation(exc: str, msg: str) -> None:
    text = y("""
        - rule: R
          desc: d
          condition: evt.type = openat
          output: o
          priority: ERROR
          exceptions:
            - name: e
              EXC
    """).replace("EXC", exc)
    errs = errors(text)
    assert any(msg in e for e in errs), errs


def test_exception_modifier_comp() -> None:
    res = loaded(y("""
        - rule: R
          desc: d
          condition: evt.type = openat
          output: o
          priority: ERROR
          exceptions:
            - name: e
              fields: fd.name
              comps: startswith oneof
              values: [/tmp, /var]
    """))
    assert not res.ruleset.match(op("x", "/tmp/a")) and res.ruleset.match(op("x", "/etc/a"))


# ------------------------------------------------------------------------------ messages
def test_error_locations_and_format() -> None:
    text = y("""
        - rule: Bad
          desc: d
          condition: proc.name = a andb
          output: o
          priority: INFO
    """)
    res = load(("bad.yaml", text) and [("bad.yaml", text)])
    e = res.errors[0]
    assert (e.file, e.line, e.col) == ("bad.yaml", 3, 31)
    assert e.item_type == "rule" and e.item_name == "Bad"
    assert e.code == "LOAD_ERR_COMPILE_CONDITION"
    assert str(e) == ("bad.yaml:3:31: error: rule 'Bad': filter error at 17: expected blank or "
                      "'(' after 'and'")


def test_error_location_in_block_scalar() -> None:
    text = y("""
        - macro: m
          condition: >
            proc.name = a and
            proc.name in (x, ,)
    """)
    res = load([("m.yaml", text)])
    e = res.errors[0]
    assert (e.line, e.col) == (4, 22) and "expected a list value" in e.message


@pytest.mark.parametrize("text, msg, line", [
    ("- rule: R\n  desc: d\n  condition: evt.type=open\n  output: o\n",
     "Item has no mapping for key 'priority'", 1),
    ("- rule: R\n  desc: d\n  condition: evt.type=open\n  output: o\n  priority: LOUD\n",
     "Invalid priority", 5),
    ("- rule: R\n  desc:\n  condition: evt.type=open\n  output: o\n  priority: INFO\n",
     "Mapping for key 'desc' is empty", 2),
    ("- rule: R\n  desc: ''\n  condition: evt.type=open\n  output: o\n  priority: INFO\n",
     "Value must be non-empty", 2),
    ("rule: x\n", "Rules content is not yaml array of objects", 1),
    ("- [a, b]\n", "Unexpected element type. Each element should be a yaml associative array.", 1),
    ("- rule: [unclosed\n", "Invalid YAML", 2),
    ("- list: l\n", "Item has no mapping for key 'items'", 1),
    ("- macro: m\n", "Item has no mapping for key 'condition'", 1),
    ("- required_engine_version: 99.0.0\n", "Rules require engine version 99.0.0, but engine "
     "version is 0.63.0", 1),
    ("- required_engine_version: banana\n", "Unable to parse engine version 'banana' as a semver "
     "string. Expected \"x.y.z\" semver format.", 1),
])
def test_validation_errors(text: str, msg: str, line: int) -> None:
    res = load([("f.yaml", text)])
    assert not res.ok
    assert any(msg in e.message and e.line == line for e in res.errors), [str(e) for e in res.errors]


def test_engine_version_forms() -> None:
    assert load("- required_engine_version: 57\n").ok
    assert load("- required_engine_version: 0.57.0\n").ok
    assert not load("- required_engine_version: 64\n").ok


def test_plugin_versions() -> None:
    req = y("""
        - required_plugin_versions:
            - name: container
              version: 0.4.0
              alternatives:
                - name: other
                  version: 1.0.0
    """)
    assert load(req, plugin_versions={"container": "0.6.0"}).ok
    assert load(req, plugin_versions={"other": "1.2.0"}).ok
    assert load(req).ok                                    # no plugin information: not checked
    res = load(req, plugin_versions={"container": "0.3.9"})
    assert [e.message for e in res.errors] == [
        "Plugin requirement not satisfied, must load one of: container (>= 0.4.0), other (>= 1.0.0)"]
    res = load(req, plugin_versions={"container": "1.0.0"})          # major version differs
    assert not res.ok
    dup = req.replace("name: other", "name: container")
    assert any("Defined multiple alternative version requirements for plugin 'container'" in e
               for e in errors(dup, plugin_versions={}))


def test_warnings() -> None:
    text = y("""
        - list: unused_list
          items: [a]
        - macro: unused_macro
          condition: proc.name = a
        - something: else
        - rule: R
          desc: d
          condition: proc.name = a
          output: o
          priority: INFO
          frobnicate: 1
    """)
    ws = warnings(text)
    for msg in ("List not referred to by any other rule/macro",
                "Macro not referred to by any other rule/macro", "Unknown top level item",
                "Unknown key 'frobnicate'. The key will be ignored.",
                "Rule matches too many evt.type values. This has a significant performance "
                "penalty."):
        assert any(msg in w for w in ws), (msg, ws)
    assert not any("too many" in w for w in warnings(rule("proc.name = a", warn_evttypes="false")))
    assert not any("too many" in w for w in warnings(rule("evt.num = 0")))


def test_invalid_names_warn() -> None:
    ws = warnings(y("""
        - macro: 1bad
          condition: proc.name = a
        - list: "bad name"
          items: [a]
    """))
    assert any("Macro has an invalid name" in w for w in ws)
    assert any("List has an invalid name" in w for w in ws)


def test_skip_if_unknown_filter() -> None:
    res = load(rule("proc.nosuch = 1", skip_if_unknown_filter="true")
               + rule("evt.type = execve", name="ok"))
    assert res.ok and names(res) == ["ok"]
    assert any(w.code == "LOAD_UNKNOWN_FILTER" for w in res.warnings)
    res = load(rule("evt.type = execve", output="%proc.nosuch", skip_if_unknown_filter="true"))
    assert res.ok and names(res) == []


def test_unknown_source_is_skipped_with_warning() -> None:
    res = load(rule("ka.verb = get", source="k8s_audit") + rule("evt.type = execve", name="s"))
    assert res.ok and names(res) == ["s"]
    assert any("Unknown source k8s_audit, skipping" in str(w) for w in res.warnings)


def test_min_priority_and_rule_matching() -> None:
    text = (rule("evt.type = execve", name="warn", prio="WARNING")
            + rule("evt.type = execve", name="crit", prio="CRITICAL")
            + rule("evt.type = execve", name="dbg", prio="DEBUG"))
    res = loaded(text, min_priority=Priority.WARNING)
    assert [a.rule for a in res.ruleset.match(ex())] == ["warn"]
    res = loaded(text, min_priority=Priority.WARNING, rule_matching="all")
    assert [a.rule for a in res.ruleset.match(ex())] == ["warn", "crit"]
    res = loaded(text, rule_matching="all")
    assert [a.rule for a in res.ruleset.match(ex())] == ["warn", "crit", "dbg"]


def test_files_on_disk_and_directories(tmp_path) -> None:
    from falconet.rules import load_rules
    from rulehelp import REG
    d = tmp_path / "rules.d"
    d.mkdir()
    (d / "10-base.yaml").write_text(BASE)
    (d / "20-local.yaml").write_text("- list: shells\n  items: [fish]\n  override:\n    items: append\n")
    (d / "notes.txt").write_text("ignored")
    res = load_rules([d], REG)
    assert res.ok and res.ruleset.match(ex("fish"))
    assert res.ruleset.match(ex("fish"))[0].ruleset == "10-base.yaml"
    res = load_rules([tmp_path / "missing.yaml"], REG)
    assert not res.ok and res.errors[0].code == "LOAD_ERR_FILE_READ"


def test_capture_keys() -> None:
    res = loaded(rule("evt.type = execve", capture="true", capture_duration=200))
    assert res.compiled[0].capture is True and res.compiled[0].capture_duration_ns == 200_000_000


def test_yaml_is_loaded_safely() -> None:
    errs = errors("- rule: !!python/object/apply:os.system ['true']\n")
    assert any("Invalid YAML" in e or "could not determine a constructor" in e for e in errs)


def test_yaml_aliases_are_shared_not_expanded() -> None:
    bomb = "- list: a\n  items: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(20):                      # 10**20 items if aliases were expanded
        bomb += f"- list: l{i}\n  items: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, " \
                f"*{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = f"l{i}"
    res = load(bomb)
    assert not res.ok and "aliases expand to more than 500000 YAML nodes" in res.errors[0].message
    cyc = load("- list: c\n  items: &c [a, *c]\n")
    assert not cyc.ok


@pytest.mark.parametrize("text, line, col, words", [
    # an unclosed quote: the parser fails at the end of the file; the message says where it began
    ('- rule: R\n  desc: d\n  output: "o\n  priority: INFO\n',
     5, 1, "while scanning a quoted scalar started at line 3 column 11"),
    ("- rule: R\n  desc: [a, b\n  condition: evt.type=open\n",
     3, 12, "while parsing a flow sequence started at line 2 column 9"),
    # a forbidden character has no parser mark, only an offset: still a real line and column
    ("- rule: R\n  desc: ok\x01\n", 2, 11, "special characters are not allowed (character #x0001)"),
])
def test_yaml_errors_point_at_line_column_with_context(text: str, line: int, col: int,
                                                       words: str) -> None:
    res = load([("f.yaml", text)])
    assert not res.ok
    e = res.errors[0]
    assert "Invalid YAML" in e.message and words in e.message, str(e)
    assert (e.line, e.col) == (line, col), str(e)


@pytest.mark.parametrize("text, words", [
    ("- macro: a\n  condition: a\n", "(a macro cannot use itself)"),
    ("- macro: a\n  condition: b\n- macro: b\n  condition: evt.type = open\n",
     "(macro 'b' is defined later, at f.yaml:4; a macro can only use macros defined before it)"),
    # a loop a -> b -> a cannot form: the first use is already a use of a later macro
    ("- macro: a\n  condition: b\n- macro: b\n  condition: a\n", "is defined later"),
])
def test_undefined_macro_says_why_when_the_macro_exists(text: str, words: str) -> None:
    res = load([("f.yaml", text + "- rule: R\n  desc: d\n  condition: evt.type = open and a\n"
                                  "  output: o\n  priority: INFO\n")])
    assert not res.ok
    msgs = [e.message for e in res.errors]
    assert any("Undefined macro" in m and words in m for m in msgs), msgs
    # the rule using the broken macro points at the macro's own error instead of repeating it
    assert any(m.startswith("Undefined macro 'a'") and "has errors" in m for m in msgs), msgs


def test_undefined_macro_that_does_not_exist_keeps_falco_wording() -> None:
    res = load([("f.yaml", "- rule: R\n  desc: d\n  condition: evt.type = open and nope\n"
                           "  output: o\n  priority: INFO\n")])
    assert [e.message for e in res.errors] == ["Undefined macro 'nope' used in filter."]


@pytest.mark.parametrize("text, line, col", [
    ("- rule: R\n  desc: d\n  condition: evt.type = open\n  output: o %proc.bogus\n"
     "  priority: INFO\n", 4, 13),
    # a folded output: the line and column of the token, not of the rule
    ("- rule: R\n  desc: d\n  condition: evt.type = open\n  output: >\n    o %proc.name\n"
     "    and %proc.bogus there\n  priority: INFO\n", 6, 9),
    # an output replaced by an override: the replacing text is where the error is
    ("- rule: R\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: INFO\n"
     "- rule: R\n  output: now %proc.bogus\n  override:\n    output: replace\n", 7, 15),
])
def test_unknown_output_field_points_at_the_token(text: str, line: int, col: int) -> None:
    res = load([("f.yaml", text)])
    assert not res.ok
    e = res.errors[0]
    assert "nonexistent field proc.bogus" in e.message, str(e)
    assert (e.line, e.col) == (line, col), str(e)


def test_duplicate_key_is_a_warning_with_its_location() -> None:
    """safe_load keeps the last value: a second `condition:` silently replaces the first."""
    res = load([("f.yaml", "- rule: R\n  desc: d\n  condition: evt.type = open\n"
                           "  condition: evt.type = close\n  output: o\n  priority: INFO\n"
                           "  exceptions:\n    - name: e\n      fields: proc.name\n"
                           "      fields: proc.pname\n      values: [a]\n")])
    assert res.ok, [str(e) for e in res.errors]
    dups = [w for w in res.warnings if w.code == "LOAD_DUPLICATE_KEY"]
    assert [(w.line, w.col) for w in dups] == [(4, 3), (10, 7)], [str(w) for w in dups]
    assert str(dups[0]).endswith("warning: rule 'R': Duplicate key 'condition': only its last "
                                 "value is used")


def test_a_file_that_is_not_utf8_points_at_the_bad_byte(tmp_path) -> None:
    from falconet.rules import load_rules  # noqa: PLC0415
    from rulehelp import REG  # noqa: PLC0415

    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"- rule: R\n  desc: caf\xe9\n")
    res = load_rules([p], REG, plugin_versions={}, append_output=[])
    assert not res.ok
    e = res.errors[0]
    assert (e.line, e.col) == (2, 12), str(e)
    assert "not UTF-8 text (byte 0xe9" in e.message


# ------------------------------------------------------------------------------ <strop> oneof list
def test_modifier_followed_by_a_list_name_takes_the_whole_list() -> None:
    lists = {"pfx": ["ba", "z s"], "empty": []}
    used: set[str] = set()
    assert substitute_lists("x.y startswith oneof pfx", lists, used) == \
        'x.y startswith oneof (ba, "z s")'
    assert substitute_lists("x.y contains allof\n  pfx and x.z in (pfx)", lists, used) == \
        'x.y contains allof\n  (ba, "z s") and x.z in (ba, "z s")'
    assert substitute_lists("x.y endswith anyof empty", lists, used) == "x.y endswith anyof ()"
    assert substitute_lists("x.y startswith oneof (pfx)", lists, used) == \
        'x.y startswith oneof (ba, "z s")'
    assert substitute_lists("x.y = xoneof pfx", lists, used) == 'x.y = xoneof ba, "z s"'
    assert used == {"pfx", "empty"}


def test_strop_modifier_list_name_matches() -> None:
    from rulehelp import matcher
    lists = y("""
        - list: shells
          items: [ba, zs]
        - list: more
          items: [shells, ks]
        - list: nothing
          items: []
    """)
    e = event("execve", proc("bash"))
    assert matcher("proc.name startswith oneof shells", prefix=lists)(e) is True
    assert matcher("proc.name startswith anyof more", prefix=lists)(e) is True
    assert matcher("proc.name contains allof shells", prefix=lists)(e) is False
    assert matcher("proc.name startswith oneof nothing", prefix=lists)(e) is False
    assert matcher("not proc.name startswith oneof more", prefix=lists)(event("execve",
                                                                               proc("ksh"))) is False
    res = loaded(lists + rule("proc.name startswith oneof more"))
    assert not any("List not referred to" in str(w) and "'more'" in str(w) for w in res.warnings)


def test_strop_modifier_unknown_list_name_is_an_error_with_location() -> None:
    errs = errors(rule("proc.name startswith oneof no_such_list"))
    assert errs == ["<rules>:3:14: error: rule 'r': filter error: unexpected identifier "
                    "'no_such_list'"]


def test_a_rules_directory_contributes_its_yaml_files_in_name_order(tmp_path) -> None:
    from falconet.rules import rules_files_in  # noqa: PLC0415

    d = tmp_path / "rules.d"
    d.mkdir()
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (d / name).write_text("[]\n")
    (d / "sub.yaml").mkdir()                                  # a directory is not a rules file
    (d / "c.yaml").symlink_to(tmp_path / "missing.yaml")      # kept: loading must report it
    single = tmp_path / "one.yaml"
    assert rules_files_in([single, d]) == [str(single), str(d / "a.yml"), str(d / "b.yaml"),
                                           str(d / "c.yaml")]
