"""``freeze`` / ``unfreeze``: stop every process of the alert's container from running, through
its cgroup: the v1 freezer (``/sys/fs/cgroup/freezer/<path>/freezer.state``) when the
container has one, else cgroup v2's ``cgroup.freeze`` (pure v2 at ``/sys/fs/cgroup``, hybrid at
``/sys/fs/cgroup/unified``). Only a cgroup whose path names the container id is touched, and
never one holding the engine or PID 1."""

from __future__ import annotations

import os
import time
from typing import Any

from falconet.alerts import Alert

from falconet_response import procfs
from falconet_response.actions.base import ActionParamError, Outcome, Target
from falconet_response.actions.common import check_keys, failed, seconds, skipped

CGROUP_ROOT = "/sys/fs/cgroup"
#: how long to wait for FREEZING to become FROZEN
SETTLE_SECONDS = 2.0


def v2_root(root: str = CGROUP_ROOT) -> str:
    """Where the unified hierarchy is mounted: ``<root>/unified`` on hybrid hosts."""
    uni = os.path.join(root, "unified")
    return uni if os.path.exists(os.path.join(uni, "cgroup.procs")) else root


def _names_container(path: str, cid: str) -> bool:
    return bool(cid) and (cid in path or cid[:12] in path.split("/")[-1])


def container_cgroup(pid: int, cid: str, root: str = CGROUP_ROOT, proc: str = procfs.PROC
                     ) -> tuple[str, str] | None:
    """``("v1", dir)`` or ``("v2", dir)``: the container's own freezable cgroup."""
    cg = procfs.cgroups(pid, proc)
    v1 = cg.get("freezer")
    if v1 and v1 != "/" and _names_container(v1, cid):
        d = os.path.join(root, "freezer", v1.lstrip("/"))
        if os.path.exists(os.path.join(d, "freezer.state")):
            return "v1", d
    if os.path.isdir(os.path.join(root, "freezer")):
        # a hybrid host: a process that is exiting already left its v1 cgroups (a zombie shows
        # freezer:/) while it is still in its v2 one; freeze the same hierarchy as always
        by_id = find_container_cgroup(cid, root)
        if by_id is not None and by_id[0] == "v1":
            return by_id
    v2 = cg.get("")
    if v2 and v2 != "/" and _names_container(v2, cid):
        d = os.path.join(v2_root(root), v2.lstrip("/"))
        if os.path.exists(os.path.join(d, "cgroup.freeze")):
            return "v2", d
    return None


def find_container_cgroup(cid: str, root: str = CGROUP_ROOT, max_depth: int = 6
                          ) -> tuple[str, str] | None:
    """When the alert's process is gone: the cgroup directory named after the container id
    (``docker-<id>.scope``, ``/docker/<id>``, ``cri-containerd-<id>.scope``, runc's path...),
    v1 freezer first. Bounded walk, off the hot path."""
    for kind, base, probe in (("v1", os.path.join(root, "freezer"), "freezer.state"),
                              ("v2", v2_root(root), "cgroup.freeze")):
        if not os.path.isdir(base):
            continue
        base_depth = base.rstrip("/").count("/")
        for d, subdirs, files in os.walk(base):
            if d.count("/") - base_depth >= max_depth:
                subdirs[:] = []
            if d != base and cid in os.path.basename(d) and probe in files:
                return kind, d
    return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return ""


def is_frozen(kind: str, d: str) -> bool:
    if kind == "v1":
        return _read(os.path.join(d, "freezer.state")).strip() == "FROZEN"
    return "frozen 1" in _read(os.path.join(d, "cgroup.events"))


def set_frozen(kind: str, d: str, frozen: bool, settle: float = SETTLE_SECONDS) -> bool:
    """Freeze or thaw; with ``frozen``, wait (bounded) until the kernel reports it."""
    if kind == "v1":
        _write(os.path.join(d, "freezer.state"), "FROZEN" if frozen else "THAWED")
    else:
        _write(os.path.join(d, "cgroup.freeze"), "1" if frozen else "0")
    if not frozen:
        return True
    deadline = time.monotonic() + settle
    while not is_frozen(kind, d):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _procs(kind: str, d: str) -> list[int]:
    return procfs.pids_in(os.path.join(d, "cgroup.procs"))


class FreezeAction:
    name = "freeze"
    reversible = True

    def __init__(self, root: str = CGROUP_ROOT, proc: str = procfs.PROC,
                 engine_pid: int | None = None) -> None:
        self.root, self.proc = root, proc
        self.engine_pid = engine_pid or os.getpid()

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, {"ttl": "seconds after which it thaws by itself (default: never)"})
        ttl = seconds(params, "ttl", None)
        return {"ttl": ttl} if ttl is not None else {}

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if target.container_id is None:
            return skipped("freeze acts on containers: the alert's process is on the host")
        st = procfs.stat(target.pid, self.proc) if target.pid else None
        found = None
        if target.pid and st is not None and procfs.same_process(st, target.start_ts, alert.time_ns):
            found = container_cgroup(target.pid, target.container_id, self.root, self.proc)
        if found is None:     # the process already exited (a `docker exec`): find it by id
            found = find_container_cgroup(target.container_id, self.root)
        if found is None:
            return failed(f"no freezable cgroup naming container {target.container_id[:12]}")
        kind, d = found
        procs = _procs(kind, d)
        if self.engine_pid in procs or 1 in procs:
            return skipped(f"cgroup {d} holds the engine or pid 1")
        try:
            ok = set_frozen(kind, d, True)
        except OSError as e:
            return failed(f"{d}: {e.strerror or e}")
        undo = {"kind": kind, "dir": d, "container_id": target.container_id}
        if not ok:
            return Outcome("failed", f"{kind} {d}: still freezing after {SETTLE_SECONDS:g}s",
                           undo)
        return Outcome("done", f"froze {len(procs)} processes ({kind} {d})", undo)

    def undo(self, data: dict[str, Any]) -> Outcome:
        kind, d, cid = data.get("kind"), data.get("dir"), data.get("container_id")
        if kind not in ("v1", "v2") or not isinstance(d, str) or not isinstance(cid, str) \
                or not _names_container(d, cid) or not os.path.realpath(d).startswith(
                    os.path.realpath(self.root) + "/"):
            return failed("undo data does not name a container cgroup")
        if not os.path.isdir(d):
            return skipped(f"{d} is gone (the container was removed)")
        try:
            set_frozen(kind, d, False)
        except OSError as e:
            return failed(f"{d}: {e.strerror or e}")
        return Outcome("done", f"thawed ({kind} {d})")


class UnfreezeAction:
    """Thaw the alert's container (e.g. a policy for an all-clear rule)."""

    name = "unfreeze"
    reversible = False

    def __init__(self, freeze: FreezeAction) -> None:
        self.freeze = freeze

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if params:
            raise ActionParamError(f"unknown parameter '{sorted(params)[0]}' (parameters: none)")
        return {}

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if target.container_id is None:
            return skipped("unfreeze acts on containers")
        found = container_cgroup(target.pid or 0, target.container_id, self.freeze.root,
                                 self.freeze.proc) \
            or find_container_cgroup(target.container_id, self.freeze.root)
        if found is None:
            return failed(f"no freezable cgroup naming container {target.container_id[:12]}")
        return self.freeze.undo({"kind": found[0], "dir": found[1],
                                 "container_id": target.container_id})

    def undo(self, data: dict[str, Any]) -> Outcome:
        return skipped("unfreeze is not reversible (freeze again)")
