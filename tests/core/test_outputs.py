"""Alert formats (Falco text and JSON), the file output, and the webhook against a real local
HTTP server on 127.0.0.1 (retries, a failing endpoint, a stuck endpoint)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_fakes import FakeRuleset, evt
from falconet.alerts import Alert
from falconet.config import load_config
from falconet.outputs import builtin
from falconet.outputs.format import Formatter, escape_control, format_json, format_text, iso_time
from falconet.outputs.stream import FileSink, StreamSink
from falconet.outputs.webhook import WebhookError, WebhookSink
from falconet.pipeline import Pipeline
from falconet.priorities import Priority

TS = 1739178940_698757000   # 2025-02-10T09:15:40.698757000Z


def alert(output: str = "Sensitive file opened (file=/etc/shadow)", **kw) -> Alert:
    base = dict(rule="Read sensitive file", priority=Priority.WARNING, source="syscall",
                tags=["T1555", "filesystem"], output=output,
                output_fields={"fd.name": "/etc/shadow", "proc.pid": 42, "evt.time": TS},
                time_ns=TS, hostname="web-1")
    base.update(kw)
    return Alert(**base)


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_text_format_is_falcos(utc) -> None:
    assert format_text(alert()) == ("09:15:40.698757000: Warning Sensitive file opened "
                                    "(file=/etc/shadow)")
    assert format_text(alert(), iso=True).startswith("2025-02-10T09:15:40.698757000+0000: Warning ")


def test_text_escapes_control_characters() -> None:
    line = format_text(alert(output="file=/tmp/a\nFAKE: Critical pwned\x1b[31m\x7f\ttab"))
    assert "\n" not in line and "\x1b" not in line and "\x7f" not in line
    assert line.endswith("file=/tmp/a\\nFAKE: Critical pwned\\u001b[31m\\u007f\\ttab")
    assert escape_control("plain ünïcode") == "plain ünïcode"


def test_json_format_is_falcos(utc) -> None:
    line = format_json(alert(output="x\ny"))
    d = json.loads(line)
    assert list(d) == ["hostname", "output", "output_fields", "priority", "rule", "source", "tags",
                       "time"]
    assert d["time"] == "2025-02-10T09:15:40.698757000Z"
    assert d["priority"] == "Warning"
    # the one output policy: a JSON consumer shows the escape the text output shows
    assert d["output"] == "09:15:40.698757000: Warning x\\ny"
    assert d["output_fields"] == {"evt.time": TS, "fd.name": "/etc/shadow", "proc.pid": 42}
    assert d["tags"] == ["T1555", "filesystem"]
    assert "\n" not in line
    short = json.loads(format_json(alert(), include_output=False, include_tags=False))
    assert "output" not in short and "tags" not in short
    assert iso_time(5) == "1970-01-01T00:00:00.000000005Z"


def test_formatter_from_config() -> None:
    cfg = load_config(None, ["json_output=true", "json_include_tags_property=false"])
    d = json.loads(Formatter.from_config(cfg)(alert()))
    assert "tags" not in d and "output" in d


def test_builtin_sinks_follow_config(tmp_path: Path) -> None:
    cfg = load_config(None, ["outputs.stdout.min_priority=error", "outputs.file.enabled=true",
                             f"outputs.file.path={tmp_path / 'a.jsonl'}",
                             "outputs.webhook.enabled=true", "outputs.webhook.url=http://127.0.0.1:9/",
                             "outputs.webhook.queue_size=7"])

    class Ctx:
        config = cfg.data

    sinks = {s.name: s for s in builtin.falconet_alert_sinks(Ctx())}
    assert set(sinks) == {"stdout", "file", "webhook"}
    assert sinks["stdout"].min_priority is Priority.ERROR
    assert sinks["webhook"].queue_size == 7


def test_file_sink_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = FileSink("file", str(path), Formatter(json_output=True))
    p = Pipeline(FakeRuleset([("r", Priority.ERROR, lambda e: True)]), sinks=[sink])
    p.run([evt(), evt()])
    p.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["rule"] for x in lines] == ["r", "r"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_stream_sink_writes_lines(tmp_path: Path) -> None:
    import io
    buf = io.StringIO()
    s = StreamSink("stdout", Formatter(), stream=buf)
    s.send(alert())
    assert buf.getvalue().endswith("Warning Sensitive file opened (file=/etc/shadow)\n")


# ------------------------------------------------------------------------------------- webhook
class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers with the next status of ``server.statuses`` (200 when exhausted)."""

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        status = srv.statuses.pop(0) if srv.statuses else 200  # type: ignore[attr-defined]
        srv.requests.append((self.path, dict(self.headers), body, status))  # type: ignore[attr-defined]
        if srv.delay:  # type: ignore[attr-defined]
            time.sleep(srv.delay)  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    srv.statuses, srv.requests, srv.delay = [], [], 0  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/falco"


