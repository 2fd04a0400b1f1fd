"""The hot-path parser: which container is this event's process in?

Per event the common case is one dict lookup (pid → full container id) and one attribute store
on the thread. Misses (a new process, an ``execve``, which follows runc moving its init process
into the container's cgroup) resolve from a cache keyed by the cgroup id the kernel reported,
and only on a cgroup id never seen before from ``/proc/<pid>/cgroup``. Metadata lookups go to the
background worker; their results are drained here, so the table has a single writer.

Containers are dropped when their last process exits (procexit of a process's main thread);
the drop happens at the next event, so the exit event itself still carries the metadata.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from falconet_container import PLUGIN_NAME
from falconet_container.cgroup import (
    container_from_cgroup_text,
    container_from_path,
    pod_uid_from_cgroup_text,
    read_proc_cgroup,
)
from falconet_container.k8s_api import K8sCache
from falconet_container.model import FAILED, ContainerInfo
from falconet_container.worker import LookupWorker

log = logging.getLogger("falconet.container")

EXEC_TYPES = frozenset({"execve", "execveat"})
SYSCALL = "syscall"


def cgroup_ids_usable(sys_fs_cgroup: str = "/sys/fs/cgroup") -> bool:
    """Whether ``bpf_get_current_cgroup_id()`` tells containers apart: true when a cgroup2
    hierarchy exists (pure v2, or hybrid with ``unified``). On pure v1 every task reports the
    v2 root id, so the plugin must key by process instead."""
    try:
        if os.path.exists(os.path.join(sys_fs_cgroup, "cgroup.controllers")):
            return True
        return os.path.exists(os.path.join(sys_fs_cgroup, "unified", "cgroup.procs"))
    except OSError:
        return False


class ContainerEnricher:
    """Container table + the parser. One per engine.

    Args:
        worker: the lookup worker, or ``None`` (replay, or ``lookups: false``): ids only.
        metrics: ``EngineMetrics`` or ``None``.
        emit_state: ``engine.emit_state`` (records resolutions into a capture being recorded).
        state: the core ``StateTables`` (threads updated on restore), or ``None``.
        use_cgroup_id: key the id cache by cgroup id (see :func:`cgroup_ids_usable`).
        read_cgroup: ``pid -> /proc/<pid>/cgroup text | None`` (tests substitute it).
        cgroup_path: ``cgroup id -> path below the cgroup2 root | None``
            (:class:`~falconet_container.cgroup_ids.CgroupIds`), for processes that exited before
            their ``/proc/<pid>/cgroup`` was read; ``None``: not used.
    """

    def __init__(self, worker: LookupWorker | None = None, metrics: Any = None,
                 emit_state: Callable[[str, Any], None] | None = None, state: Any = None,
                 use_cgroup_id: bool = True,
                 read_cgroup: Callable[[int], str | None] = read_proc_cgroup,
                 cgroup_path: Callable[[int], str | None] | None = None) -> None:
        self.containers: dict[str, ContainerInfo] = {}
        self.by_cgroup: dict[int, str] = {}          # cgroup id -> full id ("" host)
        self.pid_cid: dict[int, str] = {}            # pid -> full id ("" host)
        self.members: dict[str, set[int]] = {}       # full id -> pids seen in it
        self.cgroups_of: dict[str, set[int]] = {}    # full id -> cgroup ids mapped to it
        self.worker = worker
        self.metrics = metrics
        self.emit_state = emit_state
        self.state = state
        self.use_cgroup_id = use_cgroup_id
        self.read_cgroup = read_cgroup
        self.cgroup_path = cgroup_path
        self.replay = False           # ids come from the capture, never from this host's /proc
        self._exited: list[int] = []
        self._done = worker.done if worker is not None else None
        self.proc_reads = 0           # /proc/<pid>/cgroup reads (misses that reached /proc)
        #: pod/namespace metadata from the Kubernetes API (empty unless k8s_api is enabled or a
        #: replayed capture has some); ``k8s_updates`` is the API watcher's outbox
        self.k8s = K8sCache(on_evict=self._k8s_evicted)
        self.k8s_updates: deque[dict[str, Any]] | None = None
        self.k8s_api = False          # the API (or a replayed capture) may fill k8s.pod.name/ns

    # ------------------------------------------------------------------ hot path
    def parse(self, evt: Any) -> None:
        """The ``falconet_event_parsers`` callable."""
        if self.k8s_updates:
            # before the source check: an engine reading a plugin source (no syscall events)
            # still runs the watcher, and its outbox must not grow without bound
            self._drain_k8s()
        if evt.source != SYSCALL:
            return
        if self._exited:
            self._gc()
        done = self._done
        if done:
            self._drain()
        pid = evt.pid
        cid = self.pid_cid.get(pid)
        if cid is None or evt.type in EXEC_TYPES:
            cid = self._resolve(evt, pid, cid)
        t = evt.thread
        if t is not None and t.container_id != cid:
            t.container_id = cid
        if evt.type == "procexit" and evt.tid == pid:
            self._exited.append(pid)

    def full_id(self, evt: Any) -> str | None:
        """The event's full container id ("" host, ``None`` unknown): for the field extractors."""
        t = evt.thread
        if t is not None:
            return t.container_id
        return self.pid_cid.get(evt.pid)

    # ------------------------------------------------------------------ misses
    def _resolve(self, evt: Any, pid: int, old: str | None) -> str:
        t = evt.thread
        hint = ""
        pod_uid: str | None = None
        if self.replay:
            # the capture's records are authoritative (they precede their event); the thread
            # snapshot, or what the state parser inherited at fork, covers the rest. Never
            # t.container_id first: the state parser clears it when an exec changes cgroup.
            if old is not None:
                cid = old
            else:
                cid = t.container_id if t is not None else ""
        else:
            cg = 0
            if self.use_cgroup_id:
                cg = evt.args.get("cgroup_id") or (t.cgroup_id if t is not None else 0) or 0
            cached = self.by_cgroup.get(cg) if cg else None
            if cached is not None:
                cid = cached
            else:
                text = self.read_cgroup(pid) if pid > 0 else None
                self.proc_reads += 1
                found = ("", "")
                if text is None and cg and self.cgroup_path is not None:
                    # the process is gone (a `docker exec <c> /bin/true` often is by now); the
                    # cgroup its record names usually is not: its path says the container
                    rel = self.cgroup_path(cg)
                    if rel:
                        found = container_from_path(rel)
                if found[0]:
                    cid, hint = found
                    self.by_cgroup[cg] = cid
                    self.cgroups_of.setdefault(cid, set()).add(cg)
                elif text is None:
                    # no pid, or gone with its cgroup (or a host cgroup): keep what the thread
                    # inherited at fork
                    cid = (t.container_id if t is not None else "") or (old or "")
                else:
                    cid, hint = container_from_cgroup_text(text)
                    if cid and cid not in self.containers:
                        # known before any runtime answers: the key of the API's pod metadata
                        pod_uid = pod_uid_from_cgroup_text(text)
                    if cg:
                        self.by_cgroup[cg] = cid
                        if cid:
                            self.cgroups_of.setdefault(cid, set()).add(cg)
        if cid != old:
            self._assign(pid, cid, old, hint, pod_uid)
        return cid

    def _assign(self, pid: int, cid: str, old: str | None, hint: str,
                pod_uid: str | None = None) -> None:
        if old:
            m = self.members.get(old)
            if m is not None:
                m.discard(pid)
        self.pid_cid[pid] = cid
        if cid:
            self.members.setdefault(cid, set()).add(pid)
            if cid not in self.containers:
                self._new_container(cid, hint, pod_uid)
        if self.emit_state is not None and not self.replay and (cid or old):
            # host is the default on replay: only container membership needs recording
            self.emit_state(PLUGIN_NAME, {"pid": pid, "container_id": cid})

    def _new_container(self, cid: str, hint: str, pod_uid: str | None = None) -> None:
        info = ContainerInfo(cid, type=hint or None, k8s_pod_uid=pod_uid)
        self.containers[cid] = info
        if pod_uid and self.emit_state is not None and not self.replay:
            # a replay needs the uid too, even if the runtime lookup never answers
            self.emit_state(PLUGIN_NAME, {"container": info.to_dict()})
        if self.worker is not None and not self.replay:
            if not self.worker.submit(cid, hint):
                info.status = FAILED
                if self.metrics is not None:
                    self.metrics.drop("container_lookup_queue_full")

    # ------------------------------------------------------------------ results and exits
    def _drain(self) -> None:
        done = self._done
        m = self.metrics
        while done:
            d = done.popleft()
            if m is not None:
                m.enrichment[(PLUGIN_NAME, d.result)] += 1
            if d.reason:
                log.debug("container %s: %s (%s)", d.full_id[:12], d.result, d.reason)
            cur = self.containers.get(d.full_id)
            if cur is None:
                continue            # exited meanwhile: nothing to publish
            if d.info is None:
                if cur.status != FAILED:
                    self.containers[d.full_id] = _failed(cur)
                continue
            if d.info.k8s_pod_uid is None and cur.k8s_pod_uid:
                d.info.k8s_pod_uid = cur.k8s_pod_uid     # from the cgroup path; not published yet
            self.containers[d.full_id] = d.info
            if self.emit_state is not None:
                self.emit_state(PLUGIN_NAME, {"container": d.info.to_dict()})

    def _drain_k8s(self) -> None:
        """Apply the Kubernetes API watcher's updates (this thread is the table's only writer)
        and record them, in order with the events, into a capture being recorded."""
        upd = self.k8s_updates
        batch = []
        while upd:
            u = upd.popleft()
            try:
                self.k8s.apply(u)
            except ValueError as e:       # the watcher builds them: a bug, not input
                log.warning("k8s API update not applied: %s", e)
                if self.metrics is not None:
                    self.metrics.drop("k8s_update_malformed")
                continue
            batch.append(u)
        if batch and self.emit_state is not None:
            self.emit_state(PLUGIN_NAME, {"k8s": batch})

    def _k8s_evicted(self) -> None:
        if self.metrics is not None:
            self.metrics.drop("k8s_pod_cache_full")

    def _gc(self) -> None:
        exited, self._exited = self._exited, []
        for pid in exited:
            cid = self.pid_cid.pop(pid, None)
            if not cid:
                continue
            m = self.members.get(cid)
            if m is not None:
                m.discard(pid)
                if not m:
                    self.drop_container(cid)

    def drop_container(self, cid: str) -> None:
        self.members.pop(cid, None)
        self.containers.pop(cid, None)
        for cg in self.cgroups_of.pop(cid, ()):
            self.by_cgroup.pop(cg, None)

    def drain_now(self) -> None:
        """Apply finished lookups now (tests, benchmarks; the hot loop does it per event)."""
        if self._done:
            self._drain()

    # ------------------------------------------------------------------ capture / replay
    def capture_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"containers": [c.to_dict() for c in self.containers.values()],
                               "pids": {str(p): c for p, c in self.pid_cid.items()}}
        if self.k8s.pods or self.k8s.ns_labels:
            out["k8s"] = self.k8s.snapshot()
        return out

    def restore(self, data: Any) -> None:
        """Apply one capture record (:meth:`capture_state` or a per-event emit)."""
        self.replay = True
        if not isinstance(data, dict):
            raise ValueError("container state record is not an object")
        for c in data.get("containers") or ():
            info = ContainerInfo.from_dict(c)
            self.containers[info.full_id] = info
        if "container" in data:
            info = ContainerInfo.from_dict(data["container"])
            self.containers[info.full_id] = info
        for u in data.get("k8s") or ():
            if not isinstance(u, dict):
                raise ValueError("k8s update record is not an object")
            self.k8s.apply(u)
        pids = dict(data.get("pids") or {})
        if "pid" in data:
            pids[data["pid"]] = data.get("container_id") or ""
        for p, cid in pids.items():
            pid = int(p)
            cid = str(cid or "")
            old = self.pid_cid.get(pid)
            if old and old != cid:
                self.members.get(old, set()).discard(pid)
            self.pid_cid[pid] = cid
            if cid:
                self.members.setdefault(cid, set()).add(pid)
                self.containers.setdefault(cid, ContainerInfo(cid))
            t = self.state.get(pid) if self.state is not None else None
            if t is not None:
                t.container_id = cid


def _failed(cur: ContainerInfo) -> ContainerInfo:
    info = ContainerInfo(cur.full_id, type=cur.type, k8s_pod_uid=cur.k8s_pod_uid)
    info.status = FAILED
    return info
