"""Response actions as outputs: each ``responses:`` entry of ``falconet.yaml`` becomes a sink that
runs a plugin's :class:`falconet.api.ResponseAction` for the alerts it selects. It runs behind its
own bounded queue and worker like every output, so an action never blocks the event loop; a
failing action is counted in ``falconet_output_failures_total{output="response:<action>"}``."""

from __future__ import annotations

from typing import Any

from falconet.alerts import Alert
from falconet.priorities import Priority


class ResponseSink:
    def __init__(self, action: Any, params: dict[str, Any], rules: list[str] | None,
                 min_priority: Priority) -> None:
        self.action = action
        self.params = params
        self.name = f"response:{action.name}"
        self.min_priority = min_priority
        #: the pipeline queues only alerts of these rules (None: every rule)
        self.rules = frozenset(rules) if rules else None

    def start(self) -> None:
        pass

    def send(self, alert: Alert) -> None:
        self.action.run(alert, dict(self.params))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
