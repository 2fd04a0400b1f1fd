"""Real OTLP endpoints for tests and benchmarks, on 127.0.0.1.

- :class:`OtlpHttpReceiver`: ``http.server`` accepting ``POST /v1/logs`` and ``/v1/traces``, decoding
  ``ExportLogsServiceRequest`` / ``ExportTraceServiceRequest`` (opentelemetry-proto).
- :class:`OtlpGrpcReceiver`: a grpcio server implementing ``LogsService`` and ``TraceService`` from
  opentelemetry-proto's generated ``_grpc`` modules.

Both keep what they received as flattened :class:`Received` items and can be stopped and started
again on the same port (collector outage tests). ``wait_for`` polls a condition with a deadline.
The HTTP receiver also keeps each request's decompressed body (``bodies``: ``(path, bytes)``),
for tests that re-encode exactly what was sent (tests/bundle: OTLP/JSON for the relay).
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class Received:
    """One log record or span with its resource and scope, attributes decoded to Python values."""

    resource: dict[str, Any]
    scope: str
    record: Any                 # LogRecord or Span protobuf
    attributes: dict[str, Any]
    headers: dict[str, str]


class _Store:
    def __init__(self) -> None:
        self.logs: list[Received] = []
        self.spans: list[Received] = []
        self.requests = 0
        self.bodies: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()

    def add_logs(self, req: logs_service_pb2.ExportLogsServiceRequest, headers: dict[str, str]) -> None:
        items = [Received(attrs(rl.resource.attributes), sl.scope.name, lr, attrs(lr.attributes), headers)
                 for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
        with self._cond:
            self.logs.extend(items)
            self.requests += 1
            self._cond.notify_all()

    def add_spans(self, req: trace_service_pb2.ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        items = [Received(attrs(rs.resource.attributes), ss.scope.name, sp, attrs(sp.attributes), headers)
                 for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
        with self._cond:
            self.spans.extend(items)
            self.requests += 1
            self._cond.notify_all()

    def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        enc = (self.headers.get("Content-Encoding") or "").lower()
        if enc == "gzip":
            body = gzip.decompress(body)
        elif enc == "deflate":
            body = zlib.decompress(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        store = self.server.store
        store.bodies.append((self.path, body))
        if self.path == "/v1/logs":
            req = logs_service_pb2.ExportLogsServiceRequest()
            req.ParseFromString(body)
            store.add_logs(req, headers)
            out = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
        elif self.path == "/v1/traces":
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(body)
            store.add_spans(req, headers)
            out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    store: _Store


class OtlpHttpReceiver(_Store):
    """OTLP/HTTP (protobuf) receiver. ``endpoint`` is the base URL (``http://127.0.0.1:<port>``)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.port = port
        self._srv: _HttpServer | None = None

    def start(self) -> OtlpHttpReceiver:
        deadline = time.monotonic() + 10
        while True:             # a restart may find the port briefly busy
            try:
                srv = _HttpServer(("127.0.0.1", self.port), _HttpHandler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        srv.store = self
        self._srv = srv
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - generated API name
        self.store.add_logs(request, dict(context.invocation_metadata()))
        return logs_service_pb2.ExportLogsServiceResponse()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.store.add_spans(request, dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpGrpcReceiver(_Store):
    """OTLP/gRPC receiver. ``endpoint`` is ``http://127.0.0.1:<port>`` (plaintext)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.port = port
        self._srv: grpc.Server | None = None

    def start(self) -> OtlpGrpcReceiver:
        srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self), srv)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), srv)
        self.port = srv.add_insecure_port(f"127.0.0.1:{self.port}")
        if not self.port:
            raise OSError("gRPC receiver could not bind")
        srv.start()
        self._srv = srv
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.stop(grace=None).wait()
            self._srv = None
