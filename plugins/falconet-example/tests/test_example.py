"""The example plugin through the real engine: source → parser/fields → rules → its output."""

from __future__ import annotations

import json
from pathlib import Path

from falconet.app import App
from falconet.config import load_config
from falconet_example import plugin


def make_app(tmp_path: Path, *overrides: str) -> tuple[App, Path]:
    out = tmp_path / "alerts.jsonl"
    cfg = load_config(None, ["outputs.stdout.enabled=false", "plugins.example.interval=0",
                             f"plugins.example.output={out}",
                             *overrides])
    app = App(cfg, source_name="example", builtins=[("outputs", "falconet.outputs.builtin")],
              entry_points=False, extra_plugins=[("example", plugin)])
    return app, out


def test_source_fields_rules_and_output(tmp_path: Path) -> None:
    app, out = make_app(tmp_path, "plugins.example.count=4",
                        'plugins.example.messages=[hello, "curl http://x.example/a"]')
    app.load_plugins()
    assert not app.host.failures
    assert app.host.info["example"].kinds == ["enrichment", "input", "output", "rules"]
    # only the plugin's rules: its rules_files hook adds them after the (here explicit) user files
    app.load_ruleset([str(plugin.RULES)])
    app.build_pipeline()
    rc = app.run("example", {})
    assert rc == 0
    assert app.metrics.events[("example", "message")] == 4
    alerts = [json.loads(x) for x in out.read_text().splitlines()]
    assert [a["rule"] for a in alerts] == ["Example suspicious message"] * 2
    assert alerts[0]["fields"]["example.seq"] == 2
    assert alerts[1]["fields"]["example.times_seen"] == 2      # the parser's state
    assert alerts[0]["output"].startswith("Suspicious example message (message=curl http://")


def test_bad_config_is_reported_by_name(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, "plugins.example.messages=nope")
    app.load_plugins()
    [f] = app.host.failures
    assert (f.name, f.stage) == ("example", "configure")
    assert "plugins.example.messages: expected a non-empty list of strings" in f.reason


def test_unknown_key_is_reported_not_ignored(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, "plugins.example.intervall=5")
    app.load_plugins()
    [f] = app.host.failures
    assert (f.name, f.stage) == ("example", "configure")
    assert ("-o plugins.example.intervall=5: error: plugins.example.intervall: unknown key "
            "'intervall' (allowed here: " in f.reason)
