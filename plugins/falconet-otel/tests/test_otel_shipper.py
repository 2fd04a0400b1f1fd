"""Shipper: batching, and every loss counted (queue full, export failed, left at shutdown)."""

from __future__ import annotations

import threading

from falconet_otel.shipper import Shipper, SignalStats


class Exporter:
    def __init__(self, fail: bool = False, gate: threading.Event | None = None):
        self.batches: list[list] = []
        self.fail = fail
        self.gate = gate
        self.shut = False

    def export(self, batch):
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise ConnectionRefusedError("collector down")
        self.batches.append(batch)
        return True

    def shutdown(self):
        self.shut = True


def test_batches_and_counts_sent():
    ex, st = Exporter(), SignalStats("logs")
    sh = Shipper(ex, st, batch_size=10, schedule_delay=0.01)
    for i in range(35):
        assert sh.put(i)
    assert sh.flush(5)
    assert sorted(x for b in ex.batches for x in b) == list(range(35))
    assert max(len(b) for b in ex.batches) <= 10
    assert (st.sent, st.failed, st.dropped) == (35, 0, 0)
    sh.shutdown(1)
    assert ex.shut


def test_failures_are_counted_and_reported():
    losses: list[tuple[str, int]] = []
    ex, st = Exporter(fail=True), SignalStats("traces")
    sh = Shipper(ex, st, batch_size=4, schedule_delay=0.01, on_loss=lambda c, n: losses.append((c, n)))
    for i in range(10):
        sh.put(i)
    assert sh.flush(5)
    assert (st.sent, st.failed, st.dropped) == (0, 10, 0)
    assert sum(n for c, n in losses if c == "otel_traces_export_failed") == 10
    sh.shutdown(1)


def test_full_queue_drops_are_counted_and_put_never_blocks():
    gate = threading.Event()
    losses: list[tuple[str, int]] = []
    ex, st = Exporter(gate=gate), SignalStats("logs")
    sh = Shipper(ex, st, batch_size=5, queue_size=5, schedule_delay=0.01,
                 on_loss=lambda c, n: losses.append((c, n)))
    accepted = sum(sh.put(i) for i in range(50))       # the exporter is stuck: the queue fills
    assert st.dropped == 50 - accepted and st.dropped >= 40
    assert sum(n for c, n in losses if c == "otel_queue_full") == st.dropped
    gate.set()
    assert sh.flush(5)
    assert st.sent == accepted
    sh.shutdown(1)


def test_shutdown_counts_what_could_not_be_sent():
    gate = threading.Event()                            # never set: the collector hangs
    ex, st = Exporter(gate=gate), SignalStats("logs")
    sh = Shipper(ex, st, batch_size=2, queue_size=100, schedule_delay=0.01)
    for i in range(20):
        sh.put(i)
    sh.shutdown(0.2)
    gate.set()
    assert st.sent + st.failed + st.dropped + 2 >= 20     # at most the in-flight batch is pending
    assert st.dropped >= 16
