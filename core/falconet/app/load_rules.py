"""Step "load rules": which rules files this run reads and loading them with
:func:`falconet.rules.load_rules` against the engine's registry, plugin versions and
configuration (at start-up, and again on every reload)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from falconet import ENGINE_VERSION
from falconet.app.errors import StartupError
from falconet.app.load_plugins import load_plugins
from falconet.app.output_policies import output_policies
from falconet.delivery.setup import capture_fields
from falconet.events import SYSCALL_SOURCE
from falconet.priorities import Priority
from falconet.rules import rules_files_in

if TYPE_CHECKING:
    from falconet.app.engine import App

#: where the default rules are, after ``$FALCONET_RULES_DIR``: a checkout's ``rules/``, the host
#: service's ``/etc/falconet/rules``, then the copy a wheel installs as data beside the BPF source
#: (``<prefix>/share/falconet/rules``, see pyproject.toml; a distribution's Python installs into
#: ``/usr/local``, not ``sys.prefix``): the same places as ``collector.program``'s candidates
RULES_DIR_CANDIDATES: tuple[Path, ...] = (
    Path(__file__).resolve().parents[3] / "rules",        # <repo>/core/falconet/app/ → <repo>/rules
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


class EmptyRuleset:
    """No rules: every event passes through parsers and nothing matches (``record --no-rules``,
    benchmarks of the overhead floor)."""

    def match(self, evt: Any) -> list[Any]:
        return []

    def event_types(self, source: str) -> set[str] | None:
        return set()


def rules_files(app: App, cli_rules: list[str] | None) -> list[str]:
    """The rules files of this run: ``--rules``, else ``rules_files`` of the configuration, else
    the default rules; plus the plugins' rules files with ``load_plugin_rules``."""
    asked = cli_rules or app.config["rules_files"] or []
    files = rules_files_in(asked)
    if asked and not files:
        # an explicit choice that names no rules file must not fall back to the defaults
        raise StartupError("no rules files in " + ", ".join(map(str, asked))
                           + " (expected .yaml/.yml files)")
    if not files:
        files = default_rules_paths()
    if app.config["load_plugin_rules"]:
        files += [f for _, f in app.plugin_rules]
    return files


def load_ruleset(app: App, cli_rules: list[str] | None = None) -> Any:
    """Load rules with ``falconet.rules.load_rules``; warnings go to stderr. Raises
    :class:`StartupError` with every error (``file:line:col: error: ...``)."""
    load_plugins(app)
    app.cli_rules = list(cli_rules) if cli_rules else None
    res = load_rules_files(app, rules_files(app, cli_rules))
    app.metrics.last_reload_ts = time.time()
    if not res.ok:
        app.metrics.last_reload_ok = False
        raise StartupError("cannot load rules:\n" + "\n".join(str(e) for e in res.errors))
    app.metrics.last_reload_ok = True
    app.load_result = res
    app.ruleset = res.ruleset
    count_rules(app, res)
    return res.ruleset


def load_rules_files(app: App, files: list[str]) -> Any:
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
    cfg = app.config
    # the fields outputs' match:/aggregate: read are captured when alerts render
    capture = set(app.capture_fields) | capture_fields(output_policies(app))
    res = load_rules(files, app.ctx.fields, plugin_versions=app.plugin_versions,
                     sources=app.event_sources, min_priority=Priority.parse(cfg["priority"]),
                     rule_matching=cfg["rule_matching"], hostname=app.ctx.hostname,
                     append_output=cfg["append_output"], engine_version=ENGINE_VERSION,
                     capture_fields=capture,
                     max_file_bytes=cfg["rules_max_file_size"])
    for w in getattr(res, "warnings", []) or []:
        print(f"falconet: {w}", file=sys.stderr)
    return res


def count_rules(app: App, res: Any) -> None:
    """The rule metrics of a load: enabled rules by source, and every rule's tags."""
    counts: dict[str, int] = {}
    min_prio = Priority.parse(app.config["priority"])
    for r in getattr(res, "rules", None) or []:
        src, enabled = getattr(r, "source", None), getattr(r, "enabled", True)
        prio = getattr(r, "priority", Priority.DEBUG)
        if src and enabled and prio <= min_prio:
            counts[src] = counts.get(src, 0) + 1
            # known at load time: metric series get their tag labels before the first alert
            app.metrics.rule_tags[r.name] = sorted(getattr(r, "tags", None) or [])
    if not counts and getattr(res, "counts", None):
        c = res.counts
        n = c.get("rules") if isinstance(c, dict) else getattr(c, "rules", 0)
        counts = {SYSCALL_SOURCE: int(n or 0)}
    app.metrics.rules_loaded = counts
