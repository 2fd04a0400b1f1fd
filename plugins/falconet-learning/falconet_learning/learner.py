"""The learner: the hot-path parser, the lookups behind the ``profile.*`` fields, the alert sink
that taints processes, and the background writer.

Per event (the parser):
  one dict lookup finds the event's profile (by container id, or executable path for host
  processes); while the profile learns, an exec/open/connect/listen whose key is not in the
  profile yet is appended to a bounded queue (a tuple, no I/O). The writer thread commits queued
  observations after ``quarantine_seconds`` unless an alert at Warning or above named their
  process (or its parent) meanwhile: a process that raised such an alert is never learned from.

Per field (the extractors): the same profile lookup plus one or two set lookups by a key built
from the event (path classes come from a bounded memo).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from falconet.priorities import Priority

from falconet_learning.generalise import ClassCache
from falconet_learning.identity import container_identity, host_identity
from falconet_learning.profile import LEARNING, READY, Profile, profile_id
from falconet_learning.store import ProfileStore, new_profile_row

log = logging.getLogger("falconet.learning")

EXEC = frozenset({"execve", "execveat"})
#: per-event memo of the exec facts in ``Event.cache`` (keys no field token can be)
_EXEC_OWNER, _EXEC_EXE, _EXEC_EDGE = "\0learning.owner", "\0learning.exe", "\0learning.edge"
OPEN = frozenset({"open", "openat", "openat2", "creat"})
_O_ACCMODE, _O_WRONLY, _O_RDWR, _O_TRUNC, _O_PATH = 3, 1, 2, 0o1000, 0o10000000
_CREAT_FLAGS = 0o1101


@dataclass
class LearningConfig:
    state_dir: str = "/var/lib/falconet/learning"
    learning_seconds: float = 3600.0
    learning_events: int = 0
    max_entries: int = 5000
    max_profiles: int = 1000
    queue_size: int = 65536
    flush_interval: float = 1.0
    quarantine_seconds: float = 2.0
    host_profiles: bool = True
    #: learn file access (opens); off by default: it needs every open in userspace
    files: bool = False


def open_modes(evt: Any) -> tuple[bool, bool]:
    """(read, write) of an open event (``evt.is_open_read`` / ``evt.is_open_write``)."""
    f = evt.args.get("flags")
    if f is None:
        f = _CREAT_FLAGS if evt.type == "creat" else 0
    acc = f & _O_ACCMODE
    return (acc in (0, _O_RDWR) and not f & _O_PATH,
            acc in (_O_WRONLY, _O_RDWR) or bool(f & _O_TRUNC))


class Learner:
    """One engine's learning state. ``fields`` is the engine's field registry (container
    identity is read through the container plugin's fields when they are declared)."""

    def __init__(self, cfg: LearningConfig, metrics: Any = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.profiles: dict[str, Profile] = {}          # identity -> profile
        self._route: dict[str, Profile] = {}            # container id / "host:exe" -> profile
        self._by_image: dict[str, Profile] = {}         # identity without digest -> profile
        self._by_id: dict[str, Profile] = {}
        self._exe_keys: dict[str, dict[str, str]] = {}
        self.classes = ClassCache()
        self._class_memo = self.classes._d         # the memo's dict, read directly when warm
        self.queue: deque[tuple[Any, ...]] = deque()
        self.tainted: OrderedDict[int, None] = OrderedDict()
        self.counts = {"observed": 0, "learned": 0, "tainted_dropped": 0, "queue_full": 0,
                       "profile_full": 0, "profiles_limit": 0, "writes": 0, "rows": 0,
                       "identity_pending": 0, "identity_held": 0, "identity_held_dropped": 0}
        # Observations of containers whose identity (image) the container plugin has not
        # resolved yet: a workload's first execs run before its metadata arrives, and a profile
        # that never saw them would flag them on every later start. Held here (bounded; every
        # overflow is counted as a drop) and learned when the identity resolves.
        # Per container, one entry per distinct (kind, key): [pid, ptid, ts, times seen] (a busy
        # workload repeats its few execs; the bound counts distinct ones).
        self._held: OrderedDict[str, dict[tuple[str, str], list[int]]] = OrderedDict()
        self.full_profiles = 0
        self._img: tuple[Any, ...] | None = None        # container field extractors
        self.store: ProfileStore | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()                   # writer batches vs. stop's final flush
        # the writer sleeps on _work while the queue is empty (no wakeup a second when idle);
        # _idle says it is about to, so the next append sets _work (see _enqueue)
        self._work = threading.Event()
        self._idle = False

    # ----------------------------------------------------------------------------- set-up
    def bind_fields(self, registry: Any) -> None:
        """Container identity through the container plugin's fields (absent: host only)."""
        try:
            self._img = tuple(registry.resolve(n).extract for n in (
                "container.image.repository", "container.image.tag", "container.image.digest",
                "k8s.ns.name", "k8s.pod.name"))
        except Exception:  # noqa: BLE001 - no container plugin: every process is a host process
            self._img = None

    def open_store(self) -> None:
        self.store = ProfileStore(self.cfg.state_dir)
        for p in self.store.load():
            self._adopt(p)

    def _adopt(self, p: Profile) -> None:
        p.ready_at_ns = p.created_ns + int(self.cfg.learning_seconds * 1e9)
        p.min_events = self.cfg.learning_events
        self.profiles[p.identity] = p
        self._by_image[p.identity.split("@", 1)[0]] = p
        self._by_id[p.id] = p
        if p.full:
            self.full_profiles += 1

    def start(self) -> None:
        if self.store is None:
            self.open_store()
        self._thread = threading.Thread(target=self._run, name="falconet-learning", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush(final=True)
        if self.store is not None:
            self.store.close()
            self.store = None

    # ----------------------------------------------------------------------------- lookup
    def profile_for(self, identity: str, ts: int) -> Profile | None:
        p = self.profiles.get(identity)
        if p is None:
            if len(self.profiles) >= self.cfg.max_profiles:
                self.counts["profiles_limit"] += 1
                return None
            p = Profile(profile_id(identity), identity, LEARNING, created_ns=ts)
            self._adopt(p)
            self._enqueue(("meta", p))
        return p

    def _miss(self, t: Any, ts: int) -> Profile | None:
        cid = t.container_id
        if cid:
            img = self._img
            ident: str | None
            if img is None:
                ident = f"container:{cid[:12]}"
            else:
                t_evt = _ThreadEvent(t)
                ident = container_identity(*(f(t_evt) for f in img))
                if ident is None:
                    self.counts["identity_pending"] += 1
                    self._hold_container(cid)
                    return None       # metadata not resolved yet: held (below), no verdicts
            p = self.profile_for(ident, ts)
            if p is not None:
                self._route[cid] = p
                held = self._held.pop(cid, None)
                if held:
                    self._learn_held(p, held)
            else:
                self._held.pop(cid, None)
            return p
        if not self.cfg.host_profiles:
            return None
        exe = t.exepath or t.exe
        ident = host_identity(exe)
        if ident is None:
            return None
        p = self.profile_for(ident, ts)
        if p is not None:
            self._route[exe] = p    # container ids are hex, executable paths start with /
        return p

    def _hold_container(self, cid: str) -> None:
        held = self._held
        if cid in held:
            return
        if len(held) >= HELD_CONTAINERS:
            _, lost = held.popitem(last=False)
            self._held_dropped(sum(h[3] for h in lost.values()))
        held[cid] = {}

    def _hold(self, t: Any, kind: str, key: str | None, ts: int) -> None:
        """An observation of a container whose identity is pending (see ``_held``)."""
        held = self._held.get(t.container_id)
        if held is None or key is None:
            return
        seen = held.get((kind, key))
        if seen is not None:
            seen[3] += 1                 # the same observation again: one more event of it
        elif len(held) >= HELD_PER_CONTAINER:
            self._held_dropped(1)
            return
        else:
            held[(kind, key)] = [t.pid, t.ptid, ts, 1]
        self.counts["identity_held"] += 1

    def _held_dropped(self, n: int) -> None:
        if not n:
            return
        self.counts["identity_held_dropped"] += n
        m = self.metrics
        if m is not None:
            m.drop("learning_identity_held_full", n)

    def _learn_held(self, p: Profile, held: dict[tuple[str, str], list[int]]) -> None:
        """What the container did before its identity resolved, learned in order (each time
        seen an event of the learning window, as it would have been had the identity been
        known)."""
        for (kind, key), (pid, ptid, ts, n) in held.items():
            if p.state is not LEARNING:
                return
            for _ in range(n):
                self._tick(p, ts)
            if p.state is LEARNING:
                self._observe_at(p, kind, key, pid, ptid, ts)

    def of_thread(self, t: Any, ts: int) -> Profile | None:
        """The profile of a thread's workload (O(1) when warm)."""
        cid = t.container_id
        p = self._route.get(cid or t.exepath or t.exe)
        return p if p is not None else self._miss(t, ts)

    def exec_owner(self, evt: Any) -> tuple[Profile | None, str, str]:
        """Exec events: (owner profile, child exe, edge key). The owner is the container's
        profile, or on the host the *parent's* (what sshd spawns belongs to sshd's profile)."""
        owner = self._exec_facts(evt)
        c = evt.cache
        return owner, c[_EXEC_EXE], c[_EXEC_EDGE]

    def _exec_facts(self, evt: Any) -> Profile | None:
        """Computes the exec facts once per event into the event's cache (the parser and both
        exec fields share them): three plain entries, no tuple per event (tuples feed the cyclic
        GC, which then costs more than the lookups)."""
        c = evt.cache
        if _EXEC_EDGE in c:
            return c[_EXEC_OWNER]
        t = evt.thread
        keys = self._exe_keys         # exepath -> argv0 -> key: no key string built per event
        by_name = keys.get(t.exepath)
        exe = by_name.get(t.exe) if by_name is not None else None
        if exe is None:
            exe = self._exe_key(t)
        pexe = ""
        threads = self._threads       # the state table's dict (StateTables.parent, inlined)
        m = t if t.tid == t.pid else threads.get(t.pid, t)
        parent = threads.get(m.ptid)
        if parent is not None and parent.tid != parent.pid:
            parent = threads.get(parent.pid, parent)
        if parent is not None:
            by_name = keys.get(parent.exepath)
            pkey = by_name.get(parent.exe) if by_name is not None else None
            pexe = pkey if pkey is not None else self._exe_key(parent)
        route = self._route
        cid = t.container_id
        if cid:
            owner = route.get(cid) or self._miss(t, evt.ts)
        elif parent is not None and not parent.container_id:
            owner = route.get(parent.exepath or parent.exe) or self._miss(parent, evt.ts)
        else:
            owner = None
        c[_EXEC_OWNER] = owner
        c[_EXEC_EXE] = exe
        c[_EXEC_EDGE] = pexe + "\0" + exe
        return owner

    def _exe_key(self, t: Any) -> str:
        k = exe_key(t)
        keys = self._exe_keys
        if len(keys) >= 16384:
            keys.clear()
        by_name = keys.setdefault(t.exepath, {})
        if len(by_name) >= 256:
            by_name.clear()
        by_name[t.exe] = k
        return k

    _threads: dict[int, Any] = {}     # noqa: RUF012 - replaced per engine by the state table

    @property
    def _state(self) -> Any:
        return self._tables

    @_state.setter
    def _state(self, tables: Any) -> None:
        """The core state tables: parents are looked up in their (never replaced) dict."""
        self._tables = tables
        self._threads = tables.threads if tables is not None else {}

    _tables: Any = None

    # ----------------------------------------------------------------------------- hot path
    def parse(self, evt: Any) -> None:
        """The ``falconet_event_parsers`` callable."""
        t = evt.thread
        if t is None:
            return
        etype = evt.type
        if etype in EXEC:
            if evt.res is not None and evt.res < 0:
                return
            p = self._exec_facts(evt)
            if p is None:
                if self._held and t.container_id in self._held:
                    c = evt.cache
                    self._hold(t, "proc", c[_EXEC_EXE], evt.ts)
                    self._hold(t, "spawn", c[_EXEC_EDGE], evt.ts)
                return
            if p.state is not LEARNING:
                return
            self._tick(p, evt.ts)
            if p.state is LEARNING:
                c = evt.cache
                self._observe(p, "proc", c[_EXEC_EXE], evt)
                self._observe(p, "spawn", c[_EXEC_EDGE], evt)
            return
        p = self._route.get(t.container_id or t.exepath or t.exe)
        if p is None:
            p = self._miss(t, evt.ts)
            if p is None:
                if self._held and t.container_id in self._held:
                    self._hold_event(evt, etype)
                return
        if p.state is not LEARNING:
            return
        self._tick(p, evt.ts)
        if p.state is not LEARNING:
            return
        self._learn_event(p, evt, etype)

    def _hold_event(self, evt: Any, etype: str) -> None:
        t, ts = evt.thread, evt.ts
        for kind, key in self._event_keys(evt, etype):
            self._hold(t, kind, key, ts)

    def _event_keys(self, evt: Any, etype: str) -> Sequence[tuple[str, str | None]]:
        """The (kind, key) observations of one non-exec event (a key of ``None``: nothing)."""
        if etype in OPEN:
            f = evt.fdinfo          # failed opens too: probing for a file is behaviour as well
            if not self.cfg.files or f is None:
                return []
            r, w = open_modes(evt)
            cls = self.classes.get(f.name)
            return [("file_r", cls)] * r + [("file_w", cls)] * w
        if etype == "connect":
            return [("net", net_key(evt))]
        if etype == "listen":
            return [("listen", listen_key(evt))]
        return []

    def _learn_event(self, p: Profile, evt: Any, etype: str) -> None:
        for kind, key in self._event_keys(evt, etype):
            if key is not None:
                self._observe(p, kind, key, evt)

    def _tick(self, p: Profile, ts: int) -> None:
        p.events += 1
        if ts >= p.ready_at_ns and p.events >= p.min_events:
            p.state = READY
            p.ready_ns = ts
            self._enqueue(("meta", p))
            log.info("profile %s (%s) is ready: %d entries learned over %d events",
                     p.id, p.identity, p.size, p.events)

    def _observe(self, p: Profile, kind: str, key: str, evt: Any) -> None:
        t = evt.thread
        self._observe_at(p, kind, key, t.pid, t.ptid, evt.ts)

    def _observe_at(self, p: Profile, kind: str, key: str, pid: int, ptid: int, ts: int) -> None:
        if p.full or p.known(kind, key):
            return
        if len(self.queue) >= self.cfg.queue_size:
            self._queue_full()
            return
        p.pending[kind].add(key)
        self.counts["observed"] += 1
        self._enqueue((time.monotonic(), p, kind, key, pid, ptid, ts))

    def _enqueue(self, item: Any) -> None:
        self.queue.append(item)
        if self._idle:                     # the writer sleeps until told: this is work for it
            self._idle = False
            self._work.set()

    def _queue_full(self) -> None:
        self.counts["queue_full"] += 1
        m = self.metrics
        if m is not None:
            m.drop("learning_queue_full")

    # ----------------------------------------------------------------------------- verdicts
    def _exec_new(self, evt: Any, kind: str, key: str) -> bool | None:
        """``profile.proc.new`` (``key`` the executable's memo) / ``profile.spawn.new`` (the
        edge's) from the event's exec facts."""
        c = evt.cache
        if _EXEC_EDGE in c:
            p = c[_EXEC_OWNER]
        elif evt.type not in EXEC or evt.thread is None:
            return None
        else:
            p = self._exec_facts(evt)
        if p is None:
            return None
        k = c[key]
        return p.state is READY and k not in p.sets[kind] and k not in p.pending[kind]

    def proc_new(self, evt: Any) -> bool | None:
        return self._exec_new(evt, "proc", _EXEC_EXE)

    def spawn_new(self, evt: Any) -> bool | None:
        return self._exec_new(evt, "spawn", _EXEC_EDGE)

    def file_new(self, evt: Any) -> bool | None:
        t = evt.thread
        f = evt.fdinfo
        if evt.type not in OPEN or t is None or f is None or not self.cfg.files:
            return None
        p = self._route.get(t.container_id or t.exepath or t.exe) or self._miss(t, evt.ts)
        if p is None:
            return None
        if p.state is not READY:
            return False
        name = f.name
        cls = self._class_memo.get(name) or self.classes.get(name)
        flags = evt.args.get("flags")
        if flags is None:
            flags = _CREAT_FLAGS if evt.type == "creat" else 0
        acc = flags & _O_ACCMODE
        sets, pend = p.sets, p.pending
        if acc != _O_WRONLY and not flags & _O_PATH and cls not in sets["file_r"] \
                and cls not in pend["file_r"]:
            return True
        if (acc or flags & _O_TRUNC) and cls not in sets["file_w"] and cls not in pend["file_w"]:
            return True
        return False

    def net_new(self, evt: Any) -> bool | None:
        t = evt.thread
        if evt.type != "connect" or t is None:
            return None
        k = net_key(evt)
        if k is None:
            return None
        p = self._route.get(t.container_id or t.exepath or t.exe) or self._miss(t, evt.ts)
        if p is None:
            return None
        return p.state is READY and k not in p.sets["net"] and k not in p.pending["net"]

    def listen_new(self, evt: Any) -> bool | None:
        t = evt.thread
        if evt.type != "listen" or t is None:
            return None
        k = listen_key(evt)
        if k is None:
            return None
        p = self.of_thread(t, evt.ts)
        if p is None:
            return None
        return p.state is READY and not p.known("listen", k)

    def profile_of_event(self, evt: Any) -> Profile | None:
        """The profile the event is judged against: the process's workload, except for an exec
        on the host, which belongs to the parent's profile (as ``profile.*.new`` judge it)."""
        t = evt.thread
        if t is None:
            return None
        if evt.type in EXEC:
            c = evt.cache
            return c[_EXEC_OWNER] if _EXEC_EDGE in c else self._exec_facts(evt)
        return self._route.get(t.container_id or t.exepath or t.exe) or self._miss(t, evt.ts)

    # ----------------------------------------------------------------------------- alerts
    def on_alert(self, alert: Any) -> None:
        """The sink: Warning+ taints the process; lower alerts of a learning profile are kept
        as evidence for ``falconet learn suggest``."""
        if "learning" in alert.tags:
            return
        lineage = alert.lineage or []
        of = alert.output_fields or {}
        pid = lineage[0].get("pid") if lineage else of.get("proc.pid")
        if alert.priority <= Priority.WARNING:
            if isinstance(pid, int):
                with self._lock:
                    self.tainted[pid] = None
                    while len(self.tainted) > 65536:
                        self.tainted.popitem(last=False)
            return
        ev = evidence(alert)
        ident = identity_of_alert(alert, ev)
        p = self._by_image.get(ident) if ident else None
        if p is None and len(lineage) > 1 and ident and ident.startswith("host:"):
            # a host exec belongs to the parent's profile (what sshd spawns is sshd's)
            parent = host_identity(lineage[1].get("exepath") or "")
            p = self._by_image.get(parent) if parent else None
        if p is None or p.state is not LEARNING:
            return
        if len(self.queue) >= self.cfg.queue_size:
            self._queue_full()
            return
        self._enqueue(("alert", p.id, alert.rule, alert.priority.name.lower(),
                           json.dumps(ev, sort_keys=True)))

    # ----------------------------------------------------------------------------- writer
    def _run(self) -> None:
        while not self._stop.is_set():
            self._idle = True              # set before the look: an append after it wakes us
            if not self.queue:
                self._work.wait()
                self._work.clear()
                self._idle = False
                continue
            self._idle = False
            # work queued: a flush every flush_interval (observations wait out the quarantine)
            if self._stop.wait(self.cfg.flush_interval):
                break
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - a failing batch is retried, never fatal
                log.warning("learning: profile write failed: %s", e)

    def flush(self, final: bool = False) -> None:
        """Commit queued observations older than the quarantine (all of them when ``final``)."""
        with self._lock:
            self._flush(final)

    def _flush(self, final: bool) -> None:
        q = self.queue
        horizon = time.monotonic() - (0.0 if final else self.cfg.quarantine_seconds)
        metas: dict[str, Profile] = {}
        entries: list[tuple[str, str, str, int]] = []
        alerts: list[tuple[str, str, str, str, int]] = []
        tainted = self.tainted
        limit = self.cfg.max_entries
        while q:
            item = q[0]
            tag = item[0]
            if tag == "meta":
                q.popleft()
                metas[item[1].id] = item[1]
                continue
            if tag == "alert":
                q.popleft()
                alerts.append((item[1], item[2], item[3], item[4], 1))
                continue
            if tag > horizon:
                break
            q.popleft()
            _mono, p, kind, key, pid, ppid, ts = item
            if pid in tainted or ppid in tainted:
                self.counts["tainted_dropped"] += 1
            elif p.size >= limit:
                if not p.full:
                    p.full = True
                    self.full_profiles += 1
                    metas[p.id] = p
                    log.warning("learning: profile %s (%s) reached max_entries_per_profile=%d: "
                                "it stops growing", p.id, p.identity, limit)
                self.counts["profile_full"] += 1
            else:
                p.add(kind, key)
                entries.append((p.id, kind, key, ts))
                self.counts["learned"] += 1
            p.pending[kind].discard(key)
        if (metas or entries or alerts) and self.store is not None:
            for p in {e[0] for e in entries} - set(metas):
                prof = self._by_id.get(p)
                if prof is not None:
                    metas[p] = prof
            self.store.write_batch([new_profile_row(p) for p in metas.values()], entries, alerts)
            self.counts["writes"] += 1
            self.counts["rows"] += len(entries) + len(metas) + len(alerts)


def exe_key(t: Any) -> str:
    """The executable as profiles record it: its path, plus the name it was run as (argv[0]'s
    basename) when that differs (``/bin/busybox[cat]``: a multi-call binary's applets, busybox
    re-executing ``/proc/self/exe``, or a binary run through a symlink with another name, are
    different executables)."""
    exe = t.exepath or t.exe
    name = t.exe.rsplit("/", 1)[-1] if t.exe else t.comm
    if not name or exe.rsplit("/", 1)[-1] == name:
        return exe
    return f"{exe}[{name}]"


class _ThreadEvent:
    """A minimal event for the container field extractors (they read ``thread``/``pid`` and
    cache in ``cache``): identity is resolved per thread, not per event."""

    __slots__ = ("thread", "pid", "tid", "cache", "source", "type", "args", "fdinfo")
    cache: dict[Any, Any]
    args: dict[str, Any]

    def __init__(self, t: Any) -> None:
        self.thread, self.pid, self.tid, self.cache = t, t.pid, t.tid, {}
        self.source, self.type, self.args, self.fdinfo = "syscall", "", {}, None


#: containers whose identity is pending, and observations held per container (``_held``)
HELD_CONTAINERS = 256
HELD_PER_CONTAINER = 512

_NET_KEYS: dict[tuple[str, str, int], str] = {}


def net_key(evt: Any) -> str | None:
    """``<proto>:<ip>:<port>`` of an outbound connection (the server side), ``None`` when
    unknown. Memoised by (proto, ip, port): formatting costs more than the lookup."""
    f = evt.fdinfo
    if f is None or (evt.res is not None and evt.res < 0 and evt.res != -115):   # EINPROGRESS
        return None
    t = (f.l4proto, f.dip, f.dport)
    k = _NET_KEYS.get(t)
    if k is None:
        if not t[1] and not t[2]:
            return None
        if len(_NET_KEYS) >= 65536:
            _NET_KEYS.clear()
        k = _NET_KEYS[t] = f"{t[0] or 'ip'}:{t[1]}:{t[2]}"
    return k


def listen_key(evt: Any) -> str | None:
    f = evt.fdinfo
    if f is None or (evt.res is not None and evt.res < 0):
        return None
    return f"{f.l4proto or 'ip'}:{f.dport}"


#: evidence marker: the alert came from a container whose image is unknown
NO_IMAGE = "container.image_unknown"


def evidence(alert: Any) -> dict[str, Any]:
    """What an exception can be narrowed to: image, process, parent, path (when present)."""
    of = alert.output_fields or {}
    lin = alert.lineage or []
    ev: dict[str, Any] = {}
    for k in ("container.image.repository", "container.image.tag", "k8s.ns.name"):
        v = of.get(k)
        if v not in (None, "", "host"):
            ev[k] = v
    if of.get("container.id") not in (None, "", "host") and "container.image.repository" not in ev:
        # a container whose image is unknown (a plain runc bundle): no exception can be narrowed
        # to that workload, it would cover every such container (suggest drops it, reported)
        ev[NO_IMAGE] = True
    exe = lin[0].get("exepath") if lin else of.get("proc.exepath")
    if exe:
        ev["proc.exepath"] = exe
        # a multi-call binary (busybox) or a renamed link: the name tells its applets apart
        name = lin[0].get("name") if lin else of.get("proc.name")
        if name and exe.rsplit("/", 1)[-1][:15] != name:
            ev["proc.name"] = name
    pname = lin[1].get("name") if len(lin) > 1 else of.get("proc.pname")
    if pname:
        ev["proc.pname"] = pname
    fd = of.get("fd.name")
    if isinstance(fd, str) and fd:
        ev["fd.name"] = fd
    return ev


def identity_of_alert(alert: Any, ev: dict[str, Any]) -> str | None:
    """The profile identity (without digest) an alert belongs to."""
    repo = ev.get("container.image.repository")
    if repo:
        of = alert.output_fields or {}
        return container_identity(repo, ev.get("container.image.tag"), None,
                                  of.get("k8s.ns.name"), of.get("k8s.pod.name"))
    exe = ev.get("proc.exepath")
    return host_identity(exe) if exe else None
