"""``k8s_api``: pod and namespace labels from the Kubernetes API.

The real ``kubernetes`` client talks, through a kubeconfig, to ``k8s_apiserver.FakeApiServer``: a
protocol-level stand-in for kube-apiserver on 127.0.0.1 (lists, chunked watch streams, bookmarks,
``410 Gone``, 401/403 ``Status`` answers). No real API server can run on this machine; see
docs/containers.md. Everything here takes well under a second per test.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from container_helpers import event, proc_cgroup_file, thread
from falconet.api import EngineContext, PluginConfigError
from falconet.capture import CaptureWriter
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.plugin_config import configure_by_hand
from falconet_container import plugin
from falconet_container.enricher import ContainerEnricher
from falconet_container.fields import field_defs
from falconet_container.k8s_api import K8sApiConfig, K8sCache, K8sWatcher, parse_config
from falconet_container.model import ContainerInfo
from falconet_container.worker import Done
from k8s_apiserver import FakeApiServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NODE = "node-a"
CID = "c3" * 32
POD_UID = "1f0c2d3e-aaaa-bbbb-cccc-0123456789ab"
K8S_CGROUP = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
              f"{POD_UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope")


def need_kubernetes_client() -> None:
    """The tests' policy (tests/conftest.py ``need``): a missing prerequisite fails in CI."""
    if importlib.util.find_spec("kubernetes") is not None:
        return
    why = "the kubernetes client is not installed (pip install 'falconet-container[k8s]')"
    if IN_CI:
        pytest.fail(f"CI prerequisite missing: {why}", pytrace=False)
    pytest.skip(why)


def wait_for(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    return cond()


@pytest.fixture
def api():
    need_kubernetes_client()
    server = FakeApiServer().start()
    server.add_namespace("shop", {"team": "payments", "env": "prod"})
    server.add_namespace("kube-system")
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(api, tmp_path) -> Path:
    return api.write_kubeconfig(tmp_path / "kubeconfig")


def fast_cfg(kubeconfig: Path, **kw: Any) -> K8sApiConfig:
    base = {"enabled": True, "kubeconfig": str(kubeconfig), "node_name": NODE,
            "backoff_initial": 0.02, "backoff_max": 0.1, "request_timeout": 2.0,
            "watch_timeout": 30}
    base.update(kw)
    return parse_config(base)


@pytest.fixture
def watchers():
    started: list[K8sWatcher] = []

    def make(cfg: K8sApiConfig) -> K8sWatcher:
        w = K8sWatcher(cfg)
        started.append(w)
        w.start()
        return w
    yield make
    for w in started:
        w.stop()


def resolve(reg: FieldRegistry, name: str) -> Any:
    """``k8s.pod.label[app]`` as a rule writes it (the registry takes the argument apart)."""
    if name.endswith("]"):
        stem, _, arg = name[:-1].partition("[")
        return reg.resolve(stem, arg)
    return reg.resolve(name)


class Live:
    """An enricher fed by a running watcher, as the plugin wires them; ``pump()`` plays the
    hot loop's next event (it drains the watcher's updates)."""

    def __init__(self, w: K8sWatcher, cgroups: dict[int, str] | None = None,
                 emit: Callable[[str, Any], None] | None = None) -> None:
        self.metrics = EngineMetrics()
        self.enricher = ContainerEnricher(metrics=self.metrics, emit_state=emit,
                                          read_cgroup=(cgroups or {}).get)
        self.enricher.k8s_api = True
        self.enricher.k8s_updates = w.updates
        self.registry = FieldRegistry()
        self.registry.register_all(field_defs(self.enricher))
        self.thread = thread(4242)

    def pump(self) -> Any:
        evt = event(self.thread, "openat")
        self.enricher.parse(evt)
        return evt

    def field(self, name: str) -> Any:
        return resolve(self.registry, name).extract(self.pump())

    def until(self, cond: Callable[[], Any], timeout: float = 10.0) -> Any:
        def check() -> Any:
            self.pump()
            return cond()
        return wait_for(check, timeout)


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize("section,message", [
    ({"enabeld": True}, "plugins.container.k8s_api.enabeld: unknown key 'enabeld'"),
    ({"enabled": "yes"}, "plugins.container.k8s_api.enabled: expected true or false"),
    ({"kubeconfig": ""}, "plugins.container.k8s_api.kubeconfig: expected a non-empty string or null"),
    ({"max_pods": 0}, "plugins.container.k8s_api.max_pods: expected an integer between 1 and 1000000"),
    ({"watch_timeout": 1.5},
     "plugins.container.k8s_api.watch_timeout: expected an integer between 1 and 3600"),
    ({"backoff_initial": 5, "backoff_max": 1}, "backoff_max must be >= backoff_initial"),
    ("on", "plugins.container.k8s_api: expected a mapping"),
])
def test_bad_k8s_api_config_is_rejected_with_the_key(section, message):
    c = EngineContext(hostname="t", fields=FieldRegistry(), metrics=EngineMetrics())
    with pytest.raises(PluginConfigError) as ei:
        cp = plugin.ContainerPlugin()
        configure_by_hand(cp, "container", config={"k8s_api": section}, engine=c)
    assert message in str(ei.value)


def test_off_by_default_and_node_name_from_the_downward_api(monkeypatch):
    c = EngineContext(hostname="t", fields=FieldRegistry(), metrics=EngineMetrics())
    cp = plugin.ContainerPlugin()
    configure_by_hand(cp, "container", config={}, engine=c)
    assert cp.k8s_watcher is None and not cp.enricher.k8s_api
    monkeypatch.setenv("NODE_NAME", "node-from-env")
    assert K8sApiConfig().node() == "node-from-env"
    assert K8sApiConfig(node_name="cfg-node").node() == "cfg-node"


# ---------------------------------------------------------------------- list and watch
def test_initial_list_is_this_nodes_pods_and_every_namespace(api, kubeconfig, watchers):
    mine = api.add_pod("web-0", "shop", NODE, {"app": "web", "tier": "front"}, ip="10.244.1.7")
    other = api.add_pod("db-0", "shop", "node-b", {"app": "db"})
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w)
    k8s = live.enricher.k8s
    assert live.until(lambda: mine in k8s.pods and "shop" in k8s.ns_labels), w.requests
    assert other not in k8s.pods                          # another node's pod is never listed
    assert k8s.pods[mine].labels == {"app": "web", "tier": "front"}
    assert k8s.pods[mine].ip == "10.244.1.7" and k8s.pods[mine].namespace == "shop"
    assert k8s.ns_labels["shop"]["team"] == "payments"
    pod_lists = [q for p, q in api.requests if p == "/api/v1/pods"]
    assert pod_lists and all(q.get("fieldSelector") == f"spec.nodeName={NODE}" for q in pod_lists)
    assert wait_for(lambda: api.active_watches == 2)      # then it watches both resources
    watch_q = [q for p, q in api.requests if p == "/api/v1/pods" and q.get("watch") == "true"]
    assert watch_q[0]["allowWatchBookmarks"] == "true" and watch_q[0]["resourceVersion"]
    assert w.synced == {"pods": 1, "namespaces": 1}


