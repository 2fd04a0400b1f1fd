"""Real HTTP receivers on 127.0.0.1 (free ports) for the ``slack`` and ``webhook`` actions:
each request is recorded (method, path, headers, raw body) and answered with a scripted status
(``200 ok`` like Slack's webhooks by default; a 302 to test that redirects are not followed)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from local_http import serve, shutdown


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    #: (status, body, extra headers) answered in turn; the last one repeats
    answers: list[tuple[int, bytes, dict[str, str]]] = field(
        default_factory=lambda: [(200, b"ok", {})])
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with rec._lock:
                    rec.requests.append(Received(self.command, self.path,
                                                 {k.lower(): v for k, v in self.headers.items()},
                                                 body))
                    i = min(len(rec.requests) - 1, len(rec.answers) - 1)
                    code, data, extra = rec.answers[i]
                self.send_response(code)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_POST = _answer  # noqa: N815 - http.server's names
            do_GET = _answer  # noqa: N815

        self._server = serve(Handler)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None
