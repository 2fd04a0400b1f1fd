"""A real HTTP alert receiver on 127.0.0.1 that can be stopped and started again on the same
port (an outage), and the metrics scrape the delivery tests share."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = self.server.rx.status
        if status == 200:
            self.server.rx.add(json.loads(body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    rx: AlertReceiver


class AlertReceiver:
    """Collects every alert POSTed to it (Falco JSON). ``status`` is what it answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.alerts: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        self._srv: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def add(self, alert: dict[str, Any]) -> None:
        with self._lock:
            self.alerts.append(alert)

    def start(self) -> AlertReceiver:
        deadline = time.monotonic() + 10
        while True:
            try:
                srv = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        srv.rx = self
        self._srv = srv
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    def uuids(self) -> Counter[str]:
        with self._lock:
            return Counter(a.get("uuid") for a in self.alerts)

    def names(self) -> Counter[str]:
        """The ``evt.arg.name`` of each received alert (which capture event it came from)."""
        with self._lock:
            return Counter(a["output_fields"].get("evt.arg.name") for a in self.alerts)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}``; {} when the engine does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def healthz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return {}
