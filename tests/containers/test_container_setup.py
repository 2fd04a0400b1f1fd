"""scripts/ci-runtimes.sh: a rerun finds everything in place, fast, and leaves it working."""

import subprocess
import time

from conftest import REPO, need_root
from container_runtimes import CI_RT_DIR, SETUP_HINT, need_containerd, need_docker, sh


def test_setup_is_idempotent_and_fast():
    need_root()
    need_containerd()
    need_docker()
    t0 = time.monotonic()
    cp = subprocess.run(["bash", str(REPO / "scripts" / "ci-runtimes.sh"), "setup"],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert time.monotonic() - t0 < 10, SETUP_HINT
    assert "starting" not in cp.stderr          # nothing had to be started again
    env = (CI_RT_DIR / "env.sh").read_text()
    assert "DOCKER_HOST=unix://" in env and "CONTAINERD_ADDRESS=" in env
    status = subprocess.run(["bash", str(REPO / "scripts" / "ci-runtimes.sh"), "status"],
                            capture_output=True, text=True, timeout=60).stdout
    assert "containerd: up" in status and "dockerd: up" in status
    # the image is where every runtime can use it
    assert "busybox-local" in sh("docker", "image", "ls")
