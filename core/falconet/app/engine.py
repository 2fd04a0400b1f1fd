"""The engine's state, :class:`App`, and the order of its start-up steps.

Each step is a function of one module of this package (see :mod:`falconet.app`); an ``App``
method runs one step, and :meth:`App.run` runs the steps of a run in order. Commands call the
methods: ``load_plugins`` → ``load_ruleset`` → ``build_pipeline`` → ``run`` → ``summary``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from falconet import encoding as output_encoding
from falconet import workers as _workers
from falconet.api import EngineContext
from falconet.app import build_pipeline as _build
from falconet.app import kernel_filter as _kfilter
from falconet.app import load_plugins as _plugins
from falconet.app import load_rules as _rules
from falconet.app import metrics_server as _metrics
from falconet.app import output_policies as _policies
from falconet.app import reload_rules as _reload
from falconet.app import summary as _summary
from falconet.app.contributions import RESPONSE_PLUGIN
from falconet.app.errors import StartupError
from falconet.app.open_source import announce, open_source
from falconet.app.process_events import process_events
from falconet.config import Config
from falconet.events import SYSCALL_SOURCE
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.pipeline import Pipeline
from falconet.plugins import PluginHost
from falconet.reload import RulesReloader
from falconet.state.tables import StateTables


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
        #: each output's compiled routing/aggregation/spool settings (step output_policies)
        self.policies: dict[str, Any] | None = None
        self.ruleset: Any = None
        self.load_result: Any = None
        self.pipeline: Pipeline | None = None
        self.metrics_server: Any = None
        self.reloader: RulesReloader | None = None
        self.cli_rules: list[str] | None = None       # --rules as given (reloads read them again)
        self.running_source: Any = None               # the open source (reload checks its syscalls)
        #: the kernel filter the open source applies (``options["kernel_filter"]``), if any
        self.kernel_filter: Any = None
        self.plugins_loaded = False
        #: the worker processes of a partitioned run (``collector.workers`` > 1), else None
        self.worker_pool: Any = None
        #: wall seconds of the last run's event phase (set by process_events)
        self.events_seconds = 0.0
        #: CPU seconds of this process in that phase (with workers: the parent's share only)
        self.events_cpu_seconds = 0.0

    # ------------------------------------------------------------------------------ steps
    def load_plugins(self) -> None:
        """Load, configure and collect every plugin's contributions. Raises
        :class:`StartupError` if a required plugin failed."""
        _plugins.load_plugins(self)

    @property
    def event_sources(self) -> set[str]:
        """Every event source this engine can see (rules of other sources are skipped)."""
        out = {SYSCALL_SOURCE}
        out |= {s.source for _, s in self.sources.values() if getattr(s, "source", None)}
        for f in self.ctx.fields.fields.values():
            out |= set(f.sources)
        return out

    def rules_files(self, cli_rules: list[str] | None) -> list[str]:
        return _rules.rules_files(self, cli_rules)

    def load_ruleset(self, cli_rules: list[str] | None = None) -> Any:
        """Load rules with ``falconet.rules.load_rules``; warnings go to stderr. Raises
        :class:`StartupError` with every error (``file:line:col: error: ...``)."""
        return _rules.load_ruleset(self, cli_rules)

    def watched_rules_paths(self) -> list[str]:
        return _reload.watched_rules_paths(self)

    def reload_rules(self, reason: str = "reload requested", *, wait: float = 10.0) -> bool:
        """See :func:`falconet.app.reload_rules.reload_rules`."""
        return _reload.reload_rules(self, reason, wait=wait)

    def kernel_filter_plan(self, ruleset: Any = None, *, force: bool = False) -> Any:
        """The kernel filter of the loaded rules (``None``: ``collector.kernel_filter: false``);
        see :mod:`falconet.app.kernel_filter`."""
        return _kfilter.kernel_filter_plan(self, ruleset, force=force)

    def output_policies(self) -> dict[str, Any]:
        return _policies.output_policies(self)

    def health(self) -> tuple[bool, dict[str, Any]]:
        return _policies.health(self)

    def build_pipeline(self, ruleset: Any = None, *, extra_parsers: Iterable[tuple[str, Any]] = ()
                       ) -> Pipeline:
        return _build.build_pipeline(self, ruleset, extra_parsers=extra_parsers)

    def source(self, name: str) -> Any:
        return _build.find_source(self, name)

    def start_metrics(self, address: str, port: int) -> None:
        _metrics.start_metrics(self, address, port)

    def stop_metrics(self) -> None:
        _metrics.stop_metrics(self)

    def summary(self) -> str:
        return _summary.summary(self)

    def losses(self) -> int:
        return _summary.losses(self)

    # ------------------------------------------------------------------------------ a run
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
        if getattr(src, "live", False) and getattr(src, "source", None) == SYSCALL_SOURCE and \
                "kernel_filter" not in options and self.ruleset is not None:
            # a live kernel source filters what no rule can match (docs/kernel-filter.md)
            options = {**options, "kernel_filter": self.kernel_filter_plan()}
        self.kernel_filter = options.get("kernel_filter")
        self.ctx.extras["falconet.live"] = bool(getattr(src, "live", False))
        # collector.workers: fork now, with the rules compiled and before any plugin or output
        # thread exists (a fork copies only the calling thread)
        try:
            self.worker_pool = _workers.prepare(self, src, pipeline, options,
                                                reload=lambda: _rules.load_rules_files(
                                                    self, self.rules_files(self.cli_rules)).ruleset)
        except ValueError as e:
            raise StartupError(str(e)) from None
        if getattr(self.worker_pool, "live", False):
            options = {**options, "live_workers": self.worker_pool}
        try:
            if metrics_addr is not None:
                self.start_metrics(*metrics_addr)
            _plugins.start_plugins(self, pipeline)
            if before_open is not None:
                before_open()
            session = open_source(self, source_name, src, pipeline, options,
                                  guard_hup=hot_reload, early_hups=early_hups)
        except BaseException:
            if self.worker_pool is not None:
                self.worker_pool.abort()
            raise
        announce(self, session)
        return process_events(self, session, duration=duration, hot_reload=hot_reload,
                              linger=linger, pool=self.worker_pool)
