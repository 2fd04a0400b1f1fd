"""Pod and namespace labels from the Kubernetes API (optional, off by default).

Two parts with one owner each, like the runtime lookups:

- :class:`K8sWatcher` (background threads, one per resource): lists then watches the pods of *this
  node* (``fieldSelector=spec.nodeName=<node>``) and, optionally, the namespaces, through the
  ``kubernetes`` client (extra ``falconet-container[k8s]``). It never touches the table the hot
  loop reads: it appends JSON-able *updates* to :attr:`K8sWatcher.updates` (a deque: atomic
  appends/pops). A watch that ends is resumed from the last resourceVersion; ``410 Gone`` means
  relist at once; any other failure (unreachable, 401/403, a malformed answer) is counted, logged
  once per outage, and retried with exponential backoff. It never blocks the event loop.
- :class:`K8sCache` (owned by the hot loop): the enricher drains the updates into it at its next
  event, records them into a capture being recorded, and the field extractors read it with one
  dict lookup by pod uid. Bounded: past ``max_pods`` the oldest entry goes, counted as a drop.

The same update records are what a capture holds, so ``falconet replay`` restores them into a
:class:`K8sCache` and replayed alerts carry the labels the live ones had.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from falconet import plugin_config as c
from falconet.plugin_config import ConfigSchema, Setting

log = logging.getLogger("falconet.container.k8s")

PODS, NAMESPACES = "pods", "namespaces"
#: ``falconet_k8s_api_requests_total{result}`` values
OK, GONE, FORBIDDEN, UNAUTHORIZED, TIMEOUT, ERROR = ("ok", "gone", "forbidden", "unauthorized",
                                                     "timeout", "error")


class K8sConfigError(ValueError):
    """A ``k8s_api`` setting is invalid (the plugin turns it into ``PluginConfigError``)."""


@dataclass
class K8sApiConfig:
    """``plugins.container.k8s_api`` (see docs/containers.md)."""

    enabled: bool = False
    kubeconfig: str | None = None           # None: in-cluster service account config
    node_name: str | None = None            # None: $NODE_NAME, else this host's name
    namespaces: bool = True                 # also watch namespaces (k8s.ns.label[...])
    max_pods: int = 10000                   # cache bound (a node runs ~110 pods by default)
    request_timeout: float = 10.0           # connect/read timeout of one list call, seconds
    watch_timeout: int = 300                # server-side watch timeout; the watch then resumes
    backoff_initial: float = 0.5            # first retry delay after a failure, seconds
    backoff_max: float = 30.0               # retry delay cap, seconds

    def node(self) -> str:
        return self.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


def _schema() -> ConfigSchema:
    d = K8sApiConfig()
    return ConfigSchema({
        "enabled": Setting(c.boolean(), d.enabled),
        "kubeconfig": Setting(c.optional(c.string()), d.kubeconfig),
        "node_name": Setting(c.optional(c.string()), d.node_name),
        "namespaces": Setting(c.boolean(), d.namespaces),
        "max_pods": Setting(c.integer(1, 1_000_000), d.max_pods),
        "request_timeout": Setting(c.number(0.1, 300), d.request_timeout),
        "watch_timeout": Setting(c.integer(1, 3600), d.watch_timeout),
        "backoff_initial": Setting(c.number(0.01, 300), d.backoff_initial),
        "backoff_max": Setting(c.number(0.01, 3600), d.backoff_max),
    })


#: ``plugins.container.k8s_api``: every key, its default and its check
SCHEMA = _schema()


def parse_config(section: Mapping[str, Any] | None) -> K8sApiConfig:
    """The ``k8s_api`` settings from values :data:`SCHEMA` checked (the plugin's schema nests
    it); raises :class:`K8sConfigError` for what a schema cannot say."""
    cfg = K8sApiConfig(**{k: v for k, v in (section or {}).items() if k in SCHEMA.settings})
    if cfg.backoff_max < cfg.backoff_initial:
        raise K8sConfigError("k8s_api.backoff_max must be >= backoff_initial")
    return cfg


# ---------------------------------------------------------------------- the hot loop's table
@dataclass(frozen=True, slots=True)
class PodMeta:
    """What the API says about one pod (immutable: replaced, never changed, once published)."""

    uid: str
    name: str | None
    namespace: str | None
    labels: dict[str, str]
    ip: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "name": self.name, "namespace": self.namespace,
                "labels": dict(self.labels), "ip": self.ip}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PodMeta:
        if not isinstance(d, Mapping):
            raise ValueError("k8s pod record is not an object")
        uid = d.get("uid")
        if not isinstance(uid, str) or not uid:
            raise ValueError("k8s pod record without a uid")
        return cls(uid, _str_or_none(d.get("name")), _str_or_none(d.get("namespace")),
                   _labels(d.get("labels")), _str_or_none(d.get("ip")))


class K8sCache:
    """pod uid → :class:`PodMeta` and namespace → labels. Written by the hot loop only (from
    :meth:`apply`); read by the field extractors."""

    def __init__(self, max_pods: int = 10000, on_evict: Callable[[], None] | None = None) -> None:
        self.pods: dict[str, PodMeta] = {}
        self.ns_labels: dict[str, dict[str, str]] = {}
        self.max_pods = max_pods
        self.on_evict = on_evict

    def apply(self, update: Mapping[str, Any]) -> None:
        """Apply one update record (see :func:`pod_update` and friends). Raises ``ValueError``
        on a malformed record (a bad capture line)."""
        if "pods" in update:                       # a full list: replaces every pod
            raw_pods = update["pods"] or ()
            if not isinstance(raw_pods, list | tuple):
                raise ValueError("k8s pods record is not a list")
            pods = {}
            for d in raw_pods:
                p = PodMeta.from_dict(d)
                pods[p.uid] = p
            if len(pods) > self.max_pods:
                extra = len(pods) - self.max_pods
                for uid in list(pods)[:extra]:
                    del pods[uid]
                self._evicted(extra)
            self.pods = pods
        if "pod" in update:
            p = PodMeta.from_dict(update["pod"])
            pods = self.pods
            if p.uid not in pods and len(pods) >= self.max_pods:
                del pods[next(iter(pods))]          # the oldest entry
                self._evicted(1)
            pods[p.uid] = p
        if "pod_deleted" in update:
            self.pods.pop(str(update["pod_deleted"]), None)
        if "namespaces" in update:
            raw = update["namespaces"] or {}
            if not isinstance(raw, Mapping):
                raise ValueError("k8s namespaces record is not an object")
            self.ns_labels = {str(k): _labels(v) for k, v in raw.items()}
        if "ns" in update:
            self.ns_labels[str(update["ns"])] = _labels(update.get("labels"))
        if "ns_deleted" in update:
            self.ns_labels.pop(str(update["ns_deleted"]), None)

    def _evicted(self, n: int) -> None:
        if self.on_evict is not None:
            for _ in range(n):
                self.on_evict()

    def snapshot(self) -> list[dict[str, Any]]:
        """Update records that rebuild this cache (the head of a capture)."""
        return [{"pods": [p.to_dict() for p in self.pods.values()]},
                {"namespaces": {k: dict(v) for k, v in self.ns_labels.items()}}]

    def __len__(self) -> int:
        return len(self.pods)


def pod_update(pod: Any) -> dict[str, Any] | None:
    """``{"pod": {...}}`` from a ``V1Pod`` (or ``None`` when it has no uid)."""
    p = pod_meta(pod)
    return {"pod": p.to_dict()} if p is not None else None


def pod_meta(pod: Any) -> PodMeta | None:
    md = getattr(pod, "metadata", None)
    uid = getattr(md, "uid", None)
    if not uid:
        return None
    status = getattr(pod, "status", None)
    return PodMeta(str(uid), _str_or_none(getattr(md, "name", None)),
                   _str_or_none(getattr(md, "namespace", None)),
                   _labels(getattr(md, "labels", None)), _pod_ipv4(status))


def _pod_ipv4(status: Any) -> str | None:
    """The pod's first IPv4 address (Falco's ``k8s.pod.ip`` tracks IPv4 only)."""
    if status is None:
        return None
    ips = [getattr(i, "ip", None) for i in (getattr(status, "pod_i_ps", None)
                                            or getattr(status, "pod_ips", None) or ())]
    ips.append(getattr(status, "pod_ip", None))
    for ip in ips:
        if isinstance(ip, str) and ip.count(".") == 3:
            return ip
    return None


def _labels(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("k8s labels are not an object")
    return {str(k): str(v) for k, v in raw.items()}


def _str_or_none(v: Any) -> str | None:
    return str(v) if v else None


# ---------------------------------------------------------------------- the background side
class _Stopped(Exception):
    """Raised inside a watcher thread when :meth:`K8sWatcher.stop` was called."""


class K8sWatcher:
    """List+watch threads feeding :attr:`updates`.

    Counters (plain ints, one writer per key, read at scrape time): :attr:`requests`
    ``(resource, verb, result)``, :attr:`events` ``(resource, type)``, :attr:`synced`
    ``resource -> 0|1`` (1 while the last list or watch of that resource worked).
    """

    def __init__(self, cfg: K8sApiConfig) -> None:
        self.cfg = cfg
        self.node = cfg.node()
        self.updates: deque[dict[str, Any]] = deque()
        self.resources = [PODS] + ([NAMESPACES] if cfg.namespaces else [])
        self.requests: dict[tuple[str, str, str], int] = {}
        self.events: dict[tuple[str, str], int] = {}
        self.synced: dict[str, int] = dict.fromkeys(self.resources, 0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: dict[str, Any] = {}
        self._api: Any = None
        self._api_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        log.info("k8s API: watching the pods of node %s%s (%s)", self.node,
                 " and all namespaces" if NAMESPACES in self.resources else "",
                 self.cfg.kubeconfig or "in-cluster service account")
        for res in self.resources:
            t = threading.Thread(target=self._run, args=(res,), name=f"falconet-k8s-{res}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            # a watch whose request was still in flight at the first abort has a response
            # only now: abort again until the thread is out
            while t.is_alive() and time.monotonic() < deadline:
                for w in list(self._watches.values()):
                    _abort_watch(w)
                t.join(0.05)
        self._threads = []

    # ------------------------------------------------------------------ thread
    def _count(self, res: str, verb: str, result: str) -> None:
        key = (res, verb, result)
        self.requests[key] = self.requests.get(key, 0) + 1

    def _run(self, res: str) -> None:
        delay = self.cfg.backoff_initial
        rv: str | None = None             # None: (re)list before watching
        failing = False                   # log once per outage, not per retry
        gone_streak = 0                   # watches answered 410 in a row (each after a relist)
        while not self._stop.is_set():
            verb = "config"
            try:
                api = self._client()
                verb = "list" if rv is None else "watch"
                if rv is None:
                    rv = self._list(api, res)
                    self._count(res, "list", OK)
                    self.synced[res] = 1
                    if failing:
                        log.warning("k8s API: %s on node %s synced again", res, self.node)
                        failing = False
                    delay = self.cfg.backoff_initial
                verb = "watch"
                began = time.monotonic()
                rv = self._watch(api, res, rv)
                self._count(res, "watch", OK)
                delay = self.cfg.backoff_initial
                gone_streak = 0
                if time.monotonic() - began >= 1.0:
                    continue
                # a server that ends watches at once must not make this a busy loop
                if self._stop.wait(delay):
                    return
                continue
            except _Stopped:
                return
            except Exception as e:  # noqa: BLE001 - any failure: count, log once, back off
                if self._stop.is_set():
                    return
                result, why = _classify(e)
                self._count(res, verb, result)
                if result == GONE and verb == "watch":
                    rv = None                     # too old to resume: relist now...
                    gone_streak += 1
                    if gone_streak == 1:
                        continue
                    # ...but a server that answers 410 to every fresh watch must not get a
                    # tight list loop: back off, doubling per 410 in a row
                    wait = min(self.cfg.backoff_initial * 2 ** (gone_streak - 2),
                               self.cfg.backoff_max)
                    if self._stop.wait(wait):
                        return
                    continue
                self.synced[res] = 0
                rv = None           # relist after an outage: what changed meanwhile is in it
                if verb == "config":
                    with self._api_lock:
                        self._api = None
                if not failing:
                    failing = True
                    log.warning("k8s API: cannot %s %s (node %s): %s; engine continues without "
                                "API labels, retrying (backoff up to %gs)",
                                verb, res, self.node, why, self.cfg.backoff_max)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.cfg.backoff_max)

    def _client(self) -> Any:
        """The ``CoreV1Api``, built once (the kubeconfig or in-cluster service account)."""
        with self._api_lock:
            if self._api is None:
                self._api = make_core_api(self.cfg.kubeconfig)
            return self._api

    def _list(self, api: Any, res: str) -> str:
        timeout = self.cfg.request_timeout
        if res == PODS:
            out = api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}",
                                                  _request_timeout=timeout)
            pods = [p.to_dict() for p in (pod_meta(i) for i in out.items or ()) if p is not None]
            self.updates.append({"pods": pods})
        else:
            out = api.list_namespace(_request_timeout=timeout)
            self.updates.append({"namespaces": {
                i.metadata.name: _labels(i.metadata.labels) for i in out.items or ()
                if i.metadata is not None and i.metadata.name}})
        return str(out.metadata.resource_version or "")

    def _watch(self, api: Any, res: str, rv: str) -> str:
        """Stream one watch from ``rv`` until the server ends it; the last resourceVersion."""
        from kubernetes import watch  # noqa: PLC0415 - optional dependency, loaded in the thread

        w = watch.Watch()
        self._watches[res] = w
        try:
            if self._stop.is_set():
                raise _Stopped
            kwargs: dict[str, Any] = {
                "resource_version": rv, "timeout_seconds": self.cfg.watch_timeout,
                "allow_watch_bookmarks": True,
                # the server ends the watch after timeout_seconds; past that plus a margin the
                # connection is dead (no bytes, not even a bookmark)
                "_request_timeout": (self.cfg.request_timeout,
                                     self.cfg.watch_timeout + self.cfg.request_timeout)}
            if res == PODS:
                fn = api.list_pod_for_all_namespaces
                kwargs["field_selector"] = f"spec.nodeName={self.node}"
            else:
                fn = api.list_namespace
            for ev in w.stream(fn, **kwargs):
                if self._stop.is_set():
                    raise _Stopped
                typ = str(ev.get("type"))
                key = (res, typ)
                self.events[key] = self.events.get(key, 0) + 1
                self.updates.extend(_event_updates(res, typ, ev.get("object")))
                self.synced[res] = 1
            return str(w.resource_version or rv)
        finally:
            self._watches.pop(res, None)


def _event_updates(res: str, typ: str, obj: Any) -> Iterable[dict[str, Any]]:
    if typ not in ("ADDED", "MODIFIED", "DELETED"):
        return ()                      # BOOKMARK: only moves the resourceVersion (Watch keeps it)
    md = getattr(obj, "metadata", None)
    if md is None:
        return ()
    if res == PODS:
        if typ == "DELETED":
            return ({"pod_deleted": str(md.uid)},) if md.uid else ()
        u = pod_update(obj)
        return (u,) if u is not None else ()
    if not md.name:
        return ()
    if typ == "DELETED":
        return ({"ns_deleted": str(md.name)},)
    return ({"ns": str(md.name), "labels": _labels(md.labels)},)


def make_core_api(kubeconfig: str | None) -> Any:
    """A ``CoreV1Api`` from a kubeconfig file, or the in-cluster service account when ``None``."""
    from kubernetes import client, config  # noqa: PLC0415 - optional dependency

    conf = client.Configuration()
    if kubeconfig is None:
        config.load_incluster_config(client_configuration=conf)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=conf,
                                persist_config=False)
    # no urllib3-level retries: the watcher retries with its own backoff, counts every failure
    # and logs once per outage (urllib3 would log a warning per attempt)
    conf.retries = 0
    return client.CoreV1Api(client.ApiClient(conf))


def _classify(e: BaseException) -> tuple[str, str]:
    """``(result label, one-line reason)`` of a list/watch failure."""
    status = getattr(e, "status", None)
    if isinstance(status, int) and status:
        reason = getattr(e, "reason", "") or ""
        if status == 410:
            return GONE, "410 Gone (resourceVersion too old)"
        if status == 403:
            return FORBIDDEN, (f"403 Forbidden: {reason} (the service account needs get/list/watch "
                               "on pods and namespaces, see deploy/kubernetes/falconet-rbac.yaml)")
        if status == 401:
            return UNAUTHORIZED, f"401 Unauthorized: {reason}"
        return ERROR, f"HTTP {status}: {reason}"
    name = type(e).__name__
    if "Timeout" in name or isinstance(e, TimeoutError):
        return TIMEOUT, f"{name}: {e}"
    if isinstance(e, ModuleNotFoundError):
        return ERROR, "the kubernetes client is not installed (pip install 'falconet-container[k8s]')"
    text = str(e).splitlines()[0] if str(e) else ""
    return ERROR, f"{name}: {text}"[:300]


def _abort_watch(w: Any) -> None:
    """Make a watch blocked in a read return now (stop() must not wait for the server)."""
    try:
        w.stop()
        resp = getattr(w, "_resp", None)
        if resp is not None:
            shutdown = getattr(resp, "shutdown", None)
            (shutdown or resp.close)()
    except Exception:  # noqa: BLE001 - best effort; the threads are daemons anyway
        pass

