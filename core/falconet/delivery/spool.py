"""The durable spool: alerts an output could not deliver, on disk until it can.

One SQLite database per output (``<state_dir>/spool/<output>.db``, standard library ``sqlite3``)
in WAL mode. Each row is one encoded alert (the exact bytes the output sends, its id inside) with
the time it was spooled; ``seq`` gives the delivery order. A committed row survives the engine
being killed (``kill -9``): WAL with ``synchronous=NORMAL`` loses nothing on a process crash, only
on a power loss (``sync: full`` covers that too, at a cost per write batch).

Bounds: ``max_bytes`` (sum of payload sizes) and ``max_age`` (seconds since spooled). Past a bound
the oldest rows go first; each is counted as a drop (``spool_full`` / ``spool_expired``) through
``on_drop``. Only the output's worker thread uses a spool; the gauges (depth, bytes, oldest) are
plain attributes the scrape thread may read at any time.

A lock file (``<output>.lock``, ``flock``) keeps a second engine from draining the same spool.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from falconet.delivery.statedir import StateDirError, no_symlink, private_dir, private_file

log = logging.getLogger("falconet.delivery")

_SCHEMA = """CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL)"""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def spool_path(state_dir: str | os.PathLike[str], output: str) -> Path:
    """``<state_dir>/spool/<output>.db`` (the output name made safe for a file name)."""
    name = _SAFE_NAME.sub("_", output).lstrip(".") or "output"
    return Path(state_dir) / "spool" / f"{name}.db"


class Spool:
    """A FIFO of encoded alerts in SQLite, bounded in bytes and age.

    Args:
        path: the database file (its directory is created 0700).
        max_bytes: bound on the sum of payload sizes; the oldest rows go first past it.
        max_age: seconds a row may wait; older rows are dropped.
        on_drop: ``(cause, n)``: counts every dropped row (``EngineMetrics.drop``).
        sync: ``normal`` (survives a process crash) or ``full`` (also a power loss).
    """

    def __init__(self, path: Path, *, max_bytes: int, max_age: float,
                 on_drop: Callable[[str, int], None] | None = None, sync: str = "normal") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._on_drop = on_drop or (lambda _cause, _n: None)
        self._sync = "FULL" if sync == "full" else "NORMAL"
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        #: gauges (read by the scrape thread): rows, payload bytes, spool time of the oldest row
        self.depth = 0
        self.bytes = 0
        self.oldest_ts: float | None = None
        #: rows dropped by cause (also reported through ``on_drop``)
        self.dropped: dict[str, int] = {}
        #: rows up to this seq are being delivered: the bounds never drop them (an alert is
        #: either delivered or counted as dropped, never both)
        self.protect_upto = 0

    # ------------------------------------------------------------------ open / close
    def open(self) -> Spool:
        """Create or reopen the spool (rows left by a previous run are kept, in order).
        Raises :class:`StateDirError` when the directory or files are unsafe or locked."""
        private_dir(self.path.parent)
        self._lock()
        private_file(self.path)
        for suffix in ("-wal", "-shm"):
            no_symlink(self.path.with_name(self.path.name + suffix))
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as e:
            # a damaged file must not keep the output from starting: keep it aside for a look
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("spool %s is unreadable (%s); moved to %s, starting an empty spool",
                      self.path, e, aside)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                extra = self.path.with_name(self.path.name + suffix)
                if extra.exists():
                    os.replace(extra, aside.with_name(aside.name + suffix))
            private_file(self.path)
            self._db = self._connect()
        self._load_gauges()
        return self

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"journal_mode is {mode}, expected wal")
            db.execute(f"PRAGMA synchronous={self._sync}")
            db.execute(_SCHEMA)
            db.execute("SELECT count(*) FROM spool").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _lock(self) -> None:
        lock = self.path.with_name(self.path.name.removesuffix(".db") + ".lock")
        private_file(lock)
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateDirError(f"{self.path}: spool in use by another falconet process "
                                f"(lock {lock})") from None
        self._lock_fd = fd

    def _load_gauges(self) -> None:
        assert self._db is not None
        n, size, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(ts) FROM spool").fetchone()
        self.depth, self.bytes, self.oldest_ts = int(n), int(size), oldest

    def close(self) -> None:
        if self._db is not None:
            try:
                # fold the WAL back into the database: the next start reads one file
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ FIFO
    def put(self, payloads: Sequence[bytes], now: float | None = None) -> None:
        """Append ``payloads`` in order in one transaction, then apply the bounds."""
        if not payloads:
            return
        assert self._db is not None, "spool not open"
        now = time.time() if now is None else now
        rows = [(now, len(p), p) for p in payloads]
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO spool (ts, size, payload) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:       # SQLite already rolled back on SQLITE_FULL
                db.execute("ROLLBACK")
            raise
        self.depth += len(rows)
        self.bytes += sum(r[1] for r in rows)
        if self.oldest_ts is None:
            self.oldest_ts = now
        self.enforce_bounds(now)

    def peek(self, n: int) -> list[tuple[int, bytes]]:
        """The oldest ``n`` rows as ``(seq, payload)``, oldest first (not removed)."""
        assert self._db is not None, "spool not open"
        return [(int(s), bytes(p)) for s, p in self._db.execute(
            "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (n,))]

    def ack(self, upto_seq: int) -> None:
        """Remove every row up to and including ``upto_seq`` (delivered or given up on)."""
        assert self._db is not None, "spool not open"
        n, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM spool "
                                   "WHERE seq <= ?", (upto_seq,)).fetchone()
        self._db.execute("DELETE FROM spool WHERE seq <= ?", (upto_seq,))
        self._removed(int(n), int(size))

    def _removed(self, n: int, size: int) -> None:
        self.depth = max(0, self.depth - n)
        self.bytes = max(0, self.bytes - size)
        if self.depth == 0:
            self.oldest_ts = None
        elif n:
            assert self._db is not None
            self.oldest_ts = self._db.execute("SELECT min(ts) FROM spool").fetchone()[0]

    def _drop(self, cause: str, n: int) -> None:
        if n:
            self.dropped[cause] = self.dropped.get(cause, 0) + n
            self._on_drop(cause, n)

    def enforce_bounds(self, now: float | None = None) -> None:
        """Drop the oldest rows past ``max_age``, then past ``max_bytes`` (each counted)."""
        if self._db is None or not self.depth:
            return
        now = time.time() if now is None else now
        db = self._db
        low = self.protect_upto
        if self.oldest_ts is not None and now - self.oldest_ts > self.max_age:
            cut = now - self.max_age
            n, size = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM spool "
                                 "WHERE ts < ? AND seq > ?", (cut, low)).fetchone()
            db.execute("DELETE FROM spool WHERE ts < ? AND seq > ?", (cut, low))
            self._removed(int(n), int(size))
            self._drop("spool_expired", int(n))
        if self.bytes > self.max_bytes:
            excess = self.bytes - self.max_bytes
            # walk the oldest rows until enough bytes are freed (a window function, one query)
            row = db.execute(
                "SELECT seq, n, total FROM (SELECT seq, count(*) OVER w AS n, sum(size) OVER w "
                "AS total FROM spool WHERE seq > ? WINDOW w AS (ORDER BY seq)) "
                "WHERE total >= ? LIMIT 1", (low, excess)).fetchone()
            if row is None:     # not enough outside the batch in flight: drop all of that
                row = db.execute("SELECT max(seq), count(*), coalesce(sum(size), 0) FROM spool "
                                 "WHERE seq > ?", (low,)).fetchone()
            seq, n, total = row
            if n:
                db.execute("DELETE FROM spool WHERE seq > ? AND seq <= ?", (low, seq))
                self._removed(int(n), int(total))
                self._drop("spool_full", int(n))

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds the oldest row has waited (0 when empty)."""
        ts = self.oldest_ts
        return 0.0 if ts is None else max(0.0, (time.time() if now is None else now) - ts)
