"""Reading rules files: YAML items → lists, macros and rules (with override/append), then
compiling them into a :class:`~falconet.rules.ruleset.Ruleset`.

Two phases, as in Falco (``rule_loader_reader``/``collector``, then ``rule_loader_compiler``):

1. *collect*: files in order; each item defines, appends to or overrides a list, macro or rule.
   A redefined item keeps its original position.
2. *compile*: lists (items may name earlier lists), macros (in order; a macro sees only earlier
   macros), rules (condition + exceptions → list substitution → parse → macro expansion → closure;
   output compiled too).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from falconet.fields.registry import FieldRegistry, UnknownFieldError
from falconet.priorities import Priority
from falconet.rules import errors as E
from falconet.rules import limits
from falconet.rules.codegen import generate
from falconet.rules.compiler import (
    ConditionCompiler,
    event_types,
    expand_macros,
)
from falconet.rules.errors import (
    FilterCompileError,
    FilterSyntaxError,
    LoadMessage,
    Location,
    RuleLoadError,
)
from falconet.rules.formatter import OutputFormat, compile_output
from falconet.rules.parser import (
    ALL_OPS,
    LIST_OPS,
    MODIFIERS,
    STR_OPS,
    Field,
    parse_condition,
    parse_field_token,
)
from falconet.rules.yamlnodes import YMap, YSeq, load_documents, offset_location
from falconet.syscalls import ALL_EVENT_TYPES

TOO_MANY_EVTTYPES = 100
#: compile conditions to generated functions (falls back to closures); for benchmarks
USE_CODEGEN = True

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


@dataclass
class CompiledRule:
    """A rule ready to run. ``check`` is the compiled condition, ``fmt`` the compiled output."""

    name: str
    priority: Priority
    source: str
    tags: list[str]
    desc: str
    file: str
    enabled: bool
    check: Any
    fmt: OutputFormat
    event_types: frozenset[str] | None       # None = every type
    condition: str
    output: str
    capture: bool = False
    capture_duration_ns: int = 0
    extra_fields: dict[str, Any] = field(default_factory=dict)
    #: (token, extractor) of the ``capture_fields`` valid for this rule's source
    capture_getters: tuple[tuple[str, Any], ...] = ()


@dataclass
class RuleDescription:
    """A rule as ``falconet rules list`` shows it."""

    name: str
    priority: Priority
    source: str
    tags: list[str]
    enabled: bool
    event_types: list[str] | None
    file: str
    desc: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "priority": self.priority.label, "source": self.source,
                "tags": self.tags, "enabled": self.enabled, "event_types": self.event_types,
                "file": self.file, "desc": self.desc}


class _Stop(Exception):
    """Abandon the current item (its error is already recorded)."""


def parse_semver(text: Any) -> tuple[int, int, int] | None:
    m = _SEMVER_RE.fullmatch(str(text).strip())
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def compatible(have: tuple[int, int, int], need: tuple[int, int, int]) -> bool:
    """Falco's ``compatible_with``: same major version and ``have >= need``."""
    return have[0] == need[0] and have >= need


