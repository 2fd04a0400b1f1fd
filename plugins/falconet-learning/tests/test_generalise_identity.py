"""Path classes and workload identities (pure functions)."""

from __future__ import annotations

import pytest
from falconet_learning.generalise import ClassCache, path_class
from falconet_learning.identity import container_identity, host_identity, owning_workload


@pytest.mark.parametrize(("path", "cls"), [
    ("/proc/1234/stat", "/proc/<pid>/stat"),
    ("/proc/self/status", "/proc/<pid>/status"),
    ("/proc/12/task/13/comm", "/proc/<pid>/task/<pid>/comm"),
    ("/tmp/tmp.k3J9x", "/tmp/tmp.<rand>"),
    ("/tmp/tmpab_cd9e1/f", "/tmp/tmp<rand>/f"),
    ("/tmp/pip-build-a8x3k/setup.py", "/tmp/pip-build-<rand>/setup.py"),
    ("/var/log/app.log.3", "/var/log/app.log.<n>"),
    ("/var/lib/docker/containers/0123456789abcdef0123/x", "/var/lib/docker/containers/<hex>/x"),
    ("/run/user/1000/bus", "/run/user/<n>/bus"),
    ("/dev/pts/3", "/dev/pts/<n>"),
    ("/etc/passwd", "/etc/passwd"),
    ("/tmp/falconet-sim.conf", "/tmp/falconet-sim.conf"),
    ("/srv/www/index.html", "/srv/www/index.html"),
    ("relative/path", "relative/path"),
])
def test_path_classes(path: str, cls: str) -> None:
    assert path_class(path) == cls


def test_class_cache_is_bounded() -> None:
    c = ClassCache(max_size=4)
    for i in range(10):
        assert c.get(f"/proc/{i}/stat") == "/proc/<pid>/stat"
    assert len(c._d) <= 4 and c.misses == 10


def test_identities() -> None:
    assert container_identity("docker.io/library/nginx", "1.25", None) == \
        "image:docker.io/library/nginx:1.25"
    assert container_identity("nginx", None, "sha256:ab") == "image:nginx:latest@sha256:ab"
    assert container_identity(None, "1", None) is None          # metadata not known yet
    assert container_identity("app", "2", None, "shop", "web-7c9f8d6b4-x2k8p") == \
        "k8s:shop/web image:app:2"
    assert owning_workload("agent-x7k2p") == "agent"                # DaemonSet
    assert owning_workload("db-0") == "db"                          # StatefulSet
    assert owning_workload("standalone") == "standalone"
    assert host_identity("/usr/sbin/sshd") == "host:/usr/sbin/sshd"
    assert host_identity("") is None
