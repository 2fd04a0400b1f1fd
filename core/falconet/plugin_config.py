"""A plugin's configuration section, declared once and validated by one validator.

A plugin returns a :class:`ConfigSchema` from ``falconet_config_schema``; the plugin host checks
``plugins.<name>`` against it before ``falconet_configure`` and hands the plugin the validated
values with the defaults filled in. Every problem reads the same way, with the position the
config module recorded for the key::

    falconet.yaml:12:5: error: plugins.example.interval: expected a number >= 0, got -1
    falconet.yaml:13:5: error: plugins.example.intervall: unknown key 'intervall' (allowed here: ...)

A checker is a callable ``value -> normalised value`` raising ``ValueError("expected ...")``;
the ones below cover what first-party plugins need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from falconet.priorities import PRIORITY_NAMES, Priority
from falconet.redact import redact_value

#: ``path -> "file:line:col"`` (or ``-o key=value``) of a key of the configuration
Where = Callable[[tuple[str, ...]], str]
Checker = Callable[[Any], Any]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: a setting without a default: absent from the validated values unless written
NO_DEFAULT: Any = _NoDefault()

#: keys the host itself reads in every plugin section
HOST_KEYS = ("required", "enabled",
             # the engine's delivery settings of the plugin's sinks (falconet.delivery.policy)
             "match", "aggregate", "spool")


@dataclass(frozen=True)
class Setting:
    """One key: its checker, its default (:data:`NO_DEFAULT`: left out when absent), a line
    of documentation."""

    check: Checker
    default: Any = NO_DEFAULT
    doc: str = ""


@dataclass(frozen=True)
class ConfigSchema:
    """The keys of a plugin's section; a nested :class:`ConfigSchema` is a sub-section.

    ``merge_from`` names a top-level section read first, the plugin section's keys overriding
    it (the eBPF collector reads ``collector:``)."""

    settings: Mapping[str, Setting | ConfigSchema] = field(default_factory=dict)
    merge_from: str | None = None

    def defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, s in self.settings.items():
            if isinstance(s, ConfigSchema):
                out[k] = s.defaults()
            elif s.default is not NO_DEFAULT:
                out[k] = s.default
        return out


def _check(schema: ConfigSchema, data: Any, path: tuple[str, ...], where: Where,
           problems: list[str], *, defaults: bool = True) -> dict[str, Any]:
    dotted = ".".join(path)
    out = schema.defaults() if defaults else {}
    if data is None:
        return out
    if not isinstance(data, dict):
        problems.append(f"{where(path)}: error: {dotted}: expected a mapping, "
                        f"got {redact_value(data, dotted)!r}")
        return out
    for key, value in data.items():
        kpath = (*path, str(key))
        spec = schema.settings.get(str(key))
        if spec is None:
            allowed = ", ".join(sorted(schema.settings))
            problems.append(f"{where(kpath)}: error: {'.'.join(kpath)}: unknown key '{key}' "
                            f"(allowed here: {allowed or 'none'})")
            continue
        if isinstance(spec, ConfigSchema):
            out[str(key)] = _check(spec, value, kpath, where, problems)
            continue
        try:
            out[str(key)] = spec.check(value)
        except ValueError as e:
            problems.append(f"{where(kpath)}: error: {'.'.join(kpath)}: {e}, "
                            f"got {redact_value(value, str(key))!r}")
    return out


def validate_section(schema: ConfigSchema, name: str, section: Mapping[str, Any] | None,
                     where: Where, *, whole: Mapping[str, Any] | None = None
                     ) -> tuple[dict[str, Any], list[str]]:
    """Check ``plugins.<name>`` (and ``schema.merge_from``) against ``schema``.

    Returns ``(values, problems)``: the values with defaults filled in and the host keys
    (``required``, ``enabled``) left out; one message per problem, every one in the same format.
    """
    problems: list[str] = []
    values = schema.defaults()
    if schema.merge_from is not None:
        top = (whole or {}).get(schema.merge_from)
        values.update(_check(schema, top, (schema.merge_from,), where, problems, defaults=False))
    own = {k: v for k, v in (section or {}).items() if k not in HOST_KEYS}
    values.update(_check(schema, own, ("plugins", name), where, problems, defaults=False))
    return values, problems


def check_or_raise(schema: ConfigSchema, name: str, section: Mapping[str, Any] | None,
                   where: Where | None = None, *, whole: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """:func:`validate_section` for code that configures a plugin by hand (tests, tools):
    raises ``PluginConfigError`` with every problem."""
    from falconet.api import PluginConfigError  # noqa: PLC0415 - api imports this module

    values, problems = validate_section(schema, name, section, where or (lambda p: "<config>"),
                                        whole=whole)
    if problems:
        raise PluginConfigError("; ".join(problems))
    return values


# ------------------------------------------------------------------------------- checkers
def boolean() -> Checker:
    def check(v: Any) -> bool:
        if isinstance(v, bool):
            return v
        raise ValueError("expected true or false")
    return check


def integer(minimum: int | None = None, maximum: int | None = None, *,
            power_of_two: bool = False) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(_bounded("an integer", minimum, maximum))
        if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            raise ValueError(_bounded("an integer", minimum, maximum))
        if power_of_two and (v <= 0 or v & (v - 1)):
            raise ValueError("expected a power of two")
        return int(v)
    return check


def positive_integer(*, power_of_two: bool = False) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError("expected a positive integer")
        if power_of_two and v & (v - 1):
            raise ValueError("expected a power of two")
        return int(v)
    return check


def number(minimum: float | None = None, maximum: float | None = None, *,
           exclusive_minimum: bool = False) -> Checker:
    """A number (returned as ``float``). ``number(0, exclusive_minimum=True)`` is "positive"."""
    def check(v: Any) -> float:
        ok = not isinstance(v, bool) and isinstance(v, int | float)
        if ok and minimum is not None:
            ok = v > minimum if exclusive_minimum else v >= minimum
        if ok and maximum is not None:
            ok = v <= maximum
        if not ok:
            if minimum == 0 and exclusive_minimum and maximum is None:
                raise ValueError("expected a positive number")
            raise ValueError(_bounded("a number", minimum, maximum,
                                      exclusive_minimum=exclusive_minimum))
        return float(v)
    return check


def string(*, empty: bool = False) -> Checker:
    def check(v: Any) -> str:
        if not isinstance(v, str) or (not empty and not v):
            raise ValueError("expected a string" if empty else "expected a non-empty string")
        return v
    return check


def string_list(*, nonempty: bool = False) -> Checker:
    def check(v: Any) -> list[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or (
                nonempty and not v):
            raise ValueError("expected a non-empty list of strings" if nonempty
                             else "expected a list of strings")
        return list(v)
    return check


def one_of(*allowed: Any) -> Checker:
    def check(v: Any) -> Any:
        # True == 1 in Python: compare types too, so `1` is not taken for `true`
        if not any(v == a and type(v) is type(a) for a in allowed):
            raise ValueError("expected one of " + ", ".join(_show(a) for a in allowed))
        return v
    return check


def priority() -> Checker:
    def check(v: Any) -> Priority:
        try:
            return Priority.parse(v)
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"expected one of {', '.join(PRIORITY_NAMES)}") from None
    return check


def optional(inner: Checker) -> Checker:
    """``null`` or what ``inner`` accepts."""
    def check(v: Any) -> Any:
        if v is None:
            return None
        try:
            return inner(v)
        except ValueError as e:
            raise ValueError(f"{e} or null") from None
    return check


def any_value() -> Checker:
    """Accepted as written (a plugin checks it further itself)."""
    return lambda v: v


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _bounded(what: str, lo: float | None, hi: float | None, *,
             exclusive_minimum: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"expected {what} in ({lo}, {hi}]" if exclusive_minimum else \
            f"expected {what} between {lo} and {hi}"
    if lo is not None:
        return f"expected {what} > {lo}" if exclusive_minimum else f"expected {what} >= {lo}"
    if hi is not None:
        return f"expected {what} <= {hi}"
    return f"expected {what}"


def configure_by_hand(plugin: Any, name: str, config: Mapping[str, Any] | None,
                      engine: Any) -> None:
    """Configure one plugin object the way the host does (tests, tools): validate ``section``
    against its ``falconet_config_schema`` (if it has one; raises ``PluginConfigError``), then
    call its ``falconet_configure`` with the values."""
    schema_hook = getattr(plugin, "falconet_config_schema", None)
    values = dict(config or {})
    if schema_hook is not None:
        values = check_or_raise(schema_hook(), name, config,
                                whole=getattr(engine, "config", None) or {})
    configure = getattr(plugin, "falconet_configure", None)
    if configure is not None:
        configure(config=values, engine=engine)
