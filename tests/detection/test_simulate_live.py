"""The simulator against real runtimes: actions really run in real containers (runc, docker),
skip with a reason when their context is missing, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import need, need_binary, need_root
from falconet.simulate.actions import ACTIONS
from falconet.simulate.contexts import ContextPool, DockerContext, runtime_env
from falconet.simulate.runner import run_action

pytestmark = [pytest.mark.root, pytest.mark.containers]


def _docker_available() -> str | None:
    try:
        DockerContext().check()
        return None
    except Exception as e:  # noqa: BLE001
        return str(e)


def test_runc_container_is_real_and_cleaned_up() -> None:
    need_root()
    need_binary("runc")
    with ContextPool() as pool:
        ctx = pool.get("runc")
        cid = ctx.container_id
        assert len(cid) == 64
        cg = ctx.exec(["cat", "/proc/self/cgroup"]).stdout
        assert f"/falconet-sim/{cid}" in cg            # its own cgroup, 64-hex id
        # overlay root: a file written at run time lands in the upper layer
        ctx.exec(["touch", "/root/upper-probe"])
        assert (ctx.bundle / "upper" / "root" / "upper-probe").exists()
        # the host python and the payload are mounted read-only
        assert ctx.exec(["/usr/bin/python3", "-c", "print(6*7)"]).stdout.strip() == "42"
        bundle = ctx.bundle
    state = subprocess.run(["runc", "state", cid], capture_output=True, text=True)
    assert state.returncode != 0                          # deleted
    assert not bundle.exists()
    assert not any(Path("/sys/fs/cgroup").glob(f"*/falconet-sim/{cid}"))


def test_docker_container_is_real_and_cleaned_up() -> None:
    need_root()
    why = _docker_available()
    need(why is None, f"docker: {why}")
    with ContextPool() as pool:
        ctx = pool.get("docker")
        cid = ctx.container_id
        assert f"/docker/{cid}" in ctx.exec(["cat", "/proc/self/cgroup"]).stdout
    r = subprocess.run(["docker", "ps", "-a", "-q", "--no-trunc", "--filter", f"id={cid}"],
                       capture_output=True, text=True, env=runtime_env())
    assert r.stdout.strip() == ""


def test_every_action_runs_in_its_default_context() -> None:
    need_root()
    need_binary("runc")
    before = set(os.listdir("/tmp"))
    with ContextPool() as pool:
        results = {n: run_action(pool, n) for n in sorted(ACTIONS)}
    failed = {n: r.reason for n, r in results.items() if r.status == "failed"}
    assert not failed, failed
    done = {n for n, r in results.items() if r.status == "done"}
    na = {n for n, r in results.items() if r.status == "n/a"}
    assert na <= {"kernel_module_load"}
    skipped = {n: r.reason for n, r in results.items() if r.status == "skipped"}
    assert not skipped or _docker_available() is not None, skipped
    assert len(done) >= len(ACTIONS) - len(na) - len(skipped)
    # idempotent and clean: nothing new left in /tmp, no runc bundles left
    leftovers = {p for p in set(os.listdir("/tmp")) - before if p.startswith("falconet-sim")}
    assert not leftovers, leftovers
    assert not any(Path("/dev/shm").glob("falconet-sim-*"))
    assert not Path("/etc/falconet-sim.conf").exists()
    assert not Path("/var/log/falconet-sim.log").exists()


def test_cleanup_removes_what_a_killed_simulator_left(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A runc container whose simulator died (never stopped) is found through its private
    bundle directory and removed by `falconet simulate --cleanup` (cleanup_leftovers). In a
    FALCONET_SIM_DIR of its own: other simulators running on this machine are not touched."""
    need_root()
    need_binary("runc")
    from falconet.simulate.contexts import RuncContext, cleanup_leftovers  # noqa: PLC0415

    monkeypatch.setenv("FALCONET_SIM_DIR", str(tmp_path))

    ctx = RuncContext()
    ctx.start()                                        # and never stopped: "killed"
    bundle, cid = ctx.bundle, ctx.container_id
    assert bundle is not None and bundle.name.startswith("falconet-sim-runc-")
    assert bundle.parent == tmp_path
    assert (bundle.stat().st_mode & 0o777) == 0o700
    try:
        removed = cleanup_leftovers()
    finally:
        if bundle.exists():
            ctx.stop()
    assert f"runc {cid[:12]}" in removed
    assert not bundle.exists()
    assert subprocess.run(["runc", "state", cid], capture_output=True).returncode != 0
