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
    protocol_version = "HTTP/1.1"       # keep-alive, like falcosidekick

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


T0 = 1_764_000_000_000_000_000

#: one rule, one alert per ``unlinkat`` of ``/tmp/storm-*`` (the name tells which event it was)
STORM_RULES = """\
- rule: Delivery storm
  desc: a file below /tmp/storm was deleted
  condition: evt.type = unlinkat and evt.arg.name startswith /tmp/storm-
  output: Storm file deleted (name=%evt.arg.name proc=%proc.name)
  priority: ERROR
  tags: [test]
"""


def storm_capture(path: str, n: int, prefix: str = "a") -> list[str]:
    """A capture of one ``rm`` process deleting ``/tmp/storm-<prefix>-<i>`` ``n`` times (one alert
    each). Returns the names, in order."""
    from falconet.capture import CaptureWriter  # noqa: PLC0415
    from falconet.events import Event  # noqa: PLC0415

    names = [f"/tmp/storm-{prefix}-{i}" for i in range(n)]
    with CaptureWriter(path, host="stormhost", kernel="6.18.0", start_ns=T0) as w:
        w.write_event(Event("syscall", "procfork", T0 + 1, 99, 99,
                            {"child_tid": 100, "child_pid": 100, "parent_tid": 99,
                             "parent_pid": 99}))
        w.write_event(Event("syscall", "execve", T0 + 2, 100, 100,
                            {"filename": "/usr/bin/rm", "argv": ["rm", "x"], "cwd": "/tmp",
                             "exepath": "/usr/bin/rm", "uid": 0, "gid": 0, "comm": "rm"}, 0))
        for i, name in enumerate(names):
            w.write_event(Event("syscall", "unlinkat", T0 + 10 + i, 100, 100,
                                {"dirfd": -100, "name": name, "flags": 0}, 0))
    return names


def spooled_names(db: str) -> dict[str, str]:
    """What a spool database holds: ``{evt.arg.name: uuid}`` (read while no engine runs)."""
    import sqlite3  # noqa: PLC0415

    con = sqlite3.connect(db)
    try:
        out = {}
        for (payload,) in con.execute("SELECT payload FROM spool ORDER BY seq"):
            a = json.loads(payload)
            out[a["output_fields"]["evt.arg.name"]] = a["uuid"]
        return out
    finally:
        con.close()


def routed_capture(path: str, per_ns: int) -> None:
    """Two containers in two Kubernetes namespaces (``prod-web``: pid 100, ``dev-api``: pid
    200, as the container plugin records them), each deleting ``per_ns`` storm files named
    after their namespace."""
    from falconet.capture import CaptureWriter  # noqa: PLC0415
    from falconet.events import Event  # noqa: PLC0415

    containers = [{"full_id": c * 64, "type": "containerd", "name": f"{ns}-app",
                   "k8s_ns_name": ns, "k8s_pod_name": f"{ns}-pod", "status": "resolved"}
                  for c, ns in (("a", "prod-web"), ("b", "dev-api"))]
    with CaptureWriter(path, host="stormhost", kernel="6.18.0", start_ns=T0) as w:
        w.write_state("container", {"containers": containers,
                                    "pids": {"100": "a" * 64, "200": "b" * 64}})
        t = T0 + 1
        for pid, ns in ((100, "prod-web"), (200, "dev-api")):
            w.write_event(Event("syscall", "procfork", t, 99, 99,
                                {"child_tid": pid, "child_pid": pid, "parent_tid": 99,
                                 "parent_pid": 99}))
            w.write_event(Event("syscall", "execve", t + 1, pid, pid,
                                {"filename": "/usr/bin/rm", "argv": ["rm", ns], "cwd": "/",
                                 "exepath": "/usr/bin/rm", "uid": 0, "gid": 0, "comm": "rm"},
                                0))
            t += 2
        for i in range(per_ns):
            for pid, ns in ((100, "prod-web"), (200, "dev-api")):
                t += 1
                w.write_event(Event("syscall", "unlinkat", t, pid, pid,
                                    {"dirfd": -100, "name": f"/tmp/storm-{ns}-{i}", "flags": 0},
                                    0))
