"""Alerts for the OTel tests (a Terminal-shell-like alert with a three-process lineage)."""

from __future__ import annotations

from typing import Any

from falconet.alerts import Alert
from falconet.priorities import Priority

T0 = 1_764_000_000_000_000_000


def make_alert(rule: str = "Terminal shell in container", priority: Priority = Priority.CRITICAL,
               *, pod: str | None = "web-1", container: str | None = "abc123def456",
               pid: int = 4242, lineage: list[dict[str, Any]] | None = None, t: int = T0,
               **fields: Any) -> Alert:
    of: dict[str, Any] = {"evt.time": t, "proc.name": "bash", "proc.pid": pid, "proc.ppid": 4000,
                          "proc.cmdline": "bash -i", "proc.exepath": "/usr/bin/bash",
                          "user.name": "root", "user.uid": 0, "fd.name": "/etc/shadow",
                          "fd.type": "file", "proc.aname[2]": "containerd-shim", "evt.type": "openat"}
    if container:
        of["container.id"] = container
        of["container.name"] = "web"
        of["container.image.repository"] = "docker.io/library/nginx"
        of["container.image.tag"] = "1.27"
    if pod:
        of["k8s.pod.name"] = pod
        of["k8s.ns.name"] = "shop"
    of.update(fields)
    if lineage is None:
        lineage = [
            {"pid": pid, "name": "bash", "exepath": "/usr/bin/bash", "cmdline": "bash -i",
             "start_ts": t - 5_000_000_000},
            {"pid": 4000, "name": "sh", "exepath": "/bin/sh", "cmdline": "sh -c bash -i",
             "start_ts": t - 6_000_000_000},
            {"pid": 3000, "name": "containerd-shim", "exepath": "/usr/bin/containerd-shim",
             "cmdline": "containerd-shim", "start_ts": t - 60_000_000_000},
        ]
    return Alert(rule=rule, priority=priority, source="syscall",
                 tags=["T1059", "container", "mitre_execution", "shell"],
                 output=f"A shell was spawned (user=root proc={pid})", output_fields=of, time_ns=t,
                 hostname="node-a", desc="A shell in a container", ruleset="falco_rules.yaml",
                 lineage=lineage)
