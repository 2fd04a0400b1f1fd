"""Escalation relay: OTLP/HTTP JSON log records in, Alertmanager alerts out (stdlib only).

The collector's routing connector sends Falconet alerts of priority Critical or worse to an
``otlp_http`` exporter with ``encoding: json`` pointed here (otel-collector/config.yaml,
``otlp_http/escalation``). Each log record becomes one Alertmanager alert
(``alertname=FalconetEscalation``), within a second of the event, with the workload in its labels
and the trace id in its annotations, so the on-call person lands on the right trace.

It also serves as the example notification receiver of the stack: ``POST /alertmanager`` and
``POST /grafana`` (Alertmanager's and Grafana's webhook payloads) are printed, one line per alert.

    python alert_relay.py --listen 0.0.0.0:4319 --alertmanager http://alertmanager:9093

Endpoints: ``POST /v1/logs`` (OTLP/JSON), ``POST /alertmanager``, ``POST /grafana``, ``GET /healthz``.
If Alertmanager cannot be reached, ``/v1/logs`` answers 503 so the collector retries (its
``retry_on_failure``); nothing is dropped silently.

Hardening (whoever reaches the port can raise alerts, so): listens on 127.0.0.1 unless told
otherwise; with a bearer token (``ALERT_RELAY_TOKEN``, or a file named by ``--token-file`` /
``ALERT_RELAY_TOKEN_FILE``) every POST must carry ``Authorization: Bearer <token>`` (compared in
constant time, never logged, checked before the body is read); every body is bounded by MAX_BODY
whatever its framing (Content-Length, chunked) or compression; every malformed request gets a
short JSON error (400, 401, 411, 413, 415), never a traceback or a dropped connection; a client
that stalls is cut off after READ_TIMEOUT seconds.
"""

from __future__ import annotations

import argparse
import gzip
import hmac
import io
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: bodies larger than this are refused (413): a collector batch of alerts is far smaller
MAX_BODY = 8 * 1024 * 1024
#: seconds a client may take between two reads of its request before it is cut off
READ_TIMEOUT = 30.0
#: longest chunk-size line of a chunked body (hex size plus extensions)
MAX_CHUNK_LINE = 1024
#: error messages quote at most this much of what caused them
MAX_ERROR_TEXT = 200
TOKEN_ENV = "ALERT_RELAY_TOKEN"
TOKEN_FILE_ENV = "ALERT_RELAY_TOKEN_FILE"
#: OTLP attribute -> Alertmanager label (label names must match [a-zA-Z_][a-zA-Z0-9_]*)
LABELS = {
    "security_rule.name": "rule",
    "falco.source": "source",
    "host.name": "host",
    "k8s.node.name": "node",
    "k8s.namespace.name": "namespace",
    "k8s.pod.name": "pod",
    "container.name": "container",
    "container.id": "container_id",
}
# C0 (but tab), DEL and C1 controls, line/paragraph separators, bidi controls, lone surrogates
# (JSON "\udc80" decodes to one; it cannot be printed as UTF-8)
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), *range(0x7F, 0xA0)] if c != 9}
_CONTROL |= {c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *range(0x202A, 0x202F),
                                          *range(0x2066, 0x206A), *range(0xD800, 0xE000)]}


def clean(text: Any) -> str:
    """Control characters escaped: these strings end up in terminals and chat messages."""
    return str(text).translate(_CONTROL)


class BadRequest(ValueError):
    """A request the relay refuses: ``status`` and a short message for the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def short(e: BaseException | str) -> str:
    """An error message fit for a response or a log line: escaped, bounded."""
    text = clean(e)
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def any_value(v: dict[str, Any]) -> Any:
    """The Python value of an OTLP/JSON ``AnyValue``."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])           # int64 is a JSON string in OTLP/JSON
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: any_value(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])}
    return None


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: any_value(kv.get("value", {})) for kv in items or []}


def _iso(ns: Any) -> str:
    """RFC 3339 time of ``timeUnixNano``; now when it is missing or out of range (a bad
    timestamp must not lose the alert)."""
    try:
        return datetime.fromtimestamp(int(ns) / 1e9, UTC).isoformat().replace("+00:00", "Z") \
            if int(ns) > 0 else _now()
    except (TypeError, ValueError, OverflowError, OSError):
        return _now()


def _now() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat().replace("+00:00", "Z")


