"""The ``ebpf`` event source: compile, attach, read the ring buffer, account for drops.

``EbpfSource.open(options)`` compiles the program for the selected event types (rules + state base
set), attaches the tracepoints, and yields decoded :class:`~falconet.events.Event` objects, or
``None`` when idle. Kernel counters are read about once a second into ``EngineMetrics``; when the
kernel dropped events in the last second, a rate-limited internal alert is raised.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from falconet import syscalls
from falconet.alerts import Alert
from falconet.collector import bccloader, bpfcache, bpfproc, bpfsyscall, btf, kfilter_maps, program
from falconet.collector.bpfsys import PerCpuU64Array
from falconet.collector.decoder import RecordDecoder
from falconet.collector.merge import TimestampMerge
from falconet.collector.ringbuf import RingBuffer, RingSet
from falconet.events import INTERNAL_SOURCE, SYSCALL_SOURCE, Event
from falconet.kfilter import FilterPlan
from falconet.plugin_config import (
    Checker,
    ConfigSchema,
    Setting,
    boolean,
    integer,
    number,
    one_of,
    positive_integer,
    priority,
    validate_section,
)
from falconet.priorities import Priority

log = logging.getLogger("falconet.collector")

DROP_RULE = "Falconet internal: syscall event drop"
#: ring buffer maps at most (CPU groups x workers; each is one map and its own call sites)
MAX_RINGS = 64


#: empty polls (``poll_interval`` apart) after the last event before the consumer sleeps until
#: the kernel wakes it: 10 x 20 ms keeps bursty work batched, and an idle engine asleep
LINGER_POLLS = 10


#: fields whose value is the exec's environment (libs takes it from execve's envp, always)
ENV_FIELDS = frozenset({"proc.env"})


def rules_read_env(ruleset: Any) -> bool:
    """Whether a loaded syscall rule reads ``proc.env`` (condition or output). Falco always has
    the environment of an exec; copying it costs up to ``env_len`` bytes per execve, so the
    collector does it (``capture_env``) when a rule needs it, decided when the source opens
    (a hot reload that adds such a rule needs a restart, or ``capture_env: true``)."""
    for r in getattr(ruleset, "rules", ()):
        if getattr(r, "source", SYSCALL_SOURCE) != SYSCALL_SOURCE:
            continue
        facts = getattr(r, "kfacts", None)
        if facts is not None:
            if any(name in ENV_FIELDS for name, _arg in facts.fields):
                return True
        elif any(f in str(getattr(r, "condition", "")) for f in ENV_FIELDS):
            return True          # too deep to walk: the text says whether it may read it
        for token, _getter in getattr(getattr(r, "fmt", None), "fields", ()):
            if token.split("[", 1)[0] in ENV_FIELDS:
                return True
    return False


@dataclass
class CollectorConfig:
    """The ``collector:`` section of ``falconet.yaml`` (see docs/collector.md)."""

    ring_buffer_pages: int = 1024          # per ring: 4 MiB with 4 KiB pages (power of two)
    cpus_for_each_buffer: int = 1          # CPUs sharing one ring (Falco's option of that name)
    path_len: int = 512                    # bytes kept per path argument (power of two)
    argv_len: int = 4096                   # bytes of argv kept per execve (power of two)
    capture_env: bool = False              # copy the environment of execve (proc.env)
    env_len: int = 4096
    args_map_size: int = 32768             # threads that can be inside a traced syscall at once
    syscalls: list[str] | None = None      # extra event types to trace beyond the rules' ones
    all_syscalls: bool = False             # trace everything the collector knows
    drop_alert_priority: Priority = Priority.WARNING
    drop_alert_interval: float = 30.0      # at most one drop alert per this many seconds
    drop_threshold: float = 0.0            # fraction of events dropped in the last second
    batch: int = 4096                      # records read per ring-buffer pass
    #: seconds between ring polls while events flow. 20 ms, not 5: each poll that finds a few
    #: records pays a cold-cache pass through the pipeline; on a fork+exec loop (issue 18) 20 ms
    #: cost 10-30 % less engine CPU. A burst is not delayed: every 256th record of a CPU wakes
    #: the consumer (count_event in bpf/falconet.bpf.c), so a poll never waits for a full ring
    poll_interval: float = 0.02
    kernel_filter: bool = True             # drop what no rule can match (docs/kernel-filter.md)
    snaplen: int = 80                      # bytes of I/O data kept (evt.buffer), as Falco's
    stats_interval: float = 1.0
    bpf_cache: bool = True                 # reuse the compiled program (bpfcache.py)
    workers: int | str = "auto"            # worker processes: auto or N (performance.md)
    partition: str = "lineage"             # the workers' key: lineage, tgid, cgroup (idem)
    io_uring: bool = True                  # trace io_uring file/socket operations (issue 19)
    resolve_paths: bool = True             # opens carry the kernel's path (fd.resolved_name)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> CollectorConfig:
        """Build from a ``collector:`` mapping, checked by :data:`COLLECTOR_SCHEMA` (raises
        ``ValueError`` naming each bad key)."""
        values, problems = validate_section(COLLECTOR_SCHEMA, "ebpf", {}, _here,
                                            whole={"collector": d or {}})
        if problems:
            raise ValueError("; ".join(problems))
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> CollectorConfig:
        """From values :data:`COLLECTOR_SCHEMA` validated."""
        return cls(**{k: v for k, v in values.items() if k in _FIELDS})


def _here(path: tuple[str, ...]) -> str:
    return "<config>"


def _syscall_names(v: Any) -> list[str] | None:
    if v is None:
        return None
    if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        raise ValueError("expected a list of syscall names")
    bad = [x for x in v if x not in syscalls.EVENTS]
    if bad:
        raise ValueError(f"unknown or unsupported: {', '.join(bad)}")
    return list(v)


def _workers(v: Any) -> int | str:
    """``workers``: ``auto`` or 1-256 (falconet.workers.parse_workers says the same)."""
    if v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 256:
        raise ValueError("expected 'auto' or a number of workers from 1 to 256")
    return v


def _collector_schema() -> ConfigSchema:
    """``collector:`` (and ``plugins.ebpf``, whose keys override it), from the dataclass: one
    declaration of each key, its default and its check."""
    checks: dict[str, Checker] = {"drop_alert_priority": priority(), "syscalls": _syscall_names,
                                  "snaplen": integer(1, program.MAX_SNAPLEN),
                                  "workers": _workers,
                                  "partition": one_of(*program.PARTITION_KEYS)}
    settings: dict[str, Setting] = {}
    for f in fields(CollectorConfig):
        default = f.default
        if f.name in checks:
            check = checks[f.name]
        elif isinstance(default, bool):
            check = boolean()
        elif isinstance(default, int):
            check = positive_integer(power_of_two=f.name in _POWERS_OF_TWO)
        else:
            check = number(0)
        settings[f.name] = Setting(check, default)
    return ConfigSchema(settings, merge_from="collector")


_POWERS_OF_TWO = frozenset({"ring_buffer_pages", "path_len", "argv_len", "env_len"})
_FIELDS = frozenset(f.name for f in fields(CollectorConfig))
COLLECTOR_SCHEMA = _collector_schema()


@dataclass
class KernelStats:
    """Totals of the kernel counters (summed over CPUs)."""

    events: int = 0
    drops_by_category: dict[str, int] = field(default_factory=dict)
    #: exec enters the args map could not hold; each such exec is lost at its exit, where it is
    #: counted in ``no_enter`` (the drop): this one only says why
    args_map_full: int = 0
    #: exec exits without a saved enter: lost (the args map was full, or the exec started
    #: before the engine attached)
    no_enter: int = 0
    user_read: int = 0
    kernel_read: int = 0
    #: collector.workers > 1: lifecycle copies lost (a worker's ring full), new processes
    #: hashed because worker_of was full (kept, but possibly off their parent's worker)
    broadcast_drops: int = 0
    worker_map_full: int = 0
    #: events lost before a ring write (see :data:`LOST_CAUSES`)
    lost: dict[str, int] = field(default_factory=dict)
    #: execs emitted without their filename (exec_fn full; not a drop)
    exec_fn_full: int = 0

    @property
    def drops(self) -> int:
        """Every event the kernel lost, each once: ring full, no enter, lost before a ring."""
        return sum(self.drops_by_category.values()) + self.no_enter + sum(self.lost.values())


#: kernel counter slot -> the ``falconet_drops_total`` cause of an event lost before any ring
#: write (``kernel_<category>`` are the ring-full ones, ``kernel_args_map_full`` and
#: ``kernel_no_enter`` the execs without a saved enter)
LOST_CAUSES: dict[int, str] = {
    program.C_LOST_SCRATCH: "kernel_scratch_unavailable",
    program.C_LOST_REGS: "kernel_regs_unreadable",
    program.C_LOST_IOU: "kernel_io_uring_lost",
}


def choose_events(ruleset: Any = None, event_types: Any = "unset",
                  cfg: CollectorConfig | None = None) -> frozenset[str]:
    """The event types to trace: the ruleset's syscall event types (``None`` = all) plus the
    state base set, plus ``collector.syscalls``."""
    cfg = cfg or CollectorConfig()
    if cfg.all_syscalls:
        return frozenset(syscalls.EVENTS)
    if event_types == "unset":
        event_types = ruleset.event_types(SYSCALL_SOURCE) if ruleset is not None else None
    chosen = set(syscalls.selected_events(event_types))
    if cfg.syscalls:
        chosen |= set(syscalls.selected_events(set(cfg.syscalls)))
    return frozenset(chosen)


class EbpfSource:
    """EventSource ``ebpf`` (source ``syscall``, live)."""

    name = "ebpf"
    source = SYSCALL_SOURCE
    live = True

    def __init__(self, config: CollectorConfig | None = None, engine: Any = None) -> None:
        self.config = config or CollectorConfig()
        self.engine = engine
        self.bpf: Any = None                   # truthy while the programs are loaded
        self._fds: list[int] = []
        self.counters: PerCpuU64Array | None = None
        self.rings: RingSet | None = None
        self.built: program.BuiltProgram | None = None
        self.attached: list[str] = []          # tracepoints attached
        self.dispatched: list[str] = []        # syscalls with handlers in the dispatch tables
        self.stats = KernelStats()
        self._closed = False
        self._looping = False
        self._metrics: Any = None
        self._reported = KernelStats()
        #: args-map-full enters already matched to an exec exit without an enter (poll_stats)
        self._args_explained = 0
        self._last_alert = 0.0
        self._inject: Callable[[Alert], None] | None = None
        #: the rule-derived kernel filter (options["kernel_filter"]), once loaded into the maps
        self.filter_plan: FilterPlan | None = None
        self.filter_tables: kfilter_maps.KernelTables | None = None
        self._filter_counters: kfilter_maps.FilterCounters | None = None
        self._filtered_reported: dict[tuple[str, str], int] = {}
        self._ctl_fd = -1
        self._map_fds: dict[str, int] = {}
        #: every fcntl is emitted, not only F_DUPFD* (set by :meth:`open`: a rule names fcntl)
        self.all_fcntl = True
        #: collector.workers > 1 (falconet.workers.live): the ring fds of each worker (the
        #: parent maps none), the ring size, and the per-ring drop counters
        self.workers = 1
        self.worker_rings: list[list[int]] = []
        self.ring_bytes = 0
        self.ring_drops: PerCpuU64Array | None = None

    # ------------------------------------------------------------------ start
    def start(self, events: frozenset[str], self_tgid: int | None = None,
              plan: FilterPlan | None = None, workers: int = 1,
              skip_tgids: tuple[int, ...] = (), partition: str = "lineage") -> None:
        """Compile, load and attach (in a child process, see :mod:`bpfproc`), then map the
        rings and load the kernel filter ``plan`` (none: every traced event is emitted). Raises
        :class:`bccloader.CollectorUnavailable` saying what is missing.

        ``workers`` > 1: a group of rings per worker process, which map their own
        (:attr:`worker_rings`; this process maps none); ``skip_tgids``, the workers' pids, are
        not traced (as this process is not); ``partition``: their key (collector.partition)."""
        bccloader.check_prerequisites()
        cfg = self.config
        try:
            offsets = bpfcache.kernel_offsets() if cfg.bpf_cache else btf.kernel_offsets()
        except btf.BTFError as e:
            raise bccloader.CollectorUnavailable(str(e)) from None
        missing = [k for k in ("OFF_TASK_CRED", "OFF_TASK_MM", "OFF_TASK_SIGNAL", "OFF_PID_NUMBERS",
                               "OFF_TASK_TGID", "SIZE_UPID") if k not in offsets]
        if missing:
            raise bccloader.CollectorUnavailable("kernel BTF lacks " + ", ".join(missing))
        ncpu = os.cpu_count() or 1
        per = max(1, cfg.cpus_for_each_buffer)
        n_rings = min((ncpu + per - 1) // per, 64)
        while n_rings * workers > MAX_RINGS:        # CPUs share rings before workers do
            per *= 2
            n_rings = (ncpu + per - 1) // per
        built = program.build(events, self_tgid=os.getpid() if self_tgid is None else self_tgid,
                              offsets=offsets, rings=n_rings, cpus_per_ring=per,
                              ring_buffer_pages=cfg.ring_buffer_pages,
                              path_len=cfg.path_len, argv_len=cfg.argv_len,
                              env_len=cfg.env_len if cfg.capture_env else 0,
                              args_map_size=cfg.args_map_size, snaplen=cfg.snaplen,
                              io_uring=cfg.io_uring, resolve_paths=cfg.resolve_paths,
                              workers=workers, partition=partition,
                              all_fcntl=self.all_fcntl)
        if built.unavailable:
            log.warning("the kernel has no tracepoints for %s: not traced",
                        ", ".join(sorted(built.unavailable)))
        t0 = time.monotonic()
        ring_maps = [f"events{i}" for i in range(n_rings * workers)]
        request = {"text": built.text, "cflags": built.cflags, "dispatch": built.dispatch,
                   "attach": built.attach, "tails": built.tails,
                   "maps": [*ring_maps, "counters", "exit_progs", "ctl", "kf_cfg", "kf_paths",
                            "kf_rpaths", "kf_names", "kf_counts", "kf_io", "kf_rel", "ring_drops",
                            *(["worker_of"] if workers > 1 else []),
                            *sorted({t for t, _i, _f in built.tails})]}
        try:
            fds = bpfproc.load(request, cache=cfg.bpf_cache)
        except RuntimeError as e:
            raise bccloader.CollectorUnavailable(f"BPF program failed to compile/load/attach: "
                                                 f"{e}") from None
        self._fds = list(fds.values())
        self.built = built
        self.dispatched = [fn.removeprefix("exit_") for _nr, fn in built.dispatch]
        self.attached = [tp for _k, tp, _fn in built.attach]
        self.workers = workers
        self.ring_bytes = cfg.ring_buffer_pages * 4096
        try:
            self.counters = PerCpuU64Array(fds["map:counters"], program.N_COUNTERS)
            self.ring_drops = PerCpuU64Array(fds["map:ring_drops"], len(ring_maps))
            if workers == 1:
                self.rings = RingSet([RingBuffer(fds[f"map:{m}"], self.ring_bytes)
                                      for m in ring_maps])
            else:
                self.worker_rings = [[fds[f"map:{m}"] for m in ring_maps[w * n_rings:
                                                                       (w + 1) * n_rings]]
                                     for w in range(workers)]
                for tgid in skip_tgids:
                    bpfsyscall.map_update_u32(fds["map:worker_of"], tgid,
                                                program.WORKER_SKIP)
        except (OSError, KeyError, ValueError) as e:
            self._teardown()
            raise bccloader.CollectorUnavailable(f"cannot map the ring buffers: {e}") from None
        self._ctl_fd = fds["map:ctl"]
        self._map_fds = {k: v for k, v in fds.items() if k.startswith("map:")}
        if plan is not None and cfg.kernel_filter:
            self._load_filter(plan, fds)
        #: how the records decode (a live worker builds its own decoder from it)
        self.decoder_args: dict[str, Any] = {"path_len": cfg.path_len, "argv_len": cfg.argv_len,
                             "env_len": cfg.env_len if cfg.capture_env else 0,
                             "resolve_paths": built.resolve_paths}
        self.decoder = RecordDecoder(**self.decoder_args)
        self.bpf = True
        log.info("eBPF collector: %d event types, %d tracepoints attached in %.1fs",
                 len(built.events), len(built.attach), time.monotonic() - t0)

    @property
    def ctl_fd(self) -> int:
        """The ``ctl`` map (the consumers' sleeping flags), -1 when not loaded."""
        return self._ctl_fd

    #: runs on several worker processes, each reading its own rings (collector.workers)
    live_workers = True

    def set_kernel_filter(self, plan: FilterPlan | None) -> None:
        """A rules reload: replace the running filter (``None``: none). Between the two, every
        event passes (the old configs are switched off before their tries are emptied)."""
        if self.bpf is None or not self.config.kernel_filter:
            return
        fds = self._map_fds
        if self.filter_tables is not None:
            try:
                kfilter_maps.unload(self.filter_tables, fds)
            except OSError as e:
                log.warning("kernel filter: cannot unload the old filter (%s)", e)
                return
        self.filter_plan = self.filter_tables = None
        if plan is not None:
            self._load_filter(plan, fds)

    def _load_filter(self, plan: FilterPlan, fds: dict[str, int]) -> None:
        """Fill the kernel filter maps from ``plan``; a failure leaves filtering off (every
        event emitted), logged."""
        ids = {t: program.EVENT_IDS[t] for t in (*plan.types, *plan.io, *plan.child_clones)
               if t in self.dispatched}
        close_id = program.EVENT_IDS["close"] if "close" in self.dispatched else None
        try:
            t = kfilter_maps.load(plan, fds, ids, close_id)
        except OSError as e:
            log.warning("kernel filter not loaded (%s): every traced event is emitted", e)
            return
        for etype, why in t.skipped.items():
            log.info("kernel filter: %s not filtered: %s", etype, why)
        self.filter_plan, self.filter_tables = plan, t
        counted = dict(t.filtered)
        if close_id is not None and close_id in t.cfg:
            counted["close"] = close_id
        self._filter_counters = kfilter_maps.FilterCounters(fds["map:kf_counts"], counted)
        log.info("kernel filter: %s filtered in the kernel%s",
                 ", ".join(sorted(t.filtered)) or "nothing",
                 " (and the closes of their dropped fds)" if "close" in counted else "")

    # ------------------------------------------------------------------ EventSource
    def open(self, options: dict[str, Any]) -> Iterator[Event | None]:
        """Start, then yield events (``None`` when idle) until :meth:`close`.

        Options: ``event_types`` (set or None = all) or ``ruleset`` (its syscall event types),
        ``metrics`` (EngineMetrics), ``engine``, ``inject`` (callable taking an internal Alert;
        default: ``engine.extras["falconet.inject_alert"]`` when present).
        """
        engine = options.get("engine") or self.engine
        self._metrics = options.get("metrics") or getattr(engine, "metrics", None)
        self._inject = options.get("inject") or (
            getattr(engine, "extras", {}) or {}).get("falconet.inject_alert")
        rs = options.get("ruleset")
        if "event_types" in options:
            wanted = options["event_types"]
        else:
            wanted = rs.event_types(SYSCALL_SOURCE) if rs is not None else None
        if not self.config.capture_env and rs is not None and rules_read_env(rs):
            self.config = replace(self.config, capture_env=True)
            log.info("a loaded rule reads proc.env: copying the environment of execs "
                     "(collector.capture_env)")
        events = choose_events(event_types=wanted, cfg=self.config)
        cfg = self.config
        self.all_fcntl = (wanted is None or "fcntl" in wanted or cfg.all_syscalls
                          or "fcntl" in (cfg.syscalls or ()))
        missing = syscalls.unsupported(wanted)
        if missing:
            log.info("rules name event types the eBPF collector does not produce: %s",
                     ", ".join(sorted(missing)))
        pool = options.get("live_workers")
        if pool is None:
            self.start(events, options.get("self_tgid"), options.get("kernel_filter"))
        else:
            # collector.workers > 1: a ring group per worker process, which reads it itself
            # (falconet.workers.live); this process's iterator never runs
            self.start(events, options.get("self_tgid"), options.get("kernel_filter"),
                       workers=pool.n, skip_tgids=pool.pids, partition=pool.key)
            pool.attach(self)
        return self._loop()

    def _loop(self) -> Iterator[Event | None]:
        self._looping = True
        rings = self.rings
        # RecordDecoder.decode inlined (one Python call less per event): the event id is the
        # u16 at byte 32 of the record header
        table = self.decoder.table
        assert rings is not None
        batch = self.config.batch
        next_stats = time.monotonic() + self.config.stats_interval
        metrics = self._metrics
        single = len(rings.rings) == 1
        merge = TimestampMerge()             # several rings: timestamp order across reads
        boot = self.decoder.boot_offset      # the kernel's clock to the events' epoch ns
        clock = time.monotonic_ns
        quiet = LINGER_POLLS + 1
        try:
            while not self._closed:
                # Decode everything available (decoding copies the data out, so each ring's
                # space is released at once), then merge the rings by timestamp: events of one
                # process may sit in different rings when it migrates between CPUs.
                got: list[Event] = []
                frontier: int | None = None
                started = clock() + boot
                for ring in rings.rings:
                    view = ring.view
                    offsets, cons = ring.pending(batch)
                    for off in offsets:
                        try:
                            got.append(table[view[off + 32] | view[off + 33] << 8](view, off))
                        except Exception:  # noqa: BLE001 - one bad record never stops the rest
                            if metrics is not None:
                                metrics.drop("decode_error")
                    ring.release(cons)               # decoded: the kernel may reuse the space
                    if len(offsets) >= batch and got:    # records left: a frontier
                        last = got[-1].ts
                        if frontier is None or last < frontier:
                            frontier = last
                if not single and (got or merge.held):
                    got = merge.order(got, frontier, started)
                if got:
                    yield from got
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + self.config.stats_interval
                    self.poll_stats()
                if got:
                    quiet = 0
                else:
                    yield None
                    quiet += 1
                    if self._closed:
                        pass
                    elif quiet <= LINGER_POLLS or merge.held:
                        # events came a moment ago: more are likely, and a wakeup per event
                        # would cost more than polling (measured on a fork+exec loop); what
                        # the merge holds goes out with the next read, not after a sleep
                        rings.wait(self.config.poll_interval)
                    else:
                        self._sleep(rings, next_stats - time.monotonic())
            yield from merge.drain()
        finally:
            self.poll_stats()
            self._teardown()

    def _sleep(self, rings: RingSet, until_stats: float) -> None:
        """Nothing to read: sleep until the kernel has a record for us (the producers see the
        ``ctl`` flag and wake us with their next commit) or the next stats tick. While records
        keep coming we never get here with an empty ring for long: busy, the loop polls."""
        if self._ctl_fd >= 0:
            try:
                kfilter_maps.set_sleeping(self._ctl_fd)
            except OSError:
                rings.wait(self.config.poll_interval)
                return
            # a record committed between our last read and the flag carried no wakeup
            rings.wait(max(0.0, min(until_stats, self.config.stats_interval)))
        else:
            rings.wait(self.config.poll_interval)

    def close(self) -> None:
        """Stop: the iterator ends at its next step; detaches at once if it never ran."""
        self._closed = True
        if not self._looping:
            self._teardown()

    def _teardown(self) -> None:
        if self.rings is not None:
            self.rings.close()
            self.rings = None
        for fd in self._fds:        # closing the attachment fds detaches the programs
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._ctl_fd = -1
        self.bpf = None

    # ------------------------------------------------------------------ drops
    def read_counters(self) -> KernelStats:
        """Sum the per-CPU kernel counters."""
        if self.bpf is None or self.counters is None:
            return self.stats
        vals = self.counters.sums()
        s = KernelStats(events=vals[program.C_EVENTS],
                        drops_by_category={c: vals[program.C_DROP_BASE + i]
                                           for i, c in enumerate(syscalls.CATEGORIES)},
                        args_map_full=vals[program.C_ARGS_FULL], no_enter=vals[program.C_NO_ENTER],
                        user_read=vals[program.C_USER_READ],
                        kernel_read=vals[program.C_KERNEL_READ],
                        broadcast_drops=vals[program.C_BCAST_DROP],
                        worker_map_full=vals[program.C_WORKER_FULL],
                        lost={cause: vals[i] for i, cause in LOST_CAUSES.items()},
                        exec_fn_full=vals[program.C_EXEC_FN_FULL])
        self.stats = s
        return s

    def poll_stats(self) -> None:
        """Move kernel counter deltas into EngineMetrics; alert on new drops.

        Each lost event is counted once: a ring-full drop by its category, an exec without a
        saved enter once at its exit (``kernel_args_map_full`` when an enter the args map could
        not hold explains it, else ``kernel_no_enter``), a loss before any ring write by its
        cause (:data:`LOST_CAUSES`)."""
        if self.bpf is None:
            return
        old, new = self._reported, self.read_counters()
        self._reported = new
        d_events = new.events - old.events
        d_cat = {c: n - old.drops_by_category.get(c, 0) for c, n in new.drops_by_category.items()}
        d_no_enter = new.no_enter - old.no_enter
        # the enters that did not fit are matched to the next exits that found none
        d_args = min(d_no_enter, max(0, new.args_map_full - self._args_explained))
        self._args_explained += d_args
        d_lost = {c: n - old.lost.get(c, 0) for c, n in new.lost.items()}
        d_other = {"args_map_full": d_args, "no_enter": d_no_enter - d_args,
                   **{c.removeprefix("kernel_"): n for c, n in d_lost.items()}}
        d_drops = sum(d_cat.values()) + sum(d_other.values())
        m = self._metrics
        if m is not None:
            # the losses before a ring write never reached C_EVENTS (the ring-full ones did)
            m.kernel_events += d_events + sum(d_other.values())
            m.kernel_drops += d_drops
            for c, n in d_cat.items():
                if n:
                    m.drop(f"kernel_{c}", n)
            for c, n in d_other.items():
                if n:
                    m.drop(f"kernel_{c}", n)
            for what, n in (("user_read", new.user_read - old.user_read),
                            ("kernel_read", new.kernel_read - old.kernel_read),
                            ("exec_filename", new.exec_fn_full - old.exec_fn_full)):
                if n:
                    m.kernel_degraded[what] += n
            d_copy = new.broadcast_drops - old.broadcast_drops
            if d_copy:
                m.drop("kernel_broadcast_copy", d_copy)
            d_full = new.worker_map_full - old.worker_map_full
            if d_full:
                m.drop("kernel_worker_map_full", d_full)
            if self._filter_counters is not None:
                now_f = self._filter_counters.read()
                for k, n in now_f.items():
                    d = n - self._filtered_reported.get(k, 0)
                    if d:
                        m.kernel_filtered[k] += d
                self._filtered_reported = now_f
        if d_drops and d_drops >= self.config.drop_threshold * max(d_events, 1):
            self._drop_alert(d_events, d_drops, d_cat, d_other)

    def _drop_alert(self, n_evts: int, n_drops: int, by_cat: dict[str, int],
                    other: dict[str, int]) -> None:
        now = time.monotonic()
        if now - self._last_alert < self.config.drop_alert_interval and self._last_alert:
            return
        self._last_alert = now
        fields: dict[str, Any] = {"n_evts": n_evts, "n_drops": n_drops,
                                  "n_drops_buffer_total": sum(by_cat.values())}
        fields.update({f"n_drops_{c}": n for c, n in other.items()})
        fields.update({f"n_drops_buffer_{c}_exit": n for c, n in by_cat.items()})
        msg = (f"{DROP_RULE}. {n_drops} system calls dropped in last second. "
               f"(n_evts={n_evts} n_drops={n_drops})")
        log.warning("%s", msg)
        host = getattr(self.engine, "hostname", "") or os.uname().nodename
        alert = Alert(rule=DROP_RULE, priority=self.config.drop_alert_priority,
                      source=INTERNAL_SOURCE, tags=[], output=msg, output_fields=fields,
                      time_ns=time.time_ns(), hostname=host,
                      desc="The kernel side dropped system call events: detection may miss "
                           "activity. Raise collector.ring_buffer_pages or trace fewer syscalls.")
        if self._inject is not None:
            try:
                self._inject(alert)
            except Exception as e:  # noqa: BLE001
                log.warning("cannot emit drop alert: %s", e)