def test_watch_add_modify_delete_and_bookmark(api, kubeconfig, watchers):
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w)
    k8s = live.enricher.k8s
    assert wait_for(lambda: api.active_watches == 2)
    uid = api.add_pod("web-1", "shop", NODE, {"app": "web"})
    api.add_pod("elsewhere", "shop", "node-b", {"app": "x"})
    assert live.until(lambda: uid in k8s.pods)
    api.set_pod_labels(uid, {"app": "web", "version": "2"})
    assert live.until(lambda: k8s.pods[uid].labels.get("version") == "2")
    api.add_namespace("shop", {"team": "checkout"})
    assert live.until(lambda: k8s.ns_labels["shop"].get("team") == "checkout")
    api.bookmark()
    assert wait_for(lambda: w.events.get(("pods", "BOOKMARK")))
    api.delete_pod(uid)
    assert live.until(lambda: uid not in k8s.pods)
    assert len(k8s.pods) == 0                               # node-b's pod never arrived
    assert w.events[("pods", "ADDED")] == 1 and w.events[("pods", "MODIFIED")] == 1
    assert w.events[("pods", "DELETED")] == 1
    assert api.count("pods", watch=False) == 1              # no relist was needed


def test_410_gone_relists_and_catches_up(api, kubeconfig, watchers):
    first = api.add_pod("web-0", "shop", NODE, {"app": "web"})
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w)
    k8s = live.enricher.k8s
    assert live.until(lambda: first in k8s.pods) and wait_for(lambda: api.active_watches == 2)
    # history compacted while the watch was cut: the resume gets ERROR 410 and must relist
    api.compact()
    api.delete_pod(first)
    later = api.add_pod("web-9", "shop", NODE, {"app": "web9"})
    assert live.until(lambda: later in k8s.pods and first not in k8s.pods), w.requests
    assert w.requests[("pods", "watch", "gone")] >= 1
    assert api.count("pods", watch=False) >= 2
    assert wait_for(lambda: w.synced["pods"] == 1)


