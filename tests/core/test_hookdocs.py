"""docs/plugins.md's hook reference is generated from falconet.hookspecs: every hook is
documented there, and the text is what the hookspecs say now (datasette's test, made strict)."""

from __future__ import annotations

from pathlib import Path

import pluggy
from falconet import hookdocs, hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def test_every_hookspec_is_documented() -> None:
    pm = pluggy.PluginManager("falconet")
    pm.add_hookspecs(hookspecs)
    specs = {name for name in vars(pm.hook) if name.startswith("falconet_")}
    assert specs == set(hookdocs.hook_names())
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in sorted(specs) if f"### `{name}`" not in text]
    assert not missing, f"not documented in docs/plugins.md: {missing}"


def test_the_hook_reference_is_up_to_date() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert hookdocs.update(text) == text, (
        "docs/plugins.md is stale: run `python -m falconet.hookdocs --write docs/plugins.md`")
    assert hookdocs.main([str(DOC), "--check"]) == 0
