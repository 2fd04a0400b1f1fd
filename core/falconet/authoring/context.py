"""The rules a new rule is written against: the default rules (or ``--rules``), their macros and
lists, and the engine's field registry. Loads always go through ``falconet.rules`` with the
engine's own settings, so a rule proven here loads the same way in ``falconet run``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from falconet.app import App
from falconet.priorities import Priority
from falconet.rules import LoadResult, Ruleset, load_rules_text


@dataclass
class Items:
    """Names defined by rules texts (lists, macros, rules), in load order."""

    lists: dict[str, list[str]] = field(default_factory=dict)
    macros: dict[str, str] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_items(texts: Iterable[tuple[str, str]]) -> Items:
    """What the texts define (safe YAML; a text that does not parse contributes nothing: the
    loader reports it with its location)."""
    out = Items()
    for _name, text in texts:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        for item in doc if isinstance(doc, list) else []:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("list"), str):
                items = item.get("items")
                vals = [str(v) for v in items] if isinstance(items, list) else []
                out.lists.setdefault(item["list"], []).extend(vals)
            elif isinstance(item.get("macro"), str):
                cond = item.get("condition")
                if isinstance(cond, str):
                    out.macros[item["macro"]] = cond
            elif isinstance(item.get("rule"), str):
                out.rules.setdefault(item["rule"], {}).update(item)
    return out


class RulesContext:
    """``files``: the context rules (every rule's macros and lists are in scope)."""

    def __init__(self, files: list[str]) -> None:
        self.files = list(files)
        self.texts: list[tuple[str, str]] = []
        for f in self.files:
            with open(f, encoding="utf-8", errors="replace") as fh:
                self.texts.append((f, fh.read()))
        self.items = read_items(self.texts)

    @classmethod
    def from_app(cls, app: App, rules: list[str] | None) -> RulesContext:
        """The rules ``falconet run`` would load (``rules``, else the configured or default
        rules, plus plugin rules)."""
        return cls(app.rules_files(rules))

    def load(self, app: App, extra: Iterable[tuple[str, str]] = (),
             context: bool = True) -> LoadResult:
        """Load the context rules (``context``) and then ``extra`` texts, with ``app``'s field
        registry and plugin versions, as ``falconet run`` does."""
        texts = [*(self.texts if context else []), *extra]
        cfg = app.config
        return load_rules_text(texts, app.ctx.fields, plugin_versions=app.plugin_versions,
                               sources=app.event_sources, min_priority=Priority.DEBUG,
                               rule_matching="all", hostname=app.ctx.hostname,
                               append_output=cfg["append_output"])


def ruleset_of(res: LoadResult, files: Iterable[str], *, matching: str = "all") -> Ruleset:
    """A ruleset with only the rules loaded from ``files`` (all of them fire: ``all``)."""
    wanted = {os.path.basename(f) for f in files}     # rules carry their file's base name
    return Ruleset([r for r in res.compiled if r.file in wanted and r.enabled],
                   rule_matching=matching)
