"""falconet.yaml loading: defaults, validation errors with file:line:col, -o overrides."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO
from falconet.config import DEFAULTS, SCHEMA, ConfigError, load_config


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "falconet.yaml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_defaults_without_a_file() -> None:
    cfg = load_config(None)
    assert cfg["metrics"] == {"enabled": True, "address": "127.0.0.1", "port": 8765}
    assert cfg["outputs"]["stdout"]["enabled"] is True
    assert cfg["rule_matching"] == "first"
    assert cfg.plugin_section("anything") == {}


def test_example_config_at_repo_root_is_valid_and_documents_every_key() -> None:
    path = REPO / "falconet.yaml"
    cfg = load_config(str(path))
    text = path.read_text()
    for key in SCHEMA:
        assert f"{key}:" in text, f"falconet.yaml does not document '{key}'"
    assert cfg["metrics"]["address"] == "127.0.0.1"


def test_unknown_key_is_reported_with_line_and_allowed_keys(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        json_output: true
        outputs:
          stdout:
            enabled: true
            min_prio: warning
        """)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:5:5: error: unknown key 'outputs.stdout.min_prio'" in msg
    assert "allowed here: aggregate, enabled, match, min_priority" in msg


def test_bad_values_each_reported_with_location(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        priority: loud
        metrics:
          port: 99999
        outputs:
          webhook:
            retries: many
        rule_matching: some
        """)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    probs = e.value.problems
    assert any(x.startswith(f"{p}:1:1: error: priority: expected one of emergency") for x in probs)
    assert any(f"{p}:3:3: error: metrics.port: expected an integer between 0 and 65535, got 99999"
               in x for x in probs)
    assert any(f"{p}:6:5: error: outputs.webhook.retries" in x for x in probs)
    assert any(f"{p}:7:1: error: rule_matching: expected one of first, all" in x for x in probs)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    p = write(tmp_path, "outputs:\n  stdout: {enabled: true\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:3:1: error: invalid YAML")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match=r":1:1: error: expected a mapping"):
        load_config(p)


def test_webhook_enabled_needs_http_url(tmp_path: Path) -> None:
    p = write(tmp_path, "outputs:\n  webhook:\n    enabled: true\n    url: file:///etc/shadow\n")
    with pytest.raises(ConfigError, match=r"outputs.webhook.url: expected an http:// or https:// URL"):
        load_config(p)


def test_overrides_are_yaml_scalars_and_nest(tmp_path: Path) -> None:
    p = write(tmp_path, "json_output: false\nplugins:\n  container:\n    socket: /run/x.sock\n")
    cfg = load_config(p, ["json_output=true", "metrics.port=9999", "plugins.container.required=true",
                          "plugins.newone.level=3", "rules_files=[a.yaml, b.yaml]",
                          "outputs.webhook.url=http://127.0.0.1:1/x"])
    assert cfg["json_output"] is True
    assert cfg["metrics"]["port"] == 9999
    assert cfg.plugin_section("container") == {"socket": "/run/x.sock", "required": True}
    assert cfg.plugin_required("container")
    assert cfg.plugin_section("newone") == {"level": 3}
    assert cfg["rules_files"] == ["a.yaml", "b.yaml"]
    assert cfg["outputs"]["webhook"]["url"] == "http://127.0.0.1:1/x"
    assert cfg["outputs"]["webhook"]["retries"] == DEFAULTS["outputs"]["webhook"]["retries"]


def test_override_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^-o json_output: error: expected key.path=value"):
        load_config(None, ["json_output"])
    with pytest.raises(ConfigError) as e:
        load_config(None, ["metrics.port=abc"])
    assert str(e.value) == ("-o metrics.port=abc: error: metrics.port: expected an integer between "
                            "0 and 65535, got 'abc'")
    with pytest.raises(ConfigError, match="plugins.x.required: expected true or false"):
        load_config(None, ["plugins.x.required=maybe"])


def test_cli_reports_config_error_without_traceback(tmp_path: Path) -> None:
    p = write(tmp_path, "outputs:\n  stdout:\n    enabled: yes please\n")
    r = subprocess.run([sys.executable, "-m", "falconet", "replay", "nothing.fcap", "-c", p],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"{p}:3:5: error: outputs.stdout.enabled: expected true or false" in r.stderr
    assert "Traceback" not in r.stderr


def test_old_response_items_are_rejected_with_the_equivalent_policy(tmp_path: Path) -> None:
    p = write(tmp_path, "responses:\n  - action: notify\n    rules: [x]\n    min_priority: error\n"
                        "    params: {why: y}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(
        f"{p}:1:1: error: responses: item 1: '{{action: ...}}' items are replaced by policies; "
        "write it as '- name: notify-1, match: {rules: ['x'], priority: '>=error'}, actions: "
        "[{action: notify, why: 'y'}]' (docs/response.md)")
    with pytest.raises(ConfigError, match="expected a list of policies"):
        load_config(None, ["responses={name: x}"])


def test_response_policies_keep_their_yaml_positions(tmp_path: Path) -> None:
    """Policies are compiled by the response plugin: their keys and values keep file:line:col."""
    p = write(tmp_path, "priority: warning\nresponses:\n  - name: a\n    match: {priority: x}\n")
    cfg = load_config(p)
    pol = cfg["responses"][0]
    assert pol == {"name": "a", "match": {"priority": "x"}}
    assert (pol.locs["match"].line, pol.locs["match"].col) == (4, 12)
    assert pol["match"]["priority"].loc.file == p
    assert load_config(None, ["responses=[{name: a}]"])["responses"] == [{"name": "a"}]


def test_append_output_entries_are_validated() -> None:
    """A typo in append_output (a key Falco doesn't know) is a clear start-up error, not ignored."""
    with pytest.raises(ConfigError, match=r"append_output: entry 1: unknown key 'bogus'"):
        load_config(None, ["append_output=[{bogus: 1}]"])
    with pytest.raises(ConfigError, match=r"match: expected a mapping with source:, tags:, rule:"):
        load_config(None, ["append_output=[{match: {sourc: syscall}, extra_output: x}]"])
    cfg = load_config(None, ["append_output=[{match: {source: syscall}, extra_output: x}]"])
    assert cfg["append_output"][0]["extra_output"] == "x"
