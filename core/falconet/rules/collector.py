"""Stage 2 of loading rules (Falco's ``rule_loader_collector``): items → lists, macros and
rules, with append/override and exceptions applied, in file order.

Each item (from :mod:`falconet.rules.reader`) defines, appends to or overrides a list, macro or
rule; a redefined item keeps its original position. Version requirements
(``required_engine_version``, ``required_plugin_versions``) are checked here too. Nothing is
parsed or compiled yet: conditions stay text until :mod:`falconet.rules.compiler`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from falconet.fields.registry import FieldRegistry, UnknownFieldError
from falconet.priorities import Priority
from falconet.rules import errors as E
from falconet.rules.ast import MultiTransform, Transform
from falconet.rules.errors import LoadMessage, Location
from falconet.rules.parser import ALL_OPS, LIST_OPS, MODIFIERS, STR_OPS, parse_field_token
from falconet.rules.yamlnodes import YMap, YSeq

RULE_KEYS = frozenset({"rule", "condition", "output", "desc", "priority", "tags", "enabled",
                       "source", "exceptions", "override", "append", "warn_evttypes",
                       "skip-if-unknown-filter", "capture", "capture_duration"})
MACRO_KEYS = frozenset({"macro", "condition", "append", "override"})
LIST_KEYS = frozenset({"list", "items", "append", "override"})
RULE_APPENDABLE = frozenset({"condition", "output", "desc", "tags", "exceptions"})
RULE_REPLACEABLE = frozenset({"condition", "output", "desc", "priority", "capture",
                              "capture_duration", "tags", "exceptions", "enabled",
                              "warn_evttypes", "skip-if-unknown-filter"})
_LIST_NAME_RE = re.compile(r"[^()\"'\s=,]+")
_MACRO_NAME_RE = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_SEMVER_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:[-+].*)?")


# ------------------------------------------------------------------------------ collected items
@dataclass
class ListItem:
    name: str
    items: list[Any]
    loc: Location
    used: bool = False


@dataclass
class MacroItem:
    name: str
    condition: Any
    loc: Location
    used: bool = False


@dataclass
class ExceptionItem:
    name: str
    fields: Any
    comps: Any
    values: list[Any]
    loc: Location


@dataclass
class RuleItem:
    name: str
    condition: Any
    output: str
    desc: str
    priority: Priority
    loc: Location
    source: str = "syscall"
    tags: set[str] = field(default_factory=set)
    enabled: bool = True
    exceptions: list[ExceptionItem] = field(default_factory=list)
    warn_evttypes: bool = True
    skip_if_unknown_filter: bool = False
    capture: bool = False
    capture_duration: int = 0
    output_loc: Location | None = None     # where the output text starts (output errors)


class _Stop(Exception):
    """Abandon the current item (its error is already recorded)."""


def parse_semver(text: Any) -> tuple[int, int, int] | None:
    m = _SEMVER_RE.fullmatch(str(text).strip())
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def compatible(have: tuple[int, int, int], need: tuple[int, int, int]) -> bool:
    """Falco's ``compatible_with``: same major version and ``have >= need``."""
    return have[0] == need[0] and have >= need


