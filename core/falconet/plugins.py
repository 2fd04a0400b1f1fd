"""The plugin host: built-ins and entry-point plugins behind one pluggy PluginManager.

Built-in parts are registered first, through the same hooks as third-party plugins (datasette's
default-plugins pattern), then every entry point of the ``falconet`` group. Hooks are called *per
plugin* (one hookimpl at a time) so a failure is attributed to the plugin by name: the plugin is
unregistered and reported, and the engine goes on without it, unless the configuration says
``plugins: {<name>: {required: true}}``, which makes the failure fatal (:class:`PluginRequiredError`).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from falconet import __version__, hookspecs
from falconet.delivery.policy import DELIVERY_KEYS

log = logging.getLogger("falconet.plugins")

ENTRY_POINT_GROUP = "falconet"

#: Built-in plugins, registered first and in this order (core state parses before anyone else).
DEFAULT_PLUGINS: list[tuple[str, str]] = [
    ("core-state", "falconet.state.plugin"),
    ("ebpf", "falconet.collector.plugin"),
    ("replay", "falconet.capture"),
    ("outputs", "falconet.outputs.builtin"),
]

#: hook name -> the kind of plugin implementing it makes (for ``falconet plugins list``)
HOOK_KINDS = {
    "falconet_event_sources": "input",
    "falconet_event_parsers": "enrichment",
    "falconet_fields": "enrichment",
    "falconet_alert_sinks": "output",
    "falconet_response_actions": "output",
    "falconet_metrics": "output",
    "falconet_rules_files": "rules",
}


class PluginRequiredError(RuntimeError):
    """A plugin marked ``required: true`` failed to load, configure or contribute."""


@dataclass
class PluginFailure:
    name: str
    stage: str        # "import", "configure", or the hook name
    reason: str


@dataclass
class PluginInfo:
    """What ``falconet plugins list`` shows about one loaded plugin."""

    name: str
    version: str
    builtin: bool
    module: str
    hooks: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return sorted({HOOK_KINDS[h] for h in self.hooks if h in HOOK_KINDS})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "builtin": self.builtin,
                "module": self.module, "kinds": self.kinds, "hooks": self.hooks,
                "fields": self.fields}


def _reason(e: BaseException) -> str:
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class PluginHost:
    """Loads plugins and calls their hooks one plugin at a time, isolating failures.

    Args:
        plugin_config: the ``plugins`` section of the config (``{name: {...}}``).
        builtins: built-in plugins as ``(name, module)``; defaults to :data:`DEFAULT_PLUGINS`.
        entry_points: also load the ``falconet`` entry-point group.
        extra: additional ``(name, plugin object)`` pairs (tests, embedding).
    """

    def __init__(self, plugin_config: dict[str, Any] | None = None, *,
                 builtins: Iterable[tuple[str, str]] | None = None, entry_points: bool = True,
                 extra: Iterable[tuple[str, Any]] = ()) -> None:
        self.plugin_config = plugin_config or {}
        self.pm = pluggy.PluginManager("falconet")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.info: dict[str, PluginInfo] = {}
        self._builtins = list(DEFAULT_PLUGINS if builtins is None else builtins)
        self._entry_points = entry_points
        self._extra = list(extra)
        self.versions: dict[str, str] = {}

    # ----------------------------------------------------------------------------- loading
    def _section(self, name: str) -> dict[str, Any]:
        sec = self.plugin_config.get(name)
        return sec if isinstance(sec, dict) else {}

    def is_required(self, name: str) -> bool:
        return bool(self._section(name).get("required", False))

    def _enabled(self, name: str) -> bool:
        return self._section(name).get("enabled", True) is not False

    def load(self) -> None:
        """Import and register built-ins, then entry points, then ``extra``. Failures are
        recorded (and raised for required plugins once everything was tried)."""
        for name, modname in self._builtins:
            if not self._enabled(name):
                continue
            try:
                mod = importlib.import_module(modname)
            except Exception as e:  # noqa: BLE001 - any import failure is the plugin's failure
                self._fail(name, "import", _reason(e), registered=False)
                continue
            self._register(name, mod, __version__, builtin=True)
        if self._entry_points:
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if not self._enabled(ep.name):
                    continue
                if self.pm.has_plugin(ep.name) or ep.name in self.info:
                    self._fail(ep.name, "import", "a plugin with this name is already loaded",
                               registered=False)
                    continue
                try:
                    obj = ep.load()
                except Exception as e:  # noqa: BLE001
                    self._fail(ep.name, "import", _reason(e), registered=False)
                    continue
                version = ep.dist.version if ep.dist is not None else "0"
                self._register(ep.name, obj, version, builtin=False)
        for name, obj in self._extra:
            if self._enabled(name):
                self._register(name, obj, getattr(obj, "__version__", "0"), builtin=False)
        # A plugin the config requires but nobody installed must not pass silently (a typo in
        # the name, or a forgotten `pip install`): the user asked for it to be fatal.
        failed = {f.name for f in self.failures}
        for name in self.plugin_config:
            if (self.is_required(name) and self._enabled(name) and name not in self.info
                    and name not in failed):
                self._fail(name, "import", "not installed (no built-in or 'falconet' entry "
                           "point of this name; see `falconet plugins list`)", registered=False)
        self.raise_if_required_failed()

    def _register(self, name: str, obj: Any, version: str, *, builtin: bool) -> None:
        try:
            self.pm.register(obj, name=name)
        except Exception as e:  # noqa: BLE001 - pluggy validation errors (bad hook signatures)
            self._fail(name, "import", _reason(e), registered=False)
            return
        modname = obj.__name__ if isinstance(obj, ModuleType) else type(obj).__module__
        hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        self.info[name] = PluginInfo(name, str(version), builtin, modname, hooks)
        self.versions[name] = str(version)

    def _fail(self, name: str, stage: str, reason: str, *, registered: bool = True) -> None:
        self.failures.append(PluginFailure(name, stage, reason))
        log.warning("plugin '%s' disabled: %s failed: %s", name, stage, reason)
        if registered and self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.info.pop(name, None)

    def raise_if_required_failed(self) -> None:
        bad = [f for f in self.failures if self.is_required(f.name)]
        if bad:
            raise PluginRequiredError("; ".join(
                f"required plugin '{f.name}' failed ({f.stage}): {f.reason}" for f in bad))

    # ----------------------------------------------------------------------------- calling
    @property
    def names(self) -> list[str]:
        """Loaded plugin names in registration order."""
        return list(self.info)

    def _impls(self, hook: str) -> list[tuple[str, Any]]:
        caller = getattr(self.pm.hook, hook)
        # get_hookimpls() is in registration order (pluggy *calls* them in reverse)
        return [(impl.plugin_name, impl) for impl in caller.get_hookimpls()]

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` on each plugin in registration order; returns ``[(plugin, result)]`` for
        the plugins that succeeded (``None`` results skipped). A plugin that raises is
        unregistered and recorded as failed (fatal if required)."""
        out: list[tuple[str, Any]] = []
        for name, impl in self._impls(hook):
            args = {a: kwargs[a] for a in impl.argnames}
            try:
                res = impl.function(**args)
            except Exception as e:  # noqa: BLE001 - attribute the failure, go on
                self._fail(name, hook, _reason(e))
                continue
            if res is not None:
                out.append((name, res))
        self.raise_if_required_failed()
        return out

    def call_safely(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on each plugin; log exceptions but keep the plugin (shutdown hooks)."""
        for name, impl in self._impls(hook):
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as e:  # noqa: BLE001
                log.error("plugin %s: %s failed: %s", name, hook, _reason(e))

    def configure(self, engine: Any) -> None:
        """``falconet_configure`` with each plugin's own section only."""
        for name, impl in self._impls("falconet_configure"):
            # match:/aggregate:/spool: of a plugin's sinks belong to the engine (docs/outputs.md)
            kw = {"config": {k: v for k, v in self._section(name).items()
                             if k not in DELIVERY_KEYS}, "engine": engine}
            try:
                impl.function(**{a: kw[a] for a in impl.argnames})
            except Exception as e:  # noqa: BLE001
                self._fail(name, "configure", _reason(e))
        self.raise_if_required_failed()

    def drop(self, name: str, stage: str, reason: str) -> None:
        """Report and unregister a plugin whose contribution turned out to be unusable."""
        self._fail(name, stage, reason)
        self.raise_if_required_failed()

    def restore_state(self, plugin: str, data: Any, engine: Any) -> None:
        """Replay: hand a state record to every plugin (each acts on its own records)."""
        for name, impl in self._impls("falconet_restore_state"):
            try:
                impl.function(**{k: v for k, v in
                                 (("plugin", plugin), ("data", data), ("engine", engine))
                                 if k in impl.argnames})
            except Exception as e:  # noqa: BLE001 - one bad record never stops the replay
                m = getattr(engine, "metrics", None)
                if m is not None:
                    m.plugin_errors[(name, "restore_state")] += 1
                log.warning("plugin %s: falconet_restore_state failed: %s", name, _reason(e))
