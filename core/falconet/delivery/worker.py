"""The worker of an output with a durable spool (webhook, OTel, any sink with ``spool = True``).

The sink contract (``falconet.api.SpoolingSink``): ``encode(alert) -> bytes`` (what will be sent,
the alert's id inside) and ``deliver(payloads) -> int``: send them in order, return how many were
accepted from the start (all of them, or fewer when the receiver failed; raising means none).
``PayloadRejected(index)`` says the receiver refused one for good: it is removed and counted
as a failure of the output (``falconet_output_failures_total``) instead of blocking the spool
forever.

Two threads per output, with the spool between them (write-ahead):

- **intake** (the :class:`~falconet.pipeline.SinkWorker` thread): takes alerts off the output's
  queue in batches, applies ``match:`` and aggregation, encodes them and appends them to the
  spool in one transaction. It never waits for the network, so a receiver that is slow or away
  never fills the queue (the queue only overflows if the disk cannot keep up).
- **delivery**: sends the oldest spooled batch; rows are removed only once the receiver accepted
  them. When a delivery fails the output is in an *outage*: the same batch is retried with
  exponential backoff (``RETRY_INITIAL`` doubling to ``RETRY_MAX``; each failed attempt counted
  in ``falconet_output_delivery_retries_total``) while new alerts keep landing in the spool
  behind it, so the order is kept. The outage ends, with one warning that says how long it
  lasted, when the spool is empty again.

So an alert is durable as soon as it left the in-memory queue, and delivery is at least once: an
alert the receiver accepted but whose row was not yet removed when the engine died (SIGKILL) is
sent again after the restart, with the same id.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from typing import Any

from falconet.alerts import Alert
from falconet.delivery import PayloadRejected
from falconet.delivery.policy import OutputPolicy
from falconet.delivery.spool import Spool, spool_path
from falconet.metrics import EngineMetrics
from falconet.pipeline import _STOP, SinkWorker

log = logging.getLogger("falconet.delivery")

#: alerts per delivery attempt and per spool write
BATCH = 500
RETRY_INITIAL = 0.5
RETRY_MAX = 5.0
#: how often the spool's age bound is applied while alerts wait
AGE_CHECK_INTERVAL = 5.0


class SpoolingWorker(SinkWorker):
    """A :class:`~falconet.pipeline.SinkWorker` that writes ahead to a spool and delivers from
    it on a second thread."""

    def __init__(self, sink: Any, metrics: EngineMetrics, capacity: int,
                 policy: OutputPolicy) -> None:
        super().__init__(sink, metrics, capacity, policy)
        cfg = policy.spool or {}
        assert policy.state_dir is not None
        self.spool = Spool(spool_path(policy.state_dir, self.name),
                           max_bytes=int(cfg.get("max_bytes", 256 << 20)),
                           max_age=float(cfg.get("max_age", 86400.0)),
                           on_drop=self._spool_drop, sync=str(cfg.get("sync", "normal")))
        self.batch = BATCH
        self.retry_initial = RETRY_INITIAL
        self.retry_max = RETRY_MAX
        #: guards the spool (intake writes, delivery reads/acks; each call is short)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._delivery = threading.Thread(target=self._deliver_loop, daemon=True,
                                          name=f"falconet-deliver-{self.name}")
        self._intake_done = False
        self._stop_deadline: float | None = None
        self._outage_since: float | None = None     # wall clock, for /healthz and the warning
        self._outage_retries = 0
        self._outage_spooled = 0
        self._last_reason = ""

    def _spool_drop(self, cause: str, n: int) -> None:
        self.metrics.drop(cause, n)
        self.metrics.output_drops[self.name] += n

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.spool.open()
        if self.spool.depth:
            # left by the previous run (a crash, or an outage at shutdown): delivered first
            log.warning("output %s: %d undelivered alert(s) in the spool from a previous run "
                        "(%s); delivering them first", self.name, self.spool.depth,
                        self.spool.path)
        super().start()
        self._delivery.start()

    def request_stop(self, timeout: float) -> None:
        self._stop_deadline = time.monotonic() + max(0.0, timeout - 0.5)
        super().request_stop(timeout)

    def finish(self, timeout: float) -> None:
        """Wait for intake (what it took is on disk), then for the delivery thread's last
        attempts, and only then close the sink: never under a delivery in progress."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._thread.join(max(0.0, timeout))
        with self._wake:
            self._intake_done = True
            self._wake.notify_all()
        self._delivery.join(max(0.0, deadline - time.monotonic()) + 0.5)
        if self._thread.is_alive():
            with self.queue.mutex:
                left = sum(1 for item in self.queue.queue if item is not _STOP)
            self.metrics.output_drops[self.name] += left
            self.metrics.drop("output_shutdown_timeout", left)
            log.warning("output %s: %d alerts still queued at shutdown were dropped", self.name,
                        left)
        if self._delivery.is_alive():
            return          # a delivery still in flight: its rows stay in the spool
        try:
            self.sink.close()
        except Exception as e:  # noqa: BLE001
            log.warning("output %s: close failed: %s", self.name, e)
        if not self._thread.is_alive():
            with self._lock:
                self.spool.close()

    # ------------------------------------------------------------------ state (any thread)
    @property
    def spooling(self) -> bool:
        return self._outage_since is not None

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows for this output."""
        d: dict[str, Any] = {"state": "spooling" if self.spooling else "ok",
                             "queue_depth": self.queue.qsize(), "spool_depth": self.spool.depth,
                             "spool_bytes": self.spool.bytes,
                             "spool_oldest_age_seconds": round(self.spool.oldest_age(), 3)}
        since = self._outage_since
        if since is not None:
            d["outage_seconds"] = round(time.time() - since, 3)
            if self._last_reason:
                d["last_error"] = self._last_reason
        return d

    # ------------------------------------------------------------------ intake thread
    def _take(self) -> tuple[list[Any], bool]:
        """Up to one batch from the queue (blocking while there is nothing to do, or until an
        aggregation window ends); returns (items, stop seen)."""
        q = self.queue
        try:
            first = q.get(timeout=self._wait())
        except queue.Empty:
            return [], False
        if first is _STOP:
            return [], True
        items = [first]
        while len(items) < self.batch:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        while True:
            items, stop = self._take()
            now = time.monotonic()
            alerts = self._admit(None, now)
            for item in items:
                alerts += self._admit(item, now)
            if stop:
                alerts += self._closing_summaries()
            payloads = self._encode(alerts)
            if payloads:
                self._write(payloads)
            if stop:
                break

    def _write(self, payloads: list[bytes]) -> None:
        try:
            with self._wake:
                self.spool.put(payloads)
                self._wake.notify_all()
        except sqlite3.Error as e:
            if len(payloads) > 1:
                # the disk is full or failing: keep what still fits, half a batch at a time
                half = len(payloads) // 2
                self._write(payloads[:half])
                self._write(payloads[half:])
                return
            # this alert cannot be kept: counted, and the output goes on
            self.metrics.drop("spool_write_error", len(payloads))
            self.metrics.output_drops[self.name] += len(payloads)
            self._log_error(f"cannot write to the spool {self.spool.path}: {e}; "
                            f"{len(payloads)} alert(s) dropped (counted as spool_write_error)")
            return
        self.metrics.spool_written[self.name] += len(payloads)
        if self._outage_since is not None:
            self._outage_spooled += len(payloads)

    def _encode(self, alerts: list[Alert]) -> list[bytes]:
        out = []
        for a in alerts:
            try:
                out.append(self.sink.encode(a))
            except Exception as e:  # noqa: BLE001 - one bad alert must not stop the output
                self.metrics.output_failures[self.name] += 1
                self._log_error(f"cannot encode an alert of rule {a.rule!r}: {e}")
        return out

    # ------------------------------------------------------------------ delivery thread
    def _deliver_loop(self) -> None:
        try:
            self._deliver_rows()
        except Exception as e:  # noqa: BLE001 - a spool that fails to read must be seen
            log.error("output %s: delivery from the spool %s stopped: %s; the alerts stay on "
                      "disk for the next start", self.name, self.spool.path, e)
            self.metrics.output_failures[self.name] += 1
            self._last_reason = f"delivery stopped: {e}"
            self._outage_since = self._outage_since or time.time()

    def _deliver_rows(self) -> None:
        backoff = self.retry_initial
        next_age_check = 0.0
        while True:
            with self._wake:
                while not self.spool.depth and not self._intake_done:
                    self._wake.wait(AGE_CHECK_INTERVAL)
                if not self.spool.depth:
                    break                            # intake finished and everything is out
                now = time.monotonic()
                if now >= next_age_check:
                    next_age_check = now + AGE_CHECK_INTERVAL
                    self.spool.enforce_bounds()
                rows = self.spool.peek(self.batch)
                self.spool.protect_upto = rows[-1][0] if rows else 0
            if self._stopping_past_deadline():
                break
            n = self._deliver([p for _, p in rows]) if rows else 0
            with self._lock:
                if n:
                    self.spool.ack(rows[n - 1][0])
                self.spool.protect_upto = 0
                left = self.spool.depth
            if rows and n < len(rows):
                self._failed()
                if self._intake_done:
                    break                            # shutting down: the rest waits on disk
                self._pause(backoff)
                backoff = min(backoff * 2, self.retry_max)
            else:
                backoff = self.retry_initial
                if not left:
                    self._recovered()
        self._report_left()

    def _stopping_past_deadline(self) -> bool:
        return (self._intake_done and self._stop_deadline is not None
                and time.monotonic() >= self._stop_deadline)

    def _pause(self, seconds: float) -> None:
        """Back off, but wake at once when the engine stops (the final attempt is made then)."""
        with self._wake:
            self._wake.wait_for(lambda: self._intake_done, seconds)

    def _deliver(self, payloads: list[bytes]) -> int:
        """Deliver in order; returns how many leading payloads are done (accepted, or refused
        for good and counted). Fewer than ``len(payloads)`` means the receiver failed."""
        done = 0
        while done < len(payloads):
            rest = payloads[done:]
            try:
                n = int(self.sink.deliver(rest))
            except PayloadRejected as e:
                ok = max(0, min(e.index, len(rest) - 1))
                self.metrics.output_sent[self.name] += ok
                # a failure of this output (not a drop: counted once, see docs/outputs.md)
                self.metrics.output_failures[self.name] += 1
                self._log_error(f"receiver refused an alert, not retried: {e.reason}")
                done += ok + 1
                continue
            except Exception as e:  # noqa: BLE001 - the receiver is away: retry later
                self._last_reason = str(e) or type(e).__name__
                return done
            n = max(0, min(n, len(rest)))
            self.metrics.output_sent[self.name] += n
            done += n
            if n < len(rest):
                self._last_reason = (getattr(self.sink, "last_error", "")
                                     or "the receiver did not accept the batch")
                return done
        return done

    def _failed(self) -> None:
        self.metrics.delivery_retries[self.name] += 1
        if self._outage_since is None:
            self._outage_since = time.time()
            self._outage_retries = 0
            self._outage_spooled = self.spool.depth
            log.info("output %s: receiver unavailable (%s); alerts wait in %s", self.name,
                     self._last_reason, self.spool.path)
        self._outage_retries += 1

    def _recovered(self) -> None:
        since = self._outage_since
        if since is not None:
            log.warning("output %s: delivery restored after an outage of %.1f s: %d alert(s) "
                        "waited in the spool and were delivered (%d failed attempts, %d dropped "
                        "from the spool)", self.name, time.time() - since, self._outage_spooled,
                        self._outage_retries, sum(self.spool.dropped.values()))
            self._outage_since = None
            self._last_reason = ""

    def _report_left(self) -> None:
        if not self.spool.depth:
            return
        since = self._outage_since
        if since is None:
            log.warning("output %s: shutdown came before delivery finished; %d alert(s) kept "
                        "in %s for the next start", self.name, self.spool.depth, self.spool.path)
        else:
            log.warning("output %s: receiver unavailable for %.1f s at shutdown (%s); %d "
                        "alert(s) kept in %s for the next start", self.name, time.time() - since,
                        self._last_reason, self.spool.depth, self.spool.path)

    def _log_error(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("output %s: %s", self.name, msg)
