"""``slack`` and ``webhook`` actions: payloads arrive at real HTTP receivers on 127.0.0.1 (free
ports) and match the documented formats (docs/response.md: falcosidekick's Slack message; the
core JSON output's Falco alert); secrets come from env vars/files and never show in outcomes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falconet.alerts import Alert
from falconet.outputs.format import format_json
from falconet.priorities import Priority
from falconet_response.actions.base import Action, ActionParamError, Target
from falconet_response.actions.notify import notify_actions
from falconet_response.actions.slack_format import go_time, slack_payload
from notify_receivers import Receiver

LOG = logging.getLogger("test")
TARGET = Target(4242, 1, None, None, None, None, None, "pid:4242:1")
SECRET_PATH = "/services/T000/B000/s3cr3t-webhook-path"


def alert(priority: Priority = Priority.CRITICAL, **fields: Any) -> Alert:
    of = {"proc.name": "sh", "fd.name": "/etc/shadow", "user.name": "root",
          "proc.cmdline": "sh -c cat /etc/shadow > /tmp/x; echo a-long-value-of-more-than-36-chars",
          "proc.pid": 4242, "container.id": None, **fields}
    return Alert("Read sensitive file untrusted", priority, "syscall", ["T1555", "filesystem"],
                 "Sensitive file opened for reading (file=/etc/shadow)", of,
                 1_764_626_694_123_400_000, "node-a")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def actions(cfg: dict[str, Any] | None = None) -> dict[str, Action]:
    return {a.name: a for a in notify_actions(cfg, LOG)}


def test_slack_message_matches_falcosidekicks_format(receiver: Receiver,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_SLACK", receiver.url(SECRET_PATH))
    slack = actions()["slack"]
    params = slack.check_params({"webhook_url_env": "TEAM_SLACK", "channel": "#sec"})
    assert "TEAM_SLACK" in json.dumps(params) and SECRET_PATH not in json.dumps(params)
    out = slack.run(TARGET, alert(), params)
    assert out.result == "done", out
    assert SECRET_PATH not in out.detail and "$TEAM_SLACK" in out.detail
    [req] = receiver.requests
    assert req.method == "POST" and req.path == SECRET_PATH
    assert req.headers["content-type"] == "application/json"
    msg = json.loads(req.body)
    assert msg["username"] == "Falconet" and msg["channel"] == "#sec"
    [att] = msg["attachments"]
    assert att["color"] == "#ff5400"                           # falcosidekick's Critical
    falco_output = json.loads(format_json(alert()))["output"]
    assert att["text"] == att["fallback"] == falco_output.replace(">", "&gt;")
    titles = [f["title"] for f in att["fields"]]
    assert titles == ["rule", "priority", "source", "hostname", "tags", "container.id",
                      "fd.name", "proc.cmdline", "proc.name", "proc.pid", "user.name", "time"]
    fields = {f["title"]: f for f in att["fields"]}
    assert fields["rule"]["value"] == "Read sensitive file untrusted" and fields["rule"]["short"]
    assert fields["priority"]["value"] == "Critical"
    assert fields["tags"]["value"] == "T1555, filesystem"
    assert fields["container.id"]["value"] == "&lt;NA&gt;"          # Slack shows <NA>
    assert fields["proc.pid"]["value"] == "4242"
    assert fields["proc.cmdline"]["short"] is False             # 36 characters or more
    assert fields["time"] == {"title": "time", "value": "2025-12-01 22:04:54.1234 +0000 UTC",
                              "short": False}
    assert att["footer"] == "Falconet"


@pytest.mark.parametrize(("prio", "colour"), [
    (Priority.EMERGENCY, "#e20b0b"), (Priority.ALERT, "#ff5400"), (Priority.ERROR, "#e20b0b"),
    (Priority.WARNING, "#ffc700"), (Priority.NOTICE, "#5bffb5"),
    (Priority.INFORMATIONAL, "#68c2ff"), (Priority.DEBUG, "#ccfff2")])
def test_slack_colour_per_priority(prio: Priority, colour: str) -> None:
    assert slack_payload(alert(prio), {})["attachments"][0]["color"] == colour


def test_slack_output_formats_and_message() -> None:
    a = alert()
    text_only = slack_payload(a, {"output_format": "text"})["attachments"][0]
    assert text_only["fields"] == [] and "footer" not in text_only and text_only["text"]
    fields_only = slack_payload(a, {"output_format": "fields"})["attachments"][0]
    assert "text" not in fields_only and fields_only["fields"]
    msg = slack_payload(a, {"message": "*{rule}* by {field:user.name} on {hostname}"})
    assert msg["text"] == "*Read sensitive file untrusted* by root on node-a"
    with pytest.raises(ActionParamError, match="unknown placeholder"):
        actions({"slack": {"webhook_url_env": "PATH"}})["slack"].check_params(
            {"message": "{rule.__class__}"})


def test_slack_escapes_attacker_text() -> None:
    """A file name that writes Slack markup (<!channel>, a disguised link) arrives escaped."""
    a = alert(**{"fd.name": "<!channel> <http://evil.example|click> \x1b[31m"})
    att = slack_payload(a, {})["attachments"][0]
    value = next(f["value"] for f in att["fields"] if f["title"] == "fd.name")
    assert value == "&lt;!channel&gt; &lt;http://evil.example|click&gt; \\u001b[31m"


def test_go_time_matches_go_formatting() -> None:
    assert go_time(1_764_626_694_000_000_000) == "2025-12-01 22:04:54 +0000 UTC"
    assert go_time(1_764_626_694_000_000_001) == "2025-12-01 22:04:54.000000001 +0000 UTC"


def test_slack_webhook_from_a_file_and_plugin_defaults(receiver: Receiver, tmp_path: Path) -> None:
    f = tmp_path / "slack-url"
    f.write_text(receiver.url("/hook") + "\n")
    slack = actions({"slack": {"webhook_url_file": str(f), "username": "Falcosidekick"}})["slack"]
    params = slack.check_params({})
    assert slack.run(TARGET, alert(), params).result == "done"
    assert json.loads(receiver.requests[0].body)["username"] == "Falcosidekick"


def test_slack_needs_a_webhook_at_load_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FALCONET_SLACK_WEBHOOK_URL", raising=False)
    with pytest.raises(ActionParamError, match="FALCONET_SLACK_WEBHOOK_URL is not set"):
        actions()["slack"].check_params({})
    with pytest.raises(ActionParamError, match="unknown parameter"):
        actions()["slack"].check_params({"webhook_url": "https://hooks.slack.com/x"})
    with pytest.raises(ActionParamError, match="absolute path"):
        actions()["slack"].check_params({"webhook_url_file": "relative"})


def test_webhook_posts_the_core_json_alert(receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("FN_TOKEN", "Bearer tok-123456")
    (tmp_path / "key").write_text("k-987654\n")
    hook = actions()["webhook"]
    params = hook.check_params({"url": receiver.url("/function/contain"),
                                "headers": {"X-Team": "sec"},
                                "headers_env": {"Authorization": "FN_TOKEN"},
                                "headers_file": {"X-Api-Key": str(tmp_path / "key")}})
    assert "tok-123456" not in json.dumps(params)
    a = alert()
    out = hook.run(TARGET, a, params)
    assert out.result == "done", out
    [req] = receiver.requests
    assert req.path == "/function/contain" and req.body.decode() == format_json(a)
    assert req.headers["authorization"] == "Bearer tok-123456"
    assert req.headers["x-api-key"] == "k-987654" and req.headers["x-team"] == "sec"


def test_webhook_does_not_follow_redirects(receiver: Receiver) -> None:
    other = Receiver().start()
    try:
        receiver.answers = [(302, b"", {"Location": other.url("/stolen")})]
        hook = actions()["webhook"]
        out = hook.run(TARGET, alert(), hook.check_params({"url": receiver.url("/x?token=abcd1234"),
                                                           "retries": 3}))
        assert out.result == "failed" and "302" in out.detail and "not followed" in out.detail
        assert other.requests == [] and len(receiver.requests) == 1      # no retry either
        assert "abcd1234" not in out.detail and "/x" not in out.detail
    finally:
        other.stop()


def test_webhook_retries_5xx_then_succeeds(receiver: Receiver) -> None:
    receiver.answers = [(503, b"busy", {}), (200, b"", {})]
    hook = actions()["webhook"]
    out = hook.run(TARGET, alert(), hook.check_params({"url": receiver.url("/"), "retries": 1}))
    assert out.result == "done" and len(receiver.requests) == 2
    receiver.answers = [(503, b"busy", {})]
    out = hook.run(TARGET, alert(), hook.check_params({"url": receiver.url("/"), "retries": 1}))
    assert out.result == "failed" and out.detail.endswith("HTTP 503 busy after 2 attempts")


def test_failures_are_redacted_and_bounded(monkeypatch: pytest.MonkeyPatch,
                                           receiver: Receiver) -> None:
    receiver.answers = [(404, b"no_service", {})]
    monkeypatch.setenv("SECRET_URL", receiver.url(SECRET_PATH))
    slack = actions()["slack"]
    out = slack.run(TARGET, alert(), slack.check_params({"webhook_url_env": "SECRET_URL",
                                                         "retries": 2}))
    assert out.result == "failed" and "HTTP 404 no_service" in out.detail
    assert len(receiver.requests) == 1 and "attempts" not in out.detail   # a 4xx is final
    assert SECRET_PATH not in out.detail and str(receiver.port) not in out.detail
    # nobody listening: a connection error, reported without the URL, in bounded time
    port = receiver.port
    receiver.stop()
    monkeypatch.setenv("SECRET_URL", f"http://127.0.0.1:{port}{SECRET_PATH}")
    t0 = time.monotonic()
    out = slack.run(TARGET, alert(), slack.check_params({"webhook_url_env": "SECRET_URL",
                                                         "retries": 0, "timeout": 1}))
    assert out.result == "failed" and time.monotonic() - t0 < 3
    assert SECRET_PATH not in out.detail and "Connection refused" in out.detail


def test_webhook_param_errors() -> None:
    hook = actions()["webhook"]
    with pytest.raises(ActionParamError, match="exactly one of url"):
        hook.check_params({})
    with pytest.raises(ActionParamError, match="http:// or https://"):
        hook.check_params({"url": "file:///etc/passwd"})
    with pytest.raises(ActionParamError, match="set by the action"):
        hook.check_params({"url": "http://127.0.0.1/", "headers": {"Content-Length": "1"}})
    with pytest.raises(ActionParamError, match="single-line"):
        hook.check_params({"url": "http://127.0.0.1/", "headers": {"X": "a\r\nInjected: 1"}})
    with pytest.raises(ActionParamError, match="timeout"):
        hook.check_params({"url": "http://127.0.0.1/", "timeout": 0})
    with pytest.raises(ActionParamError, match="unknown setting"):
        notify_actions({"pagerduty": {}}, LOG)
