"""The core field families, one module each next to the state they read: ``evt.*`` (:mod:`.evt`),
``proc.*``/``thread.*`` (:mod:`.proc`), ``user.*``/``group.*`` (:mod:`.user`), ``fd.*`` (:mod:`.fd`).

Every field is a :class:`FieldDef` whose ``make_extractor(arg)`` is called once per field token at
rule-load time and returns a small closure ``extract(evt) -> value | None``. Everything that can be
decided at load time (the ancestor index, the argument name, the renderer of a flag argument, the
tables and user database) is bound into the closure then; the closures themselves do attribute
reads and dict lookups only. ``None`` means the value is unknown (the comparison is false).

Values come from ``evt.thread`` / ``evt.fdinfo``, attached by :mod:`falconet.state.parser`.
Descriptions follow Falco's ``falco --list``. ``docs/fields.md`` is generated from this module
(``python -m falconet.state.fields > docs/fields.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from falconet.fields.registry import ArgKind, FieldDef
from falconet.state.dns import DomainResolver
from falconet.state.fields.evasion import evasion_fields
from falconet.state.fields.evt import ArgRenderer, evt_fields
from falconet.state.fields.fd import fd_fields
from falconet.state.fields.proc import proc_fields
from falconet.state.fields.user import user_fields
from falconet.state.tables import StateTables

__all__ = ["core_field_defs", "markdown_table"]


def core_field_defs(tables: StateTables | None = None, users: Any = None,
                    hostname: str | None = None, dns: DomainResolver | None = None
                    ) -> list[FieldDef]:
    """Every core field, bound to ``tables`` (the engine's state), ``users`` (a
    :class:`falconet.state.users.UserDB`) and ``dns`` (the engine's resolver of the names in
    ``fd.*ip.name`` conditions). Without them, fresh empty ones are used (listing, validating:
    that resolver never starts a thread, so those names never match)."""
    if tables is None:
        tables = StateTables()
    if users is None:
        from falconet.state.users import UserDB  # noqa: PLC0415

        users = UserDB(frozen=True)
    if dns is None:
        dns = DomainResolver(autostart=False)
    r = ArgRenderer(tables)
    return [*evt_fields(r, hostname), *proc_fields(tables, users), *user_fields(users),
            *fd_fields(tables, dns), *evasion_fields(tables)]


def markdown_table(defs: Iterable[FieldDef]) -> str:
    """``docs/fields.md`` body: one table row per field."""
    rows = ["| field | type | argument | description |", "|---|---|---|---|"]
    for d in sorted(defs, key=lambda d: d.name):
        if d.arg is ArgKind.NONE:
            arg = ""
        else:
            form = "[N]" if d.arg_is_index else ("[name] or .name" if d.dotted_arg else "[name]")
            arg = form + (" (optional)" if d.arg is ArgKind.OPTIONAL else " (required)")
        kind = d.type.value + (" (list)" if d.is_list else "")
        rows.append(f"| `{d.name}` | {kind} | {arg} | {d.desc.replace('|', '/')} |")
    return "\n".join(rows)
