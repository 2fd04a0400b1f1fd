"""The escalation path with real parts: OTLP/JSON log records of the falconet-otel plugin (as the
collector's ``otlp_http/escalation`` exporter sends them) → otel-collector/alert_relay.py → a real
Alertmanager (Debian's prometheus-alertmanager) → its webhook notification back to the relay."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_support import REPO, http_json, wait_for
from conftest import free_port, need_binary, stop_process
from otel_records import Exported, export_sample_alerts

RELAY = REPO / "otel-collector" / "alert_relay.py"


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     env=None if env is None else {**os.environ, **env})

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def exported() -> Exported:
    return export_sample_alerts()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Alertmanager whose only receiver is the relay's /alertmanager webhook, and the relay."""
    am_bin = need_binary("prometheus-alertmanager")
    am_port, relay_port = free_port(), free_port()
    relay_url = f"http://127.0.0.1:{relay_port}"
    cfg = {"route": {"receiver": "relay", "group_by": ["alertname", "rule"], "group_wait": "0s",
                     "group_interval": "1s", "repeat_interval": "1h"},
           "receivers": [{"name": "relay", "webhook_configs": [{"url": f"{relay_url}/alertmanager"}]}]}
    (tmp_path / "am.yml").write_text(yaml.safe_dump(cfg))
    am = Proc([am_bin, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], tmp_path / "am.log")
    relay = Proc([sys.executable, str(RELAY), "--listen", f"127.0.0.1:{relay_port}",
                  "--alertmanager", f"http://127.0.0.1:{am_port}"], tmp_path / "relay.log")
    try:
        am_url = f"http://127.0.0.1:{am_port}"
        wait_for(lambda: http_json(f"{am_url}/-/ready")[0] == 200, 20, "alertmanager ready")
        wait_for(lambda: http_json(f"{relay_url}/healthz")[0] == 200, 20, "relay ready")
        yield {"am": am_url, "relay": relay_url, "relay_proc": relay, "am_proc": am}
    finally:
        relay.stop()
        am.stop()