# ------------------------------------------------------------------------------ the loader
def _yaml_error_location(e: yaml.YAMLError, text: str, name: str) -> tuple[Location, str]:
    """Where a YAML error is and what it is, in one line. The problem mark is where the parser
    gave up (often the end of the file for an unclosed quote or bracket), so the context
    ("while scanning a quoted scalar") and where that started are added; a reader error (a
    forbidden character) only has a character offset."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None)
    if isinstance(e, yaml.reader.ReaderError):
        before = text[:e.position]
        line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        return Location(name, line, col), f"{e.reason} (character #x{code:04x})"
    if problem is None:
        problem = " ".join(str(e).split())
    ctx, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and cmark is not None and cmark is not mark:
        problem += f" ({ctx} started at line {cmark.line + 1} column {cmark.column + 1})"
    elif ctx:
        problem += f" ({ctx})"
    loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
    return loc, problem


class Loader:
    """One load of one or more files. Use :func:`falconet.rules.load_rules`."""

    def __init__(self, registry: FieldRegistry, *, plugin_versions: dict[str, str] | None,
                 sources: set[str] | None, engine_version: str,
                 max_file_bytes: int = limits.DEFAULT_MAX_FILE_BYTES) -> None:
        self.registry = registry
        self.max_file_bytes = max_file_bytes
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

    def fail(self, message: str, loc: Location | None, code: str = E.LOAD_ERR_YAML_VALIDATE) -> None:
        self.error(message, loc, code)
        raise _Stop

    # ------------------------------------------------------------------------ phase 1: collect
    def add_file(self, path: str | os.PathLike[str]) -> None:
        p = str(path)
        try:
            data = limits.read_rules_file(p, self.max_file_bytes)
        except limits.FileTooLarge as e:
            self.error(str(e), Location(p, 1, 1), E.LOAD_ERR_FILE_READ, ("file", p))
            return
        except OSError as e:
            self.error(f"Could not read file: {e.strerror or e}",
                       Location(p, 0, 0), E.LOAD_ERR_FILE_READ, ("file", p))
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:      # point at the bad byte, not at line 0
            before = data[:e.start]
            line, col = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
            self.error(f"Could not read file: not UTF-8 text (byte 0x{data[e.start]:02x}: "
                       f"{e.reason})", Location(p, line, col), E.LOAD_ERR_FILE_READ, ("file", p))
            return
        self.add_text(text, p)

    def add_text(self, text: str, name: str = "<rules>") -> None:
        self.source_lines[name] = text.splitlines()
        try:
            docs = load_documents(text, name)
        except yaml.YAMLError as e:
            loc, problem = _yaml_error_location(e, text, name)
            self.error(f"Invalid YAML: {problem}", loc, E.LOAD_ERR_YAML_PARSE, ("file", name))
            return
        for doc, loc in docs:
            if doc is None:
                continue
            if not isinstance(doc, YSeq):
                self.error("Rules content is not yaml array of objects", loc,
                           E.LOAD_ERR_YAML_VALIDATE, ("file", name))
                return
            for i, item in enumerate(doc):
                if item is None:
                    continue
                if not isinstance(item, YMap):
                    self.error("Unexpected element type. Each element should be a yaml "
                               "associative array.", doc.locs[i], E.LOAD_ERR_YAML_VALIDATE,
                               ("file", name))
                    return
                try:
                    self._add_item(item, name)
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
                      "match a regular expression: [^()\"'[:space:]=,]+", d.locs["list"])
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
                      "match a regular expression: [a-zA-Z]+[a-zA-Z0-9_]*", d.locs["macro"])
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
            by_name[name] = e
        return out

    def _validate_exception(self, e: ExceptionItem, item: tuple[str, str]) -> None:
        def bad(msg: str) -> None:
            self.error(msg, e.loc, item=item)
            raise _Stop
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
            if c not in LIST_OPS and not _is_modifier(c):
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
                    bad(f"'{f}' is not a supported filter field")


def _is_modifier(c: str) -> bool:
    parts = c.split()
    return len(parts) == 2 and parts[0] in STR_OPS and parts[1] in MODIFIERS


def _valid_comp(c: str) -> bool:
    return c in ALL_OPS or _is_modifier(c)


def _quote_exc_value(v: Any) -> str:
    s = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    if s.startswith(("'", '"')):
        return s
    if s == "" or any(ch in s for ch in " \t\n(),=\"'"):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def exception_condition(e: ExceptionItem) -> str:
    """The ``and not (...)`` text Falco builds for one exception ('' when it has no values)."""
    if not e.values:
        return ""
    if not isinstance(e.fields, list):
        vals = ", ".join(_quote_exc_value(v) for v in e.values)
        return f" and not {e.fields} {e.comps} ({vals})"
    ors = []
    for tup in e.values:
        ands = []
        for f, c, v in zip(e.fields, e.comps, tup, strict=True):
            c = str(c)
            is_list_op = c in LIST_OPS or _is_modifier(c)
            if isinstance(v, list):
                vs = "(" + ", ".join(_quote_exc_value(x) for x in v) + ")"
            elif is_list_op:
                vs = f"({_quote_exc_value(v)})"
            else:
                vs = _quote_exc_value(v)
            ands.append(f" {f} {c} {vs}")
        ors.append("(" + " and ".join(ands) + ")")
    return " and not (" + " or ".join(ors) + ")"


# ------------------------------------------------------------------------------ list substitution
_TOKEN_RE = re.compile(r"[^\s(),=]+")
_MODIFIERS = ("oneof", "anyof", "allof")


def _after_modifier(text: str, pos: int) -> bool:
    """Whether the text before ``pos`` ends with a modifier word and blanks
    (``startswith oneof <pos>``). Walks back from ``pos``: O(1) for the usual ``(name``."""
    j = pos
    while j > 0 and text[j - 1].isspace():
        j -= 1
    if j == pos or j < 5 or text[j - 5:j] not in _MODIFIERS:
        return False
    return j == 5 or text[j - 6].isspace()


def substitute_lists(text: str, lists: dict[str, list[str]], used: set[str]) -> str:
    """Falco's textual list substitution: a list name bounded by blanks, ``(``, ``)``, ``,``,
    ``=`` or the string ends becomes ``item1, item2``; an empty list also eats one comma.
    Right after a modifier (``startswith oneof list_name``) it becomes ``(item1, item2)``."""
    out: list[str] = []
    last = 0
    drop_comma = False
    size = len(text)
    for m in _TOKEN_RE.finditer(text):
        items = lists.get(m.group(0))
        if items is None:
            continue
        used.add(m.group(0))
        size += sum(map(len, items)) + 2 * len(items) + 2       # what this use adds, at most
        if size > limits.MAX_CONDITION_CHARS:
            raise limits.ConditionTooLarge
        chunk = text[last:m.start()]
        if drop_comma:
            chunk = re.sub(r"^\s*,", "", chunk, count=1)
            drop_comma = False
        if _after_modifier(text, m.start()):
            # `<strop> oneof list_name` (Falco 0.44): the list becomes a parenthesised list
            out.append(chunk)
            out.append("(" + ", ".join(_quote_list_item(i) for i in items) + ")")
        elif items:
            out.append(chunk)
            out.append(", ".join(_quote_list_item(i) for i in items))
        else:
            stripped = re.sub(r",\s*$", "", chunk, count=1)
            if stripped == chunk:
                drop_comma = True
            out.append(stripped)
        last = m.end()
    chunk = text[last:]
    if drop_comma:
        chunk = re.sub(r"^\s*,", "", chunk, count=1)
    out.append(chunk)
    return "".join(out)


def _quote_list_item(item: str) -> str:
    if " " in item and not item.startswith(("'", '"')):
        return f'"{item}"'
    return item


# ------------------------------------------------------------------------------ phase 2: compile
@dataclass
class _Extras:
    text: str
    getters: list[tuple[str, Any]]
    consts: dict[str, Any]


def _norm_append_output(cfg: Any) -> list[dict[str, Any]]:
    if cfg is None:
        return [{"suggested_output": True}]
    if not isinstance(cfg, list) or not all(isinstance(e, dict) for e in cfg):
        raise RuleLoadError("append_output must be a list of mappings")
    return cfg


def _extras(ld: Loader, entries: list[dict[str, Any]], r: RuleItem) -> _Extras:
    text: list[str] = []
    getters: list[tuple[str, Any]] = []
    consts: dict[str, Any] = {}
    for entry in entries:
        match = entry.get("match") or {}
        if "source" in match and str(match["source"]) != r.source:
            continue
        if "tags" in match and not {str(t) for t in (match["tags"] or [])} <= r.tags:
            continue
        if "rule" in match and str(match["rule"]) != r.name:
            continue
        if entry.get("suggested_output"):
            for f in ld.registry.suggested(r.source):
                text.append(f" {f.name.replace('.', '_')}=%{f.name}")
        if entry.get("extra_output"):
            text.append(" " + str(entry["extra_output"]).strip())
        for ef in entry.get("extra_fields") or []:
            if isinstance(ef, dict):
                consts.update({str(k): v for k, v in ef.items()})
            else:
                getters.append((str(ef), _extra_field_getter(ld.registry, str(ef), r.source)))
    return _Extras("".join(text), getters, consts)


def _extra_field_getter(registry: FieldRegistry, token: str, source: str) -> Any:
    """Bind one ``extra_fields`` entry: a field token as written in an output, argument included
    (``proc.aname[2]``, ``evt.arg.flags``, ``proc.env[HOME]``), like Falco accepts."""
    def fail(why: str) -> FilterCompileError:
        return FilterCompileError(f"append_output extra_fields: {why}", unknown_filter=True,
                                  code=E.LOAD_ERR_COMPILE_OUTPUT)

    parsed = parse_field_token(token.strip(), 0)
    if parsed is None or parsed[1] != len(token.strip()) or not isinstance(parsed[0], Field):
        raise fail(f"'{token}' is not a field name (expected e.g. proc.name or proc.aname[2])")
    node = parsed[0]
    try:
        return registry.resolve(node.name, node.arg, source).extract
    except UnknownFieldError as e:
        raise fail(str(e)) from None


def _capture_getters(registry: FieldRegistry, tokens: list[str], source: str
                     ) -> tuple[tuple[str, Any], ...]:
    """Extractors of the capture tokens that exist for ``source`` (others are skipped: a
    ``match:`` condition on them is simply false for alerts of that source)."""
    out = []
    for tok in tokens:
        try:
            out.append((tok, _extra_field_getter(registry, tok, source)))
        except FilterCompileError:
            continue
    return tuple(out)


def compile_check(cc: ConditionCompiler, ast: Any, name: str) -> Any:
    """Generated code when possible (faster), else the closure tree (same semantics)."""
    if USE_CODEGEN:
        try:
            return generate(cc, ast, name)
        except (RecursionError, MemoryError, SyntaxError, ValueError):
            cc.fields.clear()
            cc.warnings.clear()
            cc.na_checks.clear()
    return cc.compile(ast)


def _parse_located(ld: Loader, raw: Any, text: str, fallback: Location) -> Any:
    """Parse ``text`` (the substituted condition); on a syntax error, locate it in ``raw``."""
    try:
        return parse_condition(text)
    except FilterSyntaxError as e:
        loc, msg = getattr(raw, "loc", None) or fallback, e.message
        try:
            parse_condition(str(raw))
        except FilterSyntaxError as e2:
            lines = ld.source_lines.get(loc.file, [])
            loc = offset_location(raw, e2.pos, lines) or loc
            msg = e2.message
        raise RuleLoadError(msg, loc, E.LOAD_ERR_COMPILE_CONDITION) from None


_NONEXISTENT_FIELD_RE = re.compile(r"nonexistent field (\S+)")


def _output_error_loc(ld: Loader, ri: RuleItem, message: str) -> Location:
    """Where an output error is: the unknown field's ``%token`` in the output text when it can
    be found in the lines of the output value, else where the output starts (else the rule)."""
    base = ri.output_loc or ri.loc
    m = _NONEXISTENT_FIELD_RE.search(message)
    lines = ld.source_lines.get(base.file)
    if m is None or not lines or base.line < 1:
        return base
    token = m.group(1)
    for i in range(base.line - 1, min(len(lines), base.line + 30)):
        col = lines[i].find(f"%{token}")
        if col >= 0:
            return Location(base.file, i + 1, col + 1)
    return base


_UNDEFINED_MACRO_RE = re.compile(r"Undefined macro '(.+)' used in filter\.")


def _undefined_macro_hint(message: str, ld: Loader, user: str | None,
                          compiled: dict[str, Any]) -> str:
    """Say why a macro that *is* in the files counts as undefined: it uses itself, is defined
    after the macro ``user`` (macros only see earlier macros, as in Falco, so loops cannot
    form), or failed to compile (reported on its own)."""
    m = _UNDEFINED_MACRO_RE.fullmatch(message)
    if m is None or m.group(1) not in ld.macros:
        return message
    ref = m.group(1)
    if ref == user:
        return f"{message} (a macro cannot use itself)"
    order = list(ld.macros)
    if ref not in compiled and (user is None or order.index(ref) < order.index(user)):
        return f"{message} (macro '{ref}' has errors, reported on its own)"
    loc = ld.macros[ref].loc
    return (f"{message} (macro '{ref}' is defined later, at {loc.file}:{loc.line}; a macro can "
            "only use macros defined before it)")


def compile_loaded(ld: Loader, append_output: Any = None, capture_fields: Any = (),
                   ) -> tuple[list[CompiledRule], list[RuleDescription]]:
    """Compile what :class:`Loader` collected; errors and warnings go to ``ld``.
    ``capture_fields``: field tokens whose values every alert carries in ``match_fields``
    (tokens not valid for a rule's source are skipped for that rule)."""
    capture_tokens = sorted(set(capture_fields or ()))
    capture_by_source: dict[str, tuple[tuple[str, Any], ...]] = {}
    try:
        out_entries = _norm_append_output(append_output)
    except RuleLoadError as e:
        ld.error(e.message, Location("<config>", 0, 0), E.LOAD_ERR_VALIDATE, ("append_output", ""))
        out_entries = []
    # lists: items may name earlier lists
    lists: dict[str, list[str]] = {}
    used_lists: set[str] = set()
    for name, li in ld.lists.items():
        items: list[str] = []
        try:
            limits.check_list_size(name, len(li.items))
            for it in li.items:
                if it in lists:
                    limits.check_list_size(name, len(items) + len(lists[it]))
                    items.extend(lists[it])
                    used_lists.add(it)
                else:
                    items.append(it)
        except RuleLoadError as e:
            ld.error(e.message, li.loc, e.code, ("list", name))
            continue
        lists[name] = items
    budget = limits.NodeBudget()        # the whole load's, macros' text included
    # macros: in order, each sees only earlier macros
    macros: dict[str, Any] = {}
    used_macros: set[str] = set()
    for name, mi in ld.macros.items():
        item = ("macro", name)
        try:
            text = substitute_lists(str(mi.condition), lists, used_lists)
            budget.spend_text(len(text))
            ast = _parse_located(ld, mi.condition, text, mi.loc)
            expanded = expand_macros(ast, macros, used_macros)
            limits.check_condition(expanded, "Macro condition")
            macros[name] = expanded
        except RuleLoadError as e:
            ld.error(_undefined_macro_hint(e.message, ld, name, macros), e.loc or mi.loc, e.code,
                     item)
        except Exception as e:  # noqa: BLE001 - never let one macro stop the load
            ld.error(f"cannot compile macro: {type(e).__name__}: {e}", mi.loc,
                     E.LOAD_ERR_COMPILE_CONDITION, item)
    compiled: list[CompiledRule] = []
    described: list[RuleDescription] = []
    for name, ri in ld.rules.items():
        item = ("rule", name)
        if ld.sources is not None and ri.source not in ld.sources:
            ld.warn(E.LOAD_UNKNOWN_SOURCE, f"Unknown source {ri.source}, skipping", ri.loc, item)
            continue
        cond_loc = getattr(ri.condition, "loc", None) or ri.loc
        try:
            exc = "".join(exception_condition(e) for e in ri.exceptions)
            full = f"({ri.condition}){exc}" if exc else str(ri.condition)
            text = substitute_lists(full, lists, used_lists)
            budget.spend_text(len(text))
            ast = _parse_located(ld, ri.condition, text, ri.loc)
            ast = expand_macros(ast, macros, used_macros)
            budget.spend(limits.check_condition(ast, "Condition"))
            cc = ConditionCompiler(ld.registry, ri.source)
            check = compile_check(cc, ast, name)
            types: frozenset[str] | None = None
            if ri.source == "syscall":
                types = event_types(ast, ALL_EVENT_TYPES)
            extras = _extras(ld, out_entries, ri)
            try:
                fmt = compile_output(ri.output + extras.text, ld.registry, ri.source)
            except FilterCompileError as e:
                e.code = E.LOAD_ERR_COMPILE_OUTPUT
                raise
        except FilterCompileError as e:
            if e.unknown_filter and ri.skip_if_unknown_filter:
                ld.warn(E.LOAD_UNKNOWN_FILTER, e.message, cond_loc, item)
                continue
            ld.error(_undefined_macro_hint(e.message, ld, None, macros),
                     cond_loc if e.code != E.LOAD_ERR_COMPILE_OUTPUT else _output_error_loc(ld, ri,
                                                                                  e.message),
                     e.code, item)
            continue
        except RuleLoadError as e:
            ld.error(e.message, e.loc or cond_loc, e.code, item)
            continue
        except Exception as e:  # noqa: BLE001 - e.g. a plugin's make_extractor raising
            ld.error(f"cannot compile rule: {type(e).__name__}: {e}", cond_loc,
                     E.LOAD_ERR_COMPILE_CONDITION, item)
            continue
        for w in cc.warnings:
            ld.warn(E.LOAD_COMPILE_CONDITION, w, cond_loc, item)
        for w in dict.fromkeys(cc.na_checks):
            ld.warn(E.LOAD_UNSAFE_NA_CHECK, w, cond_loc, item)
        for w in fmt.warnings:
            ld.warn(E.LOAD_DEPRECATED_ITEM, w, ri.loc, item)
        if any(f.fdef.name == "evt.dir" for f in cc.fields):
            ld.warn(E.LOAD_DEPRECATED_ITEM, "usage of deprecated field 'evt.dir' has been "
                    "detected in the rule condition", cond_loc, item)
        unknown_types = sorted(types - ALL_EVENT_TYPES) if types is not None else []
        if unknown_types:
            ld.warn(E.LOAD_UNKNOWN_FILTER, "unknown event type(s) "
                    f"{', '.join(unknown_types)}: the rule can never match them", cond_loc, item)
        if types is not None and ri.warn_evttypes and len(types) > TOO_MANY_EVTTYPES:
            ld.warn(E.LOAD_NO_EVTTYPE, "Rule matches too many evt.type values. This has a "
                    "significant performance penalty.", cond_loc, item)
        if types is not None and types >= ALL_EVENT_TYPES:
            types = None
        file = ld.rule_files.get(name, "")
        cr = CompiledRule(name, ri.priority, ri.source, sorted(ri.tags), ri.desc,
                          os.path.basename(file), ri.enabled, check, fmt, types,
                          str(ri.condition), ri.output, ri.capture,
                          ri.capture_duration * 1_000_000)
        cr.extra_fields = {"getters": extras.getters, "consts": extras.consts}
        if capture_tokens:
            if ri.source not in capture_by_source:
                capture_by_source[ri.source] = _capture_getters(ld.registry, capture_tokens,
                                                                ri.source)
            cr.capture_getters = capture_by_source[ri.source]
        compiled.append(cr)
        described.append(RuleDescription(name, ri.priority, ri.source, sorted(ri.tags),
                                         ri.enabled, sorted(types) if types is not None else None,
                                         file, ri.desc))
    for name, mi in ld.macros.items():
        if name not in used_macros and name in macros:
            ld.warn(E.LOAD_UNUSED_MACRO, "Macro not referred to by any other rule/macro", mi.loc,
                    ("macro", name))
    for name, li in ld.lists.items():
        if name not in used_lists:
            ld.warn(E.LOAD_UNUSED_LIST, "List not referred to by any other rule/macro", li.loc,
                    ("list", name))
    return compiled, described
