"""The contract of a response action (shared with the Kubernetes/Slack/webhook actions and any
third-party plugin that contributes actions through ``falconet_response_actions``).

The policy engine resolves a :class:`Target` from the alert, checks it against the safety model
(protected targets, dry-run, rate limits, circuit breaker, dedup) and only then calls
:meth:`Action.run` on a worker thread. Plugin-wide settings of an action family come from
``plugins.response.<family>`` and are given to the family's factory
(``k8s_actions(cfg, log)``, ``notify_actions(cfg, log)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from falconet.alerts import Alert


class ActionParamError(ValueError):
    """bad action params; message says what was expected"""


@dataclass(frozen=True)
class Target:
    """What a policy acts on, resolved from the alert by the policy engine."""

    pid: int | None              # proc.pid (host pid namespace), None when the alert has no process
    start_ts: int | None         # process start time (ns): a recycled PID is never hit
    container_id: str | None     # None for host processes
    container_runtime: str | None   # docker, containerd, cri-o, podman, runc (container.type)
    k8s_ns: str | None
    k8s_pod: str | None
    k8s_pod_uid: str | None
    key: str    # dedup/circuit-breaker key: pod uid, container id, or f"pid:{pid}:{start_ts}"


@dataclass
class Outcome:
    result: str                  # "done" | "failed" | "skipped" | "dry_run"
    detail: str = ""             # short, secret-free, for the audit log
    undo: dict[str, Any] | None = None   # JSON data that undo() needs; None = not reversible


@runtime_checkable
class Action(Protocol):
    name: str                    # the `action:` name in a policy, e.g. "kill", "quarantine", "slack"
    reversible: bool

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """At load time; raise ActionParamError; return normalised params."""
        ...

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        """On a worker thread, never the hot loop; must not raise for expected failures
        (return result="failed")."""
        ...

    def undo(self, data: dict[str, Any]) -> Outcome:
        ...
