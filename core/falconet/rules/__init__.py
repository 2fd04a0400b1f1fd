"""Falco-compatible rules: load rules files, compile conditions and outputs, match events.

Entry point (see docs/rules.md)::

    from falconet.rules import load_rules
    res = load_rules(["rules/falco_rules.yaml"], registry, plugin_versions={"container": "0.6.0"})
    if not res.ok:
        for m in res.errors: print(m)          # file:line:col: error: rule 'x': ...
    alerts = res.ruleset.match(evt)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import falconet
from falconet.fields.registry import FieldRegistry
from falconet.priorities import Priority
from falconet.rules.errors import LoadMessage, Location, RuleLoadError
from falconet.rules.limits import DEFAULT_MAX_FILE_BYTES
from falconet.rules.loader import (
    CompiledRule,
    Loader,
    RuleDescription,
    compile_loaded,
)
from falconet.rules.ruleset import Ruleset

__all__ = ["LoadMessage", "LoadResult", "Location", "RuleDescription", "RuleLoadError",
           "Ruleset", "load_rules", "load_rules_text", "rules_files_in"]


@dataclass
class LoadResult:
    """What a load produced. ``ok`` is true when there is no error (warnings do not count)."""

    ruleset: Ruleset | None
    errors: list[LoadMessage] = field(default_factory=list)
    warnings: list[LoadMessage] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    rules: list[RuleDescription] = field(default_factory=list)
    compiled: list[CompiledRule] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def rules_files_in(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Expand directories into their ``*.yaml``/``*.yml`` files in name order; keep files as
    given (a missing file stays in the list so loading reports it). The one place that decides
    which files a rules directory contributes: ``run``, ``rules validate`` and the hot-reload
    watcher all use it. An unreadable directory raises :class:`OSError`."""
    out: list[str] = []
    for p in paths:
        s = os.fspath(p)
        if os.path.isdir(s):
            # a subdirectory named *.yaml is not a rules file; a broken symlink is kept, so
            # loading reports it instead of silently skipping it
            out.extend(f for f in (os.path.join(s, n) for n in sorted(os.listdir(s))
                                   if n.endswith((".yaml", ".yml")))
                       if not os.path.isdir(f))
        else:
            out.append(s)
    return out


def _load(add: Any, registry: FieldRegistry, *, plugin_versions: dict[str, str] | None,
          sources: Iterable[str] | None, min_priority: Priority, rule_matching: str,
          hostname: str, append_output: Any, engine_version: str,
          capture_fields: Iterable[str] = (),
          max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadResult:
    if sources is None:
        srcs = {"syscall"} | {s for f in registry.fields.values() for s in f.sources}
    else:
        srcs = set(sources)
    ld = Loader(registry, plugin_versions=plugin_versions, sources=srcs,
                engine_version=engine_version, max_file_bytes=max_file_bytes)
    add(ld)
    compiled, described = compile_loaded(ld, append_output, capture_fields)
    order = {f: i for i, f in enumerate(ld.source_lines)}
    for msgs in (ld.errors, ld.warnings):      # in file order, then by position
        msgs.sort(key=lambda m: (order.get(m.file, -1), m.line, m.col))
    counts = {"rules": len(ld.rules), "macros": len(ld.macros), "lists": len(ld.lists)}
    res = LoadResult(None, ld.errors, ld.warnings, counts, described, compiled)
    if res.ok:
        floor = Priority.parse(min_priority) if isinstance(min_priority, str) \
            else Priority(min_priority)
        active = [r for r in compiled if r.priority <= floor]
        res.ruleset = Ruleset(active, rule_matching=rule_matching, hostname=hostname)
    return res


def load_rules(files: Iterable[str | os.PathLike[str]], registry: FieldRegistry, *,
               plugin_versions: dict[str, str] | None = None,
               sources: Iterable[str] | None = None,
               min_priority: Priority = Priority.DEBUG, rule_matching: str = "first",
               hostname: str = "", append_output: Any = None,
               engine_version: str = falconet.ENGINE_VERSION,
               capture_fields: Iterable[str] = (),
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadResult:
    """Load rules files in order (later files append to/override earlier items).

    Args:
        files: rules files (directories are expanded to their ``*.yaml`` files).
        registry: the field registry (core + plugins) conditions and outputs are checked against.
        plugin_versions: installed plugin names and versions, checked against
            ``required_plugin_versions``; ``None`` skips that check.
        sources: event sources that are loaded; rules of other sources are skipped with a
            warning. ``None`` = ``syscall`` plus every source the registry has fields for.
        min_priority: rules less severe than this are not put in the ruleset.
        rule_matching: ``first`` (one alert per event, earliest rule) or ``all``.
        hostname: written into every alert.
        append_output: Falco's ``append_output`` list; ``None`` = ``[{suggested_output: true}]``.
        engine_version: checked against ``required_engine_version``.
        capture_fields: field tokens (``k8s.ns.name``, ``proc.aname[2]``) whose values every
            alert carries in ``Alert.match_fields`` (what :mod:`falconet.alertmatch` conditions
            read); tokens not valid for a rule's source are skipped for that rule.
        max_file_bytes: a larger rules file is an error (``rules_max_file_size``); the other
            limits are in :mod:`falconet.rules.limits`.
    """
    paths = rules_files_in(files)

    def add(ld: Loader) -> None:
        for p in paths:
            ld.add_file(p)
    return _load(add, registry, plugin_versions=plugin_versions, sources=sources,
                 min_priority=min_priority, rule_matching=rule_matching, hostname=hostname,
                 append_output=append_output, engine_version=engine_version,
                 capture_fields=capture_fields, max_file_bytes=max_file_bytes)


def load_rules_text(texts: str | Iterable[str | tuple[str, str]], registry: FieldRegistry,
                    **kwargs: Any) -> LoadResult:
    """Like :func:`load_rules` from in-memory YAML: one text, or several texts (named
    ``<rules-N>``) or ``(name, text)`` pairs, loaded in order."""
    items: list[tuple[str, str]] = []
    if isinstance(texts, str):
        items = [("<rules>", texts)]
    else:
        for i, t in enumerate(texts):
            items.append(t if isinstance(t, tuple) else (f"<rules-{i + 1}>", t))

    def add(ld: Loader) -> None:
        for name, text in items:
            ld.add_text(text, name)
    opts: dict[str, Any] = {"plugin_versions": None, "sources": None,
                            "min_priority": Priority.DEBUG, "rule_matching": "first",
                            "hostname": "", "append_output": None,
                            "engine_version": falconet.ENGINE_VERSION, "capture_fields": ()}
    opts.update(kwargs)
    return _load(add, registry, **opts)
