"""Declarative detection suites: YAML files of cases (action, where, expected alert or nothing).

Format (see ``docs/detection.md``)::

    suite: default                 # a name
    description: what it proves
    rules: [rules/]                # optional: rules files/dirs, relative to the suite file's repo
    timeout: 5                     # optional: seconds to wait for each expected alert
    engine_hosts:                  # optional: names only the engine under test resolves
      kubernetes.default.svc.cluster.local: 127.0.0.44   # (a private /etc/hosts, see
    cases:                                               #  falconet.simulate.private_hosts)
      - name: shell in a runc container
        action: shell_in_container # see `falconet simulate --list`
        where: runc                # host | runc | docker (default: the action's first)
        privileged: false          # default: the action's
        expect:
          rule: Shell Spawned in Container
          priority: Notice         # optional
          output_fields:           # optional: exact values, compared as text
            proc.name: sh
      - name: ls raises nothing
        action: benign_ls
        where: runc
        expect: nothing

Errors name the file, line and column, and what was expected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from falconet import upstream
from falconet.priorities import Priority
from falconet.simulate.actions import ACTIONS
from falconet.simulate.contexts import CONTEXT_KINDS

DEFAULT_TIMEOUT = 5.0


class SuiteError(ValueError):
    """A suite file is invalid; ``str()`` is ``file:line:col: error: message``."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{col}: error: {message}")
        self.file, self.line, self.col, self.message = file, line, col, message


@dataclass
class Expectation:
    """What a case expects: one alert of ``rule`` (``nothing`` = no alert at all)."""

    nothing: bool = False
    rule: str | None = None
    priority: Priority | None = None
    output_fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    action: str
    where: str
    privileged: bool
    expect: Expectation
    line: int = 0


@dataclass
class Suite:
    name: str
    path: str
    cases: list[Case]
    description: str = ""
    rules: list[str] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    #: name -> address the engine (only) resolves, through a private /etc/hosts
    engine_hosts: dict[str, str] = field(default_factory=dict)

    def select(self, names: Iterable[str] | None) -> list[Case]:
        """The cases ``names`` picks out, by case name or action; all of them when it is empty."""
        wanted = set(names or ())
        return [c for c in self.cases if not wanted or c.name in wanted or c.action in wanted]


_SUITE_KEYS = {"suite", "description", "rules", "timeout", "cases", "engine_hosts"}
_CASE_KEYS = {"name", "action", "where", "privileged", "expect"}
_EXPECT_KEYS = {"rule", "priority", "output_fields"}


