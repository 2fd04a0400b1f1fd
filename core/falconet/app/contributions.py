"""Collecting what plugins contribute (step "load plugins"), and forgetting what a plugin
that failed later contributed. The checks of each contribution live here, in one place."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from falconet.app.errors import StartupError
from falconet.config import ConfigError
from falconet.fields import FieldRegistry
from falconet.pipeline import Pipeline
from falconet.plugins import PluginRequiredError

if TYPE_CHECKING:
    from falconet.app.engine import App

#: the plugin that runs ``responses:`` policies (plugins/falconet-response)
RESPONSE_PLUGIN = "response"


def collect_contributions(app: App) -> None:
    """Every plugin's fields, sources, parsers, sinks, response actions, rules files and plugin
    versions. A contribution that is not what its hook promises drops its plugin, and a dropped
    plugin contributes nothing at all."""
    h, ctx = app.host, app.ctx
    fields = h.contributions(h.hook.falconet_fields, engine=ctx)
    versions = h.call(h.hook.falconet_plugin_versions, engine=ctx)
    rules = h.call(h.hook.falconet_rules_files, engine=ctx)
    # each checked against its Protocol (falconet.api.contribution_problem)
    sources = h.contributions(h.hook.falconet_event_sources, engine=ctx)
    parsers = h.contributions(h.hook.falconet_event_parsers, engine=ctx)
    sinks = h.contributions(h.hook.falconet_alert_sinks, engine=ctx)
    actions = h.contributions(h.hook.falconet_response_actions, engine=ctx)

    # fields first: a clash drops the plugin, and a dropped plugin contributes nothing
    field_owner: dict[str, str] = {}
    for name, fdefs in fields:
        if name not in h.info:
            continue
        if name != "core-state":
            # plugin fields name their plugin (``falconet fields`` shows it)
            fdefs = [replace(f, provider=name) if f.provider == "core" else f for f in fdefs]
        trial = FieldRegistry(dict(ctx.fields.fields))
        try:
            trial.register_all(fdefs)
        except ValueError as e:
            h.drop(name, "falconet_fields", str(e))
            continue
        ctx.fields.fields = trial.fields
        h.info[name].fields = sorted(f.name for f in fdefs)
        for f in fdefs:
            field_owner[f.name] = name

    for name, srcs in sources:
        for s in srcs:
            if s.name in app.sources:
                h.drop(name, "falconet_event_sources", f"event source '{s.name}' is already "
                       f"provided by plugin '{app.sources[s.name][0]}'")
                break
            app.sources[s.name] = (name, s)
    app.parsers += [(name, fn) for name, fns in parsers for fn in fns]
    app.sinks += [(name, s) for name, ss in sinks for s in ss]
    for name, acts in actions:
        for a in acts:
            app.actions[a.name] = (name, a)
    for name, files in rules:
        app.plugin_rules += [(name, str(f)) for f in files]
    merged = dict(h.versions)
    for _name, v in versions:
        merged.update({str(k): str(x) for k, x in dict(v).items()})

    # a plugin dropped at any step contributes nothing at all
    alive = set(h.info)
    app.sources = {k: v for k, v in app.sources.items() if v[0] in alive}
    app.parsers = [p for p in app.parsers if p[0] in alive]
    app.sinks = [s for s in app.sinks if s[0] in alive]
    app.actions = {k: v for k, v in app.actions.items() if v[0] in alive}
    app.plugin_rules = [r for r in app.plugin_rules if r[0] in alive]
    app.plugin_versions = {k: v for k, v in merged.items() if k not in h.versions or k in alive}
    dead = [n for n, owner in field_owner.items() if owner not in alive]
    for n in dead:
        del ctx.fields.fields[n]
    collect_alert_fields(app)


def collect_alert_fields(app: App) -> None:
    """``falconet_alert_fields``: plugins compile their ``match:`` specs (response policies)
    against the complete registry; the tokens they name are captured by every rule."""
    h, ctx = app.host, app.ctx
    ctx.extras["falconet.response_actions"] = {k: a for k, (_p, a) in app.actions.items()}
    try:
        found = h.call(h.hook.falconet_alert_fields, engine=ctx)
    except PluginRequiredError:
        bad = [f for f in h.failures if f.stage == "falconet_alert_fields"
               and f.name == RESPONSE_PLUGIN]
        if not bad:
            raise
        # the policies' own file:line:col messages, without the plugin-host wrapping
        raise ConfigError(bad[-1].reason.removeprefix("PluginConfigError: ").splitlines()
                          ) from None
    for _name, tokens in found:
        app.capture_fields.update(str(t) for t in tokens)
    alive = set(h.info)
    app.sinks = [s for s in app.sinks if s[0] in alive]
    app.parsers = [p for p in app.parsers if p[0] in alive]
    app.actions = {k: v for k, v in app.actions.items() if v[0] in alive}
    if app.config["responses"] and "falconet.responses" not in ctx.extras:
        raise StartupError("responses: policies are configured but no plugin runs them "
                           f"(the '{RESPONSE_PLUGIN}' plugin, plugins/falconet-response)")


def drop_dead_contributions(app: App, pipeline: Pipeline) -> None:
    """A plugin whose ``falconet_start`` failed was unregistered: take its parsers and sinks
    out of the pipeline too."""
    alive = set(app.host.info)
    dead_sinks = {id(s) for name, s in app.sinks if name not in alive}
    if not dead_sinks and all(n in alive for n, _ in app.parsers):
        return
    mine = {n for n, _ in app.parsers}
    pipeline.parsers = [(n, f) for n, f in pipeline.parsers if n in alive or n not in mine]
    for w in [w for w in pipeline.workers if id(w.sink) in dead_sinks]:
        pipeline.workers.remove(w)
        w.stop(1.0)
