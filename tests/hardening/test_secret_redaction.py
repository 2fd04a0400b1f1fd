"""Issue 11, finding 6: secrets (URL userinfo, query tokens, header values) never appear in a
log line or an error: configuration errors, output failures, OTel plugin messages. The one
helper is :mod:`falconet.redact`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from falconet.alerts import Alert
from falconet.config import ConfigError, load_config
from falconet.events import Event
from falconet.metrics import EngineMetrics
from falconet.outputs.format import Formatter
from falconet.outputs.webhook import WebhookSink
from falconet.pipeline import Pipeline
from falconet.priorities import Priority

FALCONET = [sys.executable, "-m", "falconet"]
SECRETS = ("s3cret-pw", "tok-123456", "hdr-value-42", "alice")


def assert_no_secret(text: str) -> None:
    for s in SECRETS:
        assert s not in text, (s, text)


def test_config_errors_never_show_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("outputs:\n  webhook:\n    enabled: true\n"
                   "    url: ftp://alice:s3cret-pw@example.org/h?token=tok-123456\n"
                   "    headers: {Authorization: [Bearer hdr-value-42]}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    msg = str(e.value)
    assert f"{cfg}:5:5: error: outputs.webhook.headers: expected a mapping" in msg, msg
    assert "outputs.webhook.url: expected an http:// or https:// URL" in msg
    assert_no_secret(msg)
    # the same through the command line, with an override
    r = subprocess.run([*FALCONET, "replay", "/dev/null", "-o",
                        "outputs.webhook.url=gopher://alice:s3cret-pw@h/?token=tok-123456"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "outputs.webhook.url" in r.stderr, r.stderr
    assert_no_secret(r.stderr)
    # an override of a header: the message names the key, never the value
    with pytest.raises(ConfigError) as e:
        load_config(None, ["outputs.webhook.headers.Authorization=[hdr-value-42]"])
    assert "-o outputs.webhook.headers.Authorization=***: error:" in str(e.value), str(e.value)
    assert_no_secret(str(e.value))



def test_a_secret_in_a_wrongly_typed_value_is_not_shown(tmp_path: Path) -> None:
    """Headers written as a string (a careless user's ``headers: "X-Api-Key: ..."``), and a
    plugin setting of the wrong type: the message names the key, never the value. Second
    review of issue 11: the string was shown whole."""
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("outputs:\n  webhook:\n    enabled: true\n    url: http://127.0.0.1:9/\n"
                   "    headers: 'X-Api-Key: hdr-value-42'\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    msg = str(e.value)
    assert f"{cfg}:5:5: error: outputs.webhook.headers: expected a mapping" in msg, msg
    assert_no_secret(msg)
    from falconet.plugin_config import ConfigSchema, Setting, string, validate_section

    schema = ConfigSchema({"api_token": Setting(string(), None, "the token"),
                           "headers": Setting(string(), None, "headers")})
    _values, problems = validate_section(schema, "x", {"api_token": ["tok-123456"],
                                                       "headers": {"a": "hdr-value-42"}},
                                         lambda p: "<config>")
    assert len(problems) == 2 and "plugins.x.api_token" in problems[0], problems
    assert_no_secret("\n".join(problems))

def test_output_failures_never_log_secrets(caplog: pytest.LogCaptureFixture) -> None:
    class One:
        def match(self, evt: object) -> list[Alert]:
            return [Alert("r", Priority.WARNING, "syscall", [], "x", {}, 5, "h")]

    url = f"http://alice:s3cret-pw@127.0.0.1:{free_port()}/h?token=tok-123456"   # nobody there
    sink = WebhookSink("webhook", url, Formatter(json_output=True), retries=0,
                       headers={"Authorization": "Bearer hdr-value-42"})
    m = EngineMetrics()
    p = Pipeline(One(), sinks=[sink], metrics=m)
    with caplog.at_level(logging.WARNING, logger="falconet.pipeline"):
        p.run([Event("syscall", "openat", 1, 1, 1)])
        p.close()
    assert m.output_failures["webhook"] == 1
    text = caplog.text
    assert "output webhook failed: http://127.0.0.1:" in text and "token=***" in text, text
    assert_no_secret(text)


def test_otel_messages_never_show_secrets() -> None:
    from falconet.api import PluginConfigError  # noqa: PLC0415
    from falconet_otel.config import resolve_settings  # noqa: PLC0415

    s = resolve_settings({"endpoint": "https://alice:s3cret-pw@collector:4318/?token=tok-123456",
                          "headers": "authorization=Bearer%20hdr-value-42"}, env={})
    line = s.describe()
    assert "collector:4318" in line
    assert_no_secret(line)
    with pytest.raises(PluginConfigError) as e:
        resolve_settings({"endpoint": "http://c:4318", "headers": "ok=1,authorization:hdr-value-42"},
                         env={})
    assert "item 2" in str(e.value)
    assert_no_secret(str(e.value))
    with pytest.raises(PluginConfigError) as e:
        resolve_settings({"endpoint": "ftp://alice:s3cret-pw@c:4318/?token=tok-123456"}, env={})
    assert_no_secret(str(e.value))


def test_redaction_helper() -> None:
    from falconet.redact import redact_headers, redact_text, redact_url  # noqa: PLC0415

    assert redact_url("https://alice:s3cret-pw@h:1/p?token=tok-123456&x=1#f") == \
        "https://***@h:1/p?token=***&x=***#***"
    assert redact_headers({"Content-Type": "a/b", "X-Key": "hdr-value-42"}) == \
        {"Content-Type": "a/b", "X-Key": "***"}
    assert redact_text("POST http://alice:s3cret-pw@h/ said Bearer hdr-value-42") == \
        "POST http://***@h/ said Bearer ***"