def test_a_server_that_answers_410_to_every_watch_gets_no_tight_list_loop(
        api, kubeconfig, watchers):
    api.always_gone = True
    w = watchers(fast_cfg(kubeconfig, backoff_initial=0.05, backoff_max=0.4))
    assert wait_for(lambda: w.requests.get(("pods", "watch", "gone"), 0) >= 3)
    t0 = time.monotonic()
    lists0 = api.count("pods", watch=False)
    time.sleep(2.0)      # a window to count requests in: no signal to wait for here
    rate = (api.count("pods", watch=False) - lists0) / (time.monotonic() - t0)
    # backing off to 0.4 s between relists: ~2.5 lists/s; a tight loop makes hundreds
    assert rate < 6, rate
    api.always_gone = False
    uid = api.add_pod("web-1", "shop", NODE, {"app": "web"})
    live = Live(w)
    assert live.until(lambda: uid in live.enricher.k8s.pods)     # recovers once watches work


def test_server_down_then_back(api, kubeconfig, watchers, caplog):
    uid = api.add_pod("web-0", "shop", NODE, {"app": "web"})
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w)
    k8s = live.enricher.k8s
    assert live.until(lambda: uid in k8s.pods) and wait_for(lambda: api.active_watches == 2)
    with caplog.at_level(logging.WARNING, logger="falconet.container.k8s"):
        api.stop()
        assert wait_for(lambda: w.synced["pods"] == 0)
        assert wait_for(lambda: w.requests.get(("pods", "list", "error"), 0) >= 2)  # retrying
        # meanwhile the pod was relabelled and another one started
        api.set_pod_labels(uid, {"app": "web", "rev": "b"})
        new = api.add_pod("web-1", "shop", NODE, {"app": "web"})
        assert live.field("container.id") == "host"        # events go on while it is down
        api.start()                                          # same port, same state
        assert live.until(lambda: new in k8s.pods and k8s.pods[uid].labels.get("rev") == "b")
        assert wait_for(lambda: w.synced["pods"] == 1)

        def msgs() -> list[str]:
            return [r.getMessage() for r in caplog.records if " pods " in r.getMessage()]
        assert wait_for(lambda: any("synced again" in m for m in msgs())), msgs()
    assert sum("cannot" in m for m in msgs()) == 1, msgs()  # one line per outage, not per retry


def test_unreachable_at_start_one_log_line_and_counted(tmp_path, watchers, caplog):
    need_kubernetes_client()
    dead = FakeApiServer().start()
    kc = dead.write_kubeconfig(tmp_path / "kc")
    dead.stop()                                   # nothing listens on that port any more
    with caplog.at_level(logging.WARNING, logger="falconet.container.k8s"):
        w = watchers(fast_cfg(kc, namespaces=False))
        assert wait_for(lambda: w.requests.get(("pods", "list", "error"), 0) >= 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "falconet.container.k8s"]
    assert len(lines) == 1 and "cannot list pods (node node-a)" in lines[0], lines
    assert "engine continues" in lines[0]
    assert w.synced == {"pods": 0}


def test_forbidden_is_explained_then_recovers_when_rbac_is_fixed(api, kubeconfig, watchers, caplog):
    api.forbidden = {"pods", "namespaces"}
    uid = api.add_pod("web-0", "shop", NODE, {"app": "web"})
    with caplog.at_level(logging.WARNING, logger="falconet.container.k8s"):
        w = watchers(fast_cfg(kubeconfig))
        assert wait_for(lambda: w.requests.get(("pods", "list", "forbidden"), 0) >= 2)
        lines = [r.getMessage() for r in caplog.records if "cannot list pods" in r.getMessage()]
        assert len(lines) == 1 and "403 Forbidden" in lines[0] and "get/list/watch" in lines[0]
        api.forbidden = set()                     # the ClusterRoleBinding was applied
        live = Live(w)
        assert live.until(lambda: uid in live.enricher.k8s.pods)


def test_wrong_token_is_unauthorized(api, tmp_path, watchers):
    kc = api.write_kubeconfig(tmp_path / "kc", token="wrong")
    w = watchers(fast_cfg(kc, namespaces=False))
    assert wait_for(lambda: w.requests.get(("pods", "list", "unauthorized"), 0) >= 1)


