"""The Kubernetes and notification actions inside the response engine: ``plugins.response.k8s``
/ ``.notify`` settings reach the factories, ``responses:`` policies compile their inline params
(errors name the action), and one Critical alert from a pod runs quarantine (with ``ttl``: the
engine undoes it), slack and webhook, recorded in the audit log. Kubernetes calls go to the
protocol-level STAND-IN API server (tests/response_k8s_apiserver.py: no kube-apiserver can be
installed here); Slack and webhook payloads arrive at real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falconet.alerts import Alert
from falconet.fields import FieldRegistry
from falconet.outputs.format import format_json
from falconet.priorities import Priority
from falconet_response.audit import AuditLog
from falconet_response.engine import ResponseEngine, Scheduler
from falconet_response.plugin import family_actions
from falconet_response.policy import PolicyError, compile_policies
from falconet_response.safety import Protection
from falconet_response.settings import parse_settings
from notify_receivers import Receiver
from response_k8s_apiserver import FakeApiServer, running_api_server

NS = "shop"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with running_api_server() as srv:
        yield srv


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    slack, hook = Receiver().start(), Receiver().start()
    yield slack, hook
    slack.stop()
    hook.stop()


def settings(api: FakeApiServer, tmp_path: Path, slack: Receiver) -> dict[str, Any]:
    kc = api.write_kubeconfig(tmp_path / "kubeconfig")
    url_file = tmp_path / "slack-url"
    url_file.write_text(slack.url("/services/T/B/secret") + "\n")
    return {"k8s": {"kubeconfig": str(kc), "request_timeout": 2},
            "notify": {"slack": {"webhook_url_file": str(url_file), "channel": "#sec"}}}


def pod_alert(uid: str) -> Alert:
    fields = {"proc.pid": 999_999_999, "container.id": "c0ffee123456", "container.type": "containerd",
              "k8s.ns.name": NS, "k8s.pod.name": "cart-1", "k8s.pod.uid": uid, "proc.name": "sh"}
    return Alert("Terminal shell in container", Priority.CRITICAL, "syscall", ["container"],
                 "A shell was spawned in a container", fields, time.time_ns(), "node-a")


def wait_for(cond: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    return cond()


def test_one_alert_runs_quarantine_slack_and_webhook_and_ttl_undoes(
        api: FakeApiServer, receivers: tuple[Receiver, Receiver], tmp_path: Path) -> None:
    slack, hook = receivers
    uid = api.add_pod("cart-1", NS, {"app": "cart"})
    actions = {a.name: a for a in family_actions(parse_settings(settings(api, tmp_path, slack)))}
    assert {"label", "quarantine", "delete_pod", "slack", "webhook"} <= set(actions)
    policies = compile_policies([{
        "name": "contain-critical-pods", "match": {"priority": ">=Critical"},
        "actions": [{"action": "quarantine", "ttl": 1},
                    {"action": "slack"},
                    {"action": "webhook", "url": hook.url("/function/respond")}]}],
        FieldRegistry(), actions, where="falconet.yaml")
    audit = tmp_path / "audit.jsonl"
    engine = ResponseEngine(policies, audit=AuditLog(str(audit)), protection=Protection(),
                            scheduler=Scheduler())
    engine.audit.open()
    engine.start()
    try:
        alert = pod_alert(uid)
        engine.send(alert)
        pod = api.get("pods", NS, "cart-1") or {}
        assert pod["metadata"]["labels"]["falconet.io/quarantine"] == "true"
        assert api.get("networkpolicies", NS, "falconet-quarantine") is not None
        [msg] = [json.loads(r.body) for r in slack.requests]
        assert msg["channel"] == "#sec" and msg["attachments"][0]["color"] == "#ff5400"
        [req] = hook.requests
        assert req.path == "/function/respond" and req.body.decode() == format_json(alert)
        # ttl: the engine's scheduler undoes the quarantine after 1 s
        assert wait_for(lambda: "falconet.io/quarantine" not in
                        (api.get("pods", NS, "cart-1") or {})["metadata"]["labels"])
        records = wait_for(lambda: [r for r in map(json.loads, audit.read_text().splitlines())
                                    if r.get("type") == "undo"])
        assert records and records[0]["by"] == "ttl" and records[0]["result"] == "done"
    finally:
        engine.close()
    done = [json.loads(x) for x in audit.read_text().splitlines()]
    by_action = {r["action"]: r for r in done if r.get("type") == "action"}
    assert {a: r["result"] for a, r in by_action.items()} == {
        "quarantine": "done", "slack": "done", "webhook": "done"}
    assert "secret" not in audit.read_text()                 # the Slack URL's path never shows
    assert by_action["quarantine"]["reversible"] is True and by_action["slack"]["undo"] is None


def test_policy_param_errors_name_the_action_once(api: FakeApiServer, tmp_path: Path,
                                                  receivers: tuple[Receiver, Receiver]) -> None:
    actions = {a.name: a for a in family_actions(parse_settings(
        settings(api, tmp_path, receivers[0])))}
    with pytest.raises(PolicyError) as e:
        compile_policies([{"name": "p", "actions": [
            {"action": "delete_pod", "min_healthy": 1},
            {"action": "webhook"},
            {"action": "slack", "output_format": "blocks"}]}],
            FieldRegistry(), actions, where="falconet.yaml")
    text = "\n".join(e.value.problems)
    assert "action 'delete_pod': unknown parameter(s) min_healthy" in text
    assert "action 'webhook': give exactly one of url, url_env, url_file" in text
    assert "action 'slack': output_format must be one of all, text, fields" in text
    assert "delete_pod: " not in text and "slack: slack" not in text


def test_bad_family_settings_are_plugin_config_errors() -> None:
    from falconet.api import PluginConfigError
    from falconet_response import plugin

    class Engine:
        config = {"responses": []}

    for cfg, why in (({"k8s": {"request_timeout": "fast"}}, "plugins.response.k8s.request_timeout"),
                     ({"notify": {"teams": {}}}, "plugins.response.notify: unknown setting")):
        p = plugin.ResponsePlugin()          # one instance per engine
        p.falconet_configure({**cfg}, Engine())
        with pytest.raises(PluginConfigError, match=why):
            p.falconet_response_actions(Engine())
