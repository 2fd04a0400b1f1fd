"""Suite files: the format's validation (file:line:col errors) and the two shipped suites."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import FALCO_RULES, REPO
from falconet.priorities import Priority
from falconet.simulate.actions import ACTIONS
from falconet.simulate.suite import SuiteError, load_suite

DEFAULT_RULES = REPO / "rules" / "falconet_rules.yaml"
DEFAULT_SUITE = REPO / "suites" / "default.yaml"
FALCO_SUITE = REPO / "suites" / "falco-stable.yaml"

#: stable rules the falco-stable suite cannot exercise here, with the reason (see the suite file);
#: none since fd.sip.name is resolved by the engine (suite `engine_hosts`)
FALCO_STABLE_MISSES: dict[str, str] = {}


def _rules(path: Path) -> dict[str, dict]:
    return {d["rule"]: d for d in yaml.safe_load(path.read_text()) if "rule" in d}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_default_suite_loads_and_covers_every_default_rule() -> None:
    suite = load_suite(DEFAULT_SUITE)
    expected = {c.expect.rule for c in suite.cases if not c.expect.nothing}
    rules = _rules(DEFAULT_RULES)
    assert set(rules) <= expected, f"default rules without a case: {set(rules) - expected}"
    assert expected <= set(rules), f"cases expect unknown rules: {expected - set(rules)}"
    assert any(c.expect.nothing for c in suite.cases)
    for c in suite.cases:
        if c.expect.priority is not None:
            assert Priority.parse(rules[c.expect.rule]["priority"]) == c.expect.priority, c.name
    # container cases on both runtimes
    assert {c.where for c in suite.cases} == {"host", "runc", "docker"}


def test_select_picks_cases_by_name_or_action() -> None:
    suite = load_suite(DEFAULT_SUITE)
    assert suite.select(None) == suite.select([]) == suite.cases
    first = suite.cases[0]
    by_action = suite.select([first.action])
    assert first in by_action and all(c.action == first.action for c in by_action)
    assert first in suite.select([first.name])
    assert suite.select(["nosuch"]) == []


def test_falco_suite_covers_every_stable_rule_but_documented_misses() -> None:
    assert FALCO_RULES.exists(), FALCO_RULES
    suite = load_suite(FALCO_SUITE)
    expected = {c.expect.rule for c in suite.cases if not c.expect.nothing}
    stable = _rules(FALCO_RULES)
    missing = set(stable) - expected
    assert missing == set(FALCO_STABLE_MISSES), missing
    assert expected <= set(stable)
    text = FALCO_SUITE.read_text()
    for rule in FALCO_STABLE_MISSES:
        assert rule in text, f"the suite file must explain why '{rule}' is not covered"
    # the suite's rules path points at the shared upstream file
    assert (FALCO_SUITE.parent / suite.rules[0]).resolve() == FALCO_RULES.resolve()


UPSTREAM_SUITE = REPO / "suites" / "falco-incubating-sandbox.yaml"


def test_incubating_sandbox_suite_reads_the_files_beside_stable() -> None:
    from falconet.upstream import falco_rules_files
    suite = load_suite(UPSTREAM_SUITE)
    assert [Path(r) for r in suite.rules] == falco_rules_files()
    assert falco_rules_files()[0] == FALCO_RULES
    rules = {c.expect.rule for c in suite.cases}
    assert None not in rules and len(suite.cases) >= 30
    files = falco_rules_files()
    if not all(f.is_file() for f in files[1:]):
        pytest.skip(f"{files[1].name} and {files[2].name} are not beside {FALCO_RULES}")
    # every expected rule is an incubating or sandbox rule, enabled, with that priority
    upstream = {**_rules(files[1]), **_rules(files[2])}
    for c in suite.cases:
        d = upstream.get(c.expect.rule)
        assert d is not None and d.get("enabled", True), c.name
        assert Priority.parse(d["priority"]) == c.expect.priority, c.name
        assert c.expect.rule not in _rules(FALCO_RULES), c.name


def test_falco_suite_makes_the_engine_resolve_the_api_server_name_to_the_actions_address() -> None:
    from falconet.simulate.actions import K8S_API_SERVER_NAME, K8S_API_SERVER_TEST_ADDRESS
    suite = load_suite(FALCO_SUITE)
    assert suite.engine_hosts == {K8S_API_SERVER_NAME: K8S_API_SERVER_TEST_ADDRESS}
    assert K8S_API_SERVER_TEST_ADDRESS.startswith("127.")      # nothing leaves loopback
    case = [c for c in suite.cases if c.expect.rule == "Contact K8S API Server From Container"]
    assert [c.action for c in case] == ["k8s_api_server_connect"]
    assert f'fd.sip.name="{K8S_API_SERVER_NAME}"' in FALCO_RULES.read_text()


def test_engine_hosts_errors_point_at_the_value(tmp_path: Path) -> None:
    p = _write(tmp_path, """
        engine_hosts:
          api.example: not-an-ip
        cases:
          - {action: benign_ls, expect: nothing}
        """)
    with pytest.raises(SuiteError, match=r"suite.yaml:3:16: error: engine_hosts.api.example: "
                                         r"expected an IP address"):
        load_suite(p)
    p = _write(tmp_path, """
        engine_hosts: [a]
        cases:
          - {action: benign_ls, expect: nothing}
        """)
    with pytest.raises(SuiteError, match="engine_hosts must be a mapping"):
        load_suite(p)
    # a name given twice is an error (as a duplicate key anywhere else), not the last one wins
    p = _write(tmp_path, """
        engine_hosts:
          api.example: 127.0.0.44
          api.example: 127.0.0.45
        cases:
          - {action: benign_ls, expect: nothing}
        """)
    with pytest.raises(SuiteError, match=r"suite.yaml:4:3: error: engine_hosts: duplicate name "
                                         r"'api.example' \(first on line 3\)"):
        load_suite(p)


def test_every_action_names_rules_that_exist() -> None:
    default = _rules(DEFAULT_RULES)
    stable = _rules(FALCO_RULES)
    for a in ACTIONS.values():
        assert a.where and set(a.where) <= {"host", "runc", "docker"}, a.name
        assert a.rule is None or a.rule in default, (a.name, a.rule)
        assert a.falco_rule is None or a.falco_rule in stable, (a.name, a.falco_rule)


def test_valid_suite_defaults(tmp_path: Path) -> None:
    p = _write(tmp_path, """
        suite: mini
        cases:
          - action: release_agent_write
            expect: {rule: X, priority: crit, output_fields: {fd.name: /a}}
          - name: quiet
            action: benign_ls
            where: host
            expect: nothing
        """)
    with pytest.raises(SuiteError):   # "crit" is not a priority
        load_suite(p)
    p = _write(tmp_path, """
        suite: mini
        timeout: 2.5
        cases:
          - action: release_agent_write
            expect: {rule: X, priority: critical, output_fields: {fd.name: /a, evt.rawres: 0}}
          - name: quiet
            action: benign_ls
            where: host
            expect: nothing
        """)
    s = load_suite(p)
    assert s.name == "mini" and s.timeout == 2.5
    a, b = s.cases
    assert (a.name, a.where, a.privileged) == ("release_agent_write@runc", "runc", True)
    assert a.expect.priority == Priority.CRITICAL
    assert a.expect.output_fields == {"fd.name": "/a", "evt.rawres": "0"}
    assert b.expect.nothing and b.where == "host"


@pytest.mark.parametrize("body, line, col, words", [
    ("cases: []\n", 1, 8, "non-empty list"),
    ("cases:\n  - action: nope\n    expect: nothing\n", 2, 13, "unknown action 'nope'"),
    ("cases:\n  - action: bpf_prog_load\n    where: docker\n    expect: nothing\n", 3, 12,
     "cannot run in docker"),
    ("cases:\n  - action: benign_ls\n    where: vm\n    expect: nothing\n", 3, 12,
     "where must be one of"),
    ("cases:\n  - action: benign_ls\n", 2, 5, "missing 'expect'"),
    ("cases:\n  - action: benign_ls\n    expect: maybe\n", 3, 13, "'nothing' or a mapping"),
    ("cases:\n  - action: benign_ls\n    expect: {priority: warning}\n", 3, 13, "missing 'rule'"),
    ("cases:\n  - action: benign_ls\n    expect: {rule: R, priority: loud}\n", 3, 33,
     "invalid priority 'loud'"),
    ("cases:\n  - action: benign_ls\n    expext: nothing\n", 3, 5, "unknown key 'expext'"),
    ("suite: x\n", 1, 1, "missing 'cases'"),
    ("cases:\n  - action: [a\n", 3, 1, "invalid YAML"),
    ("cases:\n  - {name: a, action: benign_ls, expect: nothing}\n"
     "  - {name: a, action: benign_ls, expect: nothing}\n", 3, 1, "duplicate case name 'a'"),
    ("timeout: -1\ncases:\n  - {action: benign_ls, expect: nothing}\n", 1, 10, "positive"),
])
def test_errors_point_at_file_line_column(tmp_path: Path, body: str, line: int, col: int,
                                          words: str) -> None:
    p = _write(tmp_path, body)
    with pytest.raises(SuiteError) as ei:
        load_suite(p)
    e = ei.value
    assert words in e.message, str(e)
    assert (e.line, e.col) == (line, col), str(e)
    assert str(e).startswith(f"{p}:{line}:{col}: error: ")


def test_cli_reports_suite_errors_without_traceback(tmp_path: Path, falconet_bin: str) -> None:
    import subprocess  # noqa: PLC0415

    p = _write(tmp_path, "cases:\n  - action: nope\n    expect: nothing\n")
    r = subprocess.run([falconet_bin, "test", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"{p}:2:13: error: unknown action 'nope'" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([falconet_bin, "test", "--validate", str(DEFAULT_SUITE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "cases OK" in r.stdout


def test_cli_rejects_a_case_whose_rule_the_rules_do_not_define(tmp_path: Path,
                                                               falconet_bin: str) -> None:
    """Checked before the engine starts (no root needed), not discovered as a timeout per case."""
    import subprocess  # noqa: PLC0415

    p = _write(tmp_path, """\
        rules: [rules.yaml]
        cases:
          - action: benign_ls
            where: host
            expect: {rule: No Such Rule}
        """)
    (tmp_path / "rules.yaml").write_text(
        "- rule: Some Rule\n  desc: d\n  condition: evt.type = open\n  output: o\n"
        "  priority: WARNING\n")
    r = subprocess.run([falconet_bin, "test", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{p}:3: error: case 'benign_ls@host' expects rule 'No Such Rule'" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_reports_rules_that_do_not_load_before_starting(tmp_path: Path,
                                                            falconet_bin: str) -> None:
    import subprocess  # noqa: PLC0415

    p = _write(tmp_path, "rules: [rules.yaml]\ncases:\n  - action: benign_ls\n"
                         "    where: host\n    expect: nothing\n")
    (tmp_path / "rules.yaml").write_text(
        "- rule: Bad\n  desc: d\n  condition: evt.type = open and proc.name ~= x\n"
        "  output: o\n  priority: WARNING\n")
    r = subprocess.run([falconet_bin, "test", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "the rules do not load" in r.stderr and "rules.yaml:3:" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_rejects_a_case_filter_that_matches_nothing(falconet_bin: str) -> None:
    """Otherwise zero cases run and the suite "passes"."""
    import subprocess  # noqa: PLC0415

    r = subprocess.run([falconet_bin, "test", str(DEFAULT_SUITE), "--case", "nosuch"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--case 'nosuch': no case of" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.root
def test_cli_reports_an_engine_that_cannot_start_without_traceback(tmp_path: Path,
                                                                   falconet_bin: str) -> None:
    """``engine_hosts`` needs ``unshare``: without it (here: not on PATH) the command says so
    and fails, instead of a traceback."""
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from conftest import need_root  # noqa: PLC0415
    need_root()
    p = _write(tmp_path, """\
        rules: [rules.yaml]
        engine_hosts: {api.example: 127.0.0.44}
        cases:
          - action: benign_ls
            where: host
            expect: nothing
        """)
    (tmp_path / "rules.yaml").write_text(
        "- rule: Some Rule\n  desc: d\n  condition: evt.type = open\n  output: o\n"
        "  priority: WARNING\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    r = subprocess.run([falconet_bin, "test", str(p)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PATH": str(empty)})
    assert r.returncode == 1, r.stderr
    assert "falconet test: error: cannot start the engine: 'unshare' (util-linux) is needed" \
        in r.stderr
    assert "Traceback" not in r.stderr
