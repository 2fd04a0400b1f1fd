"""Container ids from real-world cgroup files (layouts observed on this project's CI VM and
documented by the runtimes)."""

import pytest
from falconet_container.cgroup import container_from_cgroup_text, container_from_path

ID = "3565264936fc1e989b3cb2263e1345ff3ff9bdb1a2065ae9e20c43483bfbfc68"
HOST_HYBRID = """12:hugetlb:/
11:pids:/
4:memory:/process_api/7823e503aa0c4b2f9b1d0c3e5f6a7b8c
1:name=systemd:/
0::/
"""


@pytest.mark.parametrize("path,hint", [
    (f"/docker/{ID}", "docker"),
    (f"/system.slice/docker-{ID}.scope", "docker"),
    (f"/default/{ID}", ""),
    (f"/k8s.io/{ID}", ""),
    (f"/kubepods/besteffort/pod1234-5678/{ID}", "containerd"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-{ID}.scope",
     "containerd"),
    (f"/kubepods.slice/kubepods-pod12.slice/crio-{ID}.scope", "cri-o"),
    (f"/kubepods/burstable/pod12/crio-{ID}", "cri-o"),
    (f"/libpod_parent/libpod-{ID}", "podman"),
    (f"/machine.slice/libpod-{ID}.scope/container", "podman"),
])
def test_container_paths(path, hint):
    assert container_from_path(path) == (ID, hint)


@pytest.mark.parametrize("path", [
    "/", "/process_api/7823e503aa0c4b2f9b1d0c3e5f6a7b8c", "/user.slice/session-1.scope",
    "/default/ctr-smoke", "/docker/" + ID[:63], "/docker/" + ID.upper(), f"/docker/{ID}x",
])
def test_not_containers(path):
    assert container_from_path(path) == ("", "")


def test_host_process_with_32hex_memory_cgroup_is_host():
    assert container_from_cgroup_text(HOST_HYBRID) == ("", "")


def test_unified_line_wins_for_zombies():
    # an exited task shows / on every v1 line; only 0:: still names the container
    text = f"4:memory:/\n1:name=systemd:/\n0::/docker/{ID}\n"
    assert container_from_cgroup_text(text) == (ID, "docker")


def test_pure_v1_host():
    text = f"11:pids:/docker/{ID}\n4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n"
    assert container_from_cgroup_text(text) == (ID, "docker")


def test_pure_v2_systemd_driver():
    assert container_from_cgroup_text(f"0::/system.slice/docker-{ID}.scope\n") == (ID, "docker")


def test_garbage_lines_are_ignored():
    assert container_from_cgroup_text("garbage\n\n::\n0::\n") == ("", "")