def otlp_to_alerts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """OTLP/JSON ``ExportLogsServiceRequest`` -> Alertmanager API v2 alerts (one per record)."""
    alerts = []
    for rl in payload.get("resourceLogs", []):
        res = attributes(rl.get("resource", {}).get("attributes"))
        for sl in rl.get("scopeLogs", []):
            for rec in sl.get("logRecords", []):
                attrs = {**res, **attributes(rec.get("attributes"))}
                labels = {"alertname": "FalconetEscalation", "severity": "critical",
                          "priority": clean(rec.get("severityText") or attrs.get("falco.priority")
                                            or "unknown")}
                for key, label in LABELS.items():
                    if attrs.get(key) not in (None, ""):
                        labels[label] = clean(attrs[key])
                body = any_value(rec.get("body", {})) if rec.get("body") else ""
                annotations = {"summary": clean(body)}
                if rec.get("traceId"):
                    annotations["trace_id"] = clean(rec["traceId"])
                if attrs.get("security_rule.description"):
                    annotations["description"] = clean(attrs["security_rule.description"])
                alerts.append({"labels": labels, "annotations": annotations,
                               "startsAt": _iso(rec.get("timeUnixNano"))})
    return alerts


def decode_body(body: bytes, encoding: str) -> bytes:
    """``body`` decompressed per its Content-Encoding (gzip, deflate or identity), refusing more
    than MAX_BODY bytes of output without ever inflating more than that (no decompression bombs).
    Raises ValueError, OSError, EOFError or zlib.error for bad input."""
    if encoding == "identity":
        return body
    if encoding == "gzip":
        data = gzip.GzipFile(fileobj=io.BytesIO(body)).read(MAX_BODY + 1)
    elif encoding == "deflate":
        # max_length bounds the output (zlib.decompress's bufsize is only a starting size)
        inflate = zlib.decompressobj()
        data = inflate.decompress(body, MAX_BODY + 1)
        if not inflate.eof and len(data) <= MAX_BODY:
            raise ValueError("truncated deflate body")
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)")
    if len(data) > MAX_BODY:
        raise ValueError(f"decompressed body is larger than {MAX_BODY} bytes")
    return data


