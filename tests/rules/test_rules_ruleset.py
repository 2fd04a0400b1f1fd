"""Ruleset: indexing by event type, alerts, output formats, append_output, error isolation."""

from __future__ import annotations

import pytest
from falconet.alerts import Alert
from falconet.fields.registry import FieldDef, FieldRegistry, FieldType
from falconet.priorities import Priority
from falconet.rules import load_rules_text
from falconet.rules.parser import parse_condition
from falconet.rules.resolvers import event_types
from falconet.state.tables import FdInfo
from rulehelp import REG, errors, load, loaded, rule, warnings
from stubfields import event, proc

U = frozenset({"open", "openat", "execve", "execveat", "connect", "clone", "read"})


@pytest.mark.parametrize("cond, expected", [
    ("evt.type = open", {"open"}),
    ("evt.type in (open, execve)", {"open", "execve"}),
    ("evt.type != open", U - {"open"}),
    ("not evt.type = open", U - {"open"}),
    ("not evt.type != open", {"open"}),
    ("evt.type = open and proc.name = x", {"open"}),
    ("evt.type = open or proc.name = x", U),
    ("not (evt.type = open or evt.type = read)", U - {"open", "read"}),
    ("not (evt.type = open and proc.name = x)", U),
    ("evt.type in (open, read) and not evt.type = read", {"open"}),
    ("(evt.type = open or evt.type = execve) and evt.type in (execve, clone)", {"execve"}),
    ("proc.name = x", U), ("not proc.name = x", U),
    ("evt.type exists", U), ("not evt.type exists", set()),
    # evt.num is neutral (Falco 0.44.1 --dry-run: "syscalls in rules")
    ("evt.num = 0", U), ("not evt.num = 0", U), ("evt.num >= 1", U), ("evt.num in (0)", U),
    ("evt.num in ()", U), ("evt.num = -1", U),
    ("evt.type = open and evt.num = 0", {"open"}), ("evt.type = open and evt.num in ()", {"open"}),
    ("evt.type = open or evt.num = 0", U),
    ("syscall.type = execve", {"execve"}),
])
def test_event_type_set_algebra(cond: str, expected: set[str]) -> None:
    assert event_types(parse_condition(cond), U) == expected


def test_index_and_event_types() -> None:
    text = (rule("evt.type = openat and fd.name = /a", name="open")
            + rule("evt.type in (execve, execveat)", name="exec")
            + rule("proc.name = special", name="any", warn_evttypes="false"))
    res = loaded(text)
    rs = res.ruleset
    assert rs.event_types("syscall") is None                     # 'any' has no restriction
    assert [r.name for r in rs.rules_for("syscall", "openat")] == ["open", "any"]
    assert [r.name for r in rs.rules_for("syscall", "execve")] == ["exec", "any"]
    assert [r.name for r in rs.rules_for("syscall", "mmap")] == ["any"]
    rs2 = loaded(text.split("- rule: any")[0]).ruleset
    # open_by_handle_at: the openat rules also see it (falconet.rules.views)
    assert rs2.event_types("syscall") == {"openat", "execve", "execveat", "open_by_handle_at"}
    assert rs2.match(event("read", proc("special"))) == []
    assert rs2.event_types("k8s_audit") == set()


def test_disabled_rules_do_not_count_in_event_types() -> None:
    res = loaded(rule("evt.type = openat", name="a")
                 + rule("evt.type = execve", name="b", enabled="false"))
    assert res.ruleset.event_types("syscall") == {"openat", "open_by_handle_at"}


def test_alert_is_fully_rendered() -> None:
    text = rule("evt.type = openat", name="Sensitive open", prio="critical",
                output="file %fd.name by %proc.name (gp=%proc.aname[2] fl=%evt.arg.flags "
                       "uid=%user.uid miss=%user.loginname)", tags="[z, a, m]")
    res = loaded(text, hostname="node-1")
    t = proc("cat", uid=0, ancestors=[proc("bash"), proc("sshd")])
    e = event("openat", t, fd=FdInfo(3, "f", "/etc/shadow"), args={"flags": "O_RDONLY"},
              ts=1_739_178_940_698_757_000)
    [a] = res.ruleset.match(e)
    assert isinstance(a, Alert)
    assert a.rule == "Sensitive open" and a.priority == Priority.CRITICAL and a.source == "syscall"
    assert a.output == "file /etc/shadow by cat (gp=sshd fl=O_RDONLY uid=0 miss=<NA>)"
    assert a.output_fields == {"fd.name": "/etc/shadow", "proc.name": "cat",
                               "proc.aname[2]": "sshd", "evt.arg.flags": "O_RDONLY",
                               "user.uid": 0, "user.loginname": None,
                               "evt.time": 1_739_178_940_698_757_000}
    assert a.tags == ["a", "m", "z"] and a.hostname == "node-1" and a.desc == "d"
    assert a.time_ns == 1_739_178_940_698_757_000 and a.ruleset == "<rules>"


