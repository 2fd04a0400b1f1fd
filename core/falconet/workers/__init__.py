"""More than one core: a run split across worker processes (``collector.workers``).

- :mod:`falconet.workers.partition`: which worker owns which process, which events all see;
- :mod:`falconet.workers.worker`: one worker (state + rules of its partition);
- :mod:`falconet.workers.merge`: the one ordered alert stream;
- :mod:`falconet.workers.pool`: fork, route batches, merge, count (replay);
- :mod:`falconet.workers.live` / :mod:`falconet.workers.live_worker`: a live eBPF run, each
  worker reading its own ring buffers.

docs/performance.md ("More than one core") describes the design and its measurements.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from falconet.workers.live import LIVE_KEYS, MAX_LIVE_WORKERS, LivePool, live_key_error
from falconet.workers.partition import DEFAULT_KEY, KEYS, LIFECYCLE, Partitioner, parse_key
from falconet.workers.pool import WorkerFailed, WorkerPool

__all__ = ["AUTO_MIN_BYTES", "DEFAULT_KEY", "KEYS", "LIFECYCLE", "LIVE_KEYS", "LivePool",
           "Partitioner",
           "WorkerFailed", "WorkerPool", "live_workers_for", "parse_key", "parse_workers",
           "partition_for", "prepare", "workers_for"]

log = logging.getLogger("falconet.workers")

#: with ``workers: auto``, a capture smaller than this replays on one worker: forking and
#: merging cost more than a second core saves on a few thousand events
AUTO_MIN_BYTES = 4 << 20


def parse_workers(value: Any) -> int | None:
    """``collector.workers``: ``"auto"`` (``None`` here) or a positive integer. Raises
    ``ValueError`` saying what is accepted."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected 'auto' or a positive number of workers")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"expected 'auto' or a positive number of workers, got {value!r}") from None
    if n < 1 or n > 256:
        raise ValueError(f"expected 'auto' or a number of workers from 1 to 256, got {n}")
    return n


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def workers_for(config_value: Any, src: Any, options: dict[str, Any]) -> int:
    """How many workers this run uses: ``options["workers"]`` (``--workers``) over
    ``collector.workers``; ``auto`` = one per core, and 1 on one core or for a small capture.
    A source that cannot be partitioned runs on one (the live eBPF source has its own workers:
    :func:`live_workers_for`)."""
    value = options.get("workers")
    n = parse_workers(config_value if value is None else value)
    if not getattr(src, "partitionable", False):
        if n is not None and n > 1:
            log.warning("source '%s' runs on one worker (collector.workers applies to replay "
                        "and the eBPF source)", getattr(src, "name", "?"))
        return 1
    if n is not None:
        return n
    cores = cpu_count()
    if cores <= 1:
        return 1
    path = options.get("path")
    try:
        size = os.path.getsize(path) if path else 0
    except OSError:
        size = 0
    return cores if size >= AUTO_MIN_BYTES else 1


def live_workers_for(config_value: Any, options: dict[str, Any]) -> int:
    """Workers of a live eBPF run: ``collector.workers`` (``auto``: :data:`AUTO_LIVE`).
    Raises ``ValueError`` past :data:`~falconet.workers.live.MAX_LIVE_WORKERS`."""
    value = options.get("workers")
    n = parse_workers(config_value if value is None else value)
    if n is None:
        n = AUTO_LIVE(cpu_count())
    if n > MAX_LIVE_WORKERS:
        raise ValueError(f"collector.workers: the live collector runs at most "
                         f"{MAX_LIVE_WORKERS} workers, got {n}")
    return n


def _auto_live(cores: int) -> int:
    """``collector.workers: auto`` for a live run: one worker (see docs/performance.md,
    "Live": on this 2-vCPU machine two workers cost more CPU than they save)."""
    return 1


#: cores -> workers of a live run with ``collector.workers: auto``
AUTO_LIVE = _auto_live


def partition_for(app: Any, options: dict[str, Any]) -> str:
    """The partition key of this run: ``options["partition_key"]`` (``replay
    --partition-key``) over ``collector.partition``. Raises ``ValueError`` with where the bad
    value was written (``file:line:col`` or ``-o ...``)."""
    value = options.get("partition_key")
    if value is not None:
        return parse_key(value)
    collector = app.config.data.get("collector") or {}
    try:
        return parse_key(collector.get("partition"))
    except ValueError as e:
        where = getattr(app.config, "where", None)
        at = where(("collector", "partition")) if where is not None else "<config>"
        raise ValueError(f"{at}: error: collector.partition: {e}") from None


def prepare(app: Any, src: Any, pipeline: Any, options: dict[str, Any],
            reload: Any = None) -> WorkerPool | LivePool | None:
    """Fork the workers of this run, or ``None`` for the single-worker loop. ``reload()``: a
    live worker's rules reload (loads and returns a ruleset)."""
    collector = app.config.data.get("collector") or {}
    if getattr(src, "live_workers", False) and getattr(src, "live", False):
        key = partition_for(app, options)
        n = live_workers_for(collector.get("workers", "auto"), options)
        if n <= 1:
            return None
        if key not in LIVE_KEYS:
            where = getattr(app.config, "where", None)
            at = where(("collector", "partition")) if where is not None else "<config>"
            raise ValueError(f"{at}: error: {live_key_error(key)}")
        live = LivePool(app, pipeline, n, reload=reload, key=key)
        live.start()
        return live
    key = partition_for(app, options)
    n = workers_for(collector.get("workers", "auto"), src, options)
    if n <= 1:
        return None
    pool = WorkerPool(app, pipeline, n, key=key,
                      handoff=options.get("fork_handoff", True))
    pool.start()
    return pool
