"""The resolver against runtime state laid out as runc/containerd/podman/CRI-O write it, and
against a docker socket that is missing or hangs."""

import json
import socket
import threading
import time

import pytest
from container_helpers import write_state
from falconet_container.errors import LookupFailed, LookupMiss, LookupTimeout
from falconet_container.resolver import MetadataResolver, ResolverConfig

ID = "ab" * 32


@pytest.fixture
def roots(tmp_path):
    runc = tmp_path / "run-runc"
    ctrd = tmp_path / "containerd-runc"
    runc.mkdir()
    ctrd.mkdir()
    return runc, ctrd


def resolver(roots, tmp_path, **kw):
    cfg = ResolverConfig(docker_socket=str(tmp_path / "no-docker.sock"),
                         containerd_socket=str(tmp_path / "no-containerd.sock"),
                         runc_roots=[str(r) for r in roots], ctr_binary="/nonexistent/ctr",
                         podman_binary="/nonexistent/podman", timeout=0.3, **kw)
    return MetadataResolver(cfg)


def test_containerd_cri_annotations(roots, tmp_path):
    write_state(roots[1], ID, {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "nginx",
        "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.25",
        "io.kubernetes.cri.sandbox-id": "cd" * 32,
        "io.kubernetes.cri.sandbox-name": "web-7d9f",
        "io.kubernetes.cri.sandbox-namespace": "shop",
        "io.kubernetes.cri.sandbox-uid": "1234-5678"}, namespace="k8s.io")
    info = resolver(roots, tmp_path).resolve(ID, "containerd")
    assert (info.type, info.name, info.image_repository, info.image_tag) == \
        ("containerd", "nginx", "docker.io/library/nginx", "1.25")
    assert (info.k8s_pod_name, info.k8s_ns_name, info.k8s_pod_uid, info.k8s_container_name) == \
        ("web-7d9f", "shop", "1234-5678", "nginx")
    assert info.start_ts == 1795890020196910761
    assert info.privileged is False


def test_crio_annotations_and_labels(roots, tmp_path):
    write_state(roots[0], ID, {
        "io.kubernetes.cri-o.ContainerID": ID,
        "io.kubernetes.cri-o.ImageName": "quay.io/app/api:v2",
        "io.kubernetes.cri-o.Labels": json.dumps({"io.kubernetes.pod.name": "api-0",
                                                  "io.kubernetes.pod.namespace": "prod",
                                                  "io.kubernetes.pod.uid": "u-1",
                                                  "io.kubernetes.container.name": "api",
                                                  "team": "payments"})})
    info = resolver(roots, tmp_path).resolve(ID, "cri-o")
    assert info.type == "cri-o"
    assert (info.k8s_pod_name, info.k8s_ns_name, info.k8s_pod_uid, info.name) == \
        ("api-0", "prod", "u-1", "api")
    assert info.image_repository == "quay.io/app/api" and info.labels["team"] == "payments"


def test_crio_keys_as_plain_annotations(roots, tmp_path):
    write_state(roots[0], ID, {"io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "ns",
                               "io.kubernetes.pod.uid": "uid", "io.kubernetes.container.name": "c"})
    info = resolver(roots, tmp_path).resolve(ID)
    assert (info.type, info.k8s_pod_name, info.k8s_ns_name, info.k8s_pod_uid, info.name) == \
        ("cri-o", "p", "ns", "uid", "c")


def test_podman_is_not_crio(roots, tmp_path):
    write_state(roots[0], ID, {"io.container.manager": "libpod",
                               "io.kubernetes.cri-o.Created": "2026-11-28T18:20:20Z",
                               "io.kubernetes.cri-o.TTY": "false",
                               "io.podman.annotations.privileged": "TRUE"},
                bundle=tmp_path / "proot" / "overlay-containers" / ID / "userdata")
    (tmp_path / "proot" / "overlay-containers" / "containers.json").write_text(json.dumps([
        {"id": ID, "names": ["c1"], "image": "5d" * 32,
         "metadata": json.dumps({"image-name": "docker.io/library/busybox:1.36", "name": "c1"})}]))
    (tmp_path / "proot" / "overlay-images").mkdir()
    (tmp_path / "proot" / "overlay-images" / "images.json").write_text(json.dumps([
        {"id": "5d" * 32, "digest": "sha256:96f7"}]))
    info = resolver(roots, tmp_path).resolve(ID, "podman")
    assert (info.type, info.name, info.image, info.image_digest, info.image_id, info.privileged) == \
        ("podman", "c1", "docker.io/library/busybox:1.36", "sha256:96f7", "5d" * 6, True)


