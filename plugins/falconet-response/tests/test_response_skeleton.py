"""The plugin is installed under the ``response`` entry point and its action contract holds."""

from __future__ import annotations

import importlib.metadata as md

from falconet_response.actions.base import Action, ActionParamError, Outcome, Target


def test_entry_point_names_the_plugin_module() -> None:
    eps = {e.name: e.value for e in md.entry_points(group="falconet")}
    assert eps["response"] == "falconet_response.plugin"


def test_action_protocol_is_runtime_checkable() -> None:
    class Noop:
        name = "noop"
        reversible = False

        def check_params(self, params):
            if params:
                raise ActionParamError("expected no parameters")
            return {}

        def run(self, target, alert, params):
            return Outcome("done")

        def undo(self, data):
            return Outcome("skipped", "not reversible")

    assert isinstance(Noop(), Action) and not isinstance(object(), Action)
    t = Target(1234, 5, None, None, None, None, None, "pid:1234:5")
    assert Noop().run(t, None, {}).result == "done"