def test_critical_records_become_alertmanager_alerts(stack: dict[str, Any], exported: Exported) -> None:
    payload = exported.logs_request_json()
    records = [r for rl in payload["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    critical = [r for r in records if r["severityNumber"] >= 18]
    assert critical, "the sample has a Critical alert"
    # the collector only routes Critical-or-worse records here; send exactly those
    only_critical = {"resourceLogs": [{**rl, "scopeLogs": [{**sl, "logRecords": [
        r for r in sl["logRecords"] if r["severityNumber"] >= 18]} for sl in rl["scopeLogs"]]}
        for rl in payload["resourceLogs"]]}
    code, body = http_json(stack["relay"] + "/v1/logs", only_critical)
    assert (code, body) == (200, {})

    def firing() -> list[Any]:
        _, alerts = http_json(stack["am"] + "/api/v2/alerts")
        return [a for a in alerts if a["labels"].get("alertname") == "FalconetEscalation"]
    [alert] = wait_for(firing, 15, "the escalation alert in Alertmanager")
    labels = alert["labels"]
    assert labels["rule"] == "Read Shadow File" and labels["priority"] == "Critical"
    assert labels["namespace"] == "shop" and labels["pod"] == "web-0" and labels["container"] == "web"
    assert labels["severity"] == "critical" and labels["host"] == "bundle-host"
    assert alert["annotations"]["trace_id"] == critical[0]["traceId"] and len(critical[0]["traceId"]) == 32
    assert "Shadow file opened" in alert["annotations"]["summary"]
    # Alertmanager notifies its webhook receiver: the relay prints the notification
    wait_for(lambda: http_json(stack["relay"] + "/healthz")[1]["notifications"] >= 1, 15,
             "Alertmanager's webhook notification at the relay")
    assert "notification from alertmanager: firing FalconetEscalation" in stack["relay_proc"].output()


def test_gzip_bodies_as_the_collector_sends_them(stack: dict[str, Any], exported: Exported) -> None:
    """otlp_http compresses with gzip by default: the relay must accept it."""
    body = gzip.compress(json.dumps(exported.logs_request_json()).encode())
    req = urllib.request.Request(stack["relay"] + "/v1/logs", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    _, health = http_json(stack["relay"] + "/healthz")
    assert health["forwarded"] == 3 and health["failed"] == 0


def test_alertmanager_down_means_503_so_the_collector_retries(stack: dict[str, Any],
                                                               exported: Exported) -> None:
    stack["am_proc"].stop()
    code, _ = http_json(stack["relay"] + "/v1/logs", exported.logs_request_json())
    assert code == 503
    _, health = http_json(stack["relay"] + "/healthz")
    assert health["failed"] >= 1 and health["forwarded"] == 0


def test_bad_requests_get_clear_errors(stack: dict[str, Any]) -> None:
    code, body = http_json(stack["relay"] + "/v1/logs", b"\x0a\x00", content_type="application/x-protobuf")
    assert code == 415 and "encoding: json" in body["error"]
    code, body = http_json(stack["relay"] + "/v1/logs", b"{not json")
    assert code == 400 and "bad JSON" in body["error"]
    code, _ = http_json(stack["relay"] + "/v1/logs", {"resourceLogs": []})
    assert code == 200


def _import_relay() -> Any:
    sys.path.insert(0, str(RELAY.parent))
    try:
        import alert_relay  # noqa: PLC0415
    finally:
        sys.path.remove(str(RELAY.parent))
    return alert_relay


def test_control_characters_are_escaped() -> None:
    alert_relay = _import_relay()
    alerts = alert_relay.otlp_to_alerts({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "severityText": "Critical", "body": {"stringValue": "evil\x1b[2Jname\nforged line"},
        "attributes": [{"key": "security_rule.name", "value": {"stringValue": "r\x07"}}]}]}]}]})
    assert alerts[0]["annotations"]["summary"] == "evil\\x1b[2Jname\\x0aforged line"
    assert alerts[0]["labels"]["rule"] == "r\\x07"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_bounded_without_inflating_a_bomb(encoding: str) -> None:
    """A small body that inflates to 64 MiB is refused without inflating it all (only a bit more
    than MAX_BODY, 8 MiB, plus the decompressor's buffers): zlib.decompress(bufsize=...) would
    have built all 64 MiB first."""
    import tracemalloc  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    alert_relay = _import_relay()
    doc = json.dumps({"resourceLogs": []}).encode()
    pack = gzip.compress if encoding == "gzip" else zlib.compress
    assert alert_relay.decode_body(pack(doc), encoding) == doc
    assert alert_relay.decode_body(doc, "identity") == doc
    with pytest.raises(ValueError, match="unsupported Content-Encoding 'br'"):
        alert_relay.decode_body(doc, "br")
    inflated = 64 * 1024 * 1024
    bomb = pack(bytes(inflated))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="larger than"):
            alert_relay.decode_body(bomb, encoding)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < inflated // 2


def test_truncated_deflate_body_is_refused() -> None:
    import zlib  # noqa: PLC0415

    with pytest.raises(ValueError, match="truncated"):
        _import_relay().decode_body(zlib.compress(b'{"resourceLogs": []}')[:-6], "deflate")


# ------------------------------------------------------------------ hardening (issue 11, finding 9)

TOKEN = "s3cret-relay-token-9f2c"


