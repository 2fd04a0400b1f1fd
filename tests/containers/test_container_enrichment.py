"""Live: the container plugin against real containers (runc, containerd via ctr, docker, podman).

Events are built for the containers' real pids, with the real cgroup ids the kernel reports; the
plugin reads the real /proc/<pid>/cgroup, runc state, OCI bundles, containerd (ctr), the Docker
Engine API and podman's storage. The end-to-end alert tests (falconet run + eBPF) are in
test_container_e2e.py.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from container_runtimes import (
    CONTAINERD_SOCK,
    DOCKER_RUNC_ROOT,
    DOCKER_SOCK,
    IMAGE,
    start_ctr,
    start_docker,
    start_podman,
    start_runc,
    unified_cgroup_id,
    wait_until,
)
from falconet.api import EngineContext
from falconet.events import Event
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.state.tables import StateTables, ThreadInfo
from falconet_container.plugin import ContainerPlugin

pytestmark = [pytest.mark.root, pytest.mark.containers]

REPO, TAG = IMAGE.rsplit(":", 1)


class Engine:
    """The container plugin as the engine wires it: configure → fields → parser → start."""

    def __init__(self, **config):
        config.setdefault("runc_roots", ["/run/runc", "/run/containerd/runc", DOCKER_RUNC_ROOT])
        config.setdefault("docker_socket", DOCKER_SOCK)
        config.setdefault("containerd_socket", CONTAINERD_SOCK)
        self.metrics = EngineMetrics()
        self.ctx = EngineContext(hostname="test", fields=FieldRegistry(), metrics=self.metrics,
                                 state=StateTables())
        self.plugin = ContainerPlugin()
        self.plugin.configure(config, self.ctx)
        self.ctx.fields.register_all(
            __import__("falconet_container.fields", fromlist=["x"]).field_defs(self.plugin.enricher))
        self.parse = self.plugin.enricher.parse
        self._fields = {}

    def start(self):
        self.plugin.start(self.ctx)
        return self

    def stop(self):
        self.plugin.stop()

    def event(self, pid: int, type: str = "openat") -> Event:
        t = self.ctx.state.threads.get(pid)
        if t is None:
            t = self.ctx.state.threads[pid] = ThreadInfo(tid=pid, pid=pid)
        cg = unified_cgroup_id(pid) if os.path.exists(f"/proc/{pid}") else 0
        t.cgroup_id = cg
        e = Event("syscall", type, 0, tid=pid, pid=pid, args={"cgroup_id": cg})
        e.thread = t
        self.parse(e)
        return e

    def field(self, evt: Event, name: str):
        arg = None
        if name.endswith("]") and "[" in name:          # container.mount.dest[/data]
            name, _, arg = name[:-1].partition("[")
        return self.ctx.fields.resolve(name, arg).extract(evt)

    def wait_metadata(self, pid: int, field: str = "container.name", timeout: float = 10.0) -> Event:
        """Send events for ``pid`` until ``field`` has a value (the lookup finished)."""
        def ready():
            e = self.event(pid)
            return e if self.field(e, field) is not None else None
        return wait_until(ready, timeout)


@pytest.fixture
def engine():
    eng = Engine().start()
    yield eng
    eng.stop()


def assert_container(eng: Engine, pid: int, full_id: str, name: str, ctype: str,
                     repo: str | None = REPO, tag: str | None = TAG):
    e = eng.wait_metadata(pid)
    got = {f: eng.field(e, f) for f in ("container.id", "container.full_id", "container.name",
                                        "container.type", "container.image.repository",
                                        "container.image.tag")}
    assert got == {"container.id": full_id[:12], "container.full_id": full_id,
                   "container.name": name, "container.type": ctype,
                   "container.image.repository": repo, "container.image.tag": tag}
    assert eng.field(e, "container.start_ts") > 1_600_000_000 * 10**9
    assert eng.field(e, "container.privileged") is False
    return e


def test_host_process_is_host(engine):
    e = engine.event(os.getpid())
    assert engine.field(e, "container.id") == "host"
    assert engine.field(e, "container.name") == "host"
    assert engine.field(e, "container.image.repository") is None
    assert engine.plugin.enricher.containers == {}


def test_runc(engine, request):
    c = start_runc(request, annotations={"io.kubernetes.cri.image-name": IMAGE})
    assert_container(engine, c.pid, c.full_id, c.full_id, "runc")


def test_containerd_ctr(engine, request):
    c = start_ctr(request, labels={"tier": "db"})
    e = assert_container(engine, c.pid, c.full_id, c.full_id, "containerd")
    assert engine.field(e, "container.label.tier") == "db"
    assert engine.ctx.fields.resolve("container.label", "tier").extract(e) == "db"


def test_docker(engine, request):
    c = start_docker(request, labels={"app": "web"})
    e = assert_container(engine, c.pid, c.full_id, c.name, "docker",
                         repo=REPO.removeprefix("docker.io/library/"))
    assert engine.field(e, "container.label.app") == "web"
    assert engine.field(e, "container.image.id")


def test_runc_privileged(engine, request):
    # --privileged in docker/podman needs every capability, which root lacks on the CI VM
    # (no CAP_SYS_RESOURCE), so the privileged spec is written by hand: what --privileged writes
    caps = ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    c = start_runc(request, spec_update={"process": {
        "terminal": False, "args": ["sleep", "300"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"], "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}}})
    from container_runtimes import CI_RT_DIR
    spec = __import__("json").loads((CI_RT_DIR / "bundles" / c.full_id / "config.json").read_text())
    spec["linux"].pop("maskedPaths", None)
    e = engine.wait_metadata(c.pid)
    assert engine.field(e, "container.privileged") is False     # masked paths: not privileged
    c2 = start_runc(request, spec_update={"process": spec["process"], "linux": spec["linux"]})
    e2 = engine.wait_metadata(c2.pid)
    assert engine.field(e2, "container.privileged") is True


def test_podman(engine, request):
    c = start_podman(request)
    e = assert_container(engine, c.pid, c.full_id, c.name, "podman")
    assert engine.field(e, "container.image.digest").startswith("sha256:")


def test_lookup_time_docker(engine, request):
    """The metadata is there well within 100 ms of the container's first event."""
    c = start_docker(request)
    import time
    t0 = time.perf_counter()
    engine.event(c.pid)
    wait_until(lambda: engine.field(engine.event(c.pid), "container.name"), 5, interval=0.001)
    assert time.perf_counter() - t0 < 2.0      # generous for a loaded CI box; the bench measures it


