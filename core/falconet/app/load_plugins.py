"""Steps "load plugins" (before anything else) and "start plugins" (once the pipeline runs):
the plugin host loads and configures every plugin, their contributions are collected
(:mod:`falconet.app.contributions`); ``falconet_start`` runs just before the source opens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from falconet.app.contributions import collect_contributions, drop_dead_contributions
from falconet.app.errors import StartupError
from falconet.app.shutdown import shutdown
from falconet.pipeline import Pipeline
from falconet.plugins import PluginRequiredError

if TYPE_CHECKING:
    from falconet.app.engine import App


def load_plugins(app: App) -> None:
    """Load, configure and collect every plugin's contributions (once). Raises
    :class:`StartupError` if a required plugin failed."""
    if app.plugins_loaded:
        return
    try:
        app.host.load()
        app.host.configure(app.ctx)
        collect_contributions(app)
    except PluginRequiredError as e:
        raise StartupError(str(e)) from None
    app.plugins_loaded = True


def start_plugins(app: App, pipeline: Pipeline) -> None:
    """Start the pipeline's workers, then ``falconet_start``; a plugin whose start failed
    contributes nothing from here on. A required plugin's failure shuts down and raises."""
    pipeline.start()
    try:
        app.host.call(app.host.hook.falconet_start, engine=app.ctx)
    except PluginRequiredError as e:
        shutdown(app, pipeline, None, 0)
        raise StartupError(str(e)) from None
    drop_dead_contributions(app, pipeline)
