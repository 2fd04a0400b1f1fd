"""The worker of an output with a durable spool (webhook, OTel, any sink with ``spool = True``).

The sink contract (``falconet.api.SpoolingSink``): ``encode(alert) -> bytes`` (what will be sent,
the alert's id inside) and ``deliver(payloads) -> int``: send them in order, return how many were
accepted from the start (all of them, or fewer when the receiver failed; raising means none).
``PayloadRejected(index)`` says the receiver refused one for good: it is dropped (counted as
``output_rejected``) instead of blocking the spool forever.

Two modes, on the worker thread only:

- **direct**: alerts from the queue are encoded and delivered in batches. When a delivery fails,
  what was not accepted goes to the spool and the output enters an *outage*.
- **spooling** (the spool holds rows): every new alert is appended to the spool, behind the older
  ones, so delivery order is kept. Delivery of the oldest batch is retried with exponential
  backoff (``RETRY_INITIAL`` doubling to ``RETRY_MAX``); each failed attempt is counted in
  ``falconet_output_delivery_retries_total``. Once the spool is empty the outage ends with one
  warning that says how long it lasted.

Rows are removed only after the receiver accepted them, so delivery is at least once: an alert
accepted but not yet removed when the engine dies (SIGKILL) is sent again after the restart,
with the same id.
"""

from __future__ import annotations

import logging
import queue
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
RETRY_MAX = 10.0
#: how often the spool's age bound is applied while nothing is written
AGE_CHECK_INTERVAL = 5.0


class SpoolingWorker(SinkWorker):
    """A :class:`~falconet.pipeline.SinkWorker` that keeps what it cannot deliver on disk."""

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
        self._backoff = self.retry_initial
        self._retry_at = 0.0
        self._outage_since: float | None = None     # wall clock, for /healthz and the warning
        self._outage_retries = 0
        self._outage_spooled = 0
        self._last_reason = ""
        self._stop_deadline: float | None = None
        self._next_age_check = 0.0

    def _spool_drop(self, cause: str, n: int) -> None:
        self.metrics.drop(cause, n)
        self.metrics.output_drops[self.name] += n

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.spool.open()
        if self.spool.depth:
            # left by the previous run (a crash, or an outage at shutdown): deliver those first
            self._outage_since = self.spool.oldest_ts or time.time()
            log.warning("output %s: %d undelivered alert(s) in the spool from a previous run "
                        "(%s); delivering them first", self.name, self.spool.depth,
                        self.spool.path)
        super().start()

    def request_stop(self, timeout: float) -> None:
        self._stop_deadline = time.monotonic() + max(0.0, timeout - 0.5)
        super().request_stop(timeout)

    def finish(self, timeout: float) -> None:
        super().finish(timeout)
        if not self._thread.is_alive():
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
        if self._outage_since is not None:
            d["outage_seconds"] = round(time.time() - self._outage_since, 3)
            if self._last_reason:
                d["last_error"] = self._last_reason
        return d

    # ------------------------------------------------------------------ the worker thread
    def _wait(self) -> float | None:
        waits = [w for w in (super()._wait(),) if w is not None]
        if self.spool.depth:
            waits.append(max(0.0, self._retry_at - time.monotonic()))
            waits.append(AGE_CHECK_INTERVAL)
        return min(waits) if waits else None

    def _take(self) -> tuple[list[Any], bool]:
        """Up to one batch from the queue (blocking only while there is nothing else to do);
        returns (items, stop seen)."""
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
            self._handle(self._encode(alerts))
            if self.spool.depth and time.monotonic() >= self._retry_at:
                self._drain_once()
            if self.spool.depth and now >= self._next_age_check:
                self._next_age_check = now + AGE_CHECK_INTERVAL
                self.spool.enforce_bounds()
                self._check_recovered()
            if stop:
                break
            if self.queue.empty():
                self._flush()
        self._drain_at_stop()

    def _encode(self, alerts: list[Alert]) -> list[bytes]:
        out = []
        for a in alerts:
            try:
                out.append(self.sink.encode(a))
            except Exception as e:  # noqa: BLE001 - one bad alert must not stop the output
                self.metrics.drop("output_encode_error")
                self.metrics.output_failures[self.name] += 1
                self._log_error(f"cannot encode an alert of rule {a.rule!r}: {e}")
        return out

    def _handle(self, payloads: list[bytes]) -> None:
        if not payloads:
            return
        if self.spool.depth:                     # keep the order: behind what is waiting
            self._to_spool(payloads)
            return
        n = self._deliver(payloads)
        if n < len(payloads):
            self._to_spool(payloads[n:])
            self._enter_outage()

    def _to_spool(self, payloads: list[bytes]) -> None:
        self.spool.put(payloads)
        self.metrics.spool_written[self.name] += len(payloads)
        self._outage_spooled += len(payloads)

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
                self.metrics.drop("output_rejected")
                self.metrics.output_failures[self.name] += 1
                self._log_error(f"receiver refused an alert, not retried: {e.reason}")
                done += ok + 1
                continue
            except Exception as e:  # noqa: BLE001 - the receiver is away: spool, retry later
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

    def _drain_once(self) -> None:
        rows = self.spool.peek(self.batch)
        if not rows:
            return
        n = self._deliver([p for _, p in rows])
        if n:
            self.spool.ack(rows[n - 1][0])
        if n < len(rows):
            self.metrics.delivery_retries[self.name] += 1
            self._outage_retries += 1
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.retry_max)
        else:
            self._backoff = self.retry_initial
            self._retry_at = 0.0
            self._check_recovered()

    def _enter_outage(self) -> None:
        if self._outage_since is None:
            self._outage_since = time.time()
            self._outage_retries = 0
            self._outage_spooled = self.spool.depth
            log.info("output %s: receiver unavailable (%s); spooling alerts to %s", self.name,
                     self._last_reason, self.spool.path)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max)

    def _check_recovered(self) -> None:
        if self._outage_since is not None and not self.spool.depth:
            took = time.time() - self._outage_since
            log.warning("output %s: delivery restored after an outage of %.1f s: %d alert(s) "
                        "were spooled and delivered (%d failed attempts, %d dropped from the "
                        "spool)", self.name, took, self._outage_spooled, self._outage_retries,
                        sum(self.spool.dropped.values()))
            self._outage_since = None
            self._last_reason = ""
            self._outage_spooled = 0

    def _drain_at_stop(self) -> None:
        """Shutdown: deliver what the spool holds while the receiver answers and time is left;
        the rest stays on disk for the next start."""
        deadline = self._stop_deadline or time.monotonic()
        while self.spool.depth and time.monotonic() < deadline:
            before = self.spool.depth
            self._retry_at = 0.0
            self._drain_once()
            if self.spool.depth >= before:
                break                    # the receiver is still away
        if self.spool.depth:
            since = self._outage_since or time.time()
            log.warning("output %s: receiver still unavailable after %.1f s (%s); %d alert(s) "
                        "kept in %s for the next start", self.name, time.time() - since,
                        self._last_reason or "not retried before shutdown", self.spool.depth,
                        self.spool.path)

    def _log_error(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("output %s: %s", self.name, msg)
