"""Fakes for fast unit tests: runc state trees in a temp dir and a minimal event/thread."""

from __future__ import annotations

import json
import os
from pathlib import Path

from falconet.events import Event
from falconet.state.tables import ThreadInfo


def write_state(root: Path, full_id: str, annotations: dict[str, str], *, namespace: str | None = None,
                spec_extra: dict | None = None, created: str = "2026-11-28T18:20:20.196910761Z",
                bundle: Path | None = None) -> Path:
    """A runc state dir as runc 1.1 writes it, with an OCI bundle holding ``annotations``."""
    d = root / namespace / full_id if namespace else root / full_id
    d.mkdir(parents=True)
    bundle = bundle or (root.parent / "bundles" / full_id)
    bundle.mkdir(parents=True, exist_ok=True)
    spec = {"ociVersion": "1.0.2", "annotations": annotations,
            "process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"]}},
            "linux": {"maskedPaths": ["/proc/kcore"]}}
    spec.update(spec_extra or {})
    (bundle / "config.json").write_text(json.dumps(spec))
    labels = [f"{k}={v}" for k, v in annotations.items()] + [f"bundle={bundle}"]
    (d / "state.json").write_text(json.dumps({"id": full_id, "init_process_pid": 4242,
                                              "created": created, "config": {"labels": labels}}))
    return d / "state.json"


def thread(tid: int, pid: int | None = None, cgroup_id: int = 0, container_id: str = "") -> ThreadInfo:
    return ThreadInfo(tid=tid, pid=pid or tid, cgroup_id=cgroup_id, container_id=container_id)


def event(t: ThreadInfo | None, type: str = "openat", pid: int | None = None, **args) -> Event:
    e = Event("syscall", type, 1_800_000_000_000_000_000, tid=t.tid if t else (pid or 0),
              pid=t.pid if t else (pid or 0), args=args)
    e.thread = t
    return e


def proc_cgroup_file(path: str) -> str:
    return f"12:hugetlb:/\n4:memory:{path}\n0::{path}\n"


__all__ = ["event", "os", "proc_cgroup_file", "thread", "write_state"]