# ------------------------------------------------------------------------------ the collector
class Collector:
    """What one load collected from one or more files, and its messages. Use
    :func:`falconet.rules.load_rules`."""

    def __init__(self, registry: FieldRegistry, *, plugin_versions: dict[str, str] | None,
                 sources: set[str] | None, engine_version: str) -> None:
        self.registry = registry
        self.plugin_versions = plugin_versions
        self.sources = sources
        self.engine_version = engine_version
        self.errors: list[LoadMessage] = []
        self.warnings: list[LoadMessage] = []
        self.lists: dict[str, ListItem] = {}
        self.macros: dict[str, MacroItem] = {}
        self.rules: dict[str, RuleItem] = {}
        self.rule_files: dict[str, str] = {}
        self.source_lines: dict[str, list[str]] = {}
        self._item: tuple[str, str] = ("", "")

    # -- messages
    def _msg(self, severity: str, code: str, message: str, loc: Location | None,
             item: tuple[str, str] | None = None) -> LoadMessage:
        it = item if item is not None else self._item
        loc = loc or Location("", 0, 0)
        m = LoadMessage(code, message, loc.file, loc.line, loc.col, it[0], it[1], severity)
        (self.errors if severity == "error" else self.warnings).append(m)
        return m

    def error(self, message: str, loc: Location | None, code: str = E.LOAD_ERR_YAML_VALIDATE,
              item: tuple[str, str] | None = None) -> None:
        self._msg("error", code, message, loc, item)

    def warn(self, code: str, message: str, loc: Location | None,
             item: tuple[str, str] | None = None) -> None:
        self._msg("warning", code, message, loc, item)

    def fail(self, message: str, loc: Location | None,
             code: str = E.LOAD_ERR_YAML_VALIDATE) -> NoReturn:
        self.error(message, loc, code)
        raise _Stop

    def add_item(self, item: YMap, file: str) -> None:
        """Collect one item of ``file``; one bad item never stops the load (its error is
        recorded)."""
        try:
            self._add_item(item, file)
        except _Stop:
            pass
        except Exception as e:  # noqa: BLE001 - one bad item never stops the load
            self.error(f"Invalid item: {type(e).__name__}: {e}", item.loc,
                       E.LOAD_ERR_YAML_VALIDATE)
        else:
            self._warn_duplicate_keys(item)

    def _warn_duplicate_keys(self, node: Any) -> None:
        """A key written twice (``condition:`` twice in one rule) silently keeps only the last
        value; in a security rule that is a hidden change of meaning, so say so. Each node is
        visited once: YAML aliases share nodes, and 40 aliases of aliases are 2**40 paths."""
        seen: set[int] = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if not isinstance(n, YMap | YSeq) or id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n, YMap):
                for key, loc in getattr(n, "duplicates", ()):
                    self.warn(E.LOAD_DUPLICATE_KEY, f"Duplicate key '{key}': only its last value "
                              "is used", loc, self._item)
                stack.extend(reversed(list(n.values())))
            else:
                stack.extend(reversed(n))

    def _add_item(self, d: YMap, file: str) -> None:
        if "required_engine_version" in d:
            self._item = ("required_engine_version", str(d["required_engine_version"]))
            self._engine_version(d)
        elif "required_plugin_versions" in d:
            self._item = ("required_plugin_versions", "")
            self._plugin_versions(d)
        elif "list" in d:
            self._item = ("list", str(d.get("list")))
            self._list(d)
        elif "macro" in d:
            self._item = ("macro", str(d.get("macro")))
            self._macro(d)
        elif "rule" in d:
            self._item = ("rule", str(d.get("rule")))
            self._rule(d, file)
        else:
            self._item = ("item", "")
            self.warn(E.LOAD_UNKNOWN_ITEM, "Unknown top level item", d.loc)

    def _unknown_keys(self, d: YMap, allowed: frozenset[str]) -> None:
        for k in d:
            if k not in allowed:
                self.warn(E.LOAD_UNKNOWN_KEY, f"Unknown key '{k}'. The key will be ignored.",
                          d.key_locs.get(k, d.loc))

    def _str(self, d: YMap, key: str, required: bool = True) -> str | None:
        if key not in d:
            if required:
                self.fail(f"Item has no mapping for key '{key}'", d.loc)
            return None
        v = d[key]
        if v is None:
            self.fail(f"Mapping for key '{key}' is empty", d.locs[key])
        if isinstance(v, dict | list):
            self.fail(f"Value for key '{key}' must be a string", d.locs[key])
        if str(v).strip() == "":
            self.fail("Value must be non-empty", d.locs[key])
        return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    def _bool(self, d: YMap, key: str) -> bool | None:
        if key not in d:
            return None
        v = d[key]
        if isinstance(v, str) and v in _YAML_CPP_BOOLS:
            return _YAML_CPP_BOOLS[v]       # Falco decodes with yaml-cpp: `capture: "yes"` loads
        if not isinstance(v, bool):
            self.fail(f"Value for key '{key}' must be a boolean (true or false)", d.locs[key])
        return v

    # -- versions
    def _engine_version(self, d: YMap) -> None:
        self._unknown_keys(d, frozenset({"required_engine_version"}))
        v = d["required_engine_version"]
        loc = d.locs["required_engine_version"]
        need = (0, v, 0) if isinstance(v, int) and not isinstance(v, bool) else parse_semver(v)
        if need is None:
            self.fail(f"Unable to parse engine version '{v}' as a semver string. Expected "
                      "\"x.y.z\" semver format.", loc)
        have = parse_semver(self.engine_version) or (0, 0, 0)
        if not compatible(have, need):
            self.fail(f"Rules require engine version {'.'.join(map(str, need))}, but engine "
                      f"version is {self.engine_version}", loc, E.LOAD_ERR_VALIDATE)

    def _plugin_versions(self, d: YMap) -> None:
        self._unknown_keys(d, frozenset({"required_plugin_versions"}))
        reqs = d["required_plugin_versions"]
        if not isinstance(reqs, list):
            self.fail("Value of required_plugin_versions must be a sequence", d.loc)
        for i, r in enumerate(reqs):
            loc = reqs.locs[i] if isinstance(reqs, YSeq) else d.loc
            if not isinstance(r, dict) or "name" not in r or "version" not in r:
                self.fail("Each required_plugin_versions entry needs 'name' and 'version'", loc)
            alts = [r] + list(r.get("alternatives") or [])
            names: set[str] = set()
            choices: list[tuple[str, tuple[int, int, int], str]] = []
            for a in alts:
                if not isinstance(a, dict) or "name" not in a or "version" not in a:
                    self.fail("Each plugin alternative needs 'name' and 'version'", loc)
                name = str(a["name"])
                if name in names:
                    self.fail(f"Defined multiple alternative version requirements for plugin "
                              f"'{name}'", loc)
                names.add(name)
                ver = parse_semver(a["version"])
                if ver is None:
                    self.fail(f"Invalid required version '{a['version']}' for plugin '{name}'",
                              loc)
                choices.append((name, ver, str(a["version"])))
            if self.plugin_versions is None:
                continue        # no plugin information (unit tests, offline listing)
            ok = False
            for name, need, _ in choices:
                have = parse_semver(self.plugin_versions.get(name, ""))
                if have is not None and compatible(have, need):
                    ok = True
            if not ok:
                alts_txt = ", ".join(f"{n} (>= {v})" for n, _, v in choices)
                self.fail(f"Plugin requirement not satisfied, must load one of: {alts_txt}", loc,
                          E.LOAD_ERR_VALIDATE)

    # -- override helpers
    def _override(self, d: YMap, appendable: frozenset[str], replaceable: frozenset[str],
                  ) -> tuple[set[str], set[str]]:
        ov = d["override"]
        if not isinstance(ov, dict):
            self.fail("Value of 'override' must be a mapping of key: append|replace",
                      d.locs["override"])
        if d.get("append") is True:
            self.fail("Keys 'override' and 'append: true' cannot be used together. Add an "
                      "'append' entry (e.g. 'condition: append') under 'override' instead.",
                      d.locs["append"])
        app: set[str] = set()
        rep: set[str] = set()
        for k, op in ov.items():
            loc = ov.locs.get(k, d.loc) if isinstance(ov, YMap) else d.loc
            if op == "append":
                if k not in appendable:
                    if k in replaceable:
                        self.fail(f"Key '{k}' cannot be appended to, use 'replace' instead", loc)
                    self.fail(f"Key '{k}' cannot be appended to", loc)
                app.add(k)
            elif op == "replace":
                if k not in replaceable:
                    self.fail(f"Key '{k}' cannot be replaced", loc)
                rep.add(k)
            else:
                self.fail(f"Invalid override operation for key '{k}': '{op}'. Allowed values "
                          "are: append replace ", loc)
            if k not in d:
                self.fail(f"An {op} override for '{k}' was specified but '{k}' is not defined",
                          loc)
        for k in d:
            if k in (appendable | replaceable) and k not in app and k not in rep:
                self.fail(f"Unexpected key '{k}': no corresponding entry under 'override' is "
                          "defined.", d.key_locs.get(k, d.loc))
        return app, rep

    def _deprecated_append(self, d: YMap) -> bool:
        app = self._bool(d, "append")
        if app:
            self.warn(E.LOAD_DEPRECATED_ITEM, "'append' key is deprecated. Add an 'append' entry "
                      "(e.g. 'condition: append') under 'override' instead.", d.locs["append"])
        return bool(app)

    # -- lists
    def _list(self, d: YMap) -> None:
        self._unknown_keys(d, LIST_KEYS)
        name = self._str(d, "list")
        assert name is not None
        if not _LIST_NAME_RE.fullmatch(name):
            self.warn(E.LOAD_INVALID_LIST_NAME, "List has an invalid name. List names should "
                      "match a regular expression: ([^()\"'[:space:]=,]+)", d.locs["list"])
        if "items" not in d:
            self.fail("Item has no mapping for key 'items'", d.loc)
        items = d["items"]
        if items is None:
            items = []
        if not isinstance(items, list) or any(isinstance(x, dict | list) for x in items):
            self.fail("Value for key 'items' must be a sequence of scalars", d.locs["items"])
        items = [x if isinstance(x, str) else str(x).lower() if isinstance(x, bool) else str(x)
                 for x in items]
        append = False
        if "override" in d:
            app, _rep = self._override(d, frozenset({"items"}), frozenset({"items"}))
            append = "items" in app
        elif self._deprecated_append(d):
            append = True
        if append:
            prev = self.lists.get(name)
            if prev is None:
                self.fail("List uses 'append' or 'override.items: append' but no list by that "
                          "name already exists", d.loc)
            prev.items = prev.items + items
        else:
            self.lists[name] = ListItem(name, items, d.loc)

    # -- macros
    def _macro(self, d: YMap) -> None:
        self._unknown_keys(d, MACRO_KEYS)
        name = self._str(d, "macro")
        assert name is not None
        if not _MACRO_NAME_RE.fullmatch(name):
            self.warn(E.LOAD_INVALID_MACRO_NAME, "Macro has an invalid name. Macro names should "
                      "match a regular expression: ([a-zA-Z]+[a-zA-Z0-9_]*)", d.locs["macro"])
        cond = self._str(d, "condition")
        append = False
        if "override" in d:
            app, _rep = self._override(d, frozenset({"condition"}), frozenset({"condition"}))
            append = "condition" in app
        elif self._deprecated_append(d):
            append = True
        if append:
            prev = self.macros.get(name)
            if prev is None:
                self.fail("Macro uses 'append' or 'override.condition: append' but no macro by "
                          "that name already exists", d.loc)
            prev.condition = f"{prev.condition} {cond}"
        else:
            self.macros[name] = MacroItem(name, cond, d.locs["condition"])

    # -- rules
    def _rule(self, d: YMap, file: str) -> None:
        self._unknown_keys(d, RULE_KEYS)
        name = self._str(d, "rule")
        assert name is not None
        prev = self.rules.get(name)
        def same_source() -> None:
            if "source" in d and prev is not None and self._str(d, "source") != prev.source:
                self.fail("Rule has been re-defined with a different source", d.locs["source"])
        if "override" in d:
            app, rep = self._override(d, RULE_APPENDABLE, RULE_REPLACEABLE)
            same_source()
            if app and prev is None:
                self.fail("Rule uses 'append' or 'override.<key>: append' but no rule by that "
                          "name already exists", d.loc)
            if rep and prev is None:
                self.fail("An 'override.<key>: replace' to a rule was requested but no rule by "
                          "that name already exists", d.loc)
            if not app and not rep:
                self.fail("The rule must have at least one field that can be replaced", d.loc)
            assert prev is not None
            self._apply_rule_changes(prev, d, app, rep)
            return
        if self._deprecated_append(d):
            if prev is None:
                self.fail("Rule uses 'append' or 'override.<key>: append' but no rule by that "
                          "name already exists", d.loc)
            same_source()
            keys = {k for k in ("condition", "exceptions") if k in d}
            if not keys:
                self.fail("Appended rule must have exceptions or condition property", d.loc)
            assert prev is not None
            self._apply_rule_changes(prev, d, keys, set())
            return
        if not any(k in d for k in ("condition", "output", "desc", "priority")):
            if "enabled" in d:
                self.warn(E.LOAD_DEPRECATED_ITEM, "The standalone 'enabled' key usage is "
                          "deprecated. The correct approach requires also a 'replace' entry under "
                          "the 'override' key (i.e. 'enabled: replace').", d.locs["enabled"])
                if prev is None:
                    self.fail("Rule has 'enabled' key but no rule by that name already exists",
                              d.loc)
                assert prev is not None
                prev.enabled = bool(self._bool(d, "enabled"))
                return
        cond = d["condition"] if "condition" in d else None
        self._str(d, "condition")
        output = self._str(d, "output")
        desc = self._str(d, "desc")
        prio = self._priority(d)
        assert output is not None and desc is not None
        r = RuleItem(name, cond, output.strip(), desc, prio, d.loc)
        r.output_loc = d.locs.get("output")
        r.source = self._str(d, "source", required=False) or "syscall"
        if prev is not None and prev.source != r.source:
            # Falco's collector compares the sources of every redefinition, not only appends
            self.fail("Rule has been re-defined with a different source",
                      d.locs.get("source", d.loc))
        self._rule_options(r, d)
        if "exceptions" in d:
            r.exceptions = self._exceptions(d, r, existing=[])
        self.rules[name] = r            # a redefinition keeps the original position
        self.rule_files[name] = file

    def _priority(self, d: YMap) -> Priority:
        p = self._str(d, "priority")
        try:
            return Priority.parse(str(p))
        except ValueError:
            self.fail("Invalid priority", d.locs["priority"])
            raise

    def _rule_options(self, r: RuleItem, d: YMap, keys: set[str] | None = None) -> None:
        def want(k: str) -> bool:
            return k in d and (keys is None or k in keys)
        if want("enabled"):
            r.enabled = bool(self._bool(d, "enabled"))
        if want("warn_evttypes"):
            r.warn_evttypes = bool(self._bool(d, "warn_evttypes"))
        if want("skip-if-unknown-filter"):
            r.skip_if_unknown_filter = bool(self._bool(d, "skip-if-unknown-filter"))
        if want("capture"):
            r.capture = bool(self._bool(d, "capture"))
        if want("capture_duration"):
            v = d["capture_duration"]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                self.fail("Value for key 'capture_duration' must be a non-negative integer (ms)",
                          d.locs["capture_duration"])
            r.capture_duration = v
        if want("tags"):
            r.tags = self._tags(d)

    def _tags(self, d: YMap) -> set[str]:
        t = d["tags"]
        if t is None:
            return set()
        if not isinstance(t, list) or any(isinstance(x, dict | list) for x in t):
            self.fail("Value for key 'tags' must be a sequence of strings", d.locs["tags"])
        return {str(x) for x in t}

    def _apply_rule_changes(self, prev: RuleItem, d: YMap, app: set[str], rep: set[str]) -> None:
        for k in app:
            if k in ("condition", "output", "desc"):
                v = self._str(d, k)
                if k == "condition":
                    prev.condition = f"{prev.condition} {v}"
                elif k == "output":
                    prev.output = f"{prev.output} {str(v).strip()}"
                else:
                    prev.desc = f"{prev.desc} {v}"
            elif k == "tags":
                prev.tags |= self._tags(d)
            elif k == "exceptions":
                prev.exceptions = self._exceptions(d, prev, existing=prev.exceptions)
        for k in rep:
            if k == "condition":
                prev.condition = d["condition"]
                self._str(d, "condition")
            elif k == "output":
                prev.output = str(self._str(d, "output")).strip()
                prev.output_loc = d.locs.get("output")
            elif k == "desc":
                prev.desc = str(self._str(d, "desc"))
            elif k == "priority":
                prev.priority = self._priority(d)
            elif k == "exceptions":
                prev.exceptions = self._exceptions(d, prev, existing=[])
            else:
                self._rule_options(prev, d, {k})

    def _exceptions(self, d: YMap, rule: RuleItem, existing: list[ExceptionItem],
                    ) -> list[ExceptionItem]:
        """Parse ``exceptions``; entries named like an existing one append their values."""
        raw = d["exceptions"]
        if raw is None:
            return list(existing)
        if not isinstance(raw, list):
            self.fail("Value for key 'exceptions' must be a sequence", d.locs["exceptions"])
        out = list(existing)
        # only the earlier definition's exceptions take appended values: a name repeated in the
        # same list is a warning and a second exception (Falco's reader keeps both)
        by_name = {e.name: e for e in out}
        seen: set[str] = set()
        for i, ex in enumerate(raw):
            loc = raw.locs[i] if isinstance(raw, YSeq) else d.loc
            item = ("exception", str(ex.get("name", "")) if isinstance(ex, dict) else "")
            if not isinstance(ex, YMap):
                self.fail("Each exception must be a mapping", loc)
            if "name" not in ex or not str(ex["name"] or "").strip():
                self.error("Item has no mapping for key 'name'", loc, item=item)
                raise _Stop
            name = str(ex["name"])
            for k in ex:
                if k not in ("name", "fields", "comps", "values"):
                    self.warn(E.LOAD_UNKNOWN_KEY, f"Unknown key '{k}'. The key will be ignored.",
                              ex.key_locs.get(k, loc), item=item)
            if name in seen:
                self.warn(E.LOAD_EXCEPTION_NAME_NOT_UNIQUE, f"Multiple definitions of exception "
                          f"'{name}' in the same rule", loc, item=item)
            seen.add(name)
            values = ex.get("values")
            if values is not None and not isinstance(values, list):
                self.error("Value for key 'values' must be a sequence", loc, item=item)
                raise _Stop
            values = list(values or [])
            if name in by_name:
                if "fields" in ex:
                    self.error("Can not append exception fields to existing exception, only "
                               "values", loc, item=item)
                    raise _Stop
                if "comps" in ex:
                    self.error("Can not append exception comps to existing exception, only "
                               "values", loc, item=item)
                    raise _Stop
                if not values:
                    self.warn(E.LOAD_APPEND_NO_VALUES, "Overriding/appending exception with no "
                              "values", loc, item=item)
                by_name[name].values = by_name[name].values + values
                continue
            if "fields" not in ex:
                self.error("Item has no mapping for key 'fields'", loc, item=item)
                raise _Stop
            e = ExceptionItem(name, ex["fields"], ex.get("comps"), values, loc)
            self._validate_exception(e, item)
            out.append(e)
        return out

    def _validate_exception(self, e: ExceptionItem, item: tuple[str, str]) -> None:
        def bad(msg: str) -> None:
            self.error(msg, e.loc, item=item)
            raise _Stop
        # Falco trims the comparison operators: `"  contains  "` is `contains`
        if isinstance(e.comps, list):
            e.comps = [c.strip() if isinstance(c, str) else c for c in e.comps]
        elif isinstance(e.comps, str):
            e.comps = e.comps.strip()
        if isinstance(e.fields, list):
            if e.comps is None:
                e.comps = ["="] * len(e.fields)
            if not isinstance(e.comps, list):
                bad("Fields and comps must both be lists or both be strings")
            if len(e.fields) != len(e.comps):
                bad("Fields and comps lists must have equal length")
            for c in e.comps:
                if not _valid_comp(str(c)):
                    bad(f"'{c}' is not a supported comparison operator")
            for v in e.values:
                if not isinstance(v, list):
                    bad("Expected values array to contain a list of lists")
                if len(v) != len(e.fields):
                    bad("Fields and values lists must have equal length")
        else:
            if e.comps is None:
                e.comps = "in"
            if isinstance(e.comps, list):
                bad("Fields and comps must both be strings")
            c = str(e.comps)
            if not _valid_comp(c):
                bad(f"'{c}' is not a supported comparison operator")
            if c not in LIST_OPS and not is_modifier(c):
                bad("When fields is a single value, comps must be one of (in, pmatch, "
                    "intersects) or a modifier operator (e.g. startswith oneof)")
        for f in (e.fields if isinstance(e.fields, list) else [e.fields]):
            try:
                self.registry.lookup(str(f))
            except UnknownFieldError:
                m = re.fullmatch(r"([^\[]+)\[(.*)\]", str(f))
                try:
                    if m is None:
                        raise
                    self.registry.lookup(m.group(1), m.group(2))
                except UnknownFieldError:
                    if not _is_transformer(str(f)):
                        bad(f"'{f}' is not a supported filter field")


def _is_transformer(text: str) -> bool:
    """``tolower(proc.name)`` as an exception field: Falco accepts transformers there (the
    condition compiler checks the fields inside)."""
    parsed = parse_field_token(text.strip())
    return parsed is not None and parsed[1] == len(text.strip()) and \
        isinstance(parsed[0], Transform | MultiTransform)


#: the scalars yaml-cpp's ``convert<bool>`` accepts (quoted or not)
_YAML_CPP_BOOLS = {w: True for w in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on",
                                     "On", "ON")} | \
    {w: False for w in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off",
                        "OFF")}


def is_modifier(c: str) -> bool:
    parts = c.split()
    return len(parts) == 2 and parts[0] in STR_OPS and parts[1] in MODIFIERS


def _valid_comp(c: str) -> bool:
    return c in ALL_OPS or is_modifier(c)


