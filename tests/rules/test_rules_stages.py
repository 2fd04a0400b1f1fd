"""The loading stages one by one (reader → collector → compiler → ruleset), as a newcomer or a
tool that needs only one of them would use them; ``load_rules`` is their composition."""

from __future__ import annotations

import textwrap

import falconet
from falconet.rules import load_rules_text
from falconet.rules.collector import Collector
from falconet.rules.compiler import compile_loaded
from falconet.rules.reader import read_file, read_text
from falconet.rules.ruleset import Ruleset
from falconet.state.tables import FdInfo
from rulehelp import REG
from stubfields import event, proc

TEXT = textwrap.dedent("""
    - list: readers
      items: [cat, less]
    - macro: opened
      condition: evt.type = openat
    - rule: shadow read
      desc: d
      condition: opened and fd.name = /etc/shadow and proc.name in (readers)
      output: "%proc.name read %fd.name"
      priority: warning
    - rule: shadow read
      exceptions:
        - name: trusted
          fields: proc.name
          values: [less]
      override:
        exceptions: append
""").lstrip("\n")


def collector() -> Collector:
    return Collector(REG, plugin_versions=None, sources={"syscall"},
                     engine_version=falconet.ENGINE_VERSION)


def test_reader_yields_items_with_their_positions() -> None:
    ld = collector()
    items = list(read_text(TEXT, "x.yaml", ld))
    assert [next(iter(i)) for i in items] == ["list", "macro", "rule", "rule"]
    assert (items[2].loc.file, items[2].loc.line, items[2].loc.col) == ("x.yaml", 5, 3)
    assert items[2].locs["condition"].line == 7
    assert ld.source_lines["x.yaml"][0] == "- list: readers"
    assert not ld.errors


def test_reader_reports_a_broken_file_and_yields_nothing(tmp_path) -> None:
    ld = collector()
    assert list(read_text("- rule: [unclosed\n", "bad.yaml", ld)) == []
    assert [(m.file, m.line) for m in ld.errors] == [("bad.yaml", 2)]
    assert "Invalid YAML" in ld.errors[0].message
    ld = collector()
    assert list(read_file(tmp_path / "missing.yaml", ld)) == []
    assert "Could not read file" in ld.errors[0].message


def test_collector_applies_overrides_before_anything_is_compiled() -> None:
    ld = collector()
    for item in read_text(TEXT, "x.yaml", ld):
        ld.add_item(item, "x.yaml")
    assert list(ld.lists) == ["readers"] and list(ld.macros) == ["opened"]
    r = ld.rules["shadow read"]
    assert isinstance(r.condition, str)               # still text: the compiler parses it
    assert [e.name for e in r.exceptions] == ["trusted"]
    assert r.loc.line == 5                            # a redefined rule keeps its position


def test_the_stages_by_hand_match_load_rules() -> None:
    ld = collector()
    for item in read_text(TEXT, "x.yaml", ld):
        ld.add_item(item, "x.yaml")
    compiled, described = compile_loaded(ld, [])
    assert not ld.errors, [str(m) for m in ld.errors]
    assert [d.event_types for d in described] == [["openat"]]
    rs = Ruleset(compiled)
    shadow = FdInfo(num=3, typechar="f", name="/etc/shadow")
    cat = event("openat", proc("cat"), fd=shadow)
    less = event("openat", proc("less"), fd=shadow)
    assert [a.output for a in rs.match(cat)] == ["cat read /etc/shadow"]
    assert rs.match(less) == []                       # the appended exception
    via_api = load_rules_text([("x.yaml", TEXT)], REG, append_output=[])
    assert via_api.ok
    assert [a.output for a in via_api.ruleset.match(cat)] == ["cat read /etc/shadow"]
    assert via_api.ruleset.match(less) == []