# ---------------------------------------------------------------------------------- kubernetes
CONTAINERD_CRI = {"io.kubernetes.cri.container-type": "container",
                  "io.kubernetes.cri.container-name": "nginx",
                  "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.25",
                  "io.kubernetes.cri.sandbox-name": "web-7d9f",
                  "io.kubernetes.cri.sandbox-namespace": "shop",
                  "io.kubernetes.cri.sandbox-uid": "0f1e2d3c-aaaa-bbbb-cccc-000000000001"}
CRIO = {"io.kubernetes.pod.name": "api-0", "io.kubernetes.pod.namespace": "prod",
        "io.kubernetes.pod.uid": "0f1e2d3c-aaaa-bbbb-cccc-000000000002",
        "io.kubernetes.container.name": "api"}


def k8s(eng, e):
    return tuple(eng.field(e, f) for f in ("k8s.pod.name", "k8s.ns.name", "k8s.pod.uid",
                                           "k8s.container.name"))


def test_runc_kubepods_containerd_keys(engine, request):
    c = start_runc(request, annotations=CONTAINERD_CRI, cgroup="/kubepods/besteffort/pod0f1e2d3c/{id}")
    e = engine.wait_metadata(c.pid, "k8s.pod.name")
    assert k8s(engine, e) == ("web-7d9f", "shop", CONTAINERD_CRI["io.kubernetes.cri.sandbox-uid"], "nginx")
    assert engine.field(e, "container.name") == "nginx"
    assert engine.field(e, "container.image.repository") == "docker.io/library/nginx"


def test_runc_crio_keys(engine, request):
    c = start_runc(request, annotations=CRIO)
    e = engine.wait_metadata(c.pid, "k8s.pod.name")
    assert k8s(engine, e) == ("api-0", "prod", CRIO["io.kubernetes.pod.uid"], "api")
    assert engine.field(e, "container.type") == "cri-o"


@pytest.mark.parametrize("keys", [CONTAINERD_CRI, CRIO], ids=["containerd-keys", "crio-keys"])
def test_ctr_annotations(engine, request, keys):
    c = start_ctr(request, annotations=keys, ns="k8s.io",
                  cgroup="/kubepods/besteffort/pod0f1e2d3c/{id}")
    e = engine.wait_metadata(c.pid, "k8s.pod.name")
    assert engine.field(e, "container.full_id") == c.full_id
    assert engine.field(e, "container.type") == "containerd"
    if keys is CRIO:
        assert k8s(engine, e) == ("api-0", "prod", CRIO["io.kubernetes.pod.uid"], "api")
    else:
        assert k8s(engine, e) == ("web-7d9f", "shop",
                                  CONTAINERD_CRI["io.kubernetes.cri.sandbox-uid"], "nginx")
        assert engine.field(e, "container.image.repository") == REPO   # ctr knows the real image


def test_pod_labels_from_the_containerd_sandbox(engine, request):
    # kubelet gives the pod's labels to the sandbox (pause) container; containers point to it
    sandbox = start_ctr(request, ns="k8s.io", labels={
        "app": "shop", "tier": "web", "io.kubernetes.pod.name": "web-7d9f",
        "io.cri-containerd.kind": "sandbox"})
    c = start_ctr(request, ns="k8s.io", annotations={
        **CONTAINERD_CRI, "io.kubernetes.cri.sandbox-id": sandbox.full_id},
        cgroup="/kubepods/besteffort/pod0f1e2d3c/{id}")
    e = engine.wait_metadata(c.pid, "k8s.pod.name")
    assert engine.field(e, "k8s.pod.label.app") == "shop"
    assert engine.ctx.fields.resolve("k8s.pod.label", "tier").extract(e) == "web"
    assert engine.field(e, "k8s.pod.label.io.cri-containerd.kind") is None   # runtime's own
    assert engine.field(e, "k8s.pod.sandbox_id") == sandbox.full_id[:12]


