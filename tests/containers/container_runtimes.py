"""Start real containers for the live tests: runc, containerd (ctr), docker and podman, as set up
by scripts/ci-runtimes.sh (CI_RT_DIR, default /tmp/falconet-ci). Each ``start_*`` returns a
:class:`Running` with the container's full id and the host pid of its main process, and
registers its cleanup with the pytest ``request``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import need, need_binary, need_root, wait_until

CI_RT_DIR = Path(os.environ.get("CI_RT_DIR", "/tmp/falconet-ci"))
IMAGE = os.environ.get("TEST_IMAGE", "docker.io/library/busybox-local:latest")
DOCKER_IMAGE = IMAGE.removeprefix("docker.io/library/")
DOCKER_SOCK = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
CONTAINERD_SOCK = os.environ.get("CONTAINERD_ADDRESS", "/run/containerd/containerd.sock")
PODMAN = str(CI_RT_DIR / "bin" / "podman-ci")
DOCKER_RUNC_ROOT = str(CI_RT_DIR / "docker" / "exec" / "runtime-runc")
ENV = {**os.environ, "DOCKER_HOST": f"unix://{DOCKER_SOCK}", "CONTAINERD_ADDRESS": CONTAINERD_SOCK,
       "CONTAINERS_CONF": str(CI_RT_DIR / "podman" / "containers.conf")}
SETUP_HINT = "run `scripts/ci-runtimes.sh setup` (make test does it)"


@dataclass
class Running:
    full_id: str
    pid: int
    name: str


def sh(*argv: str, timeout: float = 30, check: bool = True) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp.stdout


def new_id() -> str:
    return secrets.token_hex(32)


# ----------------------------------------------------------------------------------- runc
def need_runc() -> None:
    need_root()
    need_binary("runc")
    need((CI_RT_DIR / "bundle-template" / "config.json").exists(),
         f"{CI_RT_DIR}/bundle-template missing: {SETUP_HINT}")


def start_runc(request, annotations: dict[str, str] | None = None, cgroup: str | None = None,
               root: str | None = None, full_id: str | None = None,
               spec_update: dict | None = None, cmd: list[str] | None = None) -> Running:
    """``cgroup`` may contain ``{id}`` (the container id), as the runtimes' own layouts do."""
    need_runc()
    cid = full_id or new_id()
    bundle = CI_RT_DIR / "bundles" / cid
    bundle.mkdir(parents=True, exist_ok=True)
    spec = json.loads((CI_RT_DIR / "bundle-template" / "config.json").read_text())
    spec["process"]["args"] = cmd or ["sleep", "300"]
    spec["annotations"] = dict(annotations or {})
    spec.update(spec_update or {})
    spec["linux"]["cgroupsPath"] = (cgroup or "/falconet-test/{id}").format(id=cid)
    (bundle / "config.json").write_text(json.dumps(spec))
    rootargs = ["--root", root] if root else []
    # the container inherits runc's stdio: pipes would never reach EOF, so use files
    with open(bundle / "runc.log", "w+") as log:
        rc = subprocess.run(["runc", *rootargs, "run", "-d", "--bundle", str(bundle), "--pid-file",
                             str(bundle / "pid"), cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=log, timeout=30, check=False).returncode
        log.seek(0)
        if rc != 0:
            raise RuntimeError(f"runc run failed ({rc}): {log.read().strip()}")

    pid = int((bundle / "pid").read_text())

    def cleanup():
        sh("runc", *rootargs, "kill", cid, "KILL", check=False)
        try:
            os.kill(pid, signal.SIGKILL)     # in case runc could not (a test broke its state)
        except ProcessLookupError:
            pass
        try:
            wait_until(lambda: not process_alive(pid), 10)
        finally:
            sh("runc", *rootargs, "delete", "-f", cid, check=False)
            shutil.rmtree(bundle, ignore_errors=True)
            remove_cgroup(spec["linux"]["cgroupsPath"])
    request.addfinalizer(cleanup)
    return Running(cid, pid, cid)


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def remove_cgroup(path: str) -> None:
    """rmdir the container's cgroup and its parents that are now empty, in every hierarchy
    (runc delete and containerd leave the parents behind)."""
    rel = path.strip("/")

    def empty() -> bool:   # the container's other processes die just after its init
        try:
            return not any(Path(f"/sys/fs/cgroup/{h}/{rel}/cgroup.procs").read_text().split()
                           for h in ("unified", "memory", "pids"))
        except OSError:
            return True
    try:
        wait_until(empty, 5)
    except AssertionError:
        return
    for base in Path("/sys/fs/cgroup").iterdir():
        p = base / rel
        while p != base:
            if p.is_dir():         # the runtime may have removed the leaf itself
                try:
                    p.rmdir()      # only empty cgroups can be removed: others are left alone
                except OSError:
                    break
            p = p.parent


# ----------------------------------------------------------------------------------- containerd
def ctr(*args: str, ns: str = "default", check: bool = True) -> str:
    return sh("ctr", "--address", CONTAINERD_SOCK, "--connect-timeout", "2s", "-n", ns, *args,
              check=check)


def need_containerd() -> None:
    need_root()
    need_binary("ctr")
    ok = subprocess.run(["ctr", "--address", CONTAINERD_SOCK, "--connect-timeout", "2s", "version"],
                        capture_output=True, timeout=10, check=False).returncode == 0
    need(ok, f"containerd is not running on {CONTAINERD_SOCK}: {SETUP_HINT}")


def start_ctr(request, annotations: dict[str, str] | None = None,
              labels: dict[str, str] | None = None, cgroup: str | None = None,
              ns: str = "default", cmd: list[str] | None = None,
              extra: tuple[str, ...] = ()) -> Running:
    """``cgroup`` may contain ``{id}`` (the container id); ``extra``: more ``ctr run`` options."""
    need_containerd()
    cid = new_id()
    args = ["run", "-d", *extra]
    for k, v in (annotations or {}).items():
        args += ["--annotation", f"{k}={v}"]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    if cgroup:
        args += ["--cgroup", cgroup.format(id=cid)]
    ctr(*args, IMAGE, cid, *(cmd or ["sleep", "300"]), ns=ns)

    def cleanup():
        ctr("task", "kill", "-s", "KILL", cid, ns=ns, check=False)
        for _ in range(100):
            tasks = ctr("task", "ls", ns=ns, check=False)
            if cid not in tasks or "STOPPED" in tasks:
                break
            time.sleep(0.02)
        ctr("task", "rm", "-f", cid, ns=ns, check=False)
        ctr("container", "rm", cid, ns=ns, check=False)
        if cgroup:
            remove_cgroup(cgroup.format(id=cid))
    request.addfinalizer(cleanup)
    pid = 0
    for line in ctr("task", "ls", ns=ns).splitlines():
        parts = line.split()
        if parts and parts[0] == cid:
            pid = int(parts[1])
    assert pid > 0, f"ctr task {cid} has no pid"
    return Running(cid, pid, cid)


# ----------------------------------------------------------------------------------- docker
def need_docker() -> None:
    need_root()
    need(os.path.exists(DOCKER_SOCK) and shutil.which("docker") is not None,
         f"dockerd is not running on {DOCKER_SOCK}: {SETUP_HINT}")


def start_docker(request, name: str | None = None, labels: dict[str, str] | None = None,
                 extra: tuple[str, ...] = (), cmd: list[str] | None = None) -> Running:
    need_docker()
    name = name or f"fnt-{secrets.token_hex(4)}"
    args = ["docker", "run", "-d", "--name", name, "--network", "none"]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    cid = sh(*args, *extra, DOCKER_IMAGE, *(cmd or ["sleep", "300"])).strip()
    request.addfinalizer(lambda: sh("docker", "rm", "-f", name, check=False))
    pid = int(sh("docker", "inspect", "-f", "{{.State.Pid}}", name).strip())
    return Running(cid, pid, name)


# ----------------------------------------------------------------------------------- podman
def need_podman() -> None:
    need_root()
    need(os.access(PODMAN, os.X_OK), f"{PODMAN} missing: {SETUP_HINT}")


def start_podman(request, name: str | None = None, annotations: dict[str, str] | None = None,
                 extra: tuple[str, ...] = (), cmd: list[str] | None = None) -> Running:
    need_podman()
    name = name or f"fnt-{secrets.token_hex(4)}"
    args = [PODMAN, "run", "-d", "--name", name]
    for k, v in (annotations or {}).items():
        args += ["--annotation", f"{k}={v}"]
    cid = sh(*args, *extra, IMAGE, *(cmd or ["sleep", "300"])).strip().splitlines()[-1]
    request.addfinalizer(lambda: sh(PODMAN, "rm", "-f", "-t", "0", name, check=False))
    pid = int(sh(PODMAN, "inspect", "-f", "{{.State.Pid}}", name).strip())
    return Running(cid, pid, name)


# ----------------------------------------------------------------------------------- cgroups
def unified_cgroup_id(pid: int) -> int:
    """What ``bpf_get_current_cgroup_id()`` reports for ``pid``: the inode of its cgroup2 dir."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    path = next(line.split(":", 2)[2] for line in text.splitlines() if line.startswith("0::"))
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(root, "cgroup.procs")):
            return os.stat(root + path).st_ino
    return 0
