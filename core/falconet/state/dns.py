"""Domain names of rule conditions, resolved in the background: ``fd.cip.name``, ``fd.sip.name``,
``fd.lip.name``, ``fd.rip.name``.

Falco (libsinsp ``sinsp_dns_manager``) does no reverse DNS for these fields. A check such as
``fd.sip.name = "kubernetes.default.svc.cluster.local"`` is true when the fd's server address is
one of the addresses that name resolves to *for the engine*; the engine resolves every name its
conditions compare these fields with, and keeps the answers fresh. Extraction (``%fd.sip.name``
in an output) returns a tracked name that resolves to the address, if any.

:class:`DomainResolver` does the same without ever blocking the hot loop:

- the rule compiler registers each name when it compiles the check (load time), and the check
  keeps the name's :class:`DomainEntry`; per event the check is one attribute read and one
  ``frozenset`` lookup (``ip in entry.addrs``; ``in (a, b...)``: one dict lookup of the
  address's names and a disjointness test);
- one daemon thread (from engine start on) resolves the names (``getaddrinfo``, so
  ``/etc/hosts`` and the system's resolver apply) and publishes each answer by rebinding
  ``entry.addrs`` and the reverse maps (atomic under the GIL). A name not resolved yet simply
  does not match;
- refresh: ``refresh_seconds`` after a change, doubling while the answer stays the same, never
  more than ``max_refresh_seconds`` (Falco: 10 s doubling to 320 s). Failures are retried after
  ``retry_seconds``, doubling to the same bound. A name that does not exist has no addresses; a
  temporary failure keeps the last known addresses (stale beats blind);
- results are counted in ``EngineMetrics.enrichment[("dns", result)]``
  (``falconet_enrichment_lookups_total{plugin="dns",result}``: ``hit`` resolved, ``miss`` no
  such name or no address, ``error`` the resolver failed) and never raised; the number of names
  tracked and resolved is the gauge ``falconet_dns_names{key}``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("falconet.dns")

#: ``resolve(name) -> addresses``; raises :class:`NameNotFound` or ``OSError``
ResolveFn = Callable[[str], Iterable[str]]

#: ``EngineMetrics.enrichment`` "plugin" label of the resolver's lookups
METRICS_LABEL = "dns"
_EMPTY: frozenset[str] = frozenset()


class NameNotFound(LookupError):
    """The name does not exist (or has no address): an answer, not a failure."""


def _canonical(addr: str) -> str:
    """Address text as the state tables hold it (``inet_ntop``): no IPv6 scope suffix."""
    return addr.split("%", 1)[0]


def system_resolve(name: str) -> frozenset[str]:
    """Every IPv4/IPv6 address of ``name`` through the C library (hosts file, then DNS, as
    ``nsswitch.conf`` says). IPv4 addresses are also given in their IPv4-mapped IPv6 form, the
    way a dual-stack socket reports them. Raises :class:`NameNotFound` or ``OSError``."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise NameNotFound(name) from None
        raise
    out: set[str] = set()
    for family, _type, _proto, _canon, sockaddr in infos:
        a = _canonical(str(sockaddr[0]))
        out.add(a)
        if family == socket.AF_INET:
            out.add("::ffff:" + a)
    if not out:
        raise NameNotFound(name)
    return frozenset(out)


class DomainEntry:
    """One tracked name. ``addrs`` is rebound (never mutated) by the resolver thread."""

    __slots__ = ("name", "addrs", "interval", "due", "resolved", "state")

    def __init__(self, name: str) -> None:
        self.name = name
        self.addrs: frozenset[str] = _EMPTY
        self.interval = 0.0           # seconds until the next refresh (backoff state)
        self.due = 0.0                # time.monotonic() of the next refresh; 0 = now
        self.resolved = False         # an answer (hit or miss) was received at least once
        self.state = "pending"        # pending | hit | miss | error

    def __repr__(self) -> str:
        return f"DomainEntry({self.name!r}, {sorted(self.addrs)}, {self.state})"


def normalize_name(name: str) -> str:
    """Domain names compare case-insensitively and without the root dot."""
    return name.strip().rstrip(".").lower()


