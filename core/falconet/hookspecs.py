"""Every hook a Falconet plugin can implement.

A plugin is a Python module (or object) with functions decorated by ``falconet.hookimpl``, found
through the ``falconet`` entry-point group::

    # pyproject.toml of your plugin
    [project.entry-points.falconet]
    myplugin = "falconet_myplugin"        # the module that holds the hookimpls

Built-in parts (the eBPF collector, capture replay, process state, stdout/JSON/file/webhook outputs)
are registered through these same hooks, so reading ``falconet/outputs/`` shows how to write one.

Rules for every hook:
- Hooks that *contribute* things (sources, parsers, fields, sinks, rules files) are called **once at
  start**; they return objects the engine then uses directly. Nothing here is called per event, except
  the callables you return from :func:`falconet_event_parsers` and the extractors of your fields.
- A hook that raises is reported with your plugin's name and the reason; the engine drops your plugin
  and goes on, unless the config marks it ``required: true``, in which case start fails.
- Your plugin's own section of ``falconet.yaml`` (``plugins: {<name>: {...}}``) is passed to
  :func:`falconet_configure` only.

The objects passed around are documented in ``falconet.api`` (``EngineContext``, ``EventSource``,
``AlertSink``, ``ResponseAction``, ``ConfigSchema``). How hooks are ordered and how failures are
isolated: ``falconet.plugins``. The hook reference of ``docs/plugins.md`` is generated from this
module (``python -m falconet.hookdocs --write``; a test keeps it up to date).

Start order (the one place it is written; ``falconet.app`` follows it):
``falconet_config_schema`` → ``falconet_configure`` → ``falconet_fields`` /
``falconet_plugin_versions`` / ``falconet_rules_files`` / ``falconet_event_sources`` /
``falconet_event_parsers`` / ``falconet_alert_sinks`` / ``falconet_response_actions`` →
``falconet_alert_fields`` → rules load → (``--metrics``: ``falconet_metrics_server`` →
``falconet_metrics``) → ``falconet_start`` → (record: ``falconet_capture_state``) → the source
opens → events → the source closes → outputs drained, flushed, closed → ``falconet_stop``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from falconet.api import (
        AlertSink,
        ConfigSchema,
        EngineContext,
        EventSource,
        MetricsEndpoint,
        MetricsRegistry,
        ResponseAction,
        RuleAuthoringBackend,
    )
    from falconet.events import Event
    from falconet.fields import FieldDef
    from falconet.plugins import PluginHost

hookspec = pluggy.HookspecMarker("falconet")


# --------------------------------------------------------------------------------- lifecycle
@hookspec
def falconet_config_schema() -> ConfigSchema | None:
    """Declare the keys of your section (``plugins.<your plugin name>``) as a
    :class:`falconet.api.ConfigSchema`.

    The engine validates the section against it before :func:`falconet_configure` (unknown keys
    and wrong values are reported as ``falconet.yaml:LINE:COL: error: plugins.<name>.<key>:
    expected ...``, every plugin in the same format) and passes you the validated values with
    the defaults filled in. Checkers for common values are in ``falconet.plugin_config``
    (``boolean()``, ``integer()``, ``number()``, ``string()``, ``one_of()``, ``priority()``...).
    """


@hookspec
def falconet_configure(config: dict[str, Any], engine: EngineContext) -> None:
    """Receive your plugin's configuration section and the engine context, before anything else.

    ``config`` is your section ``plugins.<your plugin name>`` of ``falconet.yaml`` after ``-o``
    overrides: validated, with defaults, when you declare :func:`falconet_config_schema`; else
    the raw mapping (``{}`` when absent). Raise ``falconet.api.PluginConfigError`` for what a
    schema cannot say (two keys that contradict each other): the engine reports it with your
    plugin's name.
    ``engine`` is a :class:`falconet.api.EngineContext` (hostname, field registry, metrics,
    state tables, logger). Keep a reference if later hooks need it.
    """


@hookspec
def falconet_start(engine: EngineContext) -> None:
    """Called once the pipeline is built, just before the first event is read.

    Start background threads here (for example a metadata lookup worker). They must be daemon
    threads or be stopped in :func:`falconet_stop`.
    """


@hookspec
def falconet_stop(engine: EngineContext) -> None:
    """Called once at shutdown, after the last event and after outputs were flushed.

    Stop your threads and release resources. Exceptions are logged and ignored.
    """


# --------------------------------------------------------------------------------- input
@hookspec
def falconet_event_sources(engine: EngineContext) -> list[EventSource] | None:
    """Contribute event sources.

    Return a list of :class:`falconet.api.EventSource` objects. Each has a unique ``name`` (what the
    user selects with ``--source``), the event ``source`` it produces (``syscall``, ``k8s_audit``...)
    and ``open(options)`` returning an iterator of :class:`falconet.events.Event`. Live sources
    yield forever until ``close()``; file sources end when the file ends. Yield ``None`` when idle so
    the engine can do housekeeping without waiting for the next event.
    """


# --------------------------------------------------------------------------------- enrichment
@hookspec
def falconet_event_parsers(engine: EngineContext) -> list[Callable[[Event], None]] | None:
    """Contribute per-event parsers: callables ``parse(event) -> None``.

    Every event of every source passes through every parser **once, before rules run**, in hook
    order (``tryfirst`` parsers, then load order with core state first, then ``trylast`` ones).
    Use them to update your own state (a cache keyed by pid, a container table...) and to attach
    data to the event. They are on the hot path: do no I/O and
    no blocking calls here; hand slow work to a background thread. An exception from a parser is
    counted (``falconet_plugin_errors_total{plugin,hook="parser"}``) and the event goes on.
    """


@hookspec
def falconet_unfiltered_event_types(engine: EngineContext) -> list[str] | None:
    """Event types this plugin's event parsers must see whole; the kernel filter never drops
    them.

    The eBPF collector drops in the kernel the open events no loaded rule can match (and the
    closes of their fds, see docs/kernel-filter.md); a parser that learns from every open (the
    learning plugin) returns ``["open", "openat", "openat2", "creat"]`` here, and ``"close"``
    keeps every close. Called after ``falconet_configure``, when the rules are loaded; the
    types stay unfiltered for the whole run (``falconet rules list`` names the plugin).
    """


@hookspec
def falconet_fields(engine: EngineContext) -> list[FieldDef] | None:
    """Declare fields that rules and outputs can use.

    Return a list of :class:`falconet.fields.FieldDef`. Prefix your fields with your plugin's
    namespace (``myplugin.*``). Each declaration carries ``make_extractor(arg)``, called once per
    field token at rule-load time; it returns ``extract(event) -> value | None``. Return ``None``
    when the value is unknown: comparisons on a missing value are false, as in Falco. Extractors run
    on the hot path and are cached per event.
    """


# --------------------------------------------------------------------------------- rules
@hookspec
def falconet_rules_files(engine: EngineContext) -> list[str | os.PathLike[str]] | None:
    """Ship rules: return paths (``str`` or ``pathlib.Path``) of Falco-format YAML rules files.

    They are loaded after the user's ``rules_files`` (so a rule pack can ``override`` the defaults)
    when ``load_plugin_rules`` is true (the default). A rule pack is then just a pip package.
    """


@hookspec
def falconet_plugin_versions(engine: EngineContext) -> dict[str, str] | None:
    """Name the Falco plugin names and versions your plugin satisfies.

    Rules files declare ``required_plugin_versions`` (e.g. ``container >= 0.4.0``); return
    ``{"container": "0.4.0"}`` if your plugin provides the fields Falco's ``container`` plugin does.
    """


# --------------------------------------------------------------------------------- output
@hookspec
def falconet_alert_sinks(engine: EngineContext) -> list[AlertSink] | None:
    """Contribute alert sinks (outputs).

    Return :class:`falconet.api.AlertSink` objects: ``name``, ``min_priority``, ``start()``,
    ``send(alert)``, ``flush()``, ``close()``. Each sink runs on its own worker behind a bounded
    queue, never on the hot loop: a slow or failing sink only costs counted drops
    (``falconet_output_drops_total{output}``). Respect ``min_priority`` yourself if you
    construct sinks from config; the engine also filters by it before queueing.

    Routing, aggregation and the spool are the engine's: ``plugins.<your plugin>.match``,
    ``.aggregate`` and ``.spool`` apply to every sink you return (they are removed from the
    section your ``falconet_configure`` receives). A sink that sets ``spool = True`` and
    implements ``encode(alert) -> bytes`` and ``deliver(payloads) -> int``
    (:class:`falconet.api.SpoolingSink`) gets the on-disk spool when ``state_dir`` is set: the
    engine then calls those instead of ``send`` (docs/outputs.md).
    """


@hookspec
def falconet_response_actions(engine: EngineContext) -> list[ResponseAction] | None:
    """Contribute response actions that ``responses:`` policies of ``falconet.yaml`` can run.

    Return :class:`falconet.api.ResponseAction` objects (``name``, ``reversible``,
    ``check_params(params)``, ``run(target, alert, params) -> Outcome``, ``undo(data)``; the
    contract is ``falconet_response.actions.base``). The response plugin runs them off the hot
    path, within its safety model (docs/response.md). Never run a shell: pass argument vectors
    to ``subprocess``.
    """


@hookspec
def falconet_metrics(registry: MetricsRegistry, engine: EngineContext) -> None:
    """Register your own Prometheus metrics on ``registry`` (``register(collector)`` /
    ``unregister(collector)`` like a ``prometheus_client`` ``CollectorRegistry``) so they are
    served on ``/metrics`` beside the engine's.

    Called when the metrics server starts. Each plugin gets its own registry proxy: a collector
    that raises at scrape time is counted (``falconet_plugin_errors_total{plugin,
    hook="metrics"}``) and left out of that scrape. Keep label cardinality bounded (no pod or
    container ids as labels).
    """


@hookspec
def falconet_metrics_server(engine: EngineContext, address: str, port: int,
                            plugins: PluginHost) -> MetricsEndpoint | None:
    """Contribute the server of ``/metrics`` and ``/healthz`` (the built-in ``metrics`` plugin
    provides the Prometheus one, ``falconet.prometheus.MetricsServer``).

    Called once when the engine serves metrics (``metrics.enabled``, ``--metrics-port``), with
    the address and port to listen on; the first server returned is used. Return an object
    with ``start()`` (raises ``OSError`` when it cannot listen), ``stop()`` and ``url``, and
    call :func:`falconet_metrics` on ``plugins`` yourself if you serve plugin metrics.
    """


# --------------------------------------------------------------------------------- capture
@hookspec
def falconet_capture_state(engine: EngineContext) -> Any:
    """Return your plugin's state as JSON-serialisable data when a recording starts (or ``None``).

    ``falconet record`` writes it near the head of the capture (Falco's ``dump_state``), so that a
    replay sees the same world the live run saw: the core state plugin dumps the process and fd
    tables this way, the container plugin its container metadata. State that appears later (a
    container looked up in the background) is written in order with the events by calling
    ``engine.emit_state(<your plugin name>, data)``; it is a no-op when nothing is recording.
    """


@hookspec
def falconet_restore_state(plugin: str, data: Any, engine: EngineContext) -> None:
    """Replay: receive a state record written by ``falconet_capture_state`` or ``emit_state``.

    Called for every plugin with the writer's plugin name; act only when ``plugin`` is yours.
    Records arrive in file order, interleaved with events exactly as they were recorded.
    """


# --------------------------------------------------------------------------------- rule authoring
@hookspec
def falconet_rule_authoring_backends(engine: EngineContext) -> list[RuleAuthoringBackend] | None:
    """Contribute model backends for ``falconet rules generate`` (an LLM proposes a rule).

    Return :class:`falconet.api.RuleAuthoringBackend` objects: ``name`` (a short identifier,
    chosen with ``--backend NAME``) and
    ``propose(messages) -> str``. ``messages`` is a chat in the OpenAI format, a list of
    ``{"role": "system" | "user" | "assistant", "content": str}``: the system message describes
    the rule format, the fields with their types, the macros and lists in scope and the
    evidence; later user messages are the validation failures of your previous answer
    (``file:line:col`` load errors, unknown fields, undefined names, missed positives, alerts
    on negatives). Return the model's reply text: it must contain one YAML rules document
    (a fenced ```yaml block is fine). Every answer is validated by ``falconet rules prove``;
    you never need to check it yourself.

    Raise ``RuntimeError`` with a clear message when the backend cannot answer (client library
    not installed, no API key, server unreachable): the command prints it and exits 1. Read
    your settings from ``plugins.<your plugin name>`` (``falconet_configure``); never log or
    echo an API key. ``plugins/falconet-llm`` is the first-party example (OpenAI-compatible
    chat completions: hosted APIs, Ollama, vLLM, llama.cpp).
    """


# --------------------------------------------------------------------------------- alert matching
@hookspec
def falconet_alert_fields(engine: EngineContext) -> list[str] | None:
    """Compile what reads alert fields, and name the field tokens alerts must carry.

    Called once, after every plugin's fields are registered and before rules load (and after
    :func:`falconet_response_actions`: ``engine.extras["falconet.response_actions"]`` maps
    every contributed action name to its action). Compile ``match:`` specs here
    (:func:`falconet.alertmatch.compile_match`) and return the field tokens their conditions
    read (``AlertMatcher.fields``): every rule then captures their values into
    ``Alert.match_fields`` at render time. Raise ``falconet.api.PluginConfigError`` with
    ``file:line:col`` messages for invalid specs. The plugin that takes ``responses:`` sets
    ``engine.extras["falconet.responses"]``; without one, configured policies stop start-up.
    """


# --------------------------------------------------------------------------------- CLI
@hookspec
def falconet_commands() -> list[Any] | None:
    """Contribute ``falconet`` subcommands (``falconet respond ...`` comes from the response
    plugin this way).

    Return objects (modules work) with ``NAME``, ``HELP`` (one line), optional
    ``DESCRIPTION``, ``add_arguments(parser)`` and ``main(args) -> int``, like the modules of
    ``falconet.commands``. Called without an engine, only when the command line names no core
    command (or asks for help): keep the import light. A name that clashes with a core command
    is ignored.
    """
