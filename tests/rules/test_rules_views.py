"""The second view of an event (issue 19, falconet.rules.views): a rule about files fires when
the requested path or the path the kernel opened matches; fd.name keeps its meaning; at most
one alert per rule per event; open_by_handle_at is an open for the open rules."""

from __future__ import annotations

import pytest
from conftest import FALCO_RULES, need
from falconet.fields.registry import FieldRegistry
from falconet.rules import load_rules, load_rules_text
from falconet.rules.views import path_view
from falconet.state.fields import core_field_defs
from falconet.state.tables import FdInfo
from rulehelp import REG
from stubfields import event, proc

READ = {"flags": "O_RDONLY", "flags_raw": 0}


@pytest.fixture(scope="module")
def stable():
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    res = load_rules([FALCO_RULES], REG, plugin_versions={"container": "0.6.0"})
    assert res.ok, [str(e) for e in res.errors]
    return res


def _cat():
    return proc("cat", ancestors=[proc("bash"), proc("sshd")])


@pytest.mark.parametrize("requested", ["/tmp/lnk/shadow", "/proc/self/root/etc/shadow",
                                       "/tmp/x/view/shadow"])
def test_unmodified_stable_rule_fires_on_the_resolved_path(stable, requested) -> None:
    f = FdInfo(3, "f", requested, requested, resolved="/etc/shadow")
    [a] = stable.ruleset.match(event("openat", _cat(), fd=f, args=READ, res=3))
    assert a.rule == "Read sensitive file untrusted"
    assert a.output_fields["fd.name"] == requested               # Falco's meaning kept
    assert a.output_fields["fd.resolved_name"] == "/etc/shadow"  # what matched
    assert a.output.endswith(" fd_resolved_name=/etc/shadow")
    assert f.name == requested                                   # the state is untouched


def test_fd_directory_follows_the_view(stable) -> None:
    f = FdInfo(3, "f", "/tmp/l/x", resolved="/etc/sudoers.d/x")
    [a] = stable.ruleset.match(event("openat", _cat(), fd=f, args=READ, res=3))
    assert a.rule == "Read sensitive file untrusted"


def test_no_view_when_the_paths_agree_or_are_unknown(stable) -> None:
    plain = FdInfo(3, "f", "/etc/shadow", resolved="/etc/shadow")
    [a] = stable.ruleset.match(event("openat", _cat(), fd=plain, args=READ, res=3))
    assert "fd.resolved_name" not in a.output_fields                # matched as requested
    for f in (FdInfo(3, "f", "/tmp/lnk"), FdInfo(3, "f", "/tmp/a", resolved="/tmp/b"),
              FdInfo(3, "4", "1.2.3.4:5->6.7.8.9:10", resolved="/etc/shadow")):
        e = event("openat", _cat(), fd=f, args=READ, res=3)
        assert stable.ruleset.match(e) == []
    assert path_view(event("openat", _cat(), fd=plain)) is None
    # a trusted reader stays trusted through the view
    trusted = event("openat", proc("sshd", ancestors=[proc("systemd")]),
                    fd=FdInfo(3, "f", "/tmp/lnk", resolved="/etc/shadow"), args=READ, res=3)
    assert stable.ruleset.match(trusted) == []


def test_open_by_handle_at_is_an_open_for_the_open_rules(stable) -> None:
    f = FdInfo(5, "f", "/etc/shadow", resolved="/etc/shadow")
    e = event("open_by_handle_at", _cat(), fd=f, args={"flags": 0, "mountfd": 3}, res=5)
    [a] = stable.ruleset.match(e)
    assert a.rule == "Read sensitive file untrusted"
    assert a.output_fields["evt.type"] == "open_by_handle_at"
    assert a.output_fields["fd.resolved_name"] == "/etc/shadow"
    assert e.type == "open_by_handle_at"


RULES = """
- rule: by name
  desc: d
  condition: evt.type = openat and fd.name startswith /etc
  output: "name=%fd.name"
  priority: WARNING
- rule: by name and resolved
  desc: d
  condition: evt.type = openat and fd.name startswith /etc and fd.resolved_name startswith /etc
  output: "name=%fd.name resolved=%fd.resolved_name"
  priority: WARNING
- rule: by process
  desc: d
  condition: evt.type = openat and proc.name = cat
  output: "p=%proc.name"
  priority: WARNING
- rule: not below etc
  desc: d
  condition: evt.type = openat and not fd.name startswith /etc
  output: "n=%fd.name"
  priority: WARNING
"""


def _core() -> FieldRegistry:
    reg = FieldRegistry()
    reg.register_all(core_field_defs())
    return reg


def test_one_alert_per_rule_and_which_rules_need_the_view() -> None:
    reg = _core()
    res = load_rules_text(RULES, reg, rule_matching="all")
    assert res.ok, res.errors
    pv = {r.name: r.path_view for r in res.compiled}
    assert pv == {"by name": True, "by name and resolved": True, "by process": False,
                  "not below etc": True}
    rs = res.ruleset
    # requested /tmp/l, opened /etc/passwd: each rule at most once
    e = event("openat", _cat(), fd=FdInfo(3, "f", "/tmp/l", resolved="/etc/passwd"), res=3)
    got = {a.rule: a for a in rs.match(e)}
    assert sorted(got) == ["by name", "by name and resolved", "by process", "not below etc"]
    assert "fd.resolved_name" not in got["by process"].output_fields
    assert "fd.resolved_name" not in got["not below etc"].output_fields   # matched as requested
    assert got["by name"].output_fields["fd.resolved_name"] == "/etc/passwd"
    assert got["by name"].output == "name=/tmp/l fd_resolved_name=/etc/passwd"
    # the rule's own %fd.resolved_name is not repeated
    assert got["by name and resolved"].output == "name=/tmp/l resolved=/etc/passwd"
    # rule_matching first: the earliest rule that matches either view
    first = load_rules_text(RULES, reg).ruleset
    assert [a.rule for a in first.match(e)] == ["by name"]


def test_the_collector_is_asked_for_the_opens_the_openat_rules_see(stable) -> None:
    types = stable.ruleset.event_types()
    assert types is not None and {"openat", "open_by_handle_at"} <= types
    only_exec = load_rules_text(RULES.replace("openat", "execve"), _core()).ruleset
    assert "open_by_handle_at" not in (only_exec.event_types() or set())
