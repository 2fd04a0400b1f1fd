"""``falconet.yaml``: loading, ``-o key.path=value`` overrides, validation with file:line:col.

The file is read with ``yaml.safe_load`` for the values and composed once more into nodes so every
key can be reported with the line and column where it was written. Validation checks every known
key against :data:`SCHEMA`; free-form sections (``collector``, ``plugins.<name>``) are left to
their owners, which validate them in ``falconet_configure``.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from falconet.delivery.policy import SPOOL_DEFAULTS, check_aggregate, check_spool
from falconet.encoding import DEFAULT_MAX_FIELD_LEN, MIN_MAX_FIELD_LEN
from falconet.priorities import PRIORITY_NAMES, Priority
from falconet.redact import redact_override, redact_text, redact_value

#: (line, column), both 1-based, of a key's value; ``None`` when the value was not written.
Mark = tuple[int, int]


class ConfigError(Exception):
    """The configuration is invalid. ``str()`` lists every problem, one per line, with location;
    secrets (URL userinfo and query values, ``Bearer`` tokens) are redacted from them."""

    def __init__(self, problems: list[str]) -> None:
        problems = [redact_text(p) for p in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


# ------------------------------------------------------------------------------- value checkers
# Each checker returns the (possibly normalised) value or raises ValueError("expected ...").
Checker = Callable[[Any], Any]


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("expected true or false")


def _int_range(lo: int, hi: int | None = None) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"expected an integer {bound}")
        return v
    return check


def _positive_number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError("expected a number > 0")
    return float(v)


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def _opt_str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return _str(v)


def _str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) and x for x in v):
        return list(v)
    raise ValueError("expected a list of strings")


def _priority(v: Any) -> str:
    try:
        return Priority.parse(v).name.lower()
    except ValueError:
        raise ValueError(f"expected one of {', '.join(PRIORITY_NAMES)}") from None


def _choice(*allowed: str) -> Checker:
    def check(v: Any) -> str:
        if v not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return v
    return check


def _http_url(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return v


def _mapping(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("expected a mapping")
    return v


def _append_output(v: Any) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ValueError("expected a list of mappings (match:, extra_output:, extra_fields:, "
                         "suggested_output:)")
    for i, entry in enumerate(v):
        unknown = sorted(set(map(str, entry)) - _APPEND_OUTPUT_KEYS)
        if unknown:
            raise ValueError(f"entry {i + 1}: unknown key {unknown[0]!r} (allowed: "
                             + ", ".join(sorted(_APPEND_OUTPUT_KEYS)) + ")")
        match = entry.get("match")
        if match is not None and (not isinstance(match, dict)
                                  or set(map(str, match)) - {"source", "tags", "rule"}):
            raise ValueError(f"entry {i + 1}: match: expected a mapping with source:, tags:, rule:")
    return v


_APPEND_OUTPUT_KEYS = {"match", "extra_output", "extra_fields", "suggested_output"}


def _responses(v: Any) -> list[dict[str, Any]]:
    """Response policies: a list of mappings, compiled by the response plugin (which reports
    each problem at its file:line:col). The earlier item shape ``{action, rules, min_priority,
    params}`` is rejected with the equivalent policy."""
    if v is None or v == {}:
        return []
    if not isinstance(v, list):
        raise ValueError("expected a list of policies ({name, match, actions, ...}; see "
                         "docs/response.md)")
    for i, r in enumerate(v):
        if not isinstance(r, dict):
            raise ValueError(f"item {i + 1}: expected a policy mapping (name, match, actions)")
        if "action" in r and "actions" not in r:
            rules = r.get("rules") or []
            prio = r.get("min_priority")
            match = ", ".join(x for x in (f"rules: {list(rules)}" if rules else "",
                                          f"priority: '>={prio}'" if prio else "") if x)
            params = "".join(f", {k}: {x!r}" for k, x in dict(r.get("params") or {}).items())
            raise ValueError(
                f"item {i + 1}: '{{action: ...}}' items are replaced by policies; write it as "
                f"'- name: {r['action']}-{i + 1}, match: {{{match}}}, actions: "
                f"[{{action: {r['action']}{params}}}]' (docs/response.md)")
    return v


def _headers(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items()):
        raise ValueError("expected a mapping of header name to string value")
    return v


#: Marker for a section whose content belongs to someone else (validated by its plugin).
FREE = "free-form"

_sink_common: dict[str, Any] = {"enabled": _bool, "min_priority": _priority,
                                # routing and aggregation (falconet.delivery; docs/outputs.md):
                                # ``match`` is compiled against the field registry at start
                                "match": _mapping, "aggregate": check_aggregate}

#: Every key falconet.yaml may hold: nested dicts are sections, callables check leaf values.
SCHEMA: dict[str, Any] = {
    "rules_files": _str_list,
    "load_plugin_rules": _bool,
    "watch_rules_files": _bool,
    "rules_max_file_size": _int_range(1),
    "priority": _priority,
    "rule_matching": _choice("first", "all"),
    "json_output": _bool,
    "json_include_output_property": _bool,
    "json_include_tags_property": _bool,
    "time_format_iso_8601": _bool,
    "append_output": _append_output,
    "hostname": _opt_str,
    "output_max_field_len": _int_range(MIN_MAX_FIELD_LEN),
    "outputs": {
        "stdout": dict(_sink_common),
        "file": {**_sink_common, "path": _opt_str, "json": _bool},
        "webhook": {**_sink_common, "url": _opt_str, "retries": _int_range(0, 100),
                    "timeout": _positive_number, "queue_size": _int_range(1),
                    "headers": _headers, "spool": check_spool},
    },
    "state_dir": _opt_str,
    "outputs_queue": {"capacity": _int_range(1)},
    "metrics": {"enabled": _bool, "address": _str, "port": _int_range(0, 65535)},
    "collector": FREE,
    "plugins": FREE,       # plugins.<name>: {required, enabled, ...}; checked below
    "responses": _responses,
}

DEFAULTS: dict[str, Any] = {
    "rules_files": [],
    "load_plugin_rules": True,
    "watch_rules_files": True,
    "rules_max_file_size": 8 << 20,
    "priority": "debug",
    "rule_matching": "first",
    "json_output": False,
    "json_include_output_property": True,
    "json_include_tags_property": True,
    "time_format_iso_8601": False,
    "append_output": [{"suggested_output": True}],
    "hostname": None,
    "output_max_field_len": DEFAULT_MAX_FIELD_LEN,
    "outputs": {
        "stdout": {"enabled": True, "min_priority": "debug", "match": {}, "aggregate": None},
        "file": {"enabled": False, "min_priority": "debug", "path": None, "json": True,
                 "match": {}, "aggregate": None},
        "webhook": {"enabled": False, "min_priority": "debug", "url": None, "retries": 3,
                    "timeout": 5.0, "queue_size": 1000, "headers": {}, "match": {},
                    "aggregate": None, "spool": dict(SPOOL_DEFAULTS)},
    },
    "state_dir": None,
    "outputs_queue": {"capacity": 10000},
    "metrics": {"enabled": True, "address": "127.0.0.1", "port": 8765},
    "collector": {},
    "plugins": {},
    "responses": [],
}


@dataclass
class Config:
    """The validated configuration: ``data`` is a plain dict shaped like :data:`DEFAULTS`."""

    data: dict[str, Any]
    path: str | None = None
    #: ``key path -> "file:line:col"`` (or ``-o key=value``): where a key was written, for the
    #: messages of validators that run later (plugin sections, see ``falconet.plugin_config``)
    where: Callable[[tuple[str, ...]], str] = lambda _p: "<config>"

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, dotted: str, default: Any = None) -> Any:
        cur: Any = self.data
        for part in dotted.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return default
            cur = cur[part]
        return cur

    def plugin_section(self, name: str) -> dict[str, Any]:
        """``plugins.<name>`` (``{}`` when absent): what ``falconet_configure`` receives."""
        sec = self.data.get("plugins", {}).get(name)
        return dict(sec) if isinstance(sec, dict) else {}

    def plugin_required(self, name: str) -> bool:
        return bool(self.plugin_section(name).get("required", False))

    @property
    def hostname(self) -> str:
        return (self.data.get("hostname") or os.environ.get("FALCONET_HOSTNAME")
                or os.environ.get("FALCO_HOSTNAME") or socket.gethostname())


# ------------------------------------------------------------------------------- loading
def _marks(node: yaml.Node | None, prefix: tuple[str, ...], out: dict[tuple[str, ...], Mark]) -> None:
    """Record the position of every mapping key (recursively) as ``path -> (line, col)``."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                path = (*prefix, str(k.value))
                out[path] = (k.start_mark.line + 1, k.start_mark.column + 1)
                _marks(v, path, out)