def test_missing_kubeconfig_is_a_counted_config_error(tmp_path, watchers, caplog):
    need_kubernetes_client()
    with caplog.at_level(logging.WARNING, logger="falconet.container.k8s"):
        w = watchers(fast_cfg(tmp_path / "nope", namespaces=False))
        assert wait_for(lambda: w.requests.get(("pods", "config", "error"), 0) >= 2)
    assert len([r for r in caplog.records if "cannot config pods" in r.getMessage()]) == 1


# ---------------------------------------------------------------------- fields
def test_api_labels_reach_the_fields_by_the_cgroup_pod_uid(api, kubeconfig, watchers):
    """A containerd CRI container: the enricher finds the container and its pod uid in the
    cgroup path; the fields merge the sandbox's labels with the API's (the API wins)."""
    api.add_pod("web-0", "shop", NODE, {"app": "web", "version": "api"}, ip="10.244.1.9",
                uid=POD_UID)
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w, cgroups={4242: proc_cgroup_file(K8S_CGROUP)})
    assert live.field("container.id") == CID[:12]
    assert live.field("k8s.pod.uid") == POD_UID              # from the cgroup, before any lookup
    assert live.until(lambda: live.field("k8s.pod.label[app]") == "web")
    # the runtime lookup lands later: CRI pod name + the sandbox's copy of the labels
    info = ContainerInfo(CID, type="containerd", k8s_pod_name="web-0", k8s_ns_name="shop",
                         k8s_pod_labels={"version": "sandbox", "from-cri": "yes"},
                         status="resolved")
    live.enricher._done = deque([Done(CID, info, "hit", 0.002)])   # as the worker hands it over
    assert live.field("container.type") == "containerd"
    assert live.field("k8s.pod.uid") == POD_UID              # kept from the cgroup path
    assert live.field("k8s.pod.label[version]") == "api"
    assert live.field("k8s.pod.label.from-cri") == "yes"
    assert live.field("k8s.pod.labels") == "app:web,from-cri:yes,version:api"
    assert live.field("k8s.pod.ip") == "10.244.1.9"
    assert live.until(lambda: live.field("k8s.ns.label[team]") == "payments")
    assert live.field("k8s.ns.labels") == ("env:prod,kubernetes.io/metadata.name:shop,"
                                           "team:payments")
    api.set_pod_labels(POD_UID, {"app": "web2"})
    assert live.until(lambda: live.field("k8s.pod.label.app") == "web2")   # live relabel
    assert live.field("k8s.pod.label[version]") == "sandbox"                # API dropped it


def test_pod_name_and_namespace_from_the_api_while_cri_has_not_said(api, kubeconfig, watchers):
    api.add_pod("web-0", "shop", NODE, {"app": "web"}, uid=POD_UID)
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w, cgroups={4242: proc_cgroup_file(K8S_CGROUP)})
    assert live.until(lambda: live.field("k8s.pod.name") == "web-0")
    assert live.field("k8s.ns.name") == "shop"
    assert live.until(lambda: live.field("k8s.ns.label.team") == "payments")   # its own watch


def test_without_the_api_the_fields_are_the_cri_ones():
    enr = ContainerEnricher(read_cgroup={7: proc_cgroup_file(K8S_CGROUP)}.get)
    reg = FieldRegistry()
    reg.register_all(field_defs(enr))
    t = thread(7)
    evt = event(t)
    enr.parse(evt)
    enr.containers[CID] = ContainerInfo(CID, k8s_pod_uid=POD_UID, k8s_pod_labels={"a": "1"})
    assert reg.resolve("k8s.pod.labels").extract(evt) == "a:1"
    assert reg.resolve("k8s.pod.ip").extract(evt) is None
    assert resolve(reg, "k8s.ns.label[team]").extract(evt) is None
    assert reg.resolve("k8s.pod.name").extract(evt) is None
    host = event(thread(8, container_id=""))
    assert reg.resolve("k8s.pod.labels").extract(host) is None