@pytest.mark.parametrize("fmt, expected", [
    ("%proc.name)", "cat)"),
    ("100%% %proc.name", "100% cat"),
    ("[%10proc.name]", "[cat       ]"),
    ("[%2proc.name]", "[ca]"),
    ("%proc.name.suffix", "cat.suffix"),
    ("%toupper(proc.name)!", "CAT!"),
    ("a:%proc.name:%user.uid", "a:cat:0"),
    ("%fd.name", "/tmp/evil\\nFAKE ALERT\\u001b[0m"),
    ("%evt.is_open_read", "true"),
])
def test_output_formats(fmt: str, expected: str) -> None:
    res = loaded(rule("evt.type = openat", output=fmt))
    e = event("openat", proc("cat"), fd=FdInfo(3, "f", "/tmp/evil\nFAKE ALERT\x1b[0m"))
    [a] = res.ruleset.match(e)
    assert a.output == expected
    assert "toupper(proc.name)" not in a.output_fields


@pytest.mark.parametrize("fmt, msg", [
    ("ends with %", "the format ends with '%'"),
    ("bad %proc.nosuch", "unknown filter: filter_check called with nonexistent field proc.nosuch"),
    ("bad %!", "expected a field after '%'"),
])
def test_output_errors(fmt: str, msg: str) -> None:
    res = load(rule("evt.type = openat", output=fmt))
    assert not res.ok and res.errors[0].code == "LOAD_ERR_COMPILE_OUTPUT"
    assert msg in res.errors[0].message


def test_deprecated_container_info_in_output() -> None:
    res = loaded(rule("evt.type = openat", output="x %container.info y"))
    assert res.ruleset.match(event("openat", proc("cat")))[0].output == "x  y"
    assert any("container.info" in w for w in warnings(rule("evt.type = openat",
                                                            output="%container.info")))


def test_suggested_output_is_appended_by_default() -> None:
    res = load_rules_text(rule("evt.type = openat", output="x=%proc.name"), REG)
    t = proc("cat", container={"id": "3ad7b26ded6d", "name": "web", "repository": "nginx",
                               "tag": "1.25", "pod": "web-0", "ns": "prod"})
    [a] = res.ruleset.match(event("openat", t))
    assert a.output == ("x=cat container_id=3ad7b26ded6d container_name=web "
                        "container_image_repository=nginx container_image_tag=1.25 "
                        "k8s_pod_name=web-0 k8s_ns_name=prod")
    assert a.output_fields["container.id"] == "3ad7b26ded6d"
    assert a.output_fields["k8s.ns.name"] == "prod"
    [host] = res.ruleset.match(event("openat", proc("cat")))
    assert host.output.startswith("x=cat container_id=host container_name=<NA>")


def test_append_output_rules() -> None:
    cfg = [
        {"match": {"source": "syscall", "tags": ["net"]}, "extra_output": "on %proc.pid",
         "extra_fields": ["user.uid", {"env": "prod"}]},
        {"match": {"rule": "b"}, "extra_output": "(b)"},
    ]
    text = rule("evt.type = openat", name="a", output="A", tags="[net, x]") + \
        rule("evt.type = openat", name="b", output="B")
    res = loaded(text, append_output=cfg, rule_matching="all")
    a, b = res.ruleset.match(event("openat", proc("cat", pid=42)))
    assert a.output == "A on 42" and a.output_fields["user.uid"] == 0
    assert a.output_fields["env"] == "prod" and a.output_fields["proc.pid"] == 42
    assert b.output == "B (b)" and "env" not in b.output_fields


def test_eval_errors_are_counted_and_do_not_stop_other_rules() -> None:
    reg = FieldRegistry(dict(REG.fields))

    def boom(_arg):
        def get(e):
            raise RuntimeError("bad value")
        return get
    reg.register(FieldDef("test.boom", FieldType.STRING, "raises", boom))
    text = rule("evt.type = openat and test.boom = x", name="bad") + \
        rule("evt.type = openat", name="good")
    res = load_rules_text(text, reg, append_output=[])

    class M:
        def __init__(self):
            self.drops = {}

        def drop(self, cause, n=1):
            self.drops[cause] = self.drops.get(cause, 0) + n
    res.ruleset.metrics = M()
    alerts = res.ruleset.match(event("openat", proc("cat")))
    assert [a.rule for a in alerts] == ["good"]
    assert res.ruleset.eval_errors["bad"] == 1 and res.ruleset.metrics.drops == {"rule_error": 1}
    assert "bad value" in res.ruleset.last_error