def _yaml_error(path: str, e: yaml.YAMLError) -> ConfigError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
    problem = getattr(e, "problem", None) or str(e)
    ctx = getattr(e, "context", None)
    return ConfigError([f"{where}: error: invalid YAML: {problem}" + (f" ({ctx})" if ctx else "")])


#: top-level sections whose values keep their YAML positions (see :func:`read_yaml`): what
#: :func:`falconet.alertmatch.compile_match` and the response plugin report errors against
LOCATED_SECTIONS: tuple[str, ...] = ("responses", "outputs")


def read_yaml(path: str) -> tuple[dict[str, Any], dict[tuple[str, ...], Mark]]:
    """Read a config file: (values, key positions). Raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: error: cannot read configuration file: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: error: not UTF-8 text: {e.reason}"]) from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1:1: error: expected a mapping of settings at the top level, "
                           f"got {type(data).__name__}"])
    marks: dict[tuple[str, ...], Mark] = {}
    _marks(node, (), marks)
    located = [k for k in LOCATED_SECTIONS if k in data]
    if located:
        # position-aware values (YMap/YSeq/YStr: dict/list/str subclasses) for the sections
        # compiled later by their owners, so their errors are file:line:col too
        from falconet.rules.yamlnodes import load_documents  # noqa: PLC0415

        top = load_documents(text, path)[0][0]
        for k in located:
            data[k] = top[k]
    return data, marks


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value`` (Falco's ``-o``): the value is parsed as YAML (``true``, ``3``,
    ``[a, b]``, ``"quoted"``). Raises :class:`ConfigError`."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError([f"-o {text}: error: expected key.path=value (e.g. -o json_output=true)"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError([f"-o {redact_override(text)}: error: the value is not valid YAML: "
                           f"{getattr(e, 'problem', e)}"]) from None
    return key.split("."), value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _validate(data: dict[str, Any], schema: dict[str, Any], prefix: tuple[str, ...],
              where: Callable[[tuple[str, ...]], str], problems: list[str]) -> None:
    for key in list(data):
        path = (*prefix, str(key))
        dotted = ".".join(path)
        spec = schema.get(key)
        if spec is None:
            allowed = ", ".join(sorted(schema))
            problems.append(f"{where(path)}: error: unknown key '{dotted}' (allowed here: {allowed})")
            continue
        value = data[key]
        if spec == FREE:
            if value is None:
                data[key] = {}
            elif not isinstance(value, dict):
                problems.append(f"{where(path)}: error: {dotted}: expected a mapping, "
                                f"got {redact_value(value, dotted)!r}")
            continue
        if isinstance(spec, dict):
            if value is None:
                data[key] = {}
                continue
            if not isinstance(value, dict):
                problems.append(f"{where(path)}: error: {dotted}: expected a mapping with keys "
                                f"{', '.join(sorted(spec))}, got {redact_value(value, dotted)!r}")
                continue
            _validate(value, spec, path, where, problems)
            continue
        try:
            data[key] = spec(value)
        except ValueError as e:
            problems.append(f"{where(path)}: error: {dotted}: {e}, "
                            f"got {redact_value(value, dotted)!r}")


def _validate_plugins(plugins: dict[str, Any], where: Callable[[tuple[str, ...]], str],
                      problems: list[str]) -> None:
    for name, sec in plugins.items():
        path = ("plugins", str(name))
        if sec is None:
            plugins[name] = {}
            continue
        if not isinstance(sec, dict):
            problems.append(f"{where(path)}: error: plugins.{name}: expected a mapping "
                            f"(the plugin's settings), got {redact_value(sec)!r}")
            continue
        for flag in ("required", "enabled"):
            if flag in sec and not isinstance(sec[flag], bool):
                problems.append(f"{where((*path, flag))}: error: plugins.{name}.{flag}: "
                                f"expected true or false, got {sec[flag]!r}")


def load_config(path: str | None = None, overrides: Iterable[str] = (),
                *, base: dict[str, Any] | None = None) -> Config:
    """Defaults, then the file (if any), then ``-o`` overrides; validated.

    Raises :class:`ConfigError` listing every problem with its location (``file:line:col`` for
    the file, ``-o key=value`` for overrides)."""
    marks: dict[tuple[str, ...], Mark] = {}
    data: dict[str, Any] = {}
    if base is not None:
        data = copy.deepcopy(base)
    if path is not None:
        data, marks = read_yaml(path)
    origin: dict[tuple[str, ...], str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        cur = data
        for i, k in enumerate(keys[:-1]):
            nxt = cur.get(k)
            if not isinstance(nxt, dict):
                if nxt is not None:
                    raise ConfigError([f"-o {redact_override(text)}: error: "
                                       f"'{'.'.join(keys[:i + 1])}' is not a section"])
                nxt = cur[k] = {}
            cur = nxt
        cur[keys[-1]] = value
        for i in range(1, len(keys) + 1):
            origin[tuple(keys[:i])] = f"-o {redact_override(text)}"

    def where(p: tuple[str, ...]) -> str:
        if p in origin:
            return origin[p]
        m = marks.get(p)
        if path is None:
            return "<config>"
        return f"{path}:{m[0]}:{m[1]}" if m else path

    problems: list[str] = []
    _validate(data, SCHEMA, (), where, problems)
    if isinstance(data.get("plugins"), dict):
        _validate_plugins(data["plugins"], where, problems)
    merged = _merge(DEFAULTS, data)
    wh = merged["outputs"]["webhook"]
    if wh["enabled"] and not wh["url"]:
        problems.append(f"{where(('outputs', 'webhook'))}: error: outputs.webhook is enabled "
                        f"but outputs.webhook.url is not set")
    elif wh["url"]:
        try:
            _http_url(wh["url"])
        except ValueError as e:
            problems.append(f"{where(('outputs', 'webhook', 'url'))}: error: "
                            f"outputs.webhook.url: {e}, got {redact_value(wh['url'])!r}")
    fo = merged["outputs"]["file"]
    if fo["enabled"] and not fo["path"]:
        problems.append(f"{where(('outputs', 'file'))}: error: outputs.file is enabled but "
                        f"outputs.file.path is not set")
    if problems:
        raise ConfigError(problems)
    return Config(merged, path, where)


def default_config_path() -> str | None:
    """``$FALCONET_CONFIG``, else ``/etc/falconet/falconet.yaml`` if it exists, else none."""
    env = os.environ.get("FALCONET_CONFIG")
    if env:
        return env
    etc = Path("/etc/falconet/falconet.yaml")
    return str(etc) if etc.exists() else None
