"""The plugin's hooks (entry point ``response`` in group ``falconet``; config section
``plugins.response``). Policies come from the top-level ``responses:`` section."""

from __future__ import annotations

from typing import Any

from falconet.api import hookimpl


@hookimpl
def falconet_response_actions(engine: Any) -> list[Any] | None:
    """The first-party actions (filled in by the policy engine's modules)."""
    return []
