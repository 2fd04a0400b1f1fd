"""The plugin host: built-ins and entry-point plugins behind one pluggy ``PluginManager``.

What a plugin author can rely on (docs/plugins.md, "How hooks are called", says the same):

- **Order.** pluggy's documented order: ``tryfirst`` implementations run before unmarked ones,
  ``trylast`` after, and within each group the *last registered runs first*. The host registers
  plugins in reverse of their load order, so unmarked implementations run in load order:
  the built-ins of :data:`DEFAULT_PLUGINS` (``core-state`` first: its parser updates the process
  table before anyone reads it), then entry points by name, then embedded ``extra`` plugins.
  A third-party ``@hookimpl(tryfirst=True)`` therefore runs before every built-in.
- **Calls.** Hooks are called as ``host.hook.<name>(...)`` (pluggy's ``pm.hook``): a misspelt
  hook name is an ``AttributeError``. A plugin's hookimpl that names no hookspec is a load error.
- **Failure isolation.** Each hookimpl's function is wrapped at registration: an exception is
  recorded as a :class:`PluginFailure` of *that* plugin, the call returns ``None`` for it, the
  plugin is unregistered and the other plugins go on. ``plugins: {<name>: {required: true}}``
  makes that fatal (:class:`PluginRequiredError`, raised once the hook was called on everyone).
  Exceptions: ``falconet_stop`` failures are logged and the plugin kept (it is shutting down);
  ``falconet_restore_state`` and ``falconet_metrics`` failures are counted in
  ``falconet_plugin_errors_total`` and the plugin kept (one bad record or collector must not
  disable a plugin that works).
- **Hook wrappers** (``wrapper=True`` / ``hookwrapper=True``) are refused with a load error that
  names the plugin and the hook: a wrapper sees and can rewrite every other plugin's results,
  which defeats per-plugin attribution; nothing in Falconet needs one.
- **Per-engine state.** An entry point (or built-in) may name a *class*, or a module that names
  its class in ``FALCONET_PLUGIN``: the host creates one instance per engine (per
  :class:`PluginHost`), so a plugin keeps its state on ``self`` instead of in module globals.
  A module of plain hookimpl functions works too (stateless plugins).
- **Configuration.** A plugin that implements ``falconet_config_schema`` gets its section
  validated by :func:`falconet.plugin_config.validate_section` (one validator, one error
  format, ``file:line:col``) and receives the validated values, defaults filled in, in
  ``falconet_configure``; without a schema it receives its raw section.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from falconet import __version__, hookspecs
from falconet.api import contribution_problem
from falconet.delivery.policy import DELIVERY_KEYS
from falconet.plugin_config import ConfigSchema, Where, validate_section

if TYPE_CHECKING:
    from pluggy import HookCaller, HookImpl

    from falconet.api import EngineContext

log = logging.getLogger("falconet.plugins")

ENTRY_POINT_GROUP = "falconet"

#: Built-in plugins in load order (``module`` or ``module:Class``). Unmarked hookimpls run in
#: this order (see the module docstring): core state parses before anyone else reads it.
DEFAULT_PLUGINS: list[tuple[str, str]] = [
    ("core-state", "falconet.state.plugin"),
    ("ebpf", "falconet.collector.plugin"),
    ("replay", "falconet.capture"),
    ("outputs", "falconet.outputs.builtin"),
    ("metrics", "falconet.metrics_plugin"),
]

#: hook name -> the kind of plugin implementing it makes (for ``falconet plugins list``)
HOOK_KINDS = {
    "falconet_event_sources": "input",
    "falconet_event_parsers": "enrichment",
    "falconet_fields": "enrichment",
    "falconet_alert_sinks": "output",
    "falconet_response_actions": "output",
    "falconet_metrics": "output",
    "falconet_metrics_server": "output",
    "falconet_rules_files": "rules",
}

#: hooks whose failures are counted (``falconet_plugin_errors_total{plugin,hook}``), plugin kept
_COUNTED = {"falconet_restore_state": "restore_state", "falconet_metrics": "metrics"}
#: hooks whose failures are only logged, plugin kept
_LOGGED = frozenset({"falconet_stop"})
#: the failure stage a hook is reported under (default: the hook name)
_STAGE = {"falconet_configure": "configure", "falconet_config_schema": "configure"}


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


def _no_location(path: tuple[str, ...]) -> str:
    return "<config>"


def import_plugin(spec: str) -> Any:
    """``module`` or ``module:Class`` → the module, or the named attribute."""
    modname, _, attr = spec.partition(":")
    mod = importlib.import_module(modname)
    return getattr(mod, attr) if attr else mod


def instantiate(obj: Any) -> Any:
    """The plugin object for one engine: a class (or a module naming one in
    ``FALCONET_PLUGIN``) gets one fresh instance; anything else is used as is."""
    if isinstance(obj, ModuleType) and isinstance(getattr(obj, "FALCONET_PLUGIN", None), type):
        obj = obj.FALCONET_PLUGIN
    return obj() if isinstance(obj, type) else obj


def _given(obj: Any) -> Callable[[], Any]:
    """A loader for an object already at hand (``extra`` plugins)."""
    return lambda: obj


@dataclass
class _Candidate:
    name: str
    obj: Any
    version: str
    builtin: bool


class PluginHost:
    """Loads plugins and calls their hooks with pluggy's ordering, isolating failures per plugin.

    Args:
        plugin_config: the ``plugins`` section of the config (``{name: {...}}``).
        builtins: built-in plugins as ``(name, "module[:Class]")``; default :data:`DEFAULT_PLUGINS`.
        entry_points: also load the ``falconet`` entry-point group.
        extra: additional ``(name, plugin)`` pairs (tests, embedding); a class is instantiated.
        where: ``path -> "file:line:col"`` of a config key (``Config.where``), for messages.
        whole_config: the whole configuration (a schema's ``merge_from`` section is read there).
    """

    def __init__(self, plugin_config: dict[str, Any] | None = None, *,
                 builtins: Iterable[tuple[str, str]] | None = None, entry_points: bool = True,
                 extra: Iterable[tuple[str, Any]] = (), where: Where | None = None,
                 whole_config: dict[str, Any] | None = None) -> None:
        self.plugin_config = plugin_config or {}
        self.pm = pluggy.PluginManager("falconet")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.info: dict[str, PluginInfo] = {}
        self._builtins = list(DEFAULT_PLUGINS if builtins is None else builtins)
        self._entry_points = entry_points
        self._extra = list(extra)
        self._where: Where = where or _no_location
        self._whole = whole_config or {}
        self.versions: dict[str, str] = {}
        #: validated configuration per plugin (for plugins that declare a schema)
        self.configs: dict[str, dict[str, Any]] = {}
        self._engine: EngineContext | None = None
        self._local = threading.local()

    @property
    def hook(self) -> Any:
        """pluggy's ``pm.hook``: ``host.hook.falconet_fields(engine=ctx)``."""
        return self.pm.hook

    # ----------------------------------------------------------------------------- loading
    def _section(self, name: str) -> dict[str, Any]:
        sec = self.plugin_config.get(name)
        return sec if isinstance(sec, dict) else {}

    def is_required(self, name: str) -> bool:
        return bool(self._section(name).get("required", False))

    def _enabled(self, name: str) -> bool:
        return self._section(name).get("enabled", True) is not False

    def load(self) -> None:
        """Import built-ins, entry points and ``extra``; register them (in reverse, see the
        module docstring). Failures are recorded (and raised for required plugins once
        everything was tried)."""
        found: list[_Candidate] = []

        def add(name: str, make: Callable[[], Any], version: str, builtin: bool) -> None:
            if not self._enabled(name):
                return
            if any(c.name == name for c in found):
                self._fail(name, "import", "a plugin with this name is already loaded",
                           registered=False)
                return
            try:
                obj = instantiate(make())
            except Exception as e:  # noqa: BLE001 - any import failure is the plugin's failure
                self._fail(name, "import", _reason(e), registered=False)
                return
            found.append(_Candidate(name, obj, version, builtin))

        for name, spec in self._builtins:
            add(name, functools.partial(import_plugin, spec), __version__, True)
        if self._entry_points:
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                add(ep.name, ep.load, str(ep.dist.version) if ep.dist is not None else "0", False)
        for name, obj in self._extra:
            add(name, _given(obj), str(getattr(obj, "__version__", "0")), False)
        # pluggy calls the last registered first: register in reverse so load order is call order
        registered = {c.name for c in reversed(found) if self._register(c)}
        for c in found:
            if c.name in registered:
                modname = c.obj.__name__ if isinstance(c.obj, ModuleType) else type(c.obj).__module__
                hooks = sorted(h.name for h in self.pm.get_hookcallers(c.obj) or [])
                self.info[c.name] = PluginInfo(c.name, c.version, c.builtin, modname, hooks)
                self.versions[c.name] = c.version
        # A plugin the config requires but nobody installed must not pass silently (a typo in
        # the name, or a forgotten `pip install`): the user asked for it to be fatal.
        failed = {f.name for f in self.failures}
        for name in self.plugin_config:
            if (self.is_required(name) and self._enabled(name) and name not in self.info
                    and name not in failed):
                self._fail(name, "import", "not installed (no built-in or 'falconet' entry "
                           "point of this name; see `falconet plugins list`)", registered=False)
        self.raise_if_required_failed()

    def _register(self, c: _Candidate) -> bool:
        try:
            self.pm.register(c.obj, name=c.name)
        except Exception as e:  # noqa: BLE001 - pluggy validation errors (bad hook signatures)
            self._fail(c.name, "import", _reason(e), registered=False)
            return False
        problem = self._check_impls(c.obj)
        if problem:
            callers = self.pm.get_hookcallers(c.obj) or []
            self.pm.unregister(c.obj)
            for caller in callers:
                # pluggy keeps a caller for a spec-less name: drop it, so that name stays unknown
                if caller.spec is None and not caller.get_hookimpls():
                    delattr(self.pm.hook, caller.name)
            self._fail(c.name, "import", problem, registered=False)
            return False
        for caller in self.pm.get_hookcallers(c.obj) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is c.obj:
                    # pluggy marks the attribute Final for users; the host owns these impls
                    setattr(impl, "function", self._guard(c.name, caller.name, impl))  # noqa: B010
        return True

    def _check_impls(self, obj: Any) -> str | None:
        for caller in self.pm.get_hookcallers(obj) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not obj:
                    continue
                if impl.wrapper or impl.hookwrapper:
                    kind = "wrapper=True" if impl.wrapper else "hookwrapper=True"
                    return (f"hook wrappers are not supported: {caller.name} is marked {kind} "
                            "(Falconet calls each plugin's hook on its own so that a failure is "
                            "that plugin's; see docs/plugins.md)")
                if caller.spec is None and not impl.optionalhook:
                    return (f"{caller.name} is not a Falconet hook (misspelt? the hooks are in "
                            "falconet.hookspecs and docs/plugins.md)")
        return None

    def _guard(self, name: str, hook: str, impl: HookImpl) -> Callable[..., Any]:
        """The hookimpl's function as the host calls it: failures are the plugin's, results
        are attributed to it, ``falconet_configure`` gets the plugin's own section."""
        fn, argnames = impl.function, tuple(impl.argnames)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # pluggy passes the arguments by position, in ``argnames`` order
            kw = dict(zip(argnames, args, strict=False), **kwargs)
            if hook == "falconet_configure" and "config" in kw:
                kw["config"] = self._config_for(name)
            try:
                res = fn(**kw)
            except Exception as e:  # noqa: BLE001 - attribute the failure, go on with the others
                self._hook_failed(name, hook, e, kw.get("engine"))
                return None
            sink = getattr(self._local, "collect", None)
            if res is not None and sink is not None:
                sink.append((name, res))
            return res
        return guarded

    def _hook_failed(self, name: str, hook: str, e: Exception, engine: Any) -> None:
        if hook in _LOGGED:
            log.error("plugin %s: %s failed: %s", name, hook, _reason(e))
        elif hook in _COUNTED:
            m = getattr(engine if engine is not None else self._engine, "metrics", None)
            if m is not None:
                m.plugin_errors[(name, _COUNTED[hook])] += 1
            log.warning("plugin %s: %s failed: %s", name, hook, _reason(e))
        else:
            self._fail(name, _STAGE.get(hook, hook), _reason(e))

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
        """Loaded plugin names in load order."""
        return list(self.info)

    def call(self, caller: HookCaller, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook (``host.call(host.hook.falconet_fields, engine=ctx)``) and return
        ``[(plugin, result)]`` in call order, ``None`` results left out. A plugin that raised
        was unregistered and recorded; raises :class:`PluginRequiredError` if it was required."""
        out: list[tuple[str, Any]] = []
        outer = getattr(self._local, "collect", None)
        self._local.collect = out
        try:
            caller(**kwargs)
        finally:
            self._local.collect = outer
        self.raise_if_required_failed()
        return out

    def contributions(self, caller: HookCaller, **kwargs: Any) -> list[tuple[str, list[Any]]]:
        """:meth:`call` for a hook that contributes a list of objects (sources, parsers, fields,
        sinks, actions): each plugin's list is checked against the hook's Protocol
        (:func:`falconet.api.contribution_problem`); a plugin that returned something else is
        dropped with the reason and contributes nothing."""
        out: list[tuple[str, list[Any]]] = []
        for name, result in self.call(caller, **kwargs):
            try:
                items = list(result)
            except TypeError:
                self.drop(name, caller.name, f"expected a list, got {type(result).__name__}")
                continue
            problem = contribution_problem(caller.name, items)
            if problem:
                self.drop(name, caller.name, problem)
                continue
            out.append((name, items))
        return out

    def _config_for(self, name: str) -> dict[str, Any]:
        if name in self.configs:
            return dict(self.configs[name])
        # match:/aggregate:/spool: of a plugin's sinks belong to the engine (docs/outputs.md)
        return {k: v for k, v in self._section(name).items() if k not in DELIVERY_KEYS}

    def configure(self, engine: EngineContext) -> None:
        """Validate each plugin's section against its ``falconet_config_schema`` (a failure is
        the plugin's, stage ``configure``), then ``falconet_configure`` with each plugin's own
        (validated) section."""
        self._engine = engine
        for name, schema in self.call(self.hook.falconet_config_schema):
            if name not in self.info:
                continue
            if not isinstance(schema, ConfigSchema):
                self.drop(name, "configure", f"falconet_config_schema must return a "
                          f"falconet.api.ConfigSchema, got {type(schema).__name__}")
                continue
            values, problems = validate_section(schema, name, self._section(name), self._where,
                                                whole=self._whole)
            if problems:
                # worded as the plugin raising it itself would be
                self._fail(name, "configure", "PluginConfigError: " + "; ".join(problems))
                continue
            self.configs[name] = values
        self.call(self.hook.falconet_configure, config={}, engine=engine)

    def drop(self, name: str, stage: str, reason: str) -> None:
        """Report and unregister a plugin whose contribution turned out to be unusable."""
        self._fail(name, stage, reason)
        self.raise_if_required_failed()

    def restore_state(self, plugin: str, data: Any, engine: EngineContext) -> None:
        """Replay: hand a state record to every plugin (each acts on its own records; a failure
        is counted, the plugin kept)."""
        self.hook.falconet_restore_state(plugin=plugin, data=data, engine=engine)
