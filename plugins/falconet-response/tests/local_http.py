"""One way to run a test HTTP server on 127.0.0.1 (port 0: a free port) on a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return srv


def shutdown(srv: ThreadingHTTPServer | None) -> None:
    if srv is not None:
        srv.shutdown()
        srv.server_close()
