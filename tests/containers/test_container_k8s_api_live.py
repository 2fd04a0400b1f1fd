"""Live: ``k8s_api`` with real runc containers in kubelet-style cgroups.

The plugin reads the containers' real ``/proc/<pid>/cgroup`` (the pod uid in the path) and runc
state, and the real ``kubernetes`` client watches the protocol-level stand-in API server of
``plugins/falconet-container/tests/k8s_apiserver.py`` (no real kube-apiserver can run here; see
docs/containers.md). The pod's API labels reach the fields of the containers' events.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO, need
from container_runtimes import start_runc, wait_until
from test_container_enrichment import CONTAINERD_CRI, Engine

sys.path.insert(0, str(REPO / "plugins" / "falconet-container" / "tests"))
from k8s_apiserver import FakeApiServer  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.containers]

NODE = "node-live"


@pytest.fixture
def api():
    try:
        import kubernetes  # noqa: F401, PLC0415
        ok = True
    except ImportError:
        ok = False
    need(ok, "the kubernetes client is not installed (pip install 'falconet-container[k8s]')")
    server = FakeApiServer().start()
    server.add_namespace("shop", {"team": "payments"})
    yield server
    server.stop()


@pytest.fixture
def k8s_engine(api, tmp_path: Path):
    kc = api.write_kubeconfig(tmp_path / "kubeconfig")
    eng = Engine(k8s_api={"enabled": True, "kubeconfig": str(kc), "node_name": NODE,
                          "backoff_initial": 0.05, "backoff_max": 0.2}).start()
    yield eng
    eng.stop()


def test_cri_container_gets_the_api_pod_labels(api, k8s_engine, request):
    uid = str(uuid.uuid4())
    api.add_pod("web-7d9f", "shop", NODE, {"app": "shop", "release": "canary"}, ip="10.244.3.4",
                uid=uid)
    c = start_runc(request, annotations={**CONTAINERD_CRI, "io.kubernetes.cri.sandbox-uid": uid},
                   cgroup=f"/kubepods/besteffort/pod{uid}/{{id}}")
    e = k8s_engine.wait_metadata(c.pid, "k8s.pod.label.release")
    f = k8s_engine.field
    assert f(e, "k8s.pod.label.release") == "canary"
    assert f(e, "k8s.pod.uid") == uid and f(e, "k8s.pod.name") == "web-7d9f"
    assert f(e, "k8s.pod.ip") == "10.244.3.4"
    assert wait_until(lambda: f(k8s_engine.event(c.pid), "k8s.ns.label.team") == "payments", 10)
    api.set_pod_labels(uid, {"app": "shop", "release": "stable"})      # kubectl label --overwrite
    assert wait_until(lambda: f(k8s_engine.event(c.pid), "k8s.pod.label.release") == "stable", 10)


def test_pod_uid_from_the_real_cgroup_path_without_annotations(api, k8s_engine, request):
    """Plain runc (no CRI annotations) in a systemd-style kubepods slice: the uid comes from
    the real /proc/<pid>/cgroup, the pod name and labels from the API."""
    uid = str(uuid.uuid4())
    api.add_pod("batch-1", "shop", NODE, {"app": "batch"}, uid=uid)
    slice_uid = uid.replace("-", "_")
    c = start_runc(request, cgroup=f"/kubepods-besteffort-pod{slice_uid}.slice/{{id}}")
    e = k8s_engine.wait_metadata(c.pid, "k8s.pod.name")
    assert k8s_engine.field(e, "k8s.pod.uid") == uid
    assert k8s_engine.field(e, "k8s.pod.name") == "batch-1"
    assert k8s_engine.field(e, "k8s.pod.label.app") == "batch"
    assert k8s_engine.field(e, "container.full_id") == c.full_id
