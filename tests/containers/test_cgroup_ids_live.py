"""A process that exits before the engine reads its ``/proc/<pid>/cgroup`` is still attributed
to its container: the kernel record's cgroup id names the container's cgroup, which outlives the
process (``falconet_container/cgroup_ids.py``, ``open_by_handle_at`` on the cgroup2 mount).

Real docker containers, the real cgroup filesystem and a real engine. The engine is stopped
(SIGSTOP) while `docker exec` runs a shell that writes a marker and exits, so when it reads the
records the shell is gone: before the fix such a process took its parent's (runc's) host id,
which is how the response tests' `docker exec <c> /bin/true` triggers went unanswered."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
from container_runtimes import start_docker
from falconet_container.cgroup import container_from_path
from falconet_container.cgroup_ids import CgroupIds, cgroup2_mount
from test_container_e2e import LiveEngine, wait_ready

pytestmark = [pytest.mark.root, pytest.mark.containers, pytest.mark.ebpf]


def _unified_path(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"no cgroup2 line for {pid}")


def test_a_containers_cgroup_id_names_its_cgroup(request) -> None:
    c = start_docker(request)
    mount = cgroup2_mount()
    assert mount, "this machine has a cgroup2 hierarchy (hybrid: /sys/fs/cgroup/unified)"
    rel = _unified_path(c.pid)
    cg = os.stat(mount + rel).st_ino          # the cgroup id is its directory's kernfs id
    ids = CgroupIds()
    try:
        assert ids.path(cg) == rel
        assert container_from_path(rel)[0] == c.full_id
        assert ids.path(os.stat(mount).st_ino) == "/"
        assert ids.path(2**62 + 12345) is None                    # no such cgroup
    finally:
        ids.close()


def test_an_exited_process_keeps_its_container(request, tmp_path) -> None:
    c = start_docker(request)                 # before the engine: none of its events are seen
    eng = LiveEngine(tmp_path)
    request.addfinalizer(eng.stop)
    wait_ready(eng)
    token = secrets.token_hex(4)
    os.kill(eng.proc.pid, signal.SIGSTOP)
    try:
        subprocess.run(["docker", "exec", c.name, "sh", "-c",
                        f"echo x > /tmp/falconet-marker-{token}"], check=True, timeout=60)
    finally:
        os.kill(eng.proc.pid, signal.SIGCONT)
    a = eng.alert_for(token)
    assert a["output_fields"]["container.id"] == c.full_id[:12], a
