"""Delivery figures (issue 14): the spool's write and drain rates, end-to-end delivery from the
spool to a webhook receiver, and the hot loop's rate with the receiver up vs down.

Prints JSON. Goals: spool write and drain >= 10,000 alerts/s each; the hot loop's events/s the
same (within noise) whether the webhook receiver is up or away.

- ``spool_write``: ``Spool.put`` of encoded alerts (real Falco JSON, ~600 bytes) in batches of
  500, WAL, ``synchronous=NORMAL``, on the state directory's file system.
- ``spool_drain``: ``peek`` + ``ack`` of those rows (what the delivery thread does besides the
  network).
- ``webhook_drain``: a spool of N alerts delivered to a webhook receiver in another process
  (kept-alive HTTP/1.1), alerts/s until the spool is empty.
- ``hot_loop``: ``Pipeline.run`` with the real rules engine and core state on a synthetic
  stream (1 alert per ``--every`` events) into a spooled webhook output; the receiver is up (a
  separate process) or down (nothing listens). Median of ``--repeat`` runs each, alternating.

    .venv/bin/python bench/bench_delivery.py [--alerts 50000] [--events 200000] [--every 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "delivery"), str(REPO / "tests")]

from conftest import free_port  # noqa: E402
from delivery_helpers import STORM_RULES, T0  # noqa: E402
from falconet.alerts import Alert  # noqa: E402
from falconet.app import App  # noqa: E402
from falconet.config import load_config  # noqa: E402
from falconet.delivery.spool import Spool  # noqa: E402
from falconet.events import Event  # noqa: E402
from falconet.outputs.format import format_json  # noqa: E402
from falconet.priorities import Priority  # noqa: E402


def _receiver(port: int, count, stop) -> None:
    """Child process: a keep-alive HTTP receiver that only counts POSTs."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with count.get_lock():
                count.value += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    srv.daemon_threads = True
    import threading  # noqa: PLC0415
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stop.wait()
    srv.shutdown()


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.count = mp.Value("q", 0)
        self.stop = mp.Event()
        self.proc = mp.Process(target=_receiver, args=(self.port, self.count, self.stop),
                               daemon=True)

    def __enter__(self) -> Receiver:
        self.proc.start()
        import socket  # noqa: PLC0415
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.proc.join(5)