def test_plain_runc(roots, tmp_path):
    write_state(roots[0], ID, {}, spec_extra={
        "process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}}, "linux": {}})
    info = resolver(roots, tmp_path).resolve(ID)
    assert (info.type, info.name, info.image, info.privileged) == ("runc", ID, None, True)


def test_unknown_container_is_a_miss(roots, tmp_path):
    with pytest.raises(LookupMiss):
        resolver(roots, tmp_path).resolve(ID)


def test_malformed_state_file_is_an_error(roots, tmp_path):
    (roots[0] / ID).mkdir()
    (roots[0] / ID / "state.json").write_text('{"id": "x", "config": {"labels": [')
    with pytest.raises(LookupFailed, match="malformed JSON"):
        resolver(roots, tmp_path).resolve(ID)


def test_missing_docker_socket_is_an_error(roots, tmp_path):
    with pytest.raises(LookupFailed, match="no-docker.sock"):
        resolver(roots, tmp_path).resolve(ID, "docker")


@pytest.fixture
def hung_socket(tmp_path):
    """A unix socket server that accepts and never answers."""
    path = str(tmp_path / "hung.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
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


def test_hung_docker_socket_times_out(roots, tmp_path, hung_socket):
    r = resolver(roots, tmp_path)
    r.docker.socket_path = hung_socket
    t0 = time.monotonic()
    with pytest.raises(LookupTimeout):
        r.resolve(ID, "docker")
    assert time.monotonic() - t0 < 1.5


def test_hung_docker_with_runc_state_gives_partial_answer(roots, tmp_path, hung_socket):
    from falconet_container.resolver import PartialResult
    write_state(roots[1], ID, {}, namespace="moby")
    r = resolver(roots, tmp_path)
    r.docker.socket_path = hung_socket
    with pytest.raises(PartialResult) as ei:
        r.resolve(ID, "docker")
    assert ei.value.info.type == "docker" and ei.value.err.result == "timeout"


def test_podman_inspect_fallback(roots, tmp_path):
    """Without podman's storage files the worker asks `podman inspect` (argument vector)."""
    write_state(roots[0], ID, {"io.container.manager": "libpod"},
                bundle=tmp_path / "nostore" / "overlay-containers" / ID / "userdata")
    fake = tmp_path / "podman"
    args_file = tmp_path / "args"
    fake.write_text("#!/bin/sh\n"
                    f"echo \"$@\" > {args_file}\n"
                    "echo '[{\"Name\": \"pc9\", \"ImageName\": \"quay.io/x/y:2\", "
                    "\"Image\": \"5d5d5d5d5d5d5d5d\", \"Config\": {\"Labels\": {\"app\": \"z\"}}}]'\n")
    fake.chmod(0o755)
    r = resolver(roots, tmp_path)
    r.cfg.podman_binary = str(fake)
    info = r.resolve(ID, "podman")
    assert (info.name, info.image_repository, info.image_tag, info.labels) == \
        ("pc9", "quay.io/x/y", "2", {"app": "z"})
    assert args_file.read_text().split() == ["--root", str(tmp_path / "nostore"), "inspect",
                                             "--type", "container", ID]


def test_podman_inspect_timeout(roots, tmp_path):
    write_state(roots[0], ID, {"io.container.manager": "libpod"})
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\nexec sleep 10\n")
    fake.chmod(0o755)
    r = resolver(roots, tmp_path)
    r.cfg.podman_binary = str(fake)
    with pytest.raises(LookupTimeout):
        r.resolve(ID, "podman")


def test_crio_pod_labels_from_the_infra_container(roots, tmp_path):
    sandbox = "cd" * 32
    write_state(roots[0], sandbox, {
        "io.kubernetes.cri-o.ContainerType": "sandbox",
        "io.kubernetes.cri-o.Labels": json.dumps({"app": "shop", "tier": "web",
                                                  "io.kubernetes.pod.name": "api-0"})})
    write_state(roots[0], ID, {
        "io.kubernetes.cri-o.SandboxID": sandbox,
        "io.kubernetes.cri-o.Labels": json.dumps({"io.kubernetes.pod.name": "api-0"})})
    info = resolver(roots, tmp_path).resolve(ID, "cri-o")
    assert info.k8s_pod_labels == {"app": "shop", "tier": "web"}
    assert info.k8s_pod_sandbox_id == sandbox
