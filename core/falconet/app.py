"""Builds an engine from configuration: plugin host → field registry → ruleset → pipeline, and runs
it on one event source. The ``run``, ``record``, ``replay``, ``fields`` and ``plugins`` commands
are thin layers over :class:`App`.

The start order a plugin can rely on is written once, in ``falconet.hookspecs``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from falconet import ENGINE_VERSION, __version__
from falconet.api import EngineContext
from falconet.config import Config, ConfigError, default_config_path, load_config
from falconet.delivery.setup import (
    PolicyError,
    build_policies,
    capture_fields,
    delivery_summary,
    outputs_health,
    prepare_state_dirs,
)
from falconet.delivery.statedir import StateDirError
from falconet.events import SYSCALL_SOURCE
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.outputs import encoding as output_encoding
from falconet.pipeline import Pipeline, refreeze_gc, restore_gc, tune_gc_for_events
from falconet.plugins import PluginHost, PluginRequiredError
from falconet.priorities import Priority
from falconet.reload import RulesReloader
from falconet.rules import rules_files_in
from falconet.state.tables import StateTables

log = logging.getLogger("falconet")


#: the plugin that runs ``responses:`` policies (plugins/falconet-response)
RESPONSE_PLUGIN = "response"


class StartupError(Exception):
    """The engine cannot start; the message says exactly why (printed without traceback)."""


class EmptyRuleset:
    """No rules: every event passes through parsers and nothing matches (``record --no-rules``,
    benchmarks of the overhead floor)."""

    def match(self, evt: Any) -> list[Any]:
        return []

    def event_types(self, source: str) -> set[str] | None:
        return set()


# ----------------------------------------------------------------------------------- rules paths
#: where the default rules are, after ``$FALCONET_RULES_DIR``: a checkout's ``rules/``, the host
#: service's ``/etc/falconet/rules``, then the copy a wheel installs as data beside the BPF source
#: (``<prefix>/share/falconet/rules``, see pyproject.toml; a distribution's Python installs into
#: ``/usr/local``, not ``sys.prefix``): the same places as ``collector.program``'s candidates
RULES_DIR_CANDIDATES: tuple[Path, ...] = (
    Path(__file__).resolve().parents[2] / "rules",
    Path("/etc/falconet/rules"),
    Path(sys.prefix) / "share" / "falconet" / "rules",
    Path("/usr/local/share/falconet/rules"),
    Path("/usr/share/falconet/rules"),
)


def default_rules_paths() -> list[str]:
    """``$FALCONET_RULES_DIR``, else the first of :data:`RULES_DIR_CANDIDATES` that holds rules
    files (the repository's ``rules/``, ``/etc/falconet/rules``, a wheel's installed copy)."""
    env = os.environ.get("FALCONET_RULES_DIR")
    candidates = [Path(env)] if env else []
    candidates += RULES_DIR_CANDIDATES
    for d in candidates:
        if d.is_dir():
            files = rules_files_in([str(d)])
            if files:
                return files
    return []


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


# ----------------------------------------------------------------------------------- the app
class App:
    """One engine instance.

    Args:
        config: the validated configuration.
        source_name: the event source this run will read (``ebpf``, ``replay``, a plugin's);
            published to plugins as ``engine.extras["falconet.source"]`` before configure.
        builtins / entry_points / extra_plugins: passed to :class:`PluginHost`.
    """

    def __init__(self, config: Config, *, source_name: str | None = None,
                 builtins: Iterable[tuple[str, str]] | None = None, entry_points: bool = True,
                 extra_plugins: Iterable[tuple[str, Any]] = ()) -> None:
        self.config = config
        # before any rule loads: the rule formatter bounds field values with it
        output_encoding.configure(config.get("output_max_field_len",
                                             output_encoding.DEFAULT_MAX_FIELD_LEN))
        self.metrics = EngineMetrics()
        self.ctx = EngineContext(hostname=config.hostname, fields=FieldRegistry(),
                                 config=config.data, metrics=self.metrics, state=StateTables(),
                                 log=logging.getLogger("falconet"))
        self.ctx.extras["falconet.source"] = source_name
        plugins_cfg = dict(config.data.get("plugins") or {})
        if config.data.get("responses"):
            # configured policies must run or stop start-up, never be dropped silently: the
            # plugin that runs them (falconet-response) is required
            plugins_cfg[RESPONSE_PLUGIN] = {**(plugins_cfg.get(RESPONSE_PLUGIN) or {}),
                                            "required": True}
        self.host = PluginHost(plugins_cfg, builtins=builtins,
                               entry_points=entry_points, extra=extra_plugins,
                               where=config.where, whole_config=config.data)
        self.sources: dict[str, tuple[str, Any]] = {}       # source name -> (plugin, source)
        self.parsers: list[tuple[str, Callable[[Any], None]]] = []
        self.sinks: list[tuple[str, Any]] = []
        self.actions: dict[str, tuple[str, Any]] = {}        # action name -> (plugin, action)
        self.plugin_rules: list[tuple[str, str]] = []
        self.plugin_versions: dict[str, str] = {}
        #: field tokens every alert carries in ``Alert.match_fields``: the union of the
        #: ``AlertMatcher.fields`` of response policies and output routes (before rules load)
        self.capture_fields: set[str] = set()
        self.ruleset: Any = None
        self.load_result: Any = None
        self.pipeline: Pipeline | None = None
        self.metrics_server: Any = None
        self.reloader: RulesReloader | None = None
        self._cli_rules: list[str] | None = None
        self._running_source: Any = None
        self._loaded = False
        self._policies: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------ plugins
    def load_plugins(self) -> None:
        """Load, configure and collect every plugin's contributions. Raises
        :class:`StartupError` if a required plugin failed."""
        if self._loaded:
            return
        try:
            self.host.load()
            self.host.configure(self.ctx)
            self._collect()
        except PluginRequiredError as e:
            raise StartupError(str(e)) from None
        self._loaded = True

    def _collect(self) -> None:
        h, ctx = self.host, self.ctx
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
                if s.name in self.sources:
                    h.drop(name, "falconet_event_sources", f"event source '{s.name}' is already "
                           f"provided by plugin '{self.sources[s.name][0]}'")
                    break
                self.sources[s.name] = (name, s)
        self.parsers += [(name, fn) for name, fns in parsers for fn in fns]
        self.sinks += [(name, s) for name, ss in sinks for s in ss]
        for name, acts in actions:
            for a in acts:
                self.actions[a.name] = (name, a)
        for name, files in rules:
            self.plugin_rules += [(name, str(f)) for f in files]
        merged = dict(h.versions)
        for _name, v in versions:
            merged.update({str(k): str(x) for k, x in dict(v).items()})

        # a plugin dropped at any step contributes nothing at all
        alive = set(h.info)
        self.sources = {k: v for k, v in self.sources.items() if v[0] in alive}
        self.parsers = [p for p in self.parsers if p[0] in alive]
        self.sinks = [s for s in self.sinks if s[0] in alive]
        self.actions = {k: v for k, v in self.actions.items() if v[0] in alive}
        self.plugin_rules = [r for r in self.plugin_rules if r[0] in alive]
        self.plugin_versions = {k: v for k, v in merged.items() if k not in h.versions or k in alive}
        dead = [n for n, owner in field_owner.items() if owner not in alive]
        for n in dead:
            del ctx.fields.fields[n]
        self._collect_alert_fields()

    def _collect_alert_fields(self) -> None:
        """``falconet_alert_fields``: plugins compile their ``match:`` specs (response policies)
        against the complete registry; the tokens they name are captured by every rule."""
        h, ctx = self.host, self.ctx
        ctx.extras["falconet.response_actions"] = {k: a for k, (_p, a) in self.actions.items()}
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
            self.capture_fields.update(str(t) for t in tokens)
        alive = set(h.info)
        self.sinks = [s for s in self.sinks if s[0] in alive]
        self.parsers = [p for p in self.parsers if p[0] in alive]
        self.actions = {k: v for k, v in self.actions.items() if v[0] in alive}
        if self.config["responses"] and "falconet.responses" not in ctx.extras:
            raise StartupError("responses: policies are configured but no plugin runs them "
                               f"(the '{RESPONSE_PLUGIN}' plugin, plugins/falconet-response)")

    @property
    def event_sources(self) -> set[str]:
        """Every event source this engine can see (rules of other sources are skipped)."""
        out = {SYSCALL_SOURCE}
        out |= {s.source for _, s in self.sources.values() if getattr(s, "source", None)}
        for f in self.ctx.fields.fields.values():
            out |= set(f.sources)
        return out

    # ------------------------------------------------------------------------------ rules
    def rules_files(self, cli_rules: list[str] | None) -> list[str]:
        asked = cli_rules or self.config["rules_files"] or []
        files = rules_files_in(asked)
        if asked and not files:
            # an explicit choice that names no rules file must not fall back to the defaults
            raise StartupError("no rules files in " + ", ".join(map(str, asked))
                               + " (expected .yaml/.yml files)")
        if not files:
            files = default_rules_paths()
        if self.config["load_plugin_rules"]:
            files += [f for _, f in self.plugin_rules]
        return files

    def load_ruleset(self, cli_rules: list[str] | None = None) -> Any:
        """Load rules with ``falconet.rules.load_rules``; warnings go to stderr. Raises
        :class:`StartupError` with every error (``file:line:col: error: ...``)."""
        self.load_plugins()
        self._cli_rules = list(cli_rules) if cli_rules else None
        res = self._load_rules_files(self.rules_files(cli_rules))
        self.metrics.last_reload_ts = time.time()
        if not res.ok:
            self.metrics.last_reload_ok = False
            raise StartupError("cannot load rules:\n" + "\n".join(str(e) for e in res.errors))
        self.metrics.last_reload_ok = True
        self.load_result = res
        self.ruleset = res.ruleset
        self._count_rules(res)
        return res.ruleset

    def _load_rules_files(self, files: list[str]) -> Any:
        """One load with this engine's registry, plugin versions and configuration (start-up and
        every reload). Warnings go to stderr; returns the ``LoadResult``. Raises
        :class:`StartupError` when there is nothing to load."""
        if not files:
            raise StartupError("no rules files: pass --rules FILE, set rules_files in "
                               "falconet.yaml, or install rules in $FALCONET_RULES_DIR, "
                               "<repo>/rules or /etc/falconet/rules")
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise StartupError("rules file not found: " + ", ".join(missing))
        # imported on first load: commands that load no rules (plugins, fields) start faster
        from falconet.rules import load_rules  # noqa: PLC0415
        cfg = self.config
        # the fields outputs' match:/aggregate: read are captured when alerts render
        capture = set(self.capture_fields) | capture_fields(self.output_policies())
        res = load_rules(files, self.ctx.fields, plugin_versions=self.plugin_versions,
                         sources=self.event_sources, min_priority=Priority.parse(cfg["priority"]),
                         rule_matching=cfg["rule_matching"], hostname=self.ctx.hostname,
                         append_output=cfg["append_output"], engine_version=ENGINE_VERSION,
                         capture_fields=capture,
                         max_file_bytes=cfg["rules_max_file_size"])
        for w in getattr(res, "warnings", []) or []:
            print(f"falconet: {w}", file=sys.stderr)
        return res

    # ------------------------------------------------------------------------------ hot reload
    def watched_rules_paths(self) -> list[str]:
        """What a rules reload reads: the paths as given (a directory, to see files added to
        it) plus every file loaded from them, plugin rules files included."""
        given = list(self._cli_rules or self.config["rules_files"] or [])
        if not given:
            # the default rules: watch their directory too, so a file dropped into it loads
            given = list(dict.fromkeys(str(Path(f).parent) for f in default_rules_paths()))
        return list(dict.fromkeys([*given, *self.rules_files(self._cli_rules)]))

    def reload_rules(self, reason: str = "reload requested", *, wait: float = 10.0) -> bool:
        """Load the rules again (same registry, plugin versions and configuration). On errors
        the running ruleset stays, every error is printed (``file:line:col``) and the failure is
        counted; on success the pipeline swaps rulesets between two events and the rule metrics
        follow. Returns whether the new rules are in place (or queued, when the loop is not
        running). Runs on the reloader thread while events keep flowing."""
        m = self.metrics
        try:
            res = self._load_rules_files(self.rules_files(self._cli_rules))
            errors = [] if res.ok else [str(e) for e in res.errors]
        except StartupError as e:
            res, errors = None, [str(e)]
        if errors:
            m.last_reload_ok = False
            m.reload_failures += 1
            print(f"falconet: error: rules reload ({reason}) failed, the previous rules stay "
                  "active:\n" + "\n".join(f"  {e}" for e in errors), file=sys.stderr, flush=True)
            return False
        self._warn_untraced(res.ruleset)
        swapped = threading.Event()

        def on_swapped(_rs: Any) -> None:     # on the loop thread, between two events
            self.ruleset, self.load_result = res.ruleset, res
            self._count_rules(res)
            m.last_reload_ts = time.time()
            m.last_reload_ok = True
            swapped.set()

        if self.pipeline is None:
            on_swapped(res.ruleset)
        else:
            self.pipeline.swap_ruleset(res.ruleset, on_swapped)
            if not swapped.wait(wait):
                # the loop is between events for longer (an idle source): it swaps on its next
                # event or idle tick
                log.info("rules reload: the new ruleset is queued for the next event")
                return True
        n = sum(m.rules_loaded.values())
        print(f"falconet: rules reloaded ({reason}): {n} rules", file=sys.stderr, flush=True)
        return True

    def _warn_untraced(self, ruleset: Any) -> None:
        """The eBPF source picks its syscalls at start: say which new event types it does not
        trace (they need a restart)."""
        src = self._running_source
        built = getattr(src, "built", None)
        attached = getattr(built, "events", None)
        if src is None or attached is None:
            return
        from falconet import syscalls  # noqa: PLC0415 - only for the live collector

        wanted = ruleset.event_types(getattr(src, "source", SYSCALL_SOURCE))
        missing = sorted(syscalls.selected_events(wanted) - set(attached))
        if missing:
            print("falconet: warning: the reloaded rules use event types the running collector "
                  f"does not trace (restart falconet to trace them): {', '.join(missing)}",
                  file=sys.stderr, flush=True)

    def _count_rules(self, res: Any) -> None:
        counts: dict[str, int] = {}
        min_prio = Priority.parse(self.config["priority"])
        for r in getattr(res, "rules", None) or []:
            src, enabled = getattr(r, "source", None), getattr(r, "enabled", True)
            prio = getattr(r, "priority", Priority.DEBUG)
            if src and enabled and prio <= min_prio:
                counts[src] = counts.get(src, 0) + 1
                # known at load time: metric series get their tag labels before the first alert
                self.metrics.rule_tags[r.name] = sorted(getattr(r, "tags", None) or [])
        if not counts and getattr(res, "counts", None):
            c = res.counts
            n = c.get("rules") if isinstance(c, dict) else getattr(c, "rules", 0)
            counts = {SYSCALL_SOURCE: int(n or 0)}
        self.metrics.rules_loaded = counts

    # ------------------------------------------------------------------------------ delivery
    def output_policies(self) -> dict[str, Any]:
        """Each output's routing, aggregation and spool settings (compiled once; a bad
        ``match:`` or ``aggregate:`` is a :class:`StartupError` with file:line:col)."""
        if self._policies is None:
            self.load_plugins()
            try:
                self._policies = build_policies(self.config, self.sinks, self.ctx.fields)
            except PolicyError as e:
                raise StartupError("invalid output settings:\n" + "\n".join(e.problems)) from None
        return self._policies

    def _check_state_dir(self) -> None:
        """Before any output starts: an unsafe or unusable ``state_dir`` stops the start (an
        output that silently lost its spool would drop what it promised to keep)."""
        try:
            prepare_state_dirs(self.output_policies())
        except StateDirError as e:
            raise StartupError(f"state_dir: {e}") from None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: ``degraded`` (still 200) while an output spools (docs/outputs.md)."""
        return outputs_health(self.pipeline.workers if self.pipeline is not None else [])

    # ------------------------------------------------------------------------------ pipeline
    def build_pipeline(self, ruleset: Any = None, *, extra_parsers: Iterable[tuple[str, Any]] = ()
                       ) -> Pipeline:
        self.load_plugins()
        rs = ruleset if ruleset is not None else self.ruleset
        if rs is None:
            rs = self.load_ruleset()
        sinks = [s for _, s in self.sinks]
        self._check_state_dir()
        self.pipeline = Pipeline(rs, [*self.parsers, *extra_parsers], sinks,
                                 self.metrics, state=self.ctx.state,
                                 queue_capacity=self.config["outputs_queue"]["capacity"],
                                 policies=self.output_policies())
        # sources (the collector's drop alerts) raise internal alerts through this
        self.ctx.extras["falconet.inject_alert"] = self.pipeline.inject
        st = self.ctx.state
        if st is not None and hasattr(st, "sizes") and "state_table_entries" not in self.metrics.gauges:
            self.metrics.gauges["state_table_entries"] = lambda: {
                k: float(v) for k, v in st.sizes().items()}
        return self.pipeline

    def source(self, name: str) -> Any:
        self.load_plugins()
        if name not in self.sources:
            why = "".join(f"\n  plugin '{f.name}' failed ({f.stage}): {f.reason}"
                          for f in self.host.failures)
            raise StartupError(f"unknown event source '{name}' (available: "
                               f"{', '.join(sorted(self.sources)) or 'none'}){why}")
        return self.sources[name][1]

    # ------------------------------------------------------------------------------ metrics
    def start_metrics(self, address: str, port: int) -> None:
        """Start the server a ``falconet_metrics_server`` hook contributes (the built-in
        ``metrics`` plugin's Prometheus server); none: a warning, the engine runs without."""
        h = self.host
        # /healthz shows each output's queue and spool (the server calls this per request)
        self.ctx.extras["falconet.health"] = self.health
        servers = h.call(h.hook.falconet_metrics_server, engine=self.ctx, address=address,
                         port=port, plugins=h)
        if not servers:
            log.warning("metrics server not available (no plugin provides one: is the built-in "
                        "'metrics' plugin disabled or failing? see `falconet plugins list`)")
            return
        srv = servers[0][1]
        try:
            srv.start()
        except OSError as e:
            raise StartupError(f"metrics server cannot listen on {address}:{port}: "
                               f"{e.strerror or e}") from None
        self.metrics_server = srv

    def stop_metrics(self) -> None:
        if self.metrics_server is not None:
            try:
                self.metrics_server.stop()
            except Exception as e:  # noqa: BLE001
                log.warning("metrics server stop failed: %s", e)
            self.metrics_server = None

    # ------------------------------------------------------------------------------ running
    def run(self, source_name: str, options: dict[str, Any], *, duration: float | None = None,
            metrics_addr: tuple[str, int] | None = None, linger: float = 0.0,
            before_open: Callable[[], None] | None = None, hot_reload: bool = False,
            early_hups: list[int] | None = None) -> int:
        """Run the pipeline on one source until it ends, ``duration`` passes, or SIGINT/SIGTERM.
        With ``hot_reload``, SIGHUP (and, with ``watch_rules_files``, a changed rules file)
        reloads the rules; ``early_hups`` holds SIGHUPs the caller caught before (see
        ``commands/run.py``), which reload once the engine runs. Returns the exit code."""
        src = self.source(source_name)
        pipeline = self.pipeline or self.build_pipeline()
        self.ctx.extras["falconet.live"] = bool(getattr(src, "live", False))
        if metrics_addr is not None:
            self.start_metrics(*metrics_addr)
        pipeline.start()
        try:
            self.host.call(self.host.hook.falconet_start, engine=self.ctx)
        except PluginRequiredError as e:
            self._shutdown(pipeline, None, 0)
            raise StartupError(str(e)) from None
        self._drop_dead_contributions(pipeline)
        if before_open is not None:
            before_open()
        opts = {"engine": self.ctx, "metrics": self.metrics, **options}
        in_main = threading.current_thread() is threading.main_thread()
        early_hups = early_hups if early_hups is not None else []
        old_hup: Any = None
        early_hup_handler = hot_reload and in_main and hasattr(signal, "SIGHUP")
        if early_hup_handler:
            # opening the eBPF source takes seconds; a `systemctl reload` meanwhile must not kill
            # the engine (SIGHUP's default action): remember it, reload once the reloader runs
            old_hup = signal.signal(signal.SIGHUP, lambda s, _f: early_hups.append(s))
        try:
            events = src.open(opts)
        except Exception as e:  # noqa: BLE001 - the source says what is missing
            if early_hup_handler:
                signal.signal(signal.SIGHUP, old_hup)
            self._shutdown(pipeline, None, 0)
            why = str(e).strip() or type(e).__name__
            raise StartupError(f"cannot start event source '{source_name}': {why}") from None

        if getattr(src, "live", False):
            # also the readiness signal: the source is attached when this line appears
            n_rules = sum(self.metrics.rules_loaded.values())
            where = f", metrics on {self.metrics_server.url}/metrics" if self.metrics_server and \
                hasattr(self.metrics_server, "url") else ""
            print(f"falconet: watching (source {source_name}, {n_rules} rules){where}",
                  file=sys.stderr, flush=True)
        stopped_by: list[str] = []

        def on_signal(signum: int, _frame: Any) -> None:
            stopped_by.append(_signal_name(signum))
            pipeline.request_stop()
            # a second Ctrl-C exits at once
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        old: dict[int, Any] = {}
        if early_hup_handler:
            old[signal.SIGHUP] = old_hup
        if in_main:
            for s in (signal.SIGINT, signal.SIGTERM):
                old[s] = signal.signal(s, on_signal)
        if hot_reload:
            self._running_source = src
            watch = self.watched_rules_paths if self.config["watch_rules_files"] else None
            self.reloader = RulesReloader(self._reload_and_refreeze, watch)
            self.reloader.start()
            if in_main and hasattr(signal, "SIGHUP"):
                reloader = self.reloader
                # plugins that act on SIGHUP too (the response plugin re-arms its policies)
                hup_hooks = list(self.ctx.extras.get("falconet.on_sighup", []))

                def on_hup(_s: int, _f: Any) -> None:
                    reloader.request("SIGHUP")
                    for hook in hup_hooks:
                        hook()
                signal.signal(signal.SIGHUP, on_hup)
                if early_hups:
                    reloader.request("SIGHUP")
        timer = None
        if duration is not None:
            timer = threading.Timer(duration, pipeline.request_stop)
            timer.daemon = True
            timer.start()
        rc = 0
        gc_before = tune_gc_for_events()
        try:
            pipeline.run(events)
        except Exception as e:  # noqa: BLE001 - a source that dies mid-run: report, shut down clean
            self.metrics.drop("source_error")
            print(f"falconet: error: event source '{source_name}' failed: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            rc = 1
        finally:
            restore_gc(gc_before)
            if timer is not None:
                timer.cancel()
            if self.reloader is not None:
                self.reloader.stop(timeout=2.0)    # a daemon thread: never hold up the exit
                self.reloader = None
            try:
                self._shutdown(pipeline, src, linger)   # a signal here ends the linger early
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        if stopped_by:
            log.info("stopped by %s", stopped_by[0])
        return rc

    def _reload_and_refreeze(self, reason: str) -> bool:
        ok = self.reload_rules(reason)
        if ok:
            refreeze_gc()       # collect the old ruleset, which start-up froze
        return ok

    def _drop_dead_contributions(self, pipeline: Pipeline) -> None:
        """A plugin whose ``falconet_start`` failed was unregistered: take its parsers and sinks
        out of the pipeline too."""
        alive = set(self.host.info)
        dead_sinks = {id(s) for name, s in self.sinks if name not in alive}
        if not dead_sinks and all(n in alive for n, _ in self.parsers):
            return
        mine = {n for n, _ in self.parsers}
        pipeline.parsers = [(n, f) for n, f in pipeline.parsers if n in alive or n not in mine]
        for w in [w for w in pipeline.workers if id(w.sink) in dead_sinks]:
            pipeline.workers.remove(w)
            w.stop(1.0)

    def _shutdown(self, pipeline: Pipeline, src: Any, linger: float) -> None:
        if src is not None:
            try:
                src.close()
            except Exception as e:  # noqa: BLE001
                log.warning("closing source failed: %s", e)
        pipeline.close()
        self.host.hook.falconet_stop(engine=self.ctx)      # failures logged, plugins kept
        if linger > 0 and self.metrics_server is not None:
            deadline = time.monotonic() + linger
            while time.monotonic() < deadline and not pipeline.stopping:
                time.sleep(0.05)
        self.stop_metrics()

    def summary(self) -> str:
        """One line: events, alerts by priority, drops by cause, and per output what was sent
        (confirmed by the sink), failed and dropped."""
        m = self.metrics
        drops = sum(m.drops.values())
        by_prio: dict[str, int] = {}
        for (_rule, prio, _src), n in m.alerts.items():
            label = Priority(prio).label
            by_prio[label] = by_prio.get(label, 0) + n
        prios = ", ".join(f"{k}: {v}" for k, v in sorted(by_prio.items(),
                                                          key=lambda kv: Priority.parse(kv[0])))
        events = self.pipeline.events if self.pipeline else 0
        alerts = self.pipeline.alerts if self.pipeline else 0
        return (f"falconet: {events} events, {alerts} alerts"
                + (f" ({prios})" if prios else "") + f", {drops} drops"
                + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(m.drops.items()) if v) + ")"
                   if drops else "") + self._outputs_summary())

    def _outputs_summary(self) -> str:
        m = self.metrics
        names = sorted(set(m.output_sent) | set(m.output_failures) | set(m.output_drops)
                       | {w.name for w in (self.pipeline.workers if self.pipeline else [])})
        spools = {w.name: w.spool for w in (self.pipeline.workers if self.pipeline else [])
                  if hasattr(w, "spool")}
        parts = []
        for name in names:
            counts = [f"{m.output_sent.get(name, 0)} sent"]
            if m.output_failures.get(name):
                counts.append(f"{m.output_failures[name]} failed")
            if m.output_drops.get(name):
                counts.append(f"{m.output_drops[name]} dropped")
            counts += delivery_summary(m, name, spools.get(name))
            parts.append(f"{name} " + ", ".join(counts))
        return "; outputs: " + "; ".join(parts) if parts else ""

    def losses(self) -> int:
        """Everything lost in this run, each counted once: drops (every cause; alerts an output
        queue could not take are among them) plus alerts an output failed to deliver."""
        m = self.metrics
        return sum(m.drops.values()) + sum(m.output_failures.values())