class _Reader:
    """Walks the YAML node tree so every error can point at the offending node."""

    def __init__(self, path: str) -> None:
        self.path = path

    def err(self, node: yaml.Node | None, message: str) -> SuiteError:
        if node is None:
            return SuiteError(self.path, 1, 1, message)
        m = node.start_mark
        return SuiteError(self.path, m.line + 1, m.column + 1, message)

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, tuple[yaml.Node,
                                                                                        yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.err(node, f"{what} must be a mapping, got {_kind(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise self.err(k, f"{what}: keys must be strings")
            if k.value not in allowed:
                raise self.err(k, f"{what}: unknown key '{k.value}' (expected one of "
                                  f"{', '.join(sorted(allowed))})")
            if k.value in out:
                raise self.err(k, f"{what}: duplicate key '{k.value}'")
            out[k.value] = (k, v)
        return out

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null" \
                or not str(node.value).strip():
            raise self.err(node, f"{what} must be a non-empty string")
        return str(node.value)

    def boolean(self, node: yaml.Node, what: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.value.lower() in ("true", "false"):
            return node.value.lower() == "true"
        raise self.err(node, f"{what} must be true or false")

    def number(self, node: yaml.Node, what: str) -> float:
        try:
            v = float(node.value)
        except (TypeError, ValueError, AttributeError):
            raise self.err(node, f"{what} must be a number") from None
        if v <= 0:
            raise self.err(node, f"{what} must be positive")
        return v


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"'{getattr(node, 'value', node)}'"


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file. Raises :class:`SuiteError` (or ``OSError``)."""
    path = str(path)
    text = Path(path).read_text()
    r = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark
        raise SuiteError(path, (m.line + 1) if m else 1, (m.column + 1) if m else 1,
                         f"invalid YAML: {e.problem}") from None
    if root is None:
        raise r.err(None, "empty suite file: expected a mapping with 'suite' and 'cases'")
    top = r.mapping(root, "suite", _SUITE_KEYS)
    if "cases" not in top:
        raise r.err(root, "suite: missing 'cases' (a list of cases)")
    name = r.string(top["suite"][1], "suite") if "suite" in top else Path(path).stem
    desc = r.string(top["description"][1], "description") if "description" in top else ""
    rules: list[str] = []
    if "rules" in top:
        node = top["rules"][1]
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        # $FALCONET_FALCO_RULES: the upstream rules file (falconet.upstream)
        rules = [upstream.expand(r.string(n, "rules item")) for n in items]
    timeout = r.number(top["timeout"][1], "timeout") if "timeout" in top else DEFAULT_TIMEOUT
    hosts = _engine_hosts(r, top["engine_hosts"][1]) if "engine_hosts" in top else {}
    cases_node = top["cases"][1]
    if not isinstance(cases_node, yaml.SequenceNode) or not cases_node.value:
        raise r.err(cases_node, "cases must be a non-empty list")
    cases = [_case(r, n) for n in cases_node.value]
    seen: dict[str, int] = {}
    for c in cases:
        if c.name in seen:
            raise SuiteError(path, c.line, 1, f"duplicate case name '{c.name}' (first at line "
                                              f"{seen[c.name]})")
        seen[c.name] = c.line
    return Suite(name=name, path=path, cases=cases, description=desc, rules=rules,
                 timeout=timeout, engine_hosts=hosts)


def _engine_hosts(r: _Reader, node: yaml.Node) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode) or not node.value:
        raise r.err(node, "engine_hosts must be a mapping of host name: IP address")
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    for k, v in node.value:
        name = r.string(k, "engine_hosts name")
        if name in lines:
            raise r.err(k, f"engine_hosts: duplicate name '{name}' (first on line {lines[name]})")
        lines[name] = k.start_mark.line + 1
        if any(c.isspace() or c == "#" for c in name):
            raise r.err(k, f"engine_hosts: invalid host name '{name}'")
        addr = r.string(v, f"engine_hosts.{name}")
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise r.err(v, f"engine_hosts.{name}: expected an IP address, got '{addr}'") from None
        out[name] = addr
    return out


def _case(r: _Reader, node: yaml.Node) -> Case:
    m = r.mapping(node, "case", _CASE_KEYS)
    for key in ("action", "expect"):
        if key not in m:
            raise r.err(node, f"case: missing '{key}'")
    act_node = m["action"][1]
    act_name = r.string(act_node, "action")
    act = ACTIONS.get(act_name)
    if act is None:
        raise r.err(act_node, f"unknown action '{act_name}' (see `falconet simulate --list`)")
    where = act.where[0]
    if "where" in m:
        where = r.string(m["where"][1], "where")
        if where not in CONTEXT_KINDS:
            raise r.err(m["where"][1], f"where must be one of {', '.join(CONTEXT_KINDS)}, "
                                       f"got '{where}'")
        if where not in act.where:
            raise r.err(m["where"][1], f"action '{act_name}' cannot run in {where} "
                                       f"(supported: {', '.join(act.where)})")
    privileged = act.privileged
    if "privileged" in m:
        privileged = r.boolean(m["privileged"][1], "privileged")
    name = r.string(m["name"][1], "name") if "name" in m else f"{act_name}@{where}"
    return Case(name=name, action=act_name, where=where, privileged=privileged,
                expect=_expect(r, m["expect"][1]), line=node.start_mark.line + 1)


def _expect(r: _Reader, node: yaml.Node) -> Expectation:
    if isinstance(node, yaml.ScalarNode):
        if node.value == "nothing":
            return Expectation(nothing=True)
        raise r.err(node, f"expect must be 'nothing' or a mapping with 'rule', got '{node.value}'")
    m = r.mapping(node, "expect", _EXPECT_KEYS)
    if "rule" not in m:
        raise r.err(node, "expect: missing 'rule' (or write `expect: nothing`)")
    exp = Expectation(rule=r.string(m["rule"][1], "rule"))
    if "priority" in m:
        pnode = m["priority"][1]
        try:
            exp.priority = Priority.parse(r.string(pnode, "priority"))
        except ValueError:
            raise r.err(pnode, f"invalid priority '{pnode.value}' (expected one of emergency, "
                               "alert, critical, error, warning, notice, informational, debug)") \
                from None
    if "output_fields" in m:
        fnode = m["output_fields"][1]
        if not isinstance(fnode, yaml.MappingNode):
            raise r.err(fnode, "output_fields must be a mapping of field: value")
        for k, v in fnode.value:
            if not isinstance(v, yaml.ScalarNode):
                raise r.err(v, f"output_fields.{k.value}: value must be a scalar")
            exp.output_fields[str(k.value)] = str(v.value)
    return exp


def suite_as_dict(s: Suite) -> dict[str, Any]:
    """A plain dict (for ``--json`` listings)."""
    return {"suite": s.name, "path": s.path, "timeout": s.timeout, "rules": s.rules,
            "engine_hosts": s.engine_hosts,
            "cases": [{"name": c.name, "action": c.action, "where": c.where,
                       "privileged": c.privileged,
                       "expect": "nothing" if c.expect.nothing else {
                           "rule": c.expect.rule,
                           "priority": c.expect.priority.label if c.expect.priority else None,
                           "output_fields": c.expect.output_fields}}
                      for c in s.cases]}