class DomainResolver:
    """The engine's names of ``fd.*ip.name`` conditions and their addresses.

    Args:
        metrics: an :class:`~falconet.metrics.EngineMetrics` (or ``None``) for the counters.
        resolve: the lookup, :func:`system_resolve` by default (tests pass a fake).
        refresh_seconds / max_refresh_seconds / retry_seconds: see the module docstring.
        autostart: start the thread on the first :meth:`register`. ``False`` (a registry made
            only to list or validate) never resolves until :meth:`start`; the core-state
            plugin starts its resolver at ``falconet_start`` and sets ``autostart`` then, so
            names a hot reload adds start it too.
    """

    def __init__(self, metrics: Any = None, *, resolve: ResolveFn = system_resolve,
                 refresh_seconds: float = 10.0, max_refresh_seconds: float = 320.0,
                 retry_seconds: float = 1.0, autostart: bool = True) -> None:
        if not 0 < refresh_seconds <= max_refresh_seconds or not 0 < retry_seconds:
            raise ValueError("expected 0 < refresh_seconds <= max_refresh_seconds and "
                             "retry_seconds > 0")
        self.metrics = metrics
        self._resolve = resolve
        self.refresh_seconds = float(refresh_seconds)
        self.max_refresh_seconds = float(max_refresh_seconds)
        self.retry_seconds = float(retry_seconds)
        self.autostart = autostart
        self.entries: dict[str, DomainEntry] = {}
        #: address -> the smallest tracked name resolving to it (Falco's ``name_of``); rebound
        #: as a whole after every change, so readers never see it half-built
        self.names_by_addr: dict[str, str] = {}
        #: address -> every tracked name resolving to it (``in (a, b, ...)`` checks); same rule
        self.all_names_by_addr: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()         # entries: registration vs. the thread's scan
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rounds = 0
        self._round_done = threading.Condition()
        if metrics is not None:
            metrics.gauges["dns_names"] = self.counts

    # ------------------------------------------------------------------------- load time
    def register(self, name: str) -> DomainEntry:
        """Track ``name`` (called by the compiler for each name of a condition); returns the
        entry whose ``addrs`` the compiled check reads. Wakes the thread to resolve it now."""
        key = normalize_name(name)
        with self._lock:
            e = self.entries.get(key)
            if e is None:
                e = self.entries[key] = DomainEntry(key)
                self._wake.set()
        if self.autostart:
            self.start()
        return e

    def start(self) -> None:
        """Start the resolver thread (idempotent)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="falconet-dns", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread. A lookup in progress cannot be interrupted (``getaddrinfo``); the
        daemon thread then ends on its own."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None:
            t.join(timeout)

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    # ------------------------------------------------------------------------- hot loop
    def name_of(self, addr: str | None) -> str | None:
        """The tracked name resolving to ``addr`` (the smallest, as Falco's), else ``None``."""
        if not addr:
            return None
        return self.names_by_addr.get(addr)

    # ------------------------------------------------------------------------- the thread
    def counts(self) -> dict[str, float]:
        """``falconet_dns_names{key}``: names tracked, and resolved to at least one address."""
        entries = list(self.entries.values())
        return {"tracked": float(len(entries)),
                "resolved": float(sum(1 for e in entries if e.addrs))}

    def refresh_due(self, now: float | None = None) -> float:
        """Resolve every entry that is due (in the calling thread); returns the seconds until
        the next one is due. The thread's loop body; tests call it directly."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [e for e in self.entries.values() if e.due <= now]
        for e in due:
            if self._stop.is_set():
                break
            self._refresh(e, now)          # publishes each change at once (reverse maps too)
        with self._round_done:
            self._rounds += 1
            self._round_done.notify_all()
        with self._lock:
            nxt = min((e.due for e in self.entries.values()), default=now + self.max_refresh_seconds)
        return max(0.0, nxt - now)

    def _refresh(self, e: DomainEntry, now: float) -> bool:
        """One lookup of ``e``; returns whether its addresses changed."""
        old = e.addrs
        try:
            new = frozenset(_canonical(a) for a in self._resolve(e.name))
            result = "hit" if new else "miss"
        except NameNotFound:
            new, result = _EMPTY, "miss"
        except Exception as ex:  # noqa: BLE001 - any resolver failure is counted, never raised
            new, result = old, "error"
            if e.state != "error":
                log.warning("dns: cannot resolve %s (keeping %d known addresses): %s",
                            e.name, len(old), ex)
        self._count(result)
        if result == "error":
            e.interval = self.retry_seconds if e.state != "error" else \
                min(e.interval * 2, self.max_refresh_seconds)
        elif new != old or not e.resolved:
            e.interval = self.refresh_seconds
        else:   # the same answer again: back off
            e.interval = min(max(e.interval, self.refresh_seconds) * 2, self.max_refresh_seconds)
        e.due = now + e.interval
        changed = new != old
        if changed:
            e.addrs = new
            # reverse maps before the state: once a name is answered (what wait_resolved
            # waits for), `in (a, b)` and extraction see it as `= a` does
            self._rebuild_reverse()
            log.info("dns: %s -> %s", e.name, ", ".join(sorted(new)) or "(no address)")
        if result != "error":
            e.resolved = True
        e.state = result
        return changed

    def _rebuild_reverse(self) -> None:
        every: dict[str, set[str]] = {}
        with self._lock:
            entries = list(self.entries.values())
        for e in entries:
            for a in e.addrs:
                every.setdefault(a, set()).add(e.name)
        self.all_names_by_addr = {a: frozenset(ns) for a, ns in every.items()}
        self.names_by_addr = {a: min(ns) for a, ns in every.items()}

    def _count(self, result: str) -> None:
        m = self.metrics
        if m is not None:
            m.enrichment[(METRICS_LABEL, result)] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                wait = self.refresh_due()
            except Exception:  # noqa: BLE001 - the thread must survive anything
                log.exception("dns: refresh failed")
                wait = self.retry_seconds
            self._wake.wait(wait)

    def wait_round(self, timeout: float) -> bool:
        """Wait until the thread completes one more pass over the due names (tests, and the
        bounded start-up wait of a replay). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._round_done:
            target = self._rounds + 1
            while self._rounds < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._round_done.wait(left)
        return True

    def wait_resolved(self, timeout: float) -> bool:
        """Wait (bounded) until every tracked name has had an answer or a failure."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [e for e in self.entries.values() if e.state == "pending"]
            if not pending:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not self.running:
                return False
            self.wait_round(min(left, 0.5))


# ------------------------------------------------------------------------------ compiled checks
#: operators compared against the names' resolved addresses (Falco's ``compare_domain``); every
#: other operator compares the extracted name as a string
DOMAIN_OPS = frozenset({"=", "==", "!=", "in"})


def domain_check(resolver: DomainResolver, address: Callable[[Any], str | None], op: str,
                 values: list[str]) -> Callable[[Any], bool] | None:
    """The compiled check of ``<fd.*ip.name> op values`` (load time: registers the names), or
    ``None`` when ``op`` compares the extracted name instead (``contains``, ``glob``, ...).

    ``address(evt)`` gives the fd's relevant address, ``None`` when the event has no IPv4/IPv6
    socket with that side known; then the check is false, ``!=`` included (Falconet's and
    Falco's missing-value rule). Per event: one address read and a ``frozenset`` lookup per name.
    """
    if op not in DOMAIN_OPS or not values:
        return None
    entries = tuple(dict.fromkeys(resolver.register(v) for v in values))
    if op == "!=":
        e = entries[0]

        def not_resolves_to(evt: Any, _a: Callable[[Any], str | None] = address,
                            _e: DomainEntry = e) -> bool:
            ip = _a(evt)
            return ip is not None and ip not in _e.addrs
        return not_resolves_to
    if len(entries) == 1:
        e = entries[0]

        def resolves_to(evt: Any, _a: Callable[[Any], str | None] = address,
                        _e: DomainEntry = e) -> bool:
            ip = _a(evt)
            return ip is not None and ip in _e.addrs
        return resolves_to

    wanted = frozenset(e.name for e in entries)

    def resolves_to_any(evt: Any, _a: Callable[[Any], str | None] = address,
                        _r: DomainResolver = resolver, _w: frozenset[str] = wanted) -> bool:
        ip = _a(evt)
        if ip is None:
            return False
        names = _r.all_names_by_addr.get(ip)     # one dict lookup, whatever the list's length
        return names is not None and not names.isdisjoint(_w)
    return resolves_to_any
