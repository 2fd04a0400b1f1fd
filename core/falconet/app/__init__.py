"""The engine: configuration → plugins → fields → rules → pipeline → one event source.

:class:`App` (:mod:`~falconet.app.engine`) holds one engine's state. Its start-up is a sequence
of named steps, one module each, as Falco's ``app/actions``:

1. :mod:`~falconet.app.load_plugins` - load and configure plugins; their contributions are
   collected and checked by :mod:`~falconet.app.contributions`;
2. :mod:`~falconet.app.load_rules` - find the rules files and load them (``falconet.rules``);
   :mod:`~falconet.app.reload_rules` loads them again while running;
3. :mod:`~falconet.app.build_pipeline` - parsers + ruleset + sinks → the pipeline;
4. :mod:`~falconet.app.metrics_server` - serve ``/metrics`` while running;
5. ``start_plugins`` (in :mod:`~falconet.app.load_plugins`) - ``falconet_start``;
6. :mod:`~falconet.app.open_source` - open the event source, print the readiness line;
7. :mod:`~falconet.app.process_events` - signals (:mod:`~falconet.app.signals`), hot reload,
   duration, the loop;
8. :mod:`~falconet.app.shutdown` - close the source, drain outputs, ``falconet_stop``;
9. :mod:`~falconet.app.summary` - the line a command prints at the end.

The start order a plugin can rely on is written once, in :mod:`falconet.hookspecs`.
"""

from falconet import __version__
from falconet.app.engine import App
from falconet.app.errors import StartupError
from falconet.app.load_rules import RULES_DIR_CANDIDATES, EmptyRuleset, default_rules_paths

__all__ = ["RULES_DIR_CANDIDATES", "App", "EmptyRuleset", "StartupError", "__version__",
           "default_rules_paths"]
