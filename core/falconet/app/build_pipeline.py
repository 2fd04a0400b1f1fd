"""Step "build pipeline": parsers, ruleset and sinks become the :class:`~falconet.pipeline.Pipeline`,
and the event source of the run is looked up among the plugins' sources."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from falconet.app.errors import StartupError
from falconet.app.load_plugins import load_plugins
from falconet.app.load_rules import load_ruleset
from falconet.app.output_policies import check_state_dir, output_policies
from falconet.pipeline import Pipeline

if TYPE_CHECKING:
    from falconet.app.engine import App


def build_pipeline(app: App, ruleset: Any = None, *,
                   extra_parsers: Iterable[tuple[str, Any]] = ()) -> Pipeline:
    """The hot loop of this engine: the plugins' parsers (core-state first), the ruleset (the
    loaded one unless given) and one bounded queue per sink."""
    load_plugins(app)
    rs = ruleset if ruleset is not None else app.ruleset
    if rs is None:
        rs = load_ruleset(app)
    sinks = [s for _, s in app.sinks]
    check_state_dir(app)
    app.pipeline = Pipeline(rs, [*app.parsers, *extra_parsers], sinks,
                             app.metrics, state=app.ctx.state,
                             queue_capacity=app.config["outputs_queue"]["capacity"],
                             policies=output_policies(app))
    # sources (the collector's drop alerts) raise internal alerts through this
    app.ctx.extras["falconet.inject_alert"] = app.pipeline.inject
    st = app.ctx.state
    if st is not None and hasattr(st, "sizes") and "state_table_entries" not in app.metrics.gauges:
        app.metrics.gauges["state_table_entries"] = lambda: {
            k: float(v) for k, v in st.sizes().items()}
    return app.pipeline


def find_source(app: App, name: str) -> Any:
    """The event source ``name`` some plugin provides; the error lists the others and why
    plugins failed."""
    load_plugins(app)
    if name not in app.sources:
        why = "".join(f"\n  plugin '{f.name}' failed ({f.stage}): {f.reason}"
                      for f in app.host.failures)
        raise StartupError(f"unknown event source '{name}' (available: "
                           f"{', '.join(sorted(app.sources)) or 'none'}){why}")
    return app.sources[name][1]
