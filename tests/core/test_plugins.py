"""The plugin host: built-ins first, failures isolated and attributed by name, required plugins."""

from __future__ import annotations

import pytest
from core_fakes import FakeRuleset, ListSink, evt
from falconet.api import EngineContext, FieldType, PluginConfigError, attr_field, hookimpl
from falconet.app import App, StartupError
from falconet.config import load_config
from falconet.fields import FieldRegistry
from falconet.plugins import PluginHost, PluginRequiredError
from falconet.priorities import Priority


class GoodPlugin:
    __version__ = "1.2.3"

    def __init__(self) -> None:
        self.configured: dict | None = None
        self.stopped = False

    @hookimpl
    def falconet_configure(self, config, engine):
        self.configured = config

    @hookimpl
    def falconet_fields(self, engine):
        return [attr_field("good.answer", FieldType.INT64, "always 42", lambda e: 42)]

    @hookimpl
    def falconet_event_parsers(self, engine):
        def parse(e):
            e.cache["good.seen"] = True
        return [parse]

    @hookimpl
    def falconet_alert_sinks(self, engine):
        self.sink = ListSink("good")
        return [self.sink]

    @hookimpl
    def falconet_stop(self, engine):
        self.stopped = True


class CrashOnConfigure:
    @hookimpl
    def falconet_configure(self, config, engine):
        raise PluginConfigError("plugins.crashy.level must be an integer")

    @hookimpl
    def falconet_fields(self, engine):
        return [attr_field("crashy.x", FieldType.INT64, "x", lambda e: 1)]


class CrashInSources:
    @hookimpl
    def falconet_fields(self, engine):
        return [attr_field("halfway.x", FieldType.INT64, "x", lambda e: 1)]

    @hookimpl
    def falconet_event_sources(self, engine):
        raise RuntimeError("cannot open socket")


class CrashingParser:
    @hookimpl
    def falconet_event_parsers(self, engine):
        def parse(e):
            raise KeyError("no such pid")
        return [parse]


class FieldClash:
    @hookimpl
    def falconet_fields(self, engine):
        return [attr_field("good.answer", FieldType.INT64, "mine too", lambda e: 0)]


def make_app(extra, overrides=(), builtins=None):
    cfg = load_config(None, ["outputs.stdout.enabled=false", *overrides])
    return App(cfg, builtins=builtins if builtins is not None else
               [("outputs", "falconet.outputs.builtin"), ("replay", "falconet.capture")],
               entry_points=False, extra_plugins=extra)


def test_failures_are_isolated_and_named() -> None:
    good = GoodPlugin()
    app = make_app([("good", good), ("crashy", CrashOnConfigure()), ("halfway", CrashInSources()),
                    ("clash", FieldClash())],
                   overrides=["plugins.good.color=blue", "plugins.crashy.level=x"],
                   builtins=[("outputs", "falconet.outputs.builtin"),
                             ("missing", "falconet.no_such_module")])
    app.load_plugins()
    failures = {f.name: (f.stage, f.reason) for f in app.host.failures}
    assert failures["missing"][0] == "import"
    assert "No module named 'falconet.no_such_module'" in failures["missing"][1]
    assert failures["crashy"] == ("configure",
                                  "PluginConfigError: plugins.crashy.level must be an integer")
    assert failures["halfway"] == ("falconet_event_sources", "RuntimeError: cannot open socket")
    assert failures["clash"][0] == "falconet_fields"
    assert "already declared" in failures["clash"][1]
    # the engine goes on with the rest; failed plugins contribute nothing
    assert app.host.names == ["outputs", "good"]
    assert good.configured == {"color": "blue"}       # only its own section
    assert "good.answer" in app.ctx.fields.fields
    assert app.ctx.fields.fields["good.answer"].provider == "good"
    assert "crashy.x" not in app.ctx.fields.fields
    assert "halfway.x" not in app.ctx.fields.fields   # dropped after its fields were collected
    info = app.host.info["good"]
    assert info.version == "1.2.3"
    assert info.kinds == ["enrichment", "output"]
    assert info.fields == ["good.answer"]


def test_required_plugin_failure_is_fatal() -> None:
    app = make_app([("crashy", CrashOnConfigure())], overrides=["plugins.crashy.required=true"])
    with pytest.raises(StartupError, match=r"required plugin 'crashy' failed \(configure\): "
                                           r"PluginConfigError"):
        app.load_plugins()


