"""The escalation path with real parts: OTLP/JSON log records of the falconet-otel plugin (as the
collector's ``otlp_http/escalation`` exporter sends them) → otel-collector/alert_relay.py → a real
Alertmanager (Debian's prometheus-alertmanager) → its webhook notification back to the relay."""

from __future__ import annotations

import gzip
import json
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
    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

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