def test_plugin_source_rules() -> None:
    reg = FieldRegistry(dict(REG.fields))
    reg.register(FieldDef("ka.verb", FieldType.STRING, "verb",
                          lambda _a: lambda e: e.raw.get("verb"), sources=frozenset({"k8s_audit"})))
    text = rule("ka.verb = delete", name="k8s", source="k8s_audit", output="verb=%ka.verb") + \
        rule("evt.type = openat", name="sys")
    res = load_rules_text(text, reg, append_output=[])
    assert res.ok, [str(e) for e in res.errors]
    from falconet.events import Event
    e = Event("k8s_audit", "k8s_audit", 1, raw={"verb": "delete"})
    [a] = res.ruleset.match(e)
    assert a.source == "k8s_audit" and a.output == "verb=delete"
    assert res.ruleset.event_types("k8s_audit") is None
    assert res.ruleset.event_types("syscall") == {"openat", "open_by_handle_at"}
    # a syscall field is not available for the k8s_audit source
    errs = errors(rule("proc.name = x", source="k8s_audit"), sources=["syscall", "k8s_audit"])
    assert any("for source 'k8s_audit'" in e for e in errs)


def test_rule_matching_must_be_valid() -> None:
    with pytest.raises(ValueError):
        load(rule("evt.type = openat"), rule_matching="some")


def test_plugin_extractor_factory_that_raises_is_a_load_error() -> None:
    reg = FieldRegistry(dict(REG.fields))

    def broken(_arg):
        raise TypeError("plugin bug")
    reg.register(FieldDef("test.broken", FieldType.STRING, "broken", broken))
    res = load_rules_text(rule("test.broken = x", name="bad") + rule("evt.type = openat",
                                                                     name="good"), reg)
    assert not res.ok
    assert [str(e) for e in res.errors] == [
        "<rules>:3:14: error: rule 'bad': cannot compile rule: TypeError: plugin bug"]


def test_unknown_event_type_warns() -> None:
    ws = warnings(rule("evt.type in (openat, opnat)"))
    assert any("unknown event type(s) opnat" in w for w in ws), ws
    assert not any("unknown event type" in w for w in warnings(rule("evt.type = openat")))


def test_unsafe_na_check_warns() -> None:
    reg = FieldRegistry(dict(REG.fields))
    reg.register(FieldDef("ka.user.name", FieldType.STRING, "user",
                          lambda _a: lambda e: None, sources=frozenset({"k8s_audit"})))
    res = load_rules_text(rule("ka.user.name != <NA>", source="k8s_audit"), reg)
    assert res.ok
    assert [w.code for w in res.warnings] == ["LOAD_UNSAFE_NA_CHECK"]


def test_append_output_extra_fields_accept_indexed_fields() -> None:
    """Falco accepts field arguments in extra_fields (proc.aname[2], proc.apid[1])."""
    cfg = [{"extra_fields": ["proc.aname[2]", "proc.apid[1]", "proc.name"]}]
    res = loaded(rule("evt.type = openat", name="a", output="A"), append_output=cfg)
    parent, grandparent = proc("bash", pid=7), proc("sshd", pid=3)
    (a,) = res.ruleset.match(event("openat", proc("cat", pid=42,
                                                    ancestors=[parent, grandparent])))
    assert a.output_fields["proc.aname[2]"] == "sshd"
    assert a.output_fields["proc.apid[1]"] == 7
    assert a.output_fields["proc.name"] == "cat"


@pytest.mark.parametrize("token, why", [
    ("proc.nosuch[1]", "nonexistent field proc.nosuch"),
    ("proc.name[1]", "does not take an argument"),
    ("proc.aname[x]", "must be a number"),
    ("proc.aname[1] junk", "is not a field name"),
])
def test_append_output_extra_fields_bad_tokens_are_load_errors(token: str, why: str) -> None:
    res = load(rule("evt.type = openat", name="a", output="A"),
               append_output=[{"extra_fields": [token]}])
    assert not res.ok
    assert any(why in str(e) for e in res.errors), [str(e) for e in res.errors]