def test_cache_is_bounded_and_evictions_are_counted():
    m = EngineMetrics()
    enr = ContainerEnricher(metrics=m)
    enr.k8s.max_pods = 2
    enr.k8s_updates = deque()
    for i in range(3):
        enr.k8s_updates.append({"pod": {"uid": f"u{i}", "name": f"p{i}", "labels": {}}})
    enr.parse(event(thread(1, container_id="")))
    assert list(enr.k8s.pods) == ["u1", "u2"]
    assert m.drops["k8s_pod_cache_full"] == 1
    enr.k8s_updates.append({"pods": [{"uid": f"v{i}"} for i in range(5)]})
    enr.parse(event(thread(1, container_id="")))
    assert len(enr.k8s.pods) == 2 and m.drops["k8s_pod_cache_full"] == 4


def test_malformed_update_is_counted_not_fatal():
    m = EngineMetrics()
    enr = ContainerEnricher(metrics=m)
    enr.k8s_updates = deque([{"pod": {"name": "no-uid"}},
                                                      {"pod": {"uid": "ok"}}])
    enr.parse(event(thread(1, container_id="")))
    assert "ok" in enr.k8s.pods and m.drops["k8s_update_malformed"] == 1


def test_updates_are_drained_by_events_of_any_source():
    """An engine reading a plugin source (k8s_audit, ...) with the same configuration still runs
    the watcher: its outbox must not grow without bound because no syscall event comes."""
    enr = ContainerEnricher(metrics=EngineMetrics())
    enr.k8s_updates = deque([{"pod": {"uid": "u1", "name": "p1"}}])
    audit = event(None, "k8s_audit", pid=0)
    audit.source = "k8s_audit"
    enr.parse(audit)
    assert not enr.k8s_updates and "u1" in enr.k8s.pods


# ---------------------------------------------------------------------- plugin, metrics
def test_plugin_hooks_metrics_and_stop(api, kubeconfig):
    from prometheus_client import CollectorRegistry, generate_latest

    uid = api.add_pod("web-0", "shop", NODE, {"app": "web"})
    c = EngineContext(hostname="t", fields=FieldRegistry(), metrics=EngineMetrics())
    section = {"enabled": True, "kubeconfig": str(kubeconfig), "node_name": NODE,
               "backoff_initial": 0.02, "backoff_max": 0.1}
    cp = plugin.ContainerPlugin()
    configure_by_hand(cp, "container", config={"lookups": False, "k8s_api": section}, engine=c)
    p = cp
    assert p.k8s_watcher is not None and p.enricher.k8s_updates is p.k8s_watcher.updates
    cp.falconet_start(engine=c)
    try:
        [parse] = cp.falconet_event_parsers(engine=c)

        def synced() -> bool:
            parse(event(thread(9, container_id="")))
            return uid in p.enricher.k8s.pods and "shop" in p.enricher.k8s.ns_labels
        assert wait_for(synced)
        sizes = c.metrics.gauges["state_table_entries"]()
        assert sizes["k8s_pods"] == 1.0 and sizes["k8s_namespaces"] == 2.0
        reg = CollectorRegistry()
        cp.falconet_metrics(registry=reg, engine=c)
        text = generate_latest(reg).decode()
        assert ('falconet_k8s_api_requests_total{resource="pods",result="ok",verb="list"} 1.0'
                in text)
        assert 'falconet_k8s_api_synced{resource="namespaces"} 1.0' in text
        assert 'falconet_k8s_api_watch_events_total' in text
    finally:
        t0 = time.monotonic()
        cp.falconet_stop(engine=c)
        assert time.monotonic() - t0 < 2.0          # stop never waits for the watch timeout
    assert all(not t.is_alive() for t in p.k8s_watcher._threads) or not p.k8s_watcher._threads


def test_replay_source_never_starts_the_watcher(kubeconfig):
    c = EngineContext(hostname="t", fields=FieldRegistry(), metrics=EngineMetrics())
    c.extras["falconet.source"] = "replay"
    cp = plugin.ContainerPlugin()
    configure_by_hand(cp, "container", config={"k8s_api": {"enabled": True, "kubeconfig": str(kubeconfig)}},
                              engine=c)
    assert cp.k8s_watcher is None and cp.enricher.k8s_api


# ---------------------------------------------------------------------- capture and replay
RULES = """
- rule: Shell in labelled pod
  desc: test rule reading the API-fed k8s fields
  condition: evt.type = openat and k8s.pod.label[app] = web
  output: >-
    pod=%k8s.pod.name app=%k8s.pod.label[app] team=%k8s.ns.label[team]
    ip=%k8s.pod.ip labels=%k8s.pod.labels
  priority: WARNING
"""