def test_required_missing_builtin_is_fatal() -> None:
    host = PluginHost({"ghost": {"required": True}}, builtins=[("ghost", "falconet.ghost")],
                      entry_points=False)
    with pytest.raises(PluginRequiredError, match="required plugin 'ghost' failed"):
        host.load()


def test_required_plugin_not_installed_is_fatal() -> None:
    host = PluginHost({"nosuch": {"required": True}}, builtins=[], entry_points=False)
    with pytest.raises(PluginRequiredError, match="required plugin 'nosuch' failed .*not installed"):
        host.load()


def test_optional_or_disabled_plugin_not_installed_is_fine() -> None:
    host = PluginHost({"nosuch": {"level": 3}, "off": {"required": True, "enabled": False}},
                      builtins=[], entry_points=False)
    host.load()
    assert not host.failures


def test_disabled_plugin_is_not_loaded() -> None:
    app = make_app([("good", GoodPlugin())], overrides=["plugins.good.enabled=false"])
    app.load_plugins()
    assert "good" not in app.host.names and not app.host.failures


def test_parser_errors_counted_per_plugin_and_stop_hook_called() -> None:
    good = GoodPlugin()
    app = make_app([("good", good), ("crashing", CrashingParser())])
    app.load_plugins()
    pipe = app.build_pipeline(FakeRuleset([("r", Priority.ERROR, lambda e: e.cache.get("good.seen"))]))
    pipe.run([evt(), evt()])
    pipe.close()
    app.host.hook.falconet_stop(engine=app.ctx)
    assert app.metrics.plugin_errors[("crashing", "parser")] == 2
    assert len(good.sink.alerts) == 2
    assert good.stopped


def test_hooks_called_in_registration_order() -> None:
    calls: list[str] = []

    def mk(tag):
        class P:
            @hookimpl
            def falconet_start(self, engine):
                calls.append(tag)
        return P()

    host = PluginHost({}, builtins=[], entry_points=False,
                      extra=[("first", mk("first")), ("second", mk("second"))])
    host.load()
    host.call(host.hook.falconet_start, engine=EngineContext("h", FieldRegistry()))
    assert calls == ["first", "second"]


def test_builtins_are_listed_with_engine_version() -> None:
    from falconet import __version__
    app = make_app([])
    app.load_plugins()
    assert app.host.info["outputs"].version == __version__
    assert app.host.info["outputs"].kinds == ["output"]
    assert app.host.info["replay"].kinds == ["input"]
    assert "replay" in app.sources


class SinkAndParser:
    @hookimpl
    def falconet_event_parsers(self, engine):
        return [lambda e: None]

    @hookimpl
    def falconet_alert_sinks(self, engine):
        self.sink = ListSink(f"sink-{id(self)}")
        return [self.sink]


class CrashOnStart(SinkAndParser):
    @hookimpl
    def falconet_start(self, engine):
        raise OSError("runtime socket missing")


def test_plugin_failing_at_start_loses_its_parsers_and_sinks() -> None:
    from falconet.events import Event

    class OneShot:
        name, source, live = "one", "syscall", False

        def open(self, options):
            return iter([Event("syscall", "openat", 1, 1, 1, {})])

        def close(self):
            pass

    class Src:
        @hookimpl
        def falconet_event_sources(self, engine):
            return [OneShot()]

    bad, good = CrashOnStart(), SinkAndParser()
    app = make_app([("src", Src()), ("bad", bad), ("good2", good)])
    app.load_plugins()
    app.build_pipeline(FakeRuleset([("r", Priority.ERROR, lambda e: True)]))
    assert app.run("one", {}) == 0
    assert [f.name for f in app.host.failures] == ["bad"]
    assert bad.sink.alerts == [] and len(good.sink.alerts) == 1
    assert [n for n, _ in app.pipeline.parsers] == ["good2"]


