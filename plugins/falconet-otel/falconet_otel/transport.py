"""Sending encoded OTLP requests: HTTP/protobuf (``http.client``) or gRPC (raw bytes over a grpcio
channel, no per-message protobuf objects). Each ``send`` retries retryable failures with
exponential backoff, but never past ``timeout`` seconds: a dead collector costs one bounded wait
per batch, and the caller counts the batch as failed.
"""

from __future__ import annotations

import gzip
import http.client
import os
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from falconet_otel.config import SignalTarget

#: the OTLP service methods (opentelemetry-proto collector/*/v1/*_service.proto)
GRPC_METHODS = {
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}
#: OTLP/HTTP: retry these statuses (specification, "Retryable Response Codes")
_HTTP_RETRY = {429, 502, 503, 504}
_USER_AGENT = "falconet-otel"


class ExportError(Exception):
    """The batch could not be delivered (message says why)."""


def _backoff(attempt: int) -> float:
    return min(0.05 * (2 ** attempt), 1.0) * (0.5 + random.random() / 2)


def _send_with_retry(attempt_once: Callable[[float], str | None], timeout: float) -> None:
    """Call ``attempt_once(seconds_left)`` until it returns None (delivered), backing off between
    tries. It returns why a retryable try failed, or raises ExportError for a final failure. Gives
    up, with the last reason, when the next pause would pass ``timeout``."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ExportError("timed out")
        why = attempt_once(left)
        if why is None:
            return
        pause = _backoff(attempt)
        attempt += 1
        if time.monotonic() + pause >= deadline:
            raise ExportError(why)
        time.sleep(pause)


class HttpTransport:
    """POST to an OTLP/HTTP endpoint over a kept-alive connection."""

    def __init__(self, target: SignalTarget, compression: str = "none") -> None:
        u = urlparse(target.endpoint)
        self._https = u.scheme == "https"
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or (443 if self._https else 80)
        self._path = u.path or f"/v1/{target.signal}"
        self._timeout = target.timeout
        self._gzip = compression == "gzip"
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": _USER_AGENT,
                         **target.headers}
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, body: bytes) -> None:
        if self._gzip:
            body = gzip.compress(body, compresslevel=5)

        def post(left: float) -> str | None:
            try:
                conn = self._connection(left)
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                return f"{type(e).__name__}: {e}"
            if 200 <= resp.status < 300:
                return None
            why = f"HTTP {resp.status}: {payload[:200]!r}"
            if resp.status not in _HTTP_RETRY:
                raise ExportError(why)
            return why

        _send_with_retry(post, self._timeout)

    def close(self) -> None:
        self._drop_connection()


class GrpcTransport:
    """Unary ``Export`` calls with pre-encoded request bytes."""

    _RETRY = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED")

    def __init__(self, target: SignalTarget, compression: str = "none") -> None:
        # grpc's C core logs connection churn (GOAWAY on a collector restart) at INFO to stderr
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        import grpc  # noqa: PLC0415 - only when gRPC is configured

        self._grpc = grpc
        opts = [("grpc.primary_user_agent", _USER_AGENT)]
        if target.insecure:
            self._channel = grpc.insecure_channel(target.endpoint, options=opts)
        else:
            self._channel = grpc.secure_channel(target.endpoint, grpc.ssl_channel_credentials(),
                                                options=opts)
        # requests are pre-encoded bytes, responses left undecoded (no (de)serializers)
        self._call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = \
            self._channel.unary_unary(GRPC_METHODS[target.signal])
        self._metadata = tuple(target.headers.items()) or None
        self._timeout = target.timeout
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None

    def send(self, body: bytes) -> None:
        def export(left: float) -> str | None:
            try:
                self._call(body, timeout=left, metadata=self._metadata,
                           compression=self._compression)
            except self._grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                name = getattr(code, "name", str(code))
                why = f"gRPC {name}: {e.details() if hasattr(e, 'details') else e}"
                if name not in self._RETRY:
                    raise ExportError(why) from None
                return why
            return None

        _send_with_retry(export, self._timeout)

    def close(self) -> None:
        self._channel.close()


def make_transport(target: SignalTarget, compression: str = "none") -> Any:
    if target.protocol == "grpc":
        return GrpcTransport(target, compression)
    return HttpTransport(target, compression)
