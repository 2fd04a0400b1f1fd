"""A local webhook receiver for the hardening tests (a real HTTP server on 127.0.0.1, port 0):
records every request; answers with the queued statuses (default 200) and optional headers."""

from __future__ import annotations

import http.server
import threading
from typing import Any


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv: Any = self.server
        status, headers = srv.answers.pop(0) if srv.answers else (srv.default_status, {})
        with srv.lock:
            srv.requests.append((self.path, dict(self.headers), body))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST  # noqa: N815 - a followed redirect would arrive as GET

    def log_message(self, *a: Any) -> None:
        pass


class Receiver:
    def __init__(self, default_status: int = 200) -> None:
        self.srv: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.srv.answers, self.srv.requests, self.srv.lock = [], [], threading.Lock()
        self.srv.default_status = default_status
        self._t = threading.Thread(target=self.srv.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.srv.shutdown()
        self.srv.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.srv.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, dict[str, str], bytes]]:
        with self.srv.lock:
            return list(self.srv.requests)

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.srv.answers.append((status, headers or {}))
