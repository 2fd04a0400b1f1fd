"""Falconet: runtime security for Linux hosts and containers.

Where things are, for a newcomer:
- an event enters at a source (``hookspecs.falconet_event_sources``; the eBPF collector is
  ``falconet.collector``, capture replay is ``falconet.capture``);
- it is enriched by parsers (``falconet.state`` for process/fd state, plugins for the rest);
- a rule matches in ``falconet.rules.ruleset.Ruleset.match``;
- an alert leaves through ``falconet.pipeline`` (bounded queue) to the sinks in ``falconet.outputs``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    #: the one version source is pyproject.toml (``[project] version``); read back from the
    #: installed distribution's metadata
    __version__ = version("falconet")
except PackageNotFoundError:          # run from a checkout without installing (bench/ scripts)
    __version__ = "0.0.0+unknown"

#: The version rules files are checked against (``required_engine_version``). We implement the
#: language of Falco's engine 0.63, so the upstream stable rules (which need 0.57.0) load.
ENGINE_VERSION = "0.63.0"