def sample_payloads(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        a = Alert("Delivery storm", Priority.ERROR, "syscall", ["test"],
                  f"Storm file deleted (name=/tmp/storm-a-{i} proc=rm)",
                  {"evt.arg.name": f"/tmp/storm-a-{i}", "proc.name": "rm", "proc.pid": 100,
                   "proc.cmdline": "rm -f /tmp/storm-a-x", "user.name": "root",
                   "container.id": "host", "evt.time": T0 + i}, T0 + i, "bench-host",
                  uuid=f"94caf51b-0c16-8a6f-9ee0-{i:012x}")
        out.append(format_json(a).encode())
    return out


def bench_spool(n: int, tmp: Path) -> dict[str, float]:
    payloads = sample_payloads(n)
    sp = Spool(tmp / "spool" / "bench.db", max_bytes=1 << 34, max_age=86400.0).open()
    t = time.perf_counter()
    for i in range(0, n, 500):
        sp.put(payloads[i:i + 500])
    write = time.perf_counter() - t
    t = time.perf_counter()
    while sp.depth:
        rows = sp.peek(500)
        sp.ack(rows[-1][0])
    drain = time.perf_counter() - t
    sp.close()
    return {"alerts": n, "bytes_per_alert": round(sum(map(len, payloads)) / n),
            "spool_write_alerts_per_s": round(n / write), "spool_drain_alerts_per_s": round(n / drain)}


def make_app(state: Path, url: str, rules: Path) -> App:
    cfg = load_config(None, ["outputs.stdout.enabled=false", "outputs.webhook.enabled=true",
                             f"outputs.webhook.url={url}", "outputs.webhook.queue_size=100000",
                             f"state_dir={state}", "load_plugin_rules=false",
                             "plugins.otel.enabled=false", "plugins.container.enabled=false"])
    app = App(cfg, source_name="replay")
    app.load_ruleset([str(rules)])
    return app


def stream(n: int, every: int, tag: str) -> list[Event]:
    evts = [Event("syscall", "procfork", T0 + 1, 99, 99, {"child_tid": 100, "child_pid": 100,
                                                       "parent_tid": 99, "parent_pid": 99}),
            Event("syscall", "execve", T0 + 2, 100, 100,
                  {"filename": "/usr/bin/rm", "argv": ["rm", "x"], "cwd": "/tmp",
                   "exepath": "/usr/bin/rm", "uid": 0, "gid": 0, "comm": "rm"}, 0)]
    for i in range(n):
        if i % every == 0:
            evts.append(Event("syscall", "unlinkat", T0 + 10 + i, 100, 100,
                              {"dirfd": -100, "name": f"/tmp/storm-{tag}-{i}", "flags": 0}, 0))
        else:
            evts.append(Event("syscall", "read", T0 + 10 + i, 100, 100, {"fd": 0, "size": 10}, 10))
    return evts


def hot_loop_once(tmp: Path, rules: Path, n: int, every: int, up: bool, k: int) -> float:
    state = tmp / f"hot-{k}-{'up' if up else 'down'}"
    if up:
        with Receiver() as rx:
            return _run(make_app(state, f"http://127.0.0.1:{rx.port}/", rules), n, every, k)
    return _run(make_app(state, f"http://127.0.0.1:{free_port()}/", rules), n, every, k)


def _run(app: App, n: int, every: int, k: int) -> float:
    pipeline = app.build_pipeline()
    pipeline.start()
    evts = stream(n, every, str(k))
    t = time.perf_counter()
    pipeline.run(evts)
    took = time.perf_counter() - t
    pipeline.close(timeout=2.0)
    return len(evts) / took


def webhook_drain(tmp: Path, n: int) -> dict[str, float]:
    from falconet.delivery.policy import SPOOL_DEFAULTS, OutputPolicy  # noqa: PLC0415
    from falconet.delivery.worker import SpoolingWorker  # noqa: PLC0415
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from falconet.outputs.format import Formatter  # noqa: PLC0415
    from falconet.outputs.webhook import WebhookSink  # noqa: PLC0415

    state = tmp / "drain"
    sp = Spool(state / "spool" / "webhook.db", max_bytes=1 << 34, max_age=86400.0).open()
    payloads = sample_payloads(n)
    for i in range(0, n, 500):
        sp.put(payloads[i:i + 500])
    sp.close()
    with Receiver() as rx:
        sink = WebhookSink("webhook", f"http://127.0.0.1:{rx.port}/", Formatter(json_output=True))
        w = SpoolingWorker(sink, EngineMetrics(), 1000,
                           OutputPolicy(spool=dict(SPOOL_DEFAULTS), state_dir=str(state)))
        t = time.perf_counter()
        w.start()
        while w.spool.depth:
            time.sleep(0.01)
        took = time.perf_counter() - t
        w.stop(5.0)
        return {"alerts": n, "webhook_drain_alerts_per_s": round(n / took),
                "received": rx.count.value}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=50_000)
    ap.add_argument("--webhook-alerts", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="falconet-bench-delivery-") as d:
        tmp = Path(d)
        out["spool"] = bench_spool(args.alerts, tmp)
        out["webhook_drain"] = webhook_drain(tmp, args.webhook_alerts)
        rules = tmp / "rules.yaml"
        rules.write_text(STORM_RULES)
        up, down = [], []
        for k in range(args.repeat):
            up.append(hot_loop_once(tmp, rules, args.events, args.every, True, k))
            down.append(hot_loop_once(tmp, rules, args.events, args.every, False, k))
        mu, md = statistics.median(up), statistics.median(down)
        out["hot_loop"] = {
            "events": args.events, "alert_every": args.every,
            "receiver_up_events_per_s": round(mu), "receiver_down_events_per_s": round(md),
            "down_vs_up_percent": round(100 * (md - mu) / mu, 1),
            "runs_up": [round(x) for x in up], "runs_down": [round(x) for x in down]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