class RelayOnly:
    """The relay alone (its Alertmanager is a closed port: valid alerts get 503), as a process."""

    def __init__(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc([sys.executable, str(RELAY), "--listen", f"127.0.0.1:{self.port}",
                          "--alertmanager", f"http://127.0.0.1:{free_port()}", *extra],
                         tmp_path / "relay.log", env)
        wait_for(lambda: _healthz(self.url), 20, "relay ready")

    def raw(self, request: bytes, *, half_close: bool = True, timeout: float = 20) -> tuple[int, Any]:
        """Send raw bytes, read the whole answer: (status, JSON body). A dropped connection or a
        non-JSON answer fails the test."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(request)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data, "the relay dropped the connection without an answer"
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert b"Content-Type: application/json" in head, head
        return status, json.loads(body)

    def stop(self) -> None:
        self.proc.stop()


def _healthz(url: str) -> bool:
    try:
        return http_json(url + "/healthz")[0] == 200
    except OSError:
        return False


def _post(path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: relay", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(data: bytes, size: int = 65536) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                   for i in range(0, len(data), size))
    return out + b"0\r\n\r\n"


JSON = {"Content-Type": "application/json"}


@pytest.fixture
def relay_only(tmp_path: Path) -> Iterator[RelayOnly]:
    r = RelayOnly(tmp_path)
    try:
        yield r
    finally:
        r.stop()


def test_body_limit_holds_for_every_framing(relay_only: RelayOnly) -> None:
    """Missing, negative or bogus Content-Length, chunked and compressed bodies: all bounded.
    (The old relay read a missing length as 0, ignored chunked bodies, and read(-1) until EOF.)"""
    empty = b'{"resourceLogs": []}'
    big = b'{"resourceLogs": [], "pad": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    r = relay_only.raw
    assert r(_post("/v1/logs", JSON, empty))[0] == 411
    for bad in ("-1", "+5", "1e3", "0x10", "5, 6"):
        code, body = r(_post("/v1/logs", {**JSON, "Content-Length": bad}, empty))
        assert (code, body["error"]) == (400, "invalid Content-Length"), bad
    code, body = r(_post("/v1/logs", {**JSON, "Content-Length": str(len(big))}), half_close=False)
    assert code == 413 and "larger than" in body["error"]
    code, body = r(_post("/v1/logs", {**JSON, "Transfer-Encoding": "chunked"}, _chunked(big)))
    assert code == 413 and "larger than" in body["error"]
    for broken in (b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{}", b"ffffffffffffffffffff\r\n"):
        code, body = r(_post("/v1/logs", {**JSON, "Transfer-Encoding": "chunked"}, broken))
        assert code == 400 and "chunked" in body["error"], broken
    # a legitimate chunked body (Go's client sends one when it does not know the length), gzip
    code, _ = r(_post("/v1/logs", {**JSON, "Transfer-Encoding": "chunked",
                                   "Content-Encoding": "gzip"}, _chunked(gzip.compress(empty), 7)))
    assert code == 200
    bomb = gzip.compress(b"[" + b" " * (16 * 1024 * 1024) + b"]")
    code, body = r(_post("/v1/logs", {**JSON, "Content-Encoding": "gzip", "Transfer-Encoding":
                                      "chunked"}, _chunked(bomb)))
    assert code == 413
    assert _healthz(relay_only.url)


@pytest.mark.parametrize("path,payload", [
    ("/v1/logs", b"[" * 100_000 + b"]" * 100_000),                     # nesting: RecursionError
    ("/v1/logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": 5}]}]}]}'),
    ("/v1/logs", b'{"resourceLogs": 7}'),
    ("/v1/logs", b'{"resourceLogs": [{"resource": {"attributes": [{"value": {}}]}}]}'),
    ("/v1/logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": '
                 b'[{"key": "k", "value": {"intValue": "' + b"9" * 5000 + b'"}}]}]}]}]}'),
    ("/v1/logs", b"\xff\xfe{}"),
    ("/alertmanager", b'{"alerts": 5}'),
    ("/alertmanager", b'{"alerts": ["x", 1]}'),
    ("/grafana", b'{"alerts": [{"labels": [], "annotations": "x"}]}'),
], ids=["deep", "body-int", "resourcelogs-int", "no-key", "huge-int", "not-utf8", "alerts-int",
        "alerts-str", "labels-list"])
def test_malformed_payloads_get_a_short_json_400(relay_only: RelayOnly, path: str,
                                                 payload: bytes) -> None:
    code, body = relay_only.raw(_post(path, {**JSON, "Content-Length": str(len(payload))}, payload))
    if path == "/grafana":           # tolerated: wrong-typed labels/annotations are left out
        assert code == 200
    else:
        assert code == 400 and set(body) == {"error"}
        assert len(body["error"]) < 300 and "Traceback" not in body["error"]
    assert "Traceback" not in relay_only.proc.output()
    assert _healthz(relay_only.url)


def test_a_stalled_client_is_cut_off(tmp_path: Path) -> None:
    relay = RelayOnly(tmp_path, "--read-timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
            s.sendall(_post("/v1/logs", {**JSON, "Content-Length": "100"}, b"{"))
            assert _healthz(relay.url)                # others are served meanwhile
            assert s.recv(65536) == b""               # closed by the relay after ~1 s
    finally:
        relay.stop()


def test_bearer_token_is_required_and_never_logged(tmp_path: Path) -> None:
    relay = RelayOnly(tmp_path, env={"ALERT_RELAY_TOKEN": TOKEN})
    try:
        empty = b'{"resourceLogs": []}'
        length = {"Content-Length": str(len(empty))}
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
            code, body = relay.raw(_post("/v1/logs", {**JSON, **length, **auth}, empty))
            assert code == 401 and "bearer token" in body["error"], auth
        # checked before the body is read or the content type is looked at
        code, _ = relay.raw(_post("/v1/logs", {"Content-Type": "text/plain",
                                               "Content-Length": str(len(empty))}, empty))
        assert code == 401
        code, _ = relay.raw(_post("/v1/logs", {**JSON, **length, "Authorization": f"Bearer {TOKEN}"},
                                  empty))
        assert code == 200
        code, _ = relay.raw(_post("/alertmanager", {**JSON, **length,
                                                    "Authorization": f"bearer {TOKEN}"}, empty))
        assert code == 200
        assert _healthz(relay.url)                    # liveness probes need no token
        out = relay.proc.output()
        assert "bearer token required" in out and TOKEN not in out
    finally:
        relay.stop()


def test_token_file_and_its_errors(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    relay = RelayOnly(tmp_path, "--token-file", str(f))
    try:
        empty = b'{"resourceLogs": []}'
        hdr = {**JSON, "Content-Length": str(len(empty))}
        assert relay.raw(_post("/v1/logs", hdr, empty))[0] == 401
        assert relay.raw(_post("/v1/logs", {**hdr, "Authorization": f"Bearer {TOKEN}"}, empty))[0] == 200
    finally:
        relay.stop()
    for bad, why in ((tmp_path / "missing", "cannot read the token file"),
                     (tmp_path / "empty", "is empty")):
        if bad.name == "empty":
            bad.write_text("\n")
        p = subprocess.run([sys.executable, str(RELAY), "--listen", f"127.0.0.1:{free_port()}",
                            "--token-file", str(bad)], capture_output=True, text=True, timeout=20)
        assert p.returncode == 1 and why in p.stderr and "Traceback" not in p.stderr


def test_unsafe_text_is_escaped_and_bad_timestamps_keep_the_alert() -> None:
    alert_relay = _import_relay()
    assert alert_relay.clean("a\x85b\u202ec\u2028d\udc80e\x9bf") == \
        "a\\x85b\\u202ec\\u2028d\\udc80e\\x9bf"
    for ts in ("9" * 30, "-5", "x", 10**30):
        [alert] = alert_relay.otlp_to_alerts({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": ts, "body": {"stringValue": "s"}}]}]}]})
        assert alert["startsAt"].endswith("Z")


def test_token_comparison_is_bytewise() -> None:
    """A non-ASCII token (UTF-8 bytes on the wire, read by http.server as Latin-1) matches;
    anything else, or another scheme, does not."""
    authorized = _import_relay().authorized
    token = "tökén-1".encode()
    assert authorized("Bearer " + token.decode("latin-1"), token)
    assert authorized("bearer  " + token.decode("latin-1") + " ", token)
    assert not authorized("Bearer tökén-1", token)            # not the bytes that were sent
    assert not authorized("Token " + token.decode("latin-1"), token)
    assert not authorized(None, token) and authorized(None, None)


def test_protocol_errors_are_short_json_too(relay_only: RelayOnly) -> None:
    """http.server's own refusals (unknown method, oversized header) answer JSON as well."""
    code, body = relay_only.raw(b"PUT /v1/logs HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert code == 501 and "PUT" in body["error"]
    code, body = relay_only.raw(b"POST /v1/logs HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")
    assert code == 431 and len(body["error"]) < 100
