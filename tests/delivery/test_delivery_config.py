"""Delivery settings are checked at start: bad match:/aggregate:/spool:, an unsafe state_dir,
and plugin sections whose delivery keys belong to the engine."""

from __future__ import annotations

import os
import textwrap

import pytest
from falconet.app import App, StartupError
from falconet.config import ConfigError, load_config


def app_for(tmp_path, text: str, *over: str) -> App:
    p = tmp_path / "falconet.yaml"
    p.write_text(textwrap.dedent(text))
    return App(load_config(str(p), list(over)), entry_points=False)


def test_bad_match_condition_is_reported_at_its_yaml_position(tmp_path):
    app = app_for(tmp_path, """\
        outputs:
          stdout:
            match:
              condition: proc.name = bash and nosuch.field = 3
        """)
    with pytest.raises(StartupError) as e:
        app.output_policies()
    assert f"{tmp_path / 'falconet.yaml'}:4:39: error:" in str(e.value)
    assert "nosuch.field" in str(e.value)


def test_unknown_aggregate_field_and_bad_window(tmp_path):
    app = app_for(tmp_path, """\
        outputs:
          stdout:
            aggregate: {window: 10s, by: [no.such.field]}
        """)
    with pytest.raises(StartupError, match=r"falconet.yaml:3:5: error: outputs.stdout.aggregate: "
                                           r"by: unknown field 'no.such.field'"):
        app.output_policies()
    with pytest.raises(ConfigError, match="window: expected a duration > 0"):
        app_for(tmp_path, "outputs: {stdout: {aggregate: {window: -1}}}\n")
    with pytest.raises(ConfigError, match="max_bytes: expected a size in bytes"):
        app_for(tmp_path, "outputs: {webhook: {spool: {max_bytes: lots}}}\n")


def test_a_world_writable_state_dir_stops_the_start(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    app = app_for(tmp_path, "load_plugin_rules: false\n", "outputs.webhook.enabled=true",
                  "outputs.webhook.url=http://127.0.0.1:9/", f"state_dir={state}")
    app.load_plugins()
    with pytest.raises(StartupError, match="state_dir: .*writable by group or others"):
        app.build_pipeline(ruleset=object())


def test_spool_only_with_a_state_dir_and_created_private(tmp_path):
    base = ("outputs.webhook.enabled=true", "outputs.webhook.url=http://127.0.0.1:9/")
    app = app_for(tmp_path, "{}\n", *base)
    assert app.output_policies() == {}                     # no state_dir: no spool
    state = tmp_path / "var" / "falconet"
    app = app_for(tmp_path, "{}\n", *base, f"state_dir={state}")
    assert app.output_policies()["webhook"].spool["max_bytes"] == 256 << 20
    app.build_pipeline(ruleset=object())
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct((state / "spool").stat().st_mode & 0o777) == "0o700"
    off = app_for(tmp_path, "{}\n", *base, f"state_dir={state}", "outputs.webhook.spool=false")
    assert off.output_policies() == {}


def test_plugin_delivery_keys_are_the_engines_not_the_plugins(tmp_path):
    # the OTel plugin rejects unknown keys: match/aggregate/spool must not reach it
    p = tmp_path / "falconet.yaml"
    p.write_text(textwrap.dedent("""\
        plugins:
          otel:
            endpoint: http://127.0.0.1:9
            match: {priority: ">=Error"}
            aggregate: {window: 5s}
            spool: {max_age: 1h}
        """))
    app = App(load_config(str(p), [f"state_dir={tmp_path / 's'}"]))
    app.load_plugins()
    assert "otel" in app.host.info, [f.reason for f in app.host.failures]
    pol = app.output_policies()["otel"]
    assert pol.aggregate == {"window": 5.0, "by": []} and pol.spool["max_age"] == 3600.0
    assert pol.matcher.priority is not None