def test_recorded_api_labels_replay_through_falconet(api, kubeconfig, watchers, tmp_path):
    """Live watcher → enricher → a real capture file (as ``falconet record`` writes it) →
    ``falconet replay`` with a rule on the API-fed fields: the alert carries them."""
    api.add_pod("web-0", "shop", NODE, {"app": "web"}, ip="10.244.1.9", uid=POD_UID)
    cap = tmp_path / "k8s.fcap"
    writer = CaptureWriter(str(cap))
    w = watchers(fast_cfg(kubeconfig))
    live = Live(w, cgroups={4242: proc_cgroup_file(K8S_CGROUP)}, emit=writer.write_state)
    writer.write_state("container", live.enricher.capture_state())
    assert live.until(lambda: live.field("k8s.ns.label[team]") == "payments")
    evt = live.pump()
    evt.args = {"fd": 3, "name": "/etc/shadow", "flags": 0}
    writer.write_event(evt)
    writer.close()
    text = cap.read_text()
    assert '"k8s":[' in text and POD_UID in text

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("json_output: false\n")
    exe = Path(sys.executable).parent / "falconet"
    r = subprocess.run([str(exe), "replay", str(cap), "-c", str(cfg), "-r", str(rules),
                        "--no-progress"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert ("pod=web-0 app=web team=payments ip=10.244.1.9 "
            "labels=app:web") in r.stdout, r.stdout + r.stderr


def test_capture_state_and_restore_round_trip():
    enr = ContainerEnricher()
    enr.k8s.apply({"pods": [{"uid": POD_UID, "name": "web-0", "namespace": "shop",
                             "labels": {"app": "web"}, "ip": "10.0.0.1"}]})
    enr.k8s.apply({"namespaces": {"shop": {"team": "payments"}}})
    state = json.loads(json.dumps(enr.capture_state()))
    other = ContainerEnricher()
    other.restore(state)
    assert other.k8s.pods[POD_UID].labels == {"app": "web"}
    assert other.k8s.ns_labels == {"shop": {"team": "payments"}}
    with pytest.raises(ValueError):
        other.restore({"k8s": ["not an object"]})
    assert K8sCache().snapshot()[0] == {"pods": []}


@pytest.mark.parametrize("record", [{"pods": ["web-0"]}, {"pod": "web-0"}, {"pods": "web-0"},
                                    {"pod": {"uid": "u", "labels": ["app"]}}])
def test_a_malformed_k8s_record_is_a_value_error(record):
    """What a damaged capture holds is reported as bad input (ValueError, what the live drain
    counts as k8s_update_malformed), never an AttributeError from deep inside."""
    m = EngineMetrics()
    enr = ContainerEnricher(metrics=m)
    with pytest.raises(ValueError):
        enr.restore({"k8s": [record]})
    enr.k8s_updates = deque([record, {"pod": {"uid": "ok"}}])
    enr.parse(event(thread(1, container_id="")))
    assert "ok" in enr.k8s.pods and m.drops["k8s_update_malformed"] == 1


# ---------------------------------------------------------------------- deployment
def test_deploy_manifests_grant_what_the_watcher_uses():
    """deploy/kubernetes: the DaemonSet's service account may get/list/watch pods and namespaces
    (and nothing more), its token is mounted exactly when the shipped config turns k8s_api on
    (least privilege: off by default, so no token), and NODE_NAME comes from the downward API.
    The manifests' schema validity is checked by tests/bundle."""
    import yaml

    k8s_dir = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
    docs = [d for f in sorted(k8s_dir.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    ds = next(d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "falconet")
    pod = ds["spec"]["template"]["spec"]
    sa, ns = pod["serviceAccountName"], ds["metadata"]["namespace"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "falconet.yaml" in d.get("data", {}))
    engine_cfg = yaml.safe_load(cm["data"]["falconet.yaml"])
    enabled = engine_cfg["plugins"]["container"]["k8s_api"]["enabled"]
    assert enabled is False                                   # the shipped default
    assert pod["automountServiceAccountToken"] is enabled
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding"
                   and {"kind": "ServiceAccount", "name": sa, "namespace": ns} in d["subjects"])
    role = next(d for d in docs if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == binding["roleRef"]["name"])
    [rule] = role["rules"]
    assert rule["apiGroups"] == [""] and set(rule["resources"]) == {"pods", "namespaces"}
    assert set(rule["verbs"]) == {"get", "list", "watch"}
    kust = yaml.safe_load((k8s_dir / "kustomization.yaml").read_text())
    assert "falconet-rbac.yaml" in kust["resources"]
