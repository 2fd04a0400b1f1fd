"""Helpers for the rules tests: load small rule texts against the stand-in registry."""

from __future__ import annotations

from typing import Any

from falconet.rules import LoadResult, load_rules_text
from stubfields import stub_registry

REG = stub_registry()


def load(text: str | list, **kw: Any) -> LoadResult:
    kw.setdefault("append_output", [])
    return load_rules_text(text, REG, **kw)


def loaded(text: str | list, **kw: Any) -> LoadResult:
    res = load(text, **kw)
    assert res.ok, [str(m) for m in res.errors]
    return res


def rule(cond: str, name: str = "r", output: str = "out", prio: str = "warning", **extra: Any) -> str:
    lines = [f"- rule: {name}", "  desc: d", f"  condition: {_q(cond)}", f"  output: {_q(output)}",
             f"  priority: {prio}"]
    for k, v in extra.items():
        lines.append(f"  {k.replace('_', '-') if k == 'skip_if_unknown_filter' else k}: {v}")
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def matcher(cond: str, prefix: str = ""):
    """Compile ``cond`` as the only rule; return ``f(evt) -> bool``."""
    res = loaded(prefix + rule(cond))
    rs = res.ruleset
    return lambda evt: bool(rs.match(evt))


def errors(text: str, **kw: Any) -> list[str]:
    res = load(text, **kw)
    assert not res.ok, "expected the load to fail"
    return [str(m) for m in res.errors]


def warnings(text: str, **kw: Any) -> list[str]:
    return [str(m) for m in load(text, **kw).warnings]
