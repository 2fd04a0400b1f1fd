"""Workload identity: which profile an event's process belongs to.

- a container: ``image:<repository>:<tag>`` (plus ``@<digest>`` when the runtime knows it, which
  pins the exact version: a re-pushed tag is a new profile too), prefixed with
  ``k8s:<namespace>/<owning workload>`` when the pod is known (the owner is the pod name
  without the generated suffixes of a Deployment's ReplicaSet,
  a DaemonSet or a StatefulSet ordinal: the pods of one workload share a profile);
- a host process: ``host:<executable path>``.

A new image tag or digest is a new identity, hence a new profile that learns from scratch.
"""

from __future__ import annotations

import re

#: <deployment>-<replicaset hash>-<5 chars>, <daemonset>-<5 chars>, <statefulset>-<ordinal>
_DEPLOY = re.compile(r"^(?P<w>.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$")
_DAEMON = re.compile(r"^(?P<w>.+)-[a-z0-9]{5}$")
_STATEFUL = re.compile(r"^(?P<w>.+)-\d+$")


def owning_workload(pod: str) -> str:
    for rx in (_DEPLOY, _DAEMON, _STATEFUL):
        m = rx.match(pod)
        if m:
            return m["w"]
    return pod


def container_identity(repository: str | None, tag: str | None, digest: str | None,
                       namespace: str | None = None, pod: str | None = None) -> str | None:
    """The identity of a container, ``None`` while its image is not known yet."""
    if not repository:
        return None
    ident = f"image:{repository}:{tag or 'latest'}" + (f"@{digest}" if digest else "")
    if namespace:
        ident = f"k8s:{namespace}/{owning_workload(pod) if pod else '-'} {ident}"
    return ident


def host_identity(exepath: str) -> str | None:
    return f"host:{exepath}" if exepath else None