def test_webhook_posts_falco_json(receiver) -> None:
    sink = WebhookSink("webhook", url(receiver), Formatter(json_output=True),
                       headers={"X-Token": "t"})
    sink.send(alert())
    path, headers, body, _ = receiver.requests[0]
    assert path == "/falco"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Token"] == "t"
    d = json.loads(body)
    assert d["rule"] == "Read sensitive file" and d["priority"] == "Warning"


def test_webhook_retries_5xx_with_backoff_then_succeeds(receiver) -> None:
    receiver.statuses[:] = [503, 500]
    sink = WebhookSink("webhook", url(receiver), Formatter(json_output=True), retries=3,
                       backoff=0.01)
    sink.send(alert())
    assert [r[3] for r in receiver.requests] == [503, 500, 200]
    assert sink.attempts == 3


def test_webhook_does_not_retry_4xx(receiver) -> None:
    receiver.statuses[:] = [400]
    sink = WebhookSink("webhook", url(receiver), Formatter(json_output=True), retries=3,
                       backoff=0.01)
    with pytest.raises(WebhookError, match="HTTP 400"):
        sink.send(alert())
    assert len(receiver.requests) == 1


def test_failing_endpoint_is_counted_and_the_pipeline_goes_on(receiver) -> None:
    # nothing listens on the port of a closed socket: connection refused on every attempt
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    dead = WebhookSink("dead", f"http://127.0.0.1:{dead_port}/", Formatter(json_output=True),
                       retries=2, backoff=0.01, timeout=1)
    live = WebhookSink("live", url(receiver), Formatter(json_output=True), backoff=0.01)
    p = Pipeline(FakeRuleset([("r", Priority.ERROR, lambda e: True)]), sinks=[dead, live])
    p.run([evt(), evt()])
    p.close()
    assert p.metrics.output_failures["dead"] == 2
    assert dead.attempts == 6          # 1 + 2 retries per alert
    assert p.metrics.output_sent["live"] == 2
    assert len(receiver.requests) == 2


def test_stuck_endpoint_costs_counted_drops_not_a_stalled_loop(receiver) -> None:
    receiver.delay = 0.5          # each POST takes 0.5 s: 20 blocking sends would take 10 s
    sink = WebhookSink("webhook", url(receiver), Formatter(json_output=True), queue_size=2,
                       timeout=5)
    p = Pipeline(FakeRuleset([("r", Priority.ERROR, lambda e: True)]), sinks=[sink])
    t0 = time.monotonic()
    p.run(evt() for _ in range(20))
    assert time.monotonic() - t0 < 2.0
    assert p.metrics.output_drops["webhook"] >= 10
    p.close()
    assert p.metrics.output_sent["webhook"] + p.metrics.output_drops["webhook"] == 20
    assert len(receiver.requests) == p.metrics.output_sent["webhook"]


def test_webhook_credentials_in_the_url_become_basic_auth_and_never_show(receiver) -> None:
    port = receiver.server_address[1]
    sink = WebhookSink("webhook", f"http://sidekick:s%40cret@127.0.0.1:{port}/falco",
                       Formatter(json_output=True), retries=0)
    assert "s%40cret" not in sink.url and "sidekick" not in sink.url
    sink.send(alert())
    path, headers, _, _ = receiver.requests[0]
    assert path == "/falco"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"sidekick:s@cret").decode()
    receiver.statuses.append(403)
    with pytest.raises(WebhookError) as ei:
        sink.send(alert())
    assert "cret" not in str(ei.value) and "sidekick" not in str(ei.value)
    # an explicit Authorization header wins over the URL's
    sink = WebhookSink("webhook", f"http://u:p@127.0.0.1:{port}/", Formatter(json_output=True),
                       headers={"Authorization": "Bearer t"})
    sink.send(alert())
    assert receiver.requests[-1][1]["Authorization"] == "Bearer t"
