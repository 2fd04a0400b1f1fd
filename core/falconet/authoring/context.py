"""The rules a new rule is written against: the default rules (or ``--rules``), their macros and
lists, and the engine's field registry. Loads always go through ``falconet.rules`` with the
engine's own settings, so a rule proven here loads the same way in ``falconet run``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from falconet.app import App, StartupError
from falconet.priorities import Priority
from falconet.rules import LoadResult, Ruleset, load_rules_text
from falconet.rules.limits import DEFAULT_MAX_FILE_BYTES, FileTooLarge, read_rules_file
from falconet.rules.yamlnodes import load_documents


@dataclass
class Items:
    """Names defined by rules texts (lists, macros, rules), in load order."""

    lists: dict[str, list[str]] = field(default_factory=dict)
    macros: dict[str, str] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)


def _plain(v: Any) -> Any:
    """Plain dicts, lists and strings (the reader's position-carrying types are not YAML-dumpable);
    the reader bounds what aliases expand to, so this walk is bounded too."""
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return str(v) if isinstance(v, str) else v


def read_items(texts: Iterable[tuple[str, str]]) -> Items:
    """What the texts define (the loader's safe, bounded YAML reader: aliases are shared and
    limited, so untrusted text cannot expand here; a text that does not parse contributes
    nothing: the loader reports it with its location)."""
    out = Items()
    for name, text in texts:
        try:
            docs = load_documents(text, name)
        except yaml.YAMLError:
            continue
        doc = _plain(docs[0][0]) if docs else None
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

    def __init__(self, files: list[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.files = list(files)
        self.texts: list[tuple[str, str]] = []
        for f in self.files:
            self.texts.append((f, read_rules_text(f, max_bytes)))
        self.items = read_items(self.texts)

    @classmethod
    def from_app(cls, app: App, rules: list[str] | None) -> RulesContext:
        """The rules ``falconet run`` would load (``rules``, else the configured or default
        rules, plus plugin rules)."""
        return cls(app.rules_files(rules), app.config["rules_max_file_size"])

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


def read_rules_text(path: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
    """A rules file's text, read as the loader reads one (at most ``max_bytes``: ``/dev/zero``
    is refused, never slurped). Raises :class:`StartupError` with the path."""
    try:
        return read_rules_file(path, max_bytes).decode("utf-8", errors="replace")
    except (OSError, FileTooLarge) as e:
        raise StartupError(f"{path}: {getattr(e, 'strerror', None) or e}") from None


def ruleset_of(res: LoadResult, files: Iterable[str], *, matching: str = "all") -> Ruleset:
    """A ruleset with only the rules loaded from ``files`` (all of them fire: ``all``).

    Rules are told apart by the file name they were loaded under (``res.rules``), not by the
    compiled rule's base name: an edited copy of a context file has the same base name."""
    wanted = set(files)
    names = {d.name for d in res.rules if d.file in wanted}
    return Ruleset([r for r in res.compiled if r.name in names and r.enabled],
                   rule_matching=matching)