def test_ctr_labels_as_kubelet_writes_them(engine, request):
    # kubelet passes io.kubernetes.pod.* as CRI labels, which containerd keeps as container labels
    c = start_ctr(request, labels=CRIO)
    e = engine.wait_metadata(c.pid, "k8s.pod.name")
    assert k8s(engine, e) == ("api-0", "prod", CRIO["io.kubernetes.pod.uid"], "api")


# ---------------------------------------------------------------------------------- failures
def test_exit_before_lookup_is_a_counted_miss(request):
    eng = Engine()                                   # worker not started yet
    c = start_runc(request)
    e = eng.event(c.pid)
    assert eng.field(e, "container.id") == c.full_id[:12]
    from container_runtimes import sh
    sh("runc", "kill", c.full_id, "KILL")
    wait_until(lambda: not os.path.exists(f"/proc/{c.pid}") or
               "Z" in Path(f"/proc/{c.pid}/stat").read_text().split(")")[1][:3], 5)
    sh("runc", "delete", "-f", c.full_id, check=False)
    eng.start()
    try:
        wait_until(lambda: (eng.event(os.getpid()), eng.metrics.enrichment[("container", "miss")])[1], 5)
        assert eng.field(eng.event(os.getpid()), "container.id") == "host"
    finally:
        eng.stop()


@pytest.fixture
def hung_socket(tmp_path):
    path = str(tmp_path / "hung.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.05)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue
    th = threading.Thread(target=accept, daemon=True)
    th.start()
    yield path
    stop.set()
    th.join()
    for c in conns:
        c.close()
    srv.close()


def test_hung_docker_socket(request, hung_socket):
    eng = Engine(docker_socket=hung_socket, lookup_timeout=0.3).start()
    try:
        c = start_docker(request)
        host_pid = os.getpid()
        e = eng.event(c.pid)
        assert eng.field(e, "container.id") == c.full_id[:12]
        # the engine keeps going while the worker waits on the socket
        for _ in range(100):
            assert eng.field(eng.event(host_pid), "container.id") == "host"
        wait_until(lambda: (eng.event(c.pid), eng.metrics.enrichment[("container", "timeout")])[1], 5)
        # docker's runc state still gave a partial answer: the type
        assert eng.field(eng.event(c.pid), "container.type") == "docker"
    finally:
        eng.stop()


def test_missing_docker_socket(request, tmp_path):
    eng = Engine(docker_socket=str(tmp_path / "absent.sock"), runc_roots=[]).start()
    try:
        c = start_docker(request)
        e = eng.event(c.pid)
        assert eng.field(e, "container.id") == c.full_id[:12]
        wait_until(lambda: (eng.event(c.pid), eng.metrics.enrichment[("container", "error")])[1], 5)
        assert eng.field(eng.event(c.pid), "container.name") is None
    finally:
        eng.stop()


def test_malformed_state_file(request, tmp_path):
    root = tmp_path / "runc-root"
    c = start_runc(request, root=str(root))
    state = root / c.full_id / "state.json"
    good = state.read_bytes()
    request.addfinalizer(lambda: state.write_bytes(good))   # runs before runc's cleanup
    state.write_text('{"id": "' + c.full_id + '", "config": {"lab')
    eng = Engine(runc_roots=[str(root)]).start()
    try:
        e = eng.event(c.pid)
        assert eng.field(e, "container.id") == c.full_id[:12]
        wait_until(lambda: (eng.event(c.pid), eng.metrics.enrichment[("container", "error")])[1], 5)
        assert eng.field(eng.event(os.getpid()), "container.id") == "host"
    finally:
        eng.stop()


def test_mounts_of_containerd_and_podman(engine, request, tmp_path):
    """container.mount* from the OCI spec containerd wrote (ctr --mount) and from podman's
    bundle (-v ...:ro): the container plugin's OCI reading (see falconet_container/model.py)."""
    src = tmp_path / "falconet-mnt-src"
    src.mkdir()
    c = start_ctr(request, extra=("--mount", f"type=bind,src={src},dst=/data,options=rbind:ro"))
    e = engine.wait_metadata(c.pid, field="container.mounts")
    assert engine.field(e, "container.mount.dest[falconet-mnt-src]") == "/data"
    assert engine.field(e, "container.mount.rdwr[falconet-mnt-src]") == "false"
    assert engine.field(e, "container.mount.source[^/data$]") == str(src)
    assert engine.field(e, "container.mount.dest[0]") == "/proc"     # every spec mount
    assert engine.field(e, "container.mount.mode[^tmpfs$]") == "755"   # /dev's mode= option
    p = start_podman(request, extra=("-v", f"{src}:/data:ro"))
    e = engine.wait_metadata(p.pid, field="container.mounts")
    assert engine.field(e, "container.mount.dest[falconet-mnt-src]") == "/data"
    assert engine.field(e, "container.mount.rdwr[falconet-mnt-src]") == "false"