# ----------------------------------------------------------------------------------- CLI helpers
def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE",
                   help="configuration file (default: $FALCONET_CONFIG, /etc/falconet/falconet.yaml)")
    p.add_argument("-o", "--option", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key, e.g. -o json_output=true "
                   "or -o plugins.container.required=true (repeatable)")


def add_engine_arguments(p: argparse.ArgumentParser, *, metrics_default: bool = True) -> None:
    add_config_arguments(p)
    p.add_argument("-r", "--rules", action="append", metavar="FILE",
                   help="rules file or directory (repeatable; default: rules_files from the "
                        "config, else the default rules directory)")
    p.add_argument("--json", action="store_true", help="print alerts as JSON lines (json_output)")
    if metrics_default:
        p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--metrics-address", metavar="ADDR", help="metrics bind address "
                   "(default: metrics.address, 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="metrics port (default: metrics.port, 8765)" if metrics_default else
                   "serve /metrics on PORT (only when given)")


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "json", False):
        overrides.append("json_output=true")
    path = getattr(args, "config", None) or default_config_path()
    return load_config(path, overrides)


def metrics_address(args: argparse.Namespace, cfg: Config, *, default_on: bool
                    ) -> tuple[str, int] | None:
    """Where to serve metrics, or ``None``: ``run``/``record`` follow ``metrics.enabled``
    unless ``--no-metrics``; ``replay`` serves only when ``--metrics-port`` is given."""
    if getattr(args, "no_metrics", False):
        return None
    if default_on:
        if not cfg["metrics"]["enabled"] and args.metrics_port is None:
            return None
    elif args.metrics_port is None:
        return None
    addr = args.metrics_address or cfg["metrics"]["address"]
    port = args.metrics_port if args.metrics_port is not None else cfg["metrics"]["port"]
    return addr, port


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="falconet: %(levelname)s: %(message)s", stream=sys.stderr)


def quiet_plugin_log() -> None:
    """Listing commands show plugin failures themselves; don't log them twice."""
    logging.getLogger("falconet.plugins").setLevel(logging.CRITICAL)


def fail(msg: str, code: int = 1) -> int:
    print(f"falconet: error: {msg}", file=sys.stderr)
    return code


def guarded(fn: Callable[[], int]) -> int:
    """Run a command body: configuration, plugin and startup errors become one clear message and
    exit code 1 (2 for configuration), never a traceback."""
    from falconet.capture import CaptureError  # noqa: PLC0415

    try:
        return fn()
    except ConfigError as e:
        for p in e.problems:
            print(f"falconet: {p}", file=sys.stderr)
        return 2
    except (StartupError, CaptureError, PluginRequiredError) as e:
        return fail(str(e))


__all__ = ["App", "EmptyRuleset", "StartupError", "__version__", "add_config_arguments",
           "add_engine_arguments", "config_from_args", "default_rules_paths", "guarded",
           "metrics_address", "setup_logging"]
