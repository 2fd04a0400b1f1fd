"""A STAND-IN for an OpenAI-compatible chat completions server (no model behind it): it answers
``POST /v1/chat/completions`` with scripted replies, in order, and keeps every request, so tests
can check what the real ``openai`` client sent. No real model runs in CI."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from falconet.capture import CaptureWriter
from falconet.events import Event

T0 = 1_764_000_000_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_capture(path: str, comm: str, events: list[tuple[str, dict, int]], *,
                    pid: int = 100) -> str:
    """Evidence for the tests: process ``comm`` is started, then makes ``events``."""
    with CaptureWriter(path, host="caphost", kernel="6.18.0", start_ns=T0) as w:
        w.write_event(Event("syscall", "procfork", T0 + 1, 99, 99,
                            {"child_tid": pid, "child_pid": pid, "parent_tid": 99,
                             "parent_pid": 99}))
        w.write_event(Event("syscall", "execve", T0 + 2, pid, pid,
                            {"filename": f"/usr/bin/{comm}", "argv": [comm], "cwd": "/tmp",
                             "exepath": f"/usr/bin/{comm}", "uid": 0, "gid": 0, "comm": comm}, 0))
        for i, (t, args, res) in enumerate(events):
            w.write_event(Event("syscall", t, T0 + 10 + i, pid, pid, args, res))
    return path


def unlinks(prefix: str, n: int) -> list[tuple[str, dict, int]]:
    return [("unlinkat", {"dirfd": -100, "name": f"{prefix}{i}", "flags": 0}, 0) for i in range(n)]


class StandInChatServer:
    def __init__(self, replies: list[str], port: int) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.requests.append({"path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization", "")})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                i = min(len(outer.requests) - 1, len(outer.replies) - 1)
                data = json.dumps({
                    "id": f"standin-{len(outer.requests)}", "object": "chat.completion",
                    "created": 0, "model": body.get("model", "standin"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant",
                                             "content": outer.replies[i]}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/v1"
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StandInChatServer:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
