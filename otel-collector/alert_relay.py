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
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
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
_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if c not in (9,)} | {127: "\\x7f"}


def clean(text: Any) -> str:
    """Control characters escaped: these strings end up in terminals and chat messages."""
    return str(text).translate(_CONTROL)


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
    try:
        t = int(ns) / 1e9
    except (TypeError, ValueError):
        t = 0
    if t <= 0:
        t = time.time()
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


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


def make_handler(relay: Relay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "falconet-alert-relay"

        def log_message(self, fmt: str, *args: Any) -> None:   # one line per request is noise
            pass

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _json_body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError(f"body of {length} bytes is larger than {MAX_BODY}")
            # the collector's otlp_http exporter compresses with gzip by default
            encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
            body = decode_body(self.rfile.read(length), encoding)
            return json.loads(body or b"{}")

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path == "/healthz":
                with relay.lock:
                    self._reply(200, {"status": "ok", **relay.counts})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/json":
                self._reply(415, {"error": f"expected application/json (OTLP/JSON), got {ctype!r}; "
                                           "set encoding: json on the collector's otlp_http exporter"})
                return
            try:
                payload = self._json_body()
            except (ValueError, UnicodeDecodeError, OSError, EOFError, zlib.error) as e:
                self._reply(400, {"error": f"bad JSON body: {e}"})
                return
            if self.path == "/v1/logs":
                self._logs(payload)
            elif self.path in ("/alertmanager", "/grafana"):
                self._notification(self.path[1:], payload)
            else:
                self._reply(404, {"error": "not found"})

        def _logs(self, payload: Any) -> None:
            try:
                alerts = otlp_to_alerts(payload if isinstance(payload, dict) else {})
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self._reply(400, {"error": f"not an OTLP/JSON logs request: {e}"})
                return
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
            relay.count("notifications", len(items))
            for a in items:
                labels = a.get("labels", {})
                summary = a.get("annotations", {}).get("summary", "")
                print(f"notification from {sender}: {clean(a.get('status', ''))} "
                      f"{clean(labels.get('alertname', ''))} {clean(summary)}", flush=True)
            self._reply(200, {})

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:4319", help="host:port (default 127.0.0.1:4319)")
    p.add_argument("--alertmanager", default="http://127.0.0.1:9093", help="Alertmanager base URL")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), make_handler(Relay(args.alertmanager)))
    except (OSError, ValueError) as e:
        print(f"alert-relay: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    print(f"alert-relay: listening on {args.listen}, forwarding to {args.alertmanager}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
