"""alertmatch: ``match:`` specs (rules, tags, priority threshold, condition over alert fields),
positions of errors, and values captured at render time (``load_rules(capture_fields=...)``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from falconet.alertmatch import AlertMatcher, MatchError, compile_match
from falconet.alerts import Alert
from falconet.config import load_config
from falconet.priorities import Priority
from rulehelp import REG, loaded, rule
from stubfields import event, proc


def alert(rule_name: str = "r", prio: Priority = Priority.CRITICAL, tags: list[str] | None = None,
          fields: dict | None = None, match_fields: dict | None = None) -> Alert:
    a = Alert(rule_name, prio, "syscall", sorted(tags or []), "out", dict(fields or {}), 1, "h")
    a.match_fields = dict(match_fields or {})
    return a


def test_empty_spec_matches_everything() -> None:
    for spec in (None, {}):
        m = compile_match(spec, REG)
        assert isinstance(m, AlertMatcher) and m(alert()) and m.fields == frozenset()


def test_rules_tags_and_priority_threshold() -> None:
    m = compile_match({"rules": ["a", "b"], "tags": "t1", "priority": ">=Critical"}, REG)
    assert m.rules == frozenset({"a", "b"}) and m.tags == frozenset({"t1"}) and m.priority == 2
    assert m(alert("a", Priority.CRITICAL, ["t0", "t1"]))
    assert m(alert("b", Priority.EMERGENCY, ["t1"]))
    assert not m(alert("c", Priority.CRITICAL, ["t1"]))          # other rule
    assert not m(alert("a", Priority.CRITICAL, ["t2"]))          # no listed tag
    assert not m(alert("a", Priority.ERROR, ["t1"]))             # less severe
    assert compile_match({"priority": "critical"}, REG)(alert(prio=Priority.ALERT))
    at_most = compile_match({"priority": "<=Notice"}, REG)
    assert at_most(alert(prio=Priority.DEBUG)) and at_most(alert(prio=Priority.NOTICE))
    assert not at_most(alert(prio=Priority.WARNING))


def test_condition_reads_captured_values_then_output_fields() -> None:
    m = compile_match({"condition": "container.id != host and k8s.ns.name != kube-system"}, REG)
    assert m.fields == frozenset({"container.id", "k8s.ns.name"})
    assert m(alert(fields={"container.id": "abc"}, match_fields={"k8s.ns.name": "prod"}))
    assert not m(alert(fields={"container.id": "host"}, match_fields={"k8s.ns.name": "prod"}))
    assert not m(alert(match_fields={"container.id": "abc", "k8s.ns.name": "kube-system"}))
    # a missing value makes the comparison false, as in Falco (internal alerts have none)
    assert not m(alert(match_fields={"container.id": "abc"}))
    assert not m(alert())


def test_condition_operators_and_ancestors() -> None:
    m = compile_match({"condition": "proc.pid > 100 and proc.aname in (sshd, bash)"}, REG)
    assert m(alert(match_fields={"proc.pid": 101, "proc.aname": ("init", "sshd")}))
    assert not m(alert(match_fields={"proc.pid": 101, "proc.aname": ("init",)}))
    # output_fields hold JSON values (lists): they are read as tuples
    assert m(alert(fields={"proc.pid": 200, "proc.aname": ["bash"]}))


def test_a_check_that_raises_is_no_match_and_counted() -> None:
    m = compile_match({"condition": "proc.pid > 100"}, REG)
    assert not m(alert(match_fields={"proc.pid": "not a number"}))
    assert m.stats.errors == 1 and "TypeError" in m.stats.last_error


@pytest.mark.parametrize("spec, expected", [
    ({"rule": "x"}, "<config>: error: match: unknown key 'rule' (allowed: rules, tags, priority, "
                    "condition)"),
    ({"priority": ">=Severe"}, "<config>: error: match.priority: expected a priority threshold "
                               "like '>=Critical'"),
    ({"rules": []}, "<config>: error: match.rules: expected a name or a non-empty list of names"),
    ({"tags": [1]}, "<config>: error: match.tags: expected a name or a non-empty list of names"),
    ({"condition": 3}, "<config>: error: match.condition: expected a Falco filter condition"),
    ({"condition": "proc.nope = 1"}, "<config>: error: match.condition: filter_check called with "
                                     "nonexistent field proc.nope"),
    ({"condition": "proc.name = "}, "<config>: error: match.condition: "),
])
def test_bad_specs_say_what_is_expected(spec: dict, expected: str) -> None:
    with pytest.raises(MatchError) as e:
        compile_match(spec, REG)
    assert e.value.problems[0].startswith(expected), e.value.problems


def test_every_problem_is_reported_with_marks() -> None:
    with pytest.raises(MatchError) as e:
        compile_match({"priority": "x", "condition": "proc.nope = 1"}, REG, where="f.yaml",
                      marks={"priority": (3, 15), "condition": (4, 18)})
    assert e.value.problems[0].startswith("f.yaml:3:15: error: match.priority:")
    assert e.value.problems[1].startswith("f.yaml:4:18: error: match.condition: filter_check "
                                          "called with nonexistent field proc.nope")


def test_errors_in_falconet_yaml_point_into_the_condition(tmp_path: Path) -> None:
    p = tmp_path / "falconet.yaml"
    p.write_text("responses:\n"
                 "  - name: a\n"
                 "    match:\n"
                 "      priority: '>=Bad'\n"
                 "      condition: proc.name = x and proc.nope = 1\n"
                 "      tag: [x]\n"
                 "    actions: [{action: kill}]\n")
    from falconet.config import read_yaml
    data, _marks = read_yaml(str(p))
    spec = data["responses"][0]["match"]
    with pytest.raises(MatchError) as e:
        compile_match(spec, REG)
    assert e.value.problems == [
        f"{p}:6:7: error: match: unknown key 'tag' (allowed: rules, tags, priority, condition)",
        f"{p}:4:17: error: match.priority: expected a priority threshold like '>=Critical', "
        "'Critical' or '<=Notice' (priorities: emergency, alert, critical, error, warning, "
        "notice, informational, debug), got '>=Bad'",
        f"{p}:5:36: error: match.condition: filter_check called with nonexistent field proc.nope",
    ]
    p.write_text("responses:\n  - match:\n      condition: |\n        proc.name = x and\n"
                 "        (proc.pid = \n")
    data, _marks = read_yaml(str(p))
    with pytest.raises(MatchError) as e:
        compile_match(data["responses"][0]["match"], REG)
    assert e.value.problems[0].startswith(f"{p}:5:22: error: match.condition: expected")


def test_located_sections_survive_config_validation(tmp_path: Path) -> None:
    p = tmp_path / "falconet.yaml"
    p.write_text("priority: warning\n")
    assert load_config(str(p))["priority"] == "warning"


def test_capture_fields_fill_match_fields_at_render_time() -> None:
    text = rule("evt.type = openat", name="a", output="opened by %proc.name")
    res = loaded(text, capture_fields=["proc.pid", "k8s.ns.name", "ka.user.name", "proc.aname[1]"])
    t = proc("cat", pid=42, ancestors=[proc("bash", pid=7)], container={"ns": "prod"})
    (a,) = res.ruleset.match(event("openat", t))
    # tokens of other sources (k8s_audit's ka.*) are skipped; values are raw, not JSON
    assert a.match_fields == {"proc.pid": 42, "k8s.ns.name": "prod", "proc.aname[1]": "bash"}
    m = compile_match({"condition": "k8s.ns.name = prod and proc.pid = 42"}, REG)
    assert m(a)
    assert loaded(text).ruleset.match(event("openat", t))[0].match_fields == {}
