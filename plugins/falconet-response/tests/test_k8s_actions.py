"""Kubernetes actions ``label``, ``quarantine``, ``delete_pod``.

The real ``kubernetes`` client talks, through a kubeconfig, to ``response_k8s_apiserver.
FakeApiServer``: a protocol-level STAND-IN for kube-apiserver on 127.0.0.1 (pods GET/PATCH/
DELETE, apps owners GET, NetworkPolicies GET/POST, 401/403/404/409 ``Status`` answers). No real
API server can be installed on this machine; see docs/response.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falconet.alerts import Alert
from falconet.priorities import Priority
from falconet_response.actions.base import Action, ActionParamError, Target
from falconet_response.actions.k8s import k8s_actions
from response_k8s_apiserver import TOKEN, FakeApiServer, running_api_server

LOG = logging.getLogger("test")
NS = "prod"
ALERT = Alert("Terminal shell in container", Priority.CRITICAL, "syscall", [], "shell", {},
              1_764_626_694_000_000_000, "node-a")


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with running_api_server() as srv:
        yield srv


def make(api: FakeApiServer, tmp_path: Path, **cfg: Any) -> dict[str, Action]:
    kc = api.write_kubeconfig(tmp_path / "kubeconfig")
    return {a.name: a for a in k8s_actions({"kubeconfig": str(kc), "request_timeout": 2, **cfg},
                                           LOG)}


def target(pod: str, uid: str | None, ns: str = NS) -> Target:
    return Target(4242, 1, "c0" * 32, "containerd", ns, pod, uid, uid or "k")


def labels(api: FakeApiServer, pod: str) -> dict[str, str]:
    obj = api.get("pods", NS, pod)
    assert obj is not None
    return obj["metadata"]["labels"]


# ---------------------------------------------------------------------- label
def test_label_sets_and_undo_restores(api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {"app": "web", "tier": "front"})
    label = make(api, tmp_path)["label"]
    params = label.check_params({"labels": {"tier": "suspect", "falconet.io/alert": "shell"}})
    out = label.run(target("web-1", uid), ALERT, params)
    assert out.result == "done", out
    assert labels(api, "web-1") == {"app": "web", "tier": "suspect", "falconet.io/alert": "shell"}
    [patch] = api.calls("PATCH")
    assert patch[3] == "application/strategic-merge-patch+json"
    assert patch[2]["fieldManager"] == "falconet"
    assert patch[4]["metadata"]["resourceVersion"]            # optimistic concurrency
    assert out.undo is not None
    assert label.undo(out.undo).result == "done"
    assert labels(api, "web-1") == {"app": "web", "tier": "front"}


def test_label_undo_keeps_a_later_change(api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {"app": "web"})
    label = make(api, tmp_path)["label"]
    out = label.run(target("web-1", uid), ALERT, label.check_params({"labels": {"x": "1"}}))
    api.put("pods", NS, "web-1", {**api.get("pods", NS, "web-1"),          # someone relabels
                                  "metadata": {"uid": uid, "labels": {"app": "web", "x": "2"}}})
    assert label.undo(out.undo or {}).result == "done"
    assert labels(api, "web-1") == {"app": "web", "x": "2"}


def test_label_retries_once_on_a_conflict(api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {"app": "web"})
    label = make(api, tmp_path)["label"]
    bumped: list[Any] = []

    def concurrent_writer(key: Any) -> None:
        if not bumped:
            bumped.append(key)
            api.touch(*key)
    api.before_patch = concurrent_writer
    out = label.run(target("web-1", uid), ALERT, label.check_params({"labels": {"x": "1"}}))
    assert out.result == "done", out
    assert len(api.calls("PATCH")) == 2 and labels(api, "web-1")["x"] == "1"


def test_a_recreated_pod_of_the_same_name_is_never_touched(api: FakeApiServer,
                                                           tmp_path: Path) -> None:
    api.add_pod("web-1", NS, {"app": "web"})
    acts = make(api, tmp_path)
    old = target("web-1", "the-uid-of-the-pod-that-alerted")
    for name, params in (("label", {"labels": {"x": "1"}}), ("quarantine", {}),
                         ("delete_pod", {"min_healthy_replicas": 0})):
        out = acts[name].run(old, ALERT, acts[name].check_params(params))
        assert out.result == "skipped" and "another pod" in out.detail, (name, out)
    assert api.calls("PATCH") == [] and api.calls("DELETE") == [] and api.calls("POST") == []


def test_missing_pod_and_no_pod_are_skipped(api: FakeApiServer, tmp_path: Path) -> None:
    label = make(api, tmp_path)["label"]
    params = label.check_params({"labels": {"x": "1"}})
    assert label.run(target("gone", "u"), ALERT, params).result == "skipped"
    host = Target(4242, 1, None, None, None, None, None, "pid:4242:1")
    assert "no Kubernetes pod" in label.run(host, ALERT, params).detail


def test_engine_own_pod_is_protected(api: FakeApiServer, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    uid = api.add_pod("falconet-abcde", "falconet", {})
    monkeypatch.setenv("POD_NAMESPACE", "falconet")
    monkeypatch.setenv("POD_NAME", "falconet-abcde")
    label = make(api, tmp_path)["label"]
    out = label.run(target("falconet-abcde", uid, "falconet"), ALERT,
                    label.check_params({"labels": {"x": "1"}}))
    assert out.result == "skipped" and "engine's own pod" in out.detail and api.requests == []


def test_forbidden_and_unauthorized_fail_with_short_secret_free_details(
        api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {})
    api.forbidden.add(("patch", "pods"))
    label = make(api, tmp_path)["label"]
    out = label.run(target("web-1", uid), ALERT, label.check_params({"labels": {"x": "1"}}))
    assert out.result == "failed" and "HTTP 403" in out.detail and "cannot patch" in out.detail
    assert TOKEN not in out.detail and len(out.detail) <= 300
    kc = api.write_kubeconfig(tmp_path / "bad", token="wrong-token-0123")
    [bad] = [a for a in k8s_actions({"kubeconfig": str(kc)}, LOG) if a.name == "label"]
    out = bad.run(target("web-1", uid), ALERT, bad.check_params({"labels": {"x": "1"}}))
    assert out.result == "failed" and "HTTP 401" in out.detail and "wrong-token" not in out.detail


def test_unreachable_slow_and_unconfigured_apis_fail_in_bounded_time(
        api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {})
    acts = make(api, tmp_path, request_timeout=0.5)
    params = acts["label"].check_params({"labels": {"x": "1"}})
    api.delay = 2.0
    t0 = time.monotonic()
    out = acts["label"].run(target("web-1", uid), ALERT, params)
    assert out.result == "failed" and "Timeout" in out.detail and time.monotonic() - t0 < 1.8
    api.delay = 0
    api.stop()
    t0 = time.monotonic()
    out = acts["label"].run(target("web-1", uid), ALERT, params)
    assert out.result == "failed" and time.monotonic() - t0 < 1.8
    missing = k8s_actions({"kubeconfig": str(tmp_path / "nope")}, LOG)[0]
    out = missing.run(target("web-1", uid), ALERT, params)
    assert out.result == "failed" and "kubernetes client configuration" in out.detail


# ---------------------------------------------------------------------- quarantine
def test_quarantine_creates_the_deny_all_policy_then_labels(api: FakeApiServer,
                                                            tmp_path: Path) -> None:
    a = api.add_pod("web-1", NS, {"app": "web"})
    b = api.add_pod("web-2", NS, {"app": "web"})
    q = make(api, tmp_path)["quarantine"]
    params = q.check_params({})
    out = q.run(target("web-1", a), ALERT, params)
    assert out.result == "done" and "created" in out.detail, out
    np = api.get("networkpolicies", NS, "falconet-quarantine")
    assert np is not None and np["spec"] == {
        "podSelector": {"matchLabels": {"falconet.io/quarantine": "true"}},
        "policyTypes": ["Ingress", "Egress"]}
    pod = api.get("pods", NS, "web-1") or {}
    assert pod["metadata"]["labels"]["falconet.io/quarantine"] == "true"
    assert pod["metadata"]["annotations"]["falconet.io/quarantine-rule"] == ALERT.rule
    # the policy exists before the label lands
    methods = [r[0] for r in api.requests]
    assert methods.index("POST") < methods.index("PATCH")
    out2 = q.run(target("web-2", b), ALERT, params)
    assert out2.result == "done" and "present" in out2.detail
    assert len(api.calls("POST")) == 1
    # undo: label and annotation go, the policy stays (web-2 still uses it)
    assert q.undo(out.undo or {}).result == "done"
    pod = api.get("pods", NS, "web-1") or {}
    assert "falconet.io/quarantine" not in pod["metadata"]["labels"]
    assert "falconet.io/quarantine-rule" not in pod["metadata"]["annotations"]
    assert api.get("networkpolicies", NS, "falconet-quarantine") is not None


def test_quarantine_never_rewrites_a_foreign_policy(api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {})
    api.put("networkpolicies", NS, "falconet-quarantine", {"spec": {
        "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}})
    q = make(api, tmp_path)["quarantine"]
    out = q.run(target("web-1", uid), ALERT, q.check_params({}))
    assert out.result == "failed" and "not labelled" in out.detail
    assert api.calls("PATCH") == [] and api.calls("POST") == []


def test_quarantine_settings_and_params(api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.add_pod("web-1", NS, {})
    q = make(api, tmp_path, quarantine_label="sec.example.com/isolated",
             networkpolicy_name="isolate")["quarantine"]
    out = q.run(target("web-1", uid), ALERT, q.check_params({"annotate": False}))
    assert out.result == "done"
    assert labels(api, "web-1") == {"sec.example.com/isolated": "true"}
    assert api.get("networkpolicies", NS, "isolate") is not None
    with pytest.raises(ActionParamError, match="label"):
        q.check_params({"label": "-bad-"})
    with pytest.raises(ActionParamError, match="policy_name"):
        q.check_params({"policy_name": "Not_DNS"})


# ---------------------------------------------------------------------- delete_pod
def deployment_pod(api: FakeApiServer, available: int, ready: bool = True) -> str:
    api.add_owner("deployments", NS, "web", available)
    api.add_owner("replicasets", NS, "web-7d9f", available, owner=("Deployment", "web"))
    return api.add_pod("web-7d9f-x", NS, {"app": "web"}, owner=("ReplicaSet", "web-7d9f"),
                       ready=ready)


def test_delete_pod_of_a_healthy_deployment(api: FakeApiServer, tmp_path: Path) -> None:
    uid = deployment_pod(api, available=3)
    d = make(api, tmp_path)["delete_pod"]
    out = d.run(target("web-7d9f-x", uid), ALERT, d.check_params({"grace_period_seconds": 0}))
    assert out.result == "done", out
    assert api.get("pods", NS, "web-7d9f-x") is None
    [req] = api.calls("DELETE")
    assert req[4]["preconditions"] == {"uid": uid} and req[4]["gracePeriodSeconds"] == 0
    paths = [r[1] for r in api.calls("GET")]
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/web" in paths
    assert d.reversible is False and d.undo({}).result == "failed"


def test_delete_pod_keeps_the_minimum_healthy_replicas(api: FakeApiServer,
                                                       tmp_path: Path) -> None:
    uid = deployment_pod(api, available=2)
    d = make(api, tmp_path)["delete_pod"]
    out = d.run(target("web-7d9f-x", uid), ALERT, d.check_params({"min_healthy_replicas": 2}))
    assert out.result == "skipped" and "1 other available" in out.detail
    assert api.calls("DELETE") == []
    out = d.run(target("web-7d9f-x", uid), ALERT, d.check_params({}))      # default 1
    assert out.result == "done"


def test_min_healthy_replicas_as_a_percentage_of_desired(api: FakeApiServer,
                                                         tmp_path: Path) -> None:
    """Desired 4, available 3 including this pod: 2 others. 75% of 4 = 3 refuses, 50% = 2
    deletes."""
    api.add_owner("deployments", NS, "web", 3, desired=4)
    api.add_owner("replicasets", NS, "web-7d9f", 3, owner=("Deployment", "web"), desired=4)
    uid = api.add_pod("web-7d9f-x", NS, {}, owner=("ReplicaSet", "web-7d9f"))
    d = make(api, tmp_path)["delete_pod"]
    out = d.run(target("web-7d9f-x", uid), ALERT, d.check_params({"min_healthy_replicas": "75%"}))
    assert out.result == "skipped" and "75% of 4 = 3" in out.detail
    out = d.run(target("web-7d9f-x", uid), ALERT, d.check_params({"min_healthy_replicas": "50%"}))
    assert out.result == "done", out
    for bad in ("150%", "half", 1.5, -1):
        with pytest.raises(ActionParamError, match="min_healthy_replicas"):
            d.check_params({"min_healthy_replicas": bad})


def test_an_unready_pod_does_not_count_itself(api: FakeApiServer, tmp_path: Path) -> None:
    uid = deployment_pod(api, available=1, ready=False)       # the 1 available is another pod
    d = make(api, tmp_path)["delete_pod"]
    assert d.run(target("web-7d9f-x", uid), ALERT, d.check_params({})).result == "done"


def test_delete_pod_guards_daemonset_static_and_bare_pods(api: FakeApiServer,
                                                          tmp_path: Path) -> None:
    api.add_owner("daemonsets", NS, "agent", 5)
    ds = api.add_pod("agent-x", NS, {}, owner=("DaemonSet", "agent"))
    static = api.add_pod("etcd-node-a", NS, {}, owner=("Node", "node-a"),
                         annotations={"kubernetes.io/config.mirror": "abc"})
    bare = api.add_pod("debug", NS, {})
    d = make(api, tmp_path)["delete_pod"]
    p = d.check_params({})
    for pod, uid, why in (("agent-x", ds, "DaemonSet agent"), ("etcd-node-a", static, "static"),
                          ("debug", bare, "no controller")):
        out = d.run(target(pod, uid), ALERT, p)
        assert out.result == "skipped" and why in out.detail, out
    assert api.calls("DELETE") == []
    assert d.run(target("agent-x", ds), ALERT, d.check_params({"allow_daemonset": True})
                 ).result == "done"
    assert d.run(target("etcd-node-a", static), ALERT,
                 d.check_params({"allow_static": True, "min_healthy_replicas": 0})).result == "done"
    assert d.run(target("debug", bare), ALERT,
                 d.check_params({"min_healthy_replicas": 0})).result == "done"


def test_delete_pod_of_a_statefulset(api: FakeApiServer, tmp_path: Path) -> None:
    api.add_owner("statefulsets", NS, "db", 3)
    uid = api.add_pod("db-0", NS, {}, owner=("StatefulSet", "db"))
    d = make(api, tmp_path)["delete_pod"]
    assert d.run(target("db-0", uid), ALERT, d.check_params({})).result == "done"


def test_delete_pod_cannot_verify_the_owner_so_does_not_delete(api: FakeApiServer,
                                                               tmp_path: Path) -> None:
    uid = deployment_pod(api, available=3)
    api.forbidden.add(("get", "deployments"))
    d = make(api, tmp_path)["delete_pod"]
    out = d.run(target("web-7d9f-x", uid), ALERT, d.check_params({}))
    assert out.result == "failed" and "403" in out.detail and api.calls("DELETE") == []


# ---------------------------------------------------------------------- params and settings
def test_param_and_settings_errors() -> None:
    acts = {a.name: a for a in k8s_actions(None, LOG)}
    bad = [("label", {}), ("label", {"labels": {"a b": "x"}}), ("label", {"labels": {"a": 1}}),
           ("label", {"labels": {"a": "x" * 64}}), ("label", {"labels": {"x": "y"}, "z": 1}),
           ("delete_pod", {"min_healthy_replicas": -1}), ("delete_pod", {"allow_static": "yes"}),
           ("delete_pod", {"grace_period_seconds": True})]
    for name, params in bad:
        with pytest.raises(ActionParamError):
            acts[name].check_params(params)
    assert acts["label"].check_params({"labels": {"example.com/x": ""}}) == {
        "labels": {"example.com/x": ""}}
    for cfg in ({"request_timeout": 0}, {"kubeconfig": ""}, {"quarantine_label": "a/b/c"},
                {"networkpolicy_name": "UPPER"}, {"nope": 1}):
        with pytest.raises(ActionParamError):
            k8s_actions(cfg, LOG)


def test_every_call_the_actions_make_is_granted_by_the_shipped_rbac(api: FakeApiServer,
                                                                    tmp_path: Path) -> None:
    """Least privilege, checked from both sides: run every action (and undo) against the
    stand-in, map each request to (API group, resource, verb) and require the grant in
    deploy/kubernetes/falconet-response-rbac.yaml (tests/bundle checks it grants no more)."""
    import yaml

    rbac = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / \
        "falconet-response-rbac.yaml"
    role = next(d for d in yaml.safe_load_all(rbac.read_text()) if d["kind"] == "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    acts = make(api, tmp_path)
    uid = deployment_pod(api, available=3)
    api.add_owner("statefulsets", NS, "db", 3)
    db = api.add_pod("db-0", NS, {}, owner=("StatefulSet", "db"))
    api.add_owner("daemonsets", NS, "agent", 3)
    ag = api.add_pod("agent-x", NS, {}, owner=("DaemonSet", "agent"))
    t = target("web-7d9f-x", uid)
    for name in ("label", "quarantine"):
        params = {"labels": {"x": "1"}} if name == "label" else {}
        out = acts[name].run(t, ALERT, acts[name].check_params(params))
        assert acts[name].undo(out.undo or {}).result == "done"
    d = acts["delete_pod"]
    for tgt in (t, target("db-0", db), target("agent-x", ag)):
        assert d.run(tgt, ALERT, d.check_params({"allow_daemonset": True})).result == "done"
    verbs = {"GET": "get", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
    used = set()
    for method, path, *_ in api.requests:
        parts = path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        resource = parts[parts.index("namespaces") + 2]
        used.add((group, resource, verbs[method]))
    assert used <= granted, used - granted
    assert {("", "pods", "patch"), ("", "pods", "delete"),
            ("networking.k8s.io", "networkpolicies", "create")} <= used


def test_delete_pod_needs_the_pod_uid(api: FakeApiServer, tmp_path: Path) -> None:
    deployment_pod(api, available=3)
    d = make(api, tmp_path)["delete_pod"]
    out = d.run(target("web-7d9f-x", None), ALERT, d.check_params({}))
    assert out.result == "skipped" and "k8s.pod.uid" in out.detail and api.requests == []


def test_client_is_built_at_load_time_so_the_first_action_is_fast(api: FakeApiServer,
                                                                 tmp_path: Path) -> None:
    """check_params (load time) starts building the client on a daemon thread: the first
    action then pays only its API round trips, not the client's import and set-up."""
    uid = api.add_pod("web-1", NS, {})
    label = make(api, tmp_path)["label"]
    client = label.client                      # type: ignore[attr-defined]
    assert client._apis is None
    params = label.check_params({"labels": {"x": "1"}})
    deadline = time.monotonic() + 20
    while client._apis is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client._apis is not None and api.requests == []     # built, nothing sent yet
    t0 = time.monotonic()
    assert label.run(target("web-1", uid), ALERT, params).result == "done"
    assert time.monotonic() - t0 < 0.5


def test_a_missing_client_is_a_load_time_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "kubernetes"
                        else real(name, *a))
    q = {a.name: a for a in k8s_actions(None, LOG)}["quarantine"]
    with pytest.raises(ActionParamError, match=r"pip install 'falconet-response\[k8s\]'"):
        q.check_params({})
