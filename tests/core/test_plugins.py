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


def test_configured_responses_need_the_response_plugin() -> None:
    """Policies nobody runs are a start-up error, not silently ignored (the response plugin
    and its policy tests are in plugins/falconet-response)."""
    app = make_app([], overrides=["responses=[{name: p, actions: [{action: kill}]}]"])
    with pytest.raises(StartupError, match="required plugin 'response' failed \\(import\\): not "
                                           "installed"):
        app.load_plugins()


class AlertFields:
    """A plugin compiling a ``match:`` spec at ``falconet_alert_fields`` time."""

    @hookimpl
    def falconet_alert_fields(self, engine):
        from falconet.alertmatch import compile_match
        self.matcher = compile_match({"condition": "proc.name = x"}, engine.fields)
        return sorted(self.matcher.fields)


def test_alert_fields_hook_tokens_are_captured_by_rules() -> None:
    app = make_app([("af", AlertFields())], builtins=[("core-state", "falconet.state.plugin")])
    app.load_plugins()
    assert app.capture_fields == {"proc.name"}


