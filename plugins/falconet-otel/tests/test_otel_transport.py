"""HttpTransport retry policy against a real local HTTP server: retryable statuses are retried with
backoff until delivered, final statuses fail at once, and a dead endpoint fails within the timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from falconet_otel.config import SignalTarget
from falconet_otel.transport import ExportError, HttpTransport


class _ScriptedServer:
    """Answers each POST with the next status of ``statuses`` (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                status = outer.statuses[min(len(outer.bodies), len(outer.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[int]], _ScriptedServer]]:
    servers: list[_ScriptedServer] = []

    def make(statuses: list[int]) -> _ScriptedServer:
        servers.append(_ScriptedServer(statuses))
        return servers[-1]

    yield make
    for s in servers:
        s.server.shutdown()
        s.server.server_close()


def _target(endpoint: str, timeout: float = 5.0) -> SignalTarget:
    return SignalTarget("logs", endpoint, "http", {}, timeout, True)


def test_retryable_statuses_are_retried_until_delivered(scripted) -> None:
    srv = scripted([503, 429, 200])
    HttpTransport(_target(srv.url)).send(b"batch")
    assert srv.bodies == [b"batch"] * 3


def test_final_status_fails_at_once(scripted) -> None:
    srv = scripted([400])
    with pytest.raises(ExportError, match="HTTP 400"):
        HttpTransport(_target(srv.url)).send(b"batch")
    assert len(srv.bodies) == 1


def test_retryable_status_gives_up_within_timeout(scripted) -> None:
    srv = scripted([503])
    t0 = time.monotonic()
    with pytest.raises(ExportError, match="HTTP 503"):
        HttpTransport(_target(srv.url, timeout=0.5)).send(b"batch")
    assert time.monotonic() - t0 < 1.5
    assert len(srv.bodies) >= 2


def test_dead_endpoint_fails_within_timeout() -> None:
    with socket.socket() as s:          # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ExportError, match="ConnectionRefusedError"):
        HttpTransport(_target(f"http://127.0.0.1:{port}/v1/logs", timeout=0.5)).send(b"batch")
    assert time.monotonic() - t0 < 1.5
