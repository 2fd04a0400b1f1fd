"""runc state (``<root>/[<namespace>/]<id>/state.json``) and OCI bundle ``config.json``.

Every runtime here runs containers through runc, so this is the common ground: containerd keeps
its tasks under ``/run/containerd/runc/<namespace>``, docker under
``<exec-root>/runtime-runc/moby``, podman and CRI-O (and plain runc) under ``/run/runc``. runc's
state stores the OCI annotations in ``config.labels`` as ``key=value`` strings next to
``bundle=<path>``; the bundle's ``config.json`` has them as a dict plus the process capabilities.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from falconet_container.errors import LookupFailed
from falconet_container.model import parse_rfc3339_ns


@dataclass(slots=True)
class RuncState:
    """What the plugin uses from one runc state file."""

    root: str                         # the runc root it was found under
    namespace: str | None             # containerd namespace (``default``, ``k8s.io``, ``moby``)
    path: str
    annotations: dict[str, str] = field(default_factory=dict)
    bundle: str | None = None
    created_ns: int | None = None
    init_pid: int | None = None
    spec: dict[str, Any] | None = None    # the bundle's config.json, when readable


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise LookupFailed(f"{path}: malformed JSON: {e}") from e


def find_state_file(full_id: str, roots: list[str]) -> tuple[str, str | None, str] | None:
    """``(root, namespace, path)`` of the container's runc state file, or ``None``.

    A root holds ``<id>/state.json`` directly (runc, podman, CRI-O) or one level of namespaces
    (containerd's ``/run/containerd/runc/<ns>/<id>``, docker's ``runtime-runc/moby``).
    """
    for root in roots:
        p = os.path.join(root, full_id, "state.json")
        if os.path.exists(p):
            return root, None, p
        try:
            subdirs = os.listdir(root)
        except OSError:
            continue
        for ns in subdirs:
            p = os.path.join(root, ns, full_id, "state.json")
            if os.path.exists(p):
                return root, ns, p
    return None


def load_state(root: str, namespace: str | None, path: str) -> RuncState:
    """Parse a runc state file and its bundle's ``config.json``. Raises
    :class:`LookupFailed` on malformed content; a vanished file raises ``FileNotFoundError``."""
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise LookupFailed(f"{path}: not a JSON object")
    cfg = doc.get("config")
    labels = cfg.get("labels") if isinstance(cfg, dict) else None
    st = RuncState(root, namespace, path)
    for item in labels if isinstance(labels, list) else ():
        if isinstance(item, str) and "=" in item:
            k, _, v = item.partition("=")
            if k == "bundle":
                st.bundle = v
            else:
                st.annotations[k] = v
    st.created_ns = parse_rfc3339_ns(doc.get("created") if isinstance(doc.get("created"), str) else None)
    pid = doc.get("init_process_pid")
    st.init_pid = pid if isinstance(pid, int) else None
    if st.bundle:
        try:
            spec = _read_json(os.path.join(st.bundle, "config.json"))
        except FileNotFoundError:
            spec = None
        if isinstance(spec, dict):
            st.spec = spec
            ann = spec.get("annotations")
            if isinstance(ann, dict):
                for k, v in ann.items():
                    st.annotations.setdefault(str(k), str(v))
    return st


def spec_privileged(spec: dict[str, Any] | None) -> bool | None:
    """Whether an OCI spec describes a privileged container: ``CAP_SYS_ADMIN`` in the bounding
    set and no masked paths (what ``--privileged`` does in docker, podman, containerd and
    CRI). ``None`` without a spec."""
    if not spec:
        return None
    proc = spec.get("process") or {}
    caps = (proc.get("capabilities") or {}).get("bounding") or []
    masked = (spec.get("linux") or {}).get("maskedPaths") or []
    return "CAP_SYS_ADMIN" in caps and not masked