class Recorder:
    """A response-action plugin: records what it was asked to do."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict]] = []

    @hookimpl
    def falconet_response_actions(self, engine):
        outer = self

        class Action:
            name = "record"

            def run(self, alert, params):
                outer.runs.append((alert.rule, params))
        return [Action()]


def test_responses_run_plugin_actions_for_selected_rules() -> None:
    rec = Recorder()
    app = make_app([("rec", rec)], overrides=[
        "responses=[{action: record, rules: [crit], min_priority: error, params: {why: x}}]"])
    app.load_plugins()
    assert app.host.info["rec"].kinds == ["output"]
    rules = [("warn", Priority.WARNING, lambda e: True), ("crit", Priority.CRITICAL, lambda e: True),
             ("other", Priority.CRITICAL, lambda e: True)]
    pipe = app.build_pipeline(FakeRuleset(rules))
    pipe.run([evt(), evt()])
    pipe.close()
    assert rec.runs == [("crit", {"why": "x"})] * 2
    assert app.metrics.output_sent["response:record"] == 2


def test_unknown_response_action_is_a_startup_error() -> None:
    app = make_app([], overrides=["responses=[{action: kill}]"])
    app.load_plugins()
    with pytest.raises(StartupError, match="responses item 1: no plugin provides the response "
                                           "action 'kill'"):
        app.build_pipeline(FakeRuleset([]))


# ------------------------------------------------------------------------------ pluggy semantics
def _recording(tag: str, calls: list[str], **marks: bool) -> object:
    class P:
        @hookimpl(**marks)
        def falconet_event_parsers(self, engine):
            calls.append(tag)
            return [lambda e: None]
    return P()


def test_tryfirst_plugin_runs_before_the_builtins_and_trylast_after() -> None:
    calls: list[str] = []
    app = make_app([("late", _recording("late", calls, trylast=True)),
                    ("plain", _recording("plain", calls)),
                    ("early", _recording("early", calls, tryfirst=True))],
                   builtins=[("core-state", "falconet.state.plugin"),
                             ("outputs", "falconet.outputs.builtin")])
    app.load_plugins()
    assert not app.host.failures
    # pluggy's order: tryfirst, then unmarked in load order (built-ins first), then trylast
    assert calls == ["early", "plain", "late"]
    assert [n for n, _ in app.parsers] == ["early", "core-state", "plain", "late"]


def test_hook_wrappers_are_refused_with_a_load_error_naming_the_plugin() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def falconet_fields(self, engine):
            return (yield)

    class OldWrapper:
        @hookimpl(hookwrapper=True)
        def falconet_alert_sinks(self, engine):
            yield

    app = make_app([("wrap", Wrapper()), ("oldwrap", OldWrapper()), ("good", GoodPlugin())])
    app.load_plugins()
    failures = {f.name: (f.stage, f.reason) for f in app.host.failures}
    assert failures["wrap"][0] == "import"
    assert "hook wrappers are not supported: falconet_fields is marked wrapper=True" in \
        failures["wrap"][1]
    assert "falconet_alert_sinks is marked hookwrapper=True" in failures["oldwrap"][1]
    assert "wrap" not in app.host.names and "good" in app.host.names
    assert "good.answer" in app.ctx.fields.fields


def test_a_misspelt_hook_is_an_error_not_a_silent_no_op() -> None:
    class Typo:
        @hookimpl
        def falconet_feilds(self, engine):
            return []

    host = PluginHost({}, builtins=[], entry_points=False, extra=[("typo", Typo())])
    host.load()
    [f] = host.failures
    assert f.name == "typo" and "falconet_feilds is not a Falconet hook" in f.reason
    with pytest.raises(AttributeError):       # the engine's side: a typo fails loudly too
        host.call(host.hook.falconet_feilds, engine=None)


def test_a_class_plugin_gets_one_instance_per_engine() -> None:
    class Counter:
        def __init__(self) -> None:
            self.configured = 0

        @hookimpl
        def falconet_configure(self, config, engine):
            self.configured += 1

    apps = [make_app([("counter", Counter)]) for _ in range(2)]
    for app in apps:
        app.load_plugins()
    objs = [app.host.pm.get_plugin("counter") for app in apps]
    assert objs[0] is not objs[1] and [o.configured for o in objs] == [1, 1]


def test_a_declared_schema_validates_the_section_with_its_location(tmp_path) -> None:
    from falconet.plugin_config import ConfigSchema, Setting, integer

    class Schemed:
        def __init__(self) -> None:
            self.config = None

        @hookimpl
        def falconet_config_schema(self):
            return ConfigSchema({"level": Setting(integer(0, 9), 3)})

        @hookimpl
        def falconet_configure(self, config, engine):
            self.config = config

    f = tmp_path / "falconet.yaml"
    f.write_text("plugins:\n  schemed:\n    level: 12\n    colour: red\n")
    cfg = load_config(str(f), ["outputs.stdout.enabled=false"])
    app = App(cfg, builtins=[], entry_points=False, extra_plugins=[("schemed", Schemed)])
    app.load_plugins()
    [fail] = app.host.failures
    assert (fail.name, fail.stage) == ("schemed", "configure")
    assert f"{f}:3:5: error: plugins.schemed.level: expected an integer between 0 and 9, " \
           "got 12" in fail.reason
    assert f"{f}:4:5: error: plugins.schemed.colour: unknown key 'colour' (allowed here: " \
           "level)" in fail.reason
    ok = App(load_config(None, []), builtins=[], entry_points=False,
             extra_plugins=[("schemed", Schemed)])
    ok.load_plugins()
    assert ok.host.pm.get_plugin("schemed").config == {"level": 3}     # the default filled in


def test_the_metrics_server_comes_through_its_hook() -> None:
    import urllib.request

    app = make_app([], builtins=[("metrics", "falconet.metrics_plugin")])
    app.load_plugins()
    assert app.host.info["metrics"].hooks == ["falconet_metrics_server"]
    app.start_metrics("127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(app.metrics_server.url + "/metrics", timeout=5).read()
        assert b"falconet_events_total" in body or b"falcosecurity_" in body
    finally:
        app.stop_metrics()
    off = make_app([], overrides=["plugins.metrics.enabled=false"],
                   builtins=[("metrics", "falconet.metrics_plugin")])
    off.load_plugins()
    off.start_metrics("127.0.0.1", 0)
    assert off.metrics_server is None


def test_a_third_party_tryfirst_server_replaces_the_builtin() -> None:
    class Server:
        url = "stand-in://metrics"
        started = stopped = False

        def start(self) -> None:
            self.started = True

        def stop(self) -> None:
            self.stopped = True

    class Mine:
        @hookimpl(tryfirst=True)
        def falconet_metrics_server(self, engine, address, port, plugins):
            self.server = Server()
            return self.server

    mine = Mine()
    app = make_app([("mine", mine)], builtins=[("metrics", "falconet.metrics_plugin")])
    app.load_plugins()
    app.start_metrics("127.0.0.1", 0)
    assert app.metrics_server is mine.server and mine.server.started
    app.stop_metrics()
    assert mine.server.stopped


def test_contributions_are_checked_against_the_protocols() -> None:
    class HalfSource:                   # no open/close: not an EventSource
        name, source, live = "half", "syscall", False

    class HalfSink:                     # send only: not an AlertSink
        name = "half"

        def send(self, alert):
            pass

    class Bad:
        def __init__(self, hook, value):
            setattr(self, hook, hookimpl(lambda engine: value, specname=hook))

    app = make_app([("src", Bad("falconet_event_sources", [HalfSource()])),
                    ("sink", Bad("falconet_alert_sinks", [HalfSink()])),
                    ("parser", Bad("falconet_event_parsers", ["not callable"])),
                    ("field", Bad("falconet_fields", [object()])),
                    ("scalar", Bad("falconet_alert_sinks", 3)),
                    ("good", GoodPlugin())])
    app.load_plugins()
    reasons = {f.name: (f.stage, f.reason) for f in app.host.failures}
    assert reasons["src"][0] == "falconet_event_sources"
    assert reasons["src"][1].startswith("not an EventSource: ")
    assert reasons["sink"][1].startswith("not an AlertSink: ")
    assert reasons["parser"][1] == "not callable: 'not callable'"
    assert reasons["field"][1].startswith("not a FieldDef: ")
    assert reasons["scalar"] == ("falconet_alert_sinks", "expected a list, got int")
    assert "half" not in app.sources and app.host.names == ["outputs", "replay", "good"]


def test_collector_section_errors_carry_their_location(tmp_path) -> None:
    f = tmp_path / "falconet.yaml"
    f.write_text("collector:\n  ring_buffer_pages: 3\n  bogus: 1\n")
    app = App(load_config(str(f), []), builtins=[("ebpf", "falconet.collector.plugin")],
              entry_points=False)
    app.load_plugins()
    [fail] = app.host.failures
    assert (fail.name, fail.stage) == ("ebpf", "configure")
    assert f"{f}:2:3: error: collector.ring_buffer_pages: expected a power of two, got 3" \
        in fail.reason
    assert f"{f}:3:3: error: collector.bogus: unknown key 'bogus'" in fail.reason


def test_a_plugin_class_failing_to_build_or_a_duplicate_name_is_that_plugins_failure() -> None:
    class Broken:
        def __init__(self) -> None:
            raise OSError("no socket")

    app = make_app([("broken", Broken), ("good", GoodPlugin()), ("good", GoodPlugin())])
    app.load_plugins()
    reasons = [(f.name, f.stage, f.reason) for f in app.host.failures]
    assert ("broken", "import", "OSError: no socket") in reasons
    assert ("good", "import", "a plugin with this name is already loaded") in reasons
    assert app.host.names == ["outputs", "replay", "good"]
