"""The rule authoring backend hook follows the plugin contract: what a plugin returns is checked
against the ``RuleAuthoringBackend`` Protocol (falconet.api), and a plugin returning something
else is that plugin's failure, not a traceback of ``rules generate``."""

from __future__ import annotations

from typing import Any

import pytest
from falconet.api import EngineContext, RuleAuthoringBackend, hookimpl
from falconet.app import App, default_rules_paths
from falconet.authoring import generate as generate_mod
from falconet.authoring.context import RulesContext
from falconet.authoring.generate import GenerateError, backends
from falconet.config import load_config


class Echo:
    name = "echo"

    def propose(self, messages: list[dict[str, str]]) -> str:
        return messages[-1]["content"]


class GoodPlugin:
    @hookimpl
    def falconet_rule_authoring_backends(self, engine: EngineContext) -> list[Any]:
        return [Echo()]


class NotAListPlugin:
    @hookimpl(tryfirst=True)
    def falconet_rule_authoring_backends(self, engine: EngineContext) -> Any:
        return Echo()               # one backend, not a list of them


class NoProposePlugin:
    @hookimpl
    def falconet_rule_authoring_backends(self, engine: EngineContext) -> list[Any]:
        return [object()]


def test_a_backend_is_checked_against_its_protocol() -> None:
    assert isinstance(Echo(), RuleAuthoringBackend)
    app = App(load_config(None), source_name="replay",
              extra_plugins=[("good", GoodPlugin), ("notalist", NotAListPlugin),
                             ("nopropose", NoProposePlugin)])
    app.load_plugins()
    found = backends(app)
    assert "echo" in found
    failed = {f.name: f.reason for f in app.host.failures}
    assert "expected a list" in failed["notalist"]
    assert "not a RuleAuthoringBackend" in failed["nopropose"]
    assert "good" not in failed


def test_a_backend_that_fails_otherwise_than_documented_is_one_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook says: raise RuntimeError. A backend that raises something else (its HTTP
    library's error, a bug) is still that backend's clear failure, not a traceback."""
    class Broken:
        name = "broken"

        def propose(self, messages: list[dict[str, str]]) -> str:
            raise ValueError("unexpected answer shape")

    monkeypatch.setattr(generate_mod, "backends", lambda app: {"broken": Broken()})
    with pytest.raises(GenerateError, match="backend 'broken': ValueError: unexpected answer"):
        generate_mod.generate("x", context=RulesContext(default_rules_paths()), positives=[],
                              negatives=[])
