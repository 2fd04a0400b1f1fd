"""Issue 11, finding 5: the webhook never follows a redirect. A 3xx is a counted failure with a
clear message, and the credentials (URL userinfo, headers) never reach the redirect target.
Two real HTTP servers on 127.0.0.1: the configured endpoint and the would-be target."""

from __future__ import annotations

import pytest
from falconet.alerts import Alert
from falconet.events import Event
from falconet.metrics import EngineMetrics
from falconet.outputs.format import Formatter
from falconet.outputs.webhook import WebhookError, WebhookSink
from falconet.pipeline import Pipeline
from falconet.priorities import Priority
from output_receiver import Receiver


def alert() -> Alert:
    return Alert("r", Priority.WARNING, "syscall", [], "x", {}, 5, "h")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_credentials_stay_home(status: int) -> None:
    with Receiver() as home, Receiver() as elsewhere:
        home.answer(status, {"Location": f"{elsewhere.url}/steal"})
        base = home.url.replace("http://", "http://alice:s3cret-pw@")
        sink = WebhookSink("webhook", f"{base}/hook", Formatter(json_output=True), retries=2,
                           backoff=0.01, headers={"X-Api-Key": "k3y-value"})
        with pytest.raises(WebhookError) as e:
            sink.send(alert())
        assert len(home.requests) == 1                # one try: a redirect is not retried
        assert home.requests[0][1]["Authorization"].startswith("Basic ")
        assert elsewhere.requests == []               # nothing, credentials least of all
    msg = str(e.value)
    assert f"HTTP {status} redirect to {elsewhere.url}/steal refused" in msg, msg
    assert "never follow redirects" in msg
    assert "s3cret" not in msg and "alice" not in msg and "k3y-value" not in msg


def test_a_redirected_alert_is_counted_as_failed_not_sent() -> None:
    class One:
        def match(self, evt: object) -> list[Alert]:
            return [alert()]

    with Receiver() as home, Receiver() as elsewhere:
        for _ in range(2):
            home.answer(302, {"Location": f"{elsewhere.url}/"})
        m = EngineMetrics()
        sink = WebhookSink("webhook", f"{home.url}/", Formatter(json_output=True), retries=0)
        p = Pipeline(One(), sinks=[sink], metrics=m)
        p.run([Event("syscall", "openat", 1, 1, 1)] * 2)
        p.close()
        assert elsewhere.requests == []
    assert m.output_sent["webhook"] == 0 and m.output_failures["webhook"] == 2