class Relay:
    """Forwards alerts to Alertmanager and counts what happened."""

    def __init__(self, alertmanager: str, timeout: float = 5.0) -> None:
        self.url = alertmanager.rstrip("/") + "/api/v2/alerts"
        self.timeout = timeout
        self.lock = threading.Lock()
        self.counts = {"received": 0, "forwarded": 0, "failed": 0, "notifications": 0}

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def forward(self, alerts: list[dict[str, Any]]) -> None:
        """POST to Alertmanager; raises OSError (urllib errors included) on failure."""
        req = urllib.request.Request(self.url, data=json.dumps(alerts).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - configured URL
            resp.read()


def read_chunked(rfile: io.BufferedIOBase, limit: int | None = None) -> bytes:
    """A ``Transfer-Encoding: chunked`` body, refused (413) as soon as it exceeds ``limit`` and
    never buffered beyond it; malformed framing is a 400."""
    limit = MAX_BODY if limit is None else limit
    out = bytearray()
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise BadRequest(400, "malformed chunked body (chunk size line)")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or \
                any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise BadRequest(400, "malformed chunked body (chunk size)")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(out) + size > limit:
            raise BadRequest(413, f"body is larger than {limit} bytes")
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequest(400, "malformed chunked body (truncated chunk)")
        out += chunk
    while True:                                   # trailer fields, up to the empty line
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return bytes(out)
        if not line or len(line) > MAX_CHUNK_LINE:
            raise BadRequest(400, "malformed chunked body (trailer)")


def content_length(values: list[str]) -> int | None:
    """The request's Content-Length (``None`` when absent); 400 when it is not one
    non-negative decimal number (a negative one once made ``read(-1)`` read until EOF)."""
    if not values:
        return None
    if len(set(v.strip() for v in values)) != 1 or not values[0].strip().isdigit() \
            or not values[0].strip().isascii():
        raise BadRequest(400, "invalid Content-Length")
    return int(values[0].strip())


def authorized(header: str | None, token: bytes | None) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (no token: always)."""
    if token is None:
        return True
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # http.server decodes header bytes as Latin-1: encoding back gives the bytes sent exactly
    return hmac.compare_digest(given.strip().encode("latin-1", "replace"), token)


def load_token(token_file: str | None, environ: dict[str, str] | os._Environ[str]) -> bytes | None:
    """The bearer token: from ``token_file`` (or ``$ALERT_RELAY_TOKEN_FILE``), else from
    ``$ALERT_RELAY_TOKEN``; ``None`` (no authentication) when neither is set or the variable is
    empty. An unreadable or empty file is an error (``ValueError``): a typo must not switch
    authentication off."""
    path = token_file or environ.get(TOKEN_FILE_ENV)
    if path:
        try:
            with open(path, "rb") as f:
                token = f.read(4096).strip()
        except OSError as e:
            raise ValueError(f"cannot read the token file {path}: {e.strerror}") from None
        if not token:
            raise ValueError(f"the token file {path} is empty")
        return token
    token_text = environ.get(TOKEN_ENV, "").strip()
    return token_text.encode() if token_text else None


def make_handler(relay: Relay, token: bytes | None = None,
                 read_timeout: float = READ_TIMEOUT) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "falconet-alert-relay"
        # a client that stops sending mid-request is cut off (socket timeout), never a hung thread
        timeout = read_timeout

        def log_message(self, fmt: str, *args: Any) -> None:   # one line per request is noise
            pass

        def send_error(self, code: int, message: str | None = None,
                       explain: str | None = None) -> None:
            """http.server's own errors (bad request line, header too long...) as short JSON."""
            self.close_connection = True
            try:
                self._reply(code, {"error": short(message or self.responses.get(code, ("",))[0])})
            except OSError:
                pass

        def _reply(self, code: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _raw_body(self) -> bytes:
            """The body, bounded by MAX_BODY whatever its framing."""
            te = (self.headers.get("Transfer-Encoding") or "").strip().lower()
            length = content_length(self.headers.get_all("Content-Length") or [])
            if te:
                if te != "chunked" or length is not None:
                    raise BadRequest(400, f"unsupported Transfer-Encoding {te[:40]!r}"
                                     if te != "chunked" else
                                     "both Transfer-Encoding and Content-Length")
                self.body_state = "broken"      # until the last chunk is read
                body = read_chunked(self.rfile)
                self.body_state = "read"
                return body
            if length is None:
                raise BadRequest(411, "Content-Length (or chunked encoding) required")
            if length > MAX_BODY:
                raise BadRequest(413, f"body of {length} bytes is larger than {MAX_BODY}")
            body = self.rfile.read(length)
            self.body_state = "read" if len(body) == length else "broken"
            if len(body) != length:
                raise BadRequest(400, "body shorter than its Content-Length")
            return body

        def _discard_body(self) -> None:
            """After an early refusal (401, 415, 413...): read and drop a body of known, bounded
            length so the client reads the answer (closing on unread data would reset the
            connection under it); anything else closes the connection."""
            self.close_connection = self.body_state != "read"
            if self.body_state != "unread":
                return
            try:
                length = content_length(self.headers.get_all("Content-Length") or [])
            except BadRequest:
                return
            if length is not None and length <= MAX_BODY and not self.headers.get("Transfer-Encoding"):
                self.rfile.read(length)
                self.close_connection = False

        def _json_body(self) -> Any:
            body = self._raw_body()
            # the collector's otlp_http exporter compresses with gzip by default
            encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
            try:
                data = decode_body(body, encoding)
            except ValueError as e:
                raise BadRequest(413 if "larger than" in str(e) else 400, short(e)) from None
            except (OSError, EOFError, zlib.error) as e:
                raise BadRequest(400, f"bad {encoding} body: {short(e)}") from None
            try:
                return json.loads(data or b"{}")
            except RecursionError:
                raise BadRequest(400, "bad JSON body: nested too deeply") from None
            except ValueError as e:                # UnicodeDecodeError included
                raise BadRequest(400, f"bad JSON body: {short(e)}") from None

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path == "/healthz":
                with relay.lock:
                    self._reply(200, {"status": "ok", **relay.counts})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            self.body_state = "unread"          # unread | read | broken (framing lost)
            try:
                self._post()
            except BadRequest as e:
                try:
                    self._discard_body()
                except OSError:                       # stalled or gone: answer and close
                    self.close_connection = True
                self._reply(e.status, {"error": str(e)},
                            {"WWW-Authenticate": "Bearer"} if e.status == 401 else None)
            except (TimeoutError, ConnectionError):
                self.close_connection = True          # the client is gone or stalled
            except Exception as e:  # noqa: BLE001 - one bad request never kills the relay
                self.close_connection = True
                print(f"alert-relay: internal error on {short(self.path)}: "
                      f"{type(e).__name__}: {short(e)}", file=sys.stderr, flush=True)
                self._reply(500, {"error": "internal error"})

        def _post(self) -> None:
            # authentication first: nobody unauthenticated makes the relay read or inflate a body
            if not authorized(self.headers.get("Authorization"), token):
                raise BadRequest(401, "missing or wrong bearer token")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/json":
                raise BadRequest(415, f"expected application/json (OTLP/JSON), got {short(ctype)!r}; "
                                      "set encoding: json on the collector's otlp_http exporter")
            payload = self._json_body()
            if self.path == "/v1/logs":
                self._logs(payload)
            elif self.path in ("/alertmanager", "/grafana"):
                self._notification(self.path[1:], payload)
            else:
                self._reply(404, {"error": "not found"})

        def _logs(self, payload: Any) -> None:
            try:
                alerts = otlp_to_alerts(payload if isinstance(payload, dict) else {})
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError,
                    RecursionError) as e:
                raise BadRequest(400, f"not an OTLP/JSON logs request: {type(e).__name__}: "
                                      f"{short(e)}") from None
            relay.count("received", len(alerts))
            if alerts:
                try:
                    relay.forward(alerts)
                except OSError as e:
                    relay.count("failed", len(alerts))
                    print(f"alert-relay: Alertmanager {relay.url} failed: {clean(e)}; "
                          f"the collector will retry {len(alerts)} alert(s)", file=sys.stderr, flush=True)
                    self._reply(503, {"error": "alertmanager unavailable"})
                    return
                relay.count("forwarded", len(alerts))
                for a in alerts:
                    print(f"alert-relay: escalated {a['labels'].get('priority')} "
                          f"{a['labels'].get('rule', '?')}: {a['annotations']['summary']}", flush=True)
            self._reply(200, {})          # ExportLogsServiceResponse, JSON: full success

        def _notification(self, sender: str, payload: Any) -> None:
            items = payload.get("alerts", []) if isinstance(payload, dict) else []
            if not isinstance(items, list) or not all(isinstance(a, dict) for a in items):
                raise BadRequest(400, f"not a {sender} webhook payload: alerts must be a list "
                                      "of objects")
            relay.count("notifications", len(items))
            for a in items:
                labels = a.get("labels") if isinstance(a.get("labels"), dict) else {}
                annotations = a.get("annotations") if isinstance(a.get("annotations"), dict) else {}
                print(f"notification from {sender}: {clean(a.get('status', ''))} "
                      f"{clean(labels.get('alertname', ''))} {clean(annotations.get('summary', ''))}",
                      flush=True)
            self._reply(200, {})

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:4319", help="host:port (default 127.0.0.1:4319)")
    p.add_argument("--alertmanager", default="http://127.0.0.1:9093", help="Alertmanager base URL")
    p.add_argument("--token-file", default=None,
                   help=f"file holding the bearer token every POST must carry (default: "
                        f"${TOKEN_FILE_ENV}, else the token in ${TOKEN_ENV}; none: no authentication)")
    p.add_argument("--read-timeout", type=float, default=READ_TIMEOUT,
                   help=f"seconds a client may stall mid-request (default {READ_TIMEOUT:g})")
    args = p.parse_args(argv)
    try:
        token = load_token(args.token_file, os.environ)
    except ValueError as e:
        print(f"alert-relay: {e}", file=sys.stderr)
        return 1
    host, _, port = args.listen.rpartition(":")
    host = host or "127.0.0.1"
    try:
        handler = make_handler(Relay(args.alertmanager), token, args.read_timeout)
        server = ThreadingHTTPServer((host, int(port)), handler)
    except (OSError, ValueError) as e:
        print(f"alert-relay: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    auth = "bearer token required" if token else "no authentication"
    print(f"alert-relay: listening on {args.listen} ({auth}), forwarding to {args.alertmanager}",
          flush=True)
    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        print(f"alert-relay: warning: {host} is not loopback and no token is set: whoever reaches "
              f"the port can raise alerts (set {TOKEN_ENV} or --token-file)", file=sys.stderr,
              flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
