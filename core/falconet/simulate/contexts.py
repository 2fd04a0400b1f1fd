"""Where a simulated attack runs: on the host, in a runc container, or in a docker container.

Containers are real: runc containers get an overlayfs root over a busybox rootfs (so files written
at run time are in the *upper* layer, as with docker), a 64-hex id and an absolute cgroup path;
docker containers use the locally built busybox image (``$TEST_IMAGE``, no registry) with
``--network none``. Both see the host's Python read-only (``/usr/bin/python3`` and its
libraries) and the simulator's ``payload.py`` at ``/opt/falconet-sim``, for behaviours busybox
cannot produce. Every command is an argv list; nothing goes through a shell on the host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from falconet.state.flags import CAP_NAMES

#: the parent of the runc bundles (each a private ``mkdtemp`` directory, 0700, its own rootfs
#: inside): never a fixed path below /tmp, where anyone could plant a symlink or a rootfs first
SIM_DIR_ENV = "FALCONET_SIM_DIR"
#: prefix of every private directory the simulator creates (host and containers)
TEMP_PREFIX = "falconet-sim-"
BUNDLE_PREFIX = TEMP_PREFIX + "runc-"
#: the runtime environment written by scripts/setup.d/50-runtimes.sh
RUNTIME_ENV = Path(os.environ.get("FALCONET_CI_DIR", "/tmp/falconet-ci")) / "env.sh"
PAYLOAD_DIR = Path(__file__).resolve().parent
CONTAINER_PAYLOAD = "/opt/falconet-sim/payload.py"
HOST_PYTHON = "/usr/bin/python3"

# Host paths bind-mounted read-only so /usr/bin/python3 works inside a busybox container.
_PYTHON_MOUNTS = [
    ("/usr/bin/python3.11", "/usr/bin/python3"),
    ("/usr/lib/python3.11", "/usr/lib/python3.11"),
    ("/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
    ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"),
    ("/usr/lib64", "/lib64"),
]

#: a privileged container's capabilities: all but CAP_SYS_RESOURCE, which root itself lacks on
#: the CI VM (runc fails to apply a capability its caller does not hold)
ALL_CAPS = [c for c in CAP_NAMES if c != "CAP_SYS_RESOURCE"]


class ContextUnavailable(RuntimeError):
    """The context cannot run here (not root, runtime missing...); the message says why."""


def runtime_env() -> dict[str, str]:
    """os.environ plus the ``export K=V`` lines of the runtimes' env.sh (parsed, not sourced)."""
    env = dict(os.environ)
    try:
        lines = RUNTIME_ENV.read_text().splitlines()
    except OSError:
        return env
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            env.setdefault(key.strip(), value.strip().strip("'\""))
    return env


def _run(argv: Sequence[str], *, timeout: float = 20, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed (rc {p.returncode}): "
                           f"{(p.stderr or p.stdout).strip()[-400:]}")
    return p


class Context:
    """Base class: a place to run argv lists."""

    kind = "host"
    container_id = ""

    def __init__(self, privileged: bool = False) -> None:
        self.privileged = privileged
        self.started = False

    @property
    def label(self) -> str:
        return self.kind + (" (privileged)" if self.privileged else "")

    def check(self) -> None:
        """Raise :class:`ContextUnavailable` when this context cannot run here."""

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def exec(self, argv: Sequence[str], *, timeout: float = 15,
             tty: bool = False) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def payload(self, behaviour: str, *args: str, argv0: str | None = None,
                timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """Run a behaviour of ``payload.py`` in this context (see that module)."""
        raise NotImplementedError

    def sh(self, script: str, *, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """Run a constant script of the simulator with the context's ``sh``."""
        return self.exec(["sh", "-c", script], timeout=timeout)

    @property
    def has_python(self) -> bool:
        return os.path.exists(HOST_PYTHON)

    def mkdtemp(self, parent: str = "/tmp") -> str:
        """A new private directory (0700) below ``parent`` in this context, by ``mktemp -d``: a
        random name created exclusively, so nothing planted in ``parent`` beforehand (a symlink
        to a file or directory elsewhere) can redirect what the action writes there. Raises
        OSError when it cannot be created."""
        p = self.exec(["mktemp", "-d", f"{parent}/{TEMP_PREFIX}XXXXXX"])
        path = p.stdout.strip()
        # the path goes into constant sh scripts: only the characters mktemp itself produces
        if p.returncode != 0 or not _MKTEMP_PATH.fullmatch(path) or \
                not path.startswith(f"{parent}/{TEMP_PREFIX}"):
            raise OSError(f"mktemp -d in {parent} failed in {self.label} (rc {p.returncode}): "
                          f"{(p.stderr or p.stdout).strip()[-200:]}")
        return path

    @contextmanager
    def private_dir(self, parent: str = "/tmp") -> Iterator[str]:
        """:meth:`mkdtemp`, removed with everything in it afterwards."""
        d = self.mkdtemp(parent)
        try:
            yield d
        finally:
            self.exec(["rm", "-rf", "--", d])


_MKTEMP_PATH = re.compile(r"/[A-Za-z0-9/._-]+")


class HostContext(Context):
    kind = "host"

    def check(self) -> None:
        if os.geteuid() != 0:
            raise ContextUnavailable("needs root")

    def exec(self, argv: Sequence[str], *, timeout: float = 15,
             tty: bool = False) -> subprocess.CompletedProcess[str]:
        return _run(argv, timeout=timeout, check=False,
                    env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                         "HOME": "/root", "LANG": "C.UTF-8"})

    def payload(self, behaviour: str, *args: str, argv0: str | None = None,
                timeout: float = 15) -> subprocess.CompletedProcess[str]:
        py = HOST_PYTHON if os.path.exists(HOST_PYTHON) else shutil.which("python3") or "python3"
        script = str(PAYLOAD_DIR / "payload.py")
        if argv0 is None:
            return self.exec([py, script, behaviour, *args], timeout=timeout)
        # run the payload under another program name (nginx, cron, ssh...) through a symlink:
        # the kernel names the process (comm, argv[0]) after the link
        tmp = Path(_mkdtemp())
        try:
            link = tmp / argv0
            link.symlink_to(os.path.realpath(py))
            return self.exec([str(link), script, behaviour, *args], timeout=timeout)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _mkdtemp(prefix: str = TEMP_PREFIX) -> str:
    """A private (0700) host directory below ``$FALCONET_SIM_DIR`` or the temporary directory."""
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get(SIM_DIR_ENV) or None)


class _ContainerContext(Context):
    """Common part of runc and docker contexts: payload runs with the host Python mounted in."""

    def payload(self, behaviour: str, *args: str, argv0: str | None = None,
                timeout: float = 15) -> subprocess.CompletedProcess[str]:
        if argv0 is None:
            return self.exec(["/usr/bin/python3", CONTAINER_PAYLOAD, behaviour, *args],
                             timeout=timeout)
        with self.private_dir() as d:
            self.exec(["ln", "-s", "/usr/bin/python3", f"{d}/{argv0}"])
            return self.exec([f"{d}/{argv0}", CONTAINER_PAYLOAD, behaviour, *args],
                             timeout=timeout)

    @staticmethod
    def python_mounts() -> list[tuple[str, str]]:
        mounts = [(src, dst) for src, dst in _PYTHON_MOUNTS if os.path.exists(src)]
        mounts.append((str(PAYLOAD_DIR), "/opt/falconet-sim"))
        return mounts


class RuncContext(_ContainerContext):
    """A runc container with an overlayfs root, started detached; commands via ``runc exec``."""

    kind = "runc"

    def __init__(self, privileged: bool = False) -> None:
        super().__init__(privileged)
        self.container_id = secrets.token_hex(32)
        #: the bundle: a private directory made by start() (rootfs, overlay layers, config.json)
        self.bundle: Path | None = None
        self.cgroup_path = f"/falconet-sim/{self.container_id}"

    def check(self) -> None:
        if os.geteuid() != 0:
            raise ContextUnavailable("runc containers need root")
        if shutil.which("runc") is None:
            raise ContextUnavailable("runc is not installed")
        if _busybox() is None:
            raise ContextUnavailable("busybox (static) is not installed")

    def start(self) -> None:
        self.check()
        self.bundle = Path(_mkdtemp(BUNDLE_PREFIX))
        try:
            lower = build_base_rootfs(self.bundle / "rootfs")
            upper, work, merged = (self.bundle / n for n in ("upper", "work", "merged"))
            for d in (upper, work, merged):
                d.mkdir()
            _run(["mount", "-t", "overlay", "overlay", "-o",
                  f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)])
            _run(["runc", "spec", "--bundle", str(self.bundle)])
            cfg_path = self.bundle / "config.json"
            cfg = json.loads(cfg_path.read_text())
            self._configure(cfg, merged)
            cfg_path.write_text(json.dumps(cfg, indent=1))
            # detached: the container inherits runc's stdio, so never give it our pipes
            log = self.bundle / "runc.log"
            with open(log, "w") as err:
                rc = subprocess.run(["runc", "run", "-d", "--bundle", str(self.bundle),
                                     self.container_id], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, timeout=20).returncode
            if rc != 0:
                raise RuntimeError(f"runc run failed (rc {rc}): {log.read_text().strip()[-400:]}")
        except Exception:
            self.stop()
            raise
        self.started = True

    def _configure(self, cfg: dict, rootfs: Path) -> None:
        proc = cfg["process"]
        proc["terminal"] = False
        proc["args"] = ["sleep", "3600"]
        proc["env"] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "HOME=/root"]
        proc["cwd"] = "/"
        if self.privileged:
            for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                proc.setdefault("capabilities", {})[key] = list(ALL_CAPS)
            proc.get("rlimits", []).clear()
        cfg["root"] = {"path": str(rootfs), "readonly": False}
        cfg["hostname"] = "falconet-sim"
        linux = cfg.setdefault("linux", {})
        linux["cgroupsPath"] = self.cgroup_path
        if self.privileged:
            linux.pop("maskedPaths", None)
            linux.pop("readonlyPaths", None)
        cfg["annotations"] = {"io.falconet.simulator": "true",
                              "io.kubernetes.cri.container-name": "falconet-sim"}
        for src, dst in self.python_mounts():
            cfg["mounts"].append({"destination": dst, "type": "bind", "source": src,
                                  "options": ["rbind", "ro"]})

    def exec(self, argv: Sequence[str], *, timeout: float = 15,
             tty: bool = False) -> subprocess.CompletedProcess[str]:
        return _run(["runc", "exec", self.container_id, *argv], timeout=timeout, check=False)

    def stop(self) -> None:
        _run(["runc", "kill", self.container_id, "KILL"], check=False, timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _run(["runc", "delete", "-f", self.container_id], check=False,
                    timeout=10).returncode == 0:
                break
            time.sleep(0.1)
        if self.bundle is not None:
            _remove_bundle(self.bundle)
        _remove_cgroups(self.cgroup_path)
        self.started = False


class DockerContext(_ContainerContext):
    """A docker container from the local busybox image, ``--network none``."""

    kind = "docker"

    def __init__(self, privileged: bool = False) -> None:
        super().__init__(privileged)
        self.env = runtime_env()
        self.image = self.env.get("FALCONET_TEST_IMAGE") or self.env.get(
            "TEST_IMAGE", "busybox-local:latest")
        if self.image.startswith("docker.io/library/"):
            self.image = self.image[len("docker.io/library/"):]
        self.name = f"falconet-sim-{secrets.token_hex(4)}"

    def check(self) -> None:
        if shutil.which("docker") is None:
            raise ContextUnavailable("docker is not installed")
        try:
            p = _run(["docker", "image", "inspect", "-f", "{{.Id}}", self.image], env=self.env,
                     check=False, timeout=10)
        except subprocess.TimeoutExpired:
            raise ContextUnavailable("dockerd does not answer") from None
        if p.returncode != 0:
            raise ContextUnavailable(f"dockerd not running or image {self.image} not loaded "
                                     f"(scripts/setup.d/50-runtimes.sh): "
                                     f"{p.stderr.strip()[-200:]}")

    def start(self) -> None:
        self.check()
        argv = ["docker", "run", "-d", "--network", "none", "--name", self.name,
                "--label", "io.falconet.simulator=true"]
        if self.privileged:
            # `--privileged` cannot work where root lacks CAP_SYS_RESOURCE (this CI VM): grant
            # every capability we hold instead, unconfined
            argv += ["--security-opt", "seccomp=unconfined", "--security-opt",
                     "apparmor=unconfined"]
            # (dockerd 20.10 does not know the capabilities added in Linux 5.8+)
            argv += [f"--cap-add={c.removeprefix('CAP_')}" for c in ALL_CAPS
                     if c not in ("CAP_BPF", "CAP_PERFMON", "CAP_CHECKPOINT_RESTORE")]
        for src, dst in self.python_mounts():
            argv += ["-v", f"{src}:{dst}:ro"]
        argv += [self.image, "sleep", "3600"]
        self.container_id = _run(argv, env=self.env, timeout=30).stdout.strip()
        self.started = True

    def exec(self, argv: Sequence[str], *, timeout: float = 15,
             tty: bool = False) -> subprocess.CompletedProcess[str]:
        return _run(["docker", "exec", *(["-t"] if tty else []), self.container_id, *argv],
                    env=self.env, timeout=timeout, check=False)

    def stop(self) -> None:
        if self.container_id or self.started:
            _run(["docker", "rm", "-f", self.name], env=self.env, check=False, timeout=30)
        self.started = False


def _remove_bundle(bundle: Path) -> None:
    """A runc bundle removed: its overlay unmounted first (never delete through a mount)."""
    merged = bundle / "merged"
    if os.path.ismount(merged):
        _run(["umount", "-l", str(merged)], check=False)
    shutil.rmtree(bundle, ignore_errors=True)


def _busybox() -> str | None:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p):
            return p
    return None


def build_base_rootfs(root: Path) -> Path:
    """The busybox rootfs a runc container's overlay uses as lower layer, built at ``root``
    (a new path inside the container's private bundle: nothing there to follow)."""
    bb = _busybox()
    if bb is None:
        raise ContextUnavailable("busybox (static) is not installed")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "proc", "sys", "dev",
              "tmp", "root", "var/log", "var/run", "var/lib/dpkg", "mnt", "opt/falconet-sim"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(bb, root / "bin" / "busybox")
    _run(["chroot", str(root), "/bin/busybox", "--install", "-s"])
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    # a fake password database: the sensitive-file actions read it inside the container
    shadow = root / "etc" / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n")
    shadow.chmod(0o640)
    (root / "var" / "lib" / "dpkg" / "status").write_text("")
    (root / "tmp").chmod(0o1777)
    return root


def _remove_cgroups(path: str) -> None:
    """rmdir the (empty) cgroup directories runc leaves behind, leaf first."""
    base = Path("/sys/fs/cgroup")
    try:
        controllers = [d for d in base.iterdir() if d.is_dir()]
    except OSError:
        return
    for ctl in controllers:
        p = ctl / path.lstrip("/")
        for d in (p, p.parent):
            try:
                d.rmdir()
            except OSError:
                pass


_FACTORIES = {"host": HostContext, "runc": RuncContext, "docker": DockerContext}
CONTEXT_KINDS = tuple(_FACTORIES)


def make_context(kind: str, privileged: bool = False) -> Context:
    try:
        return _FACTORIES[kind](privileged=privileged)
    except KeyError:
        raise ValueError(f"unknown context '{kind}' (expected one of {', '.join(CONTEXT_KINDS)})") \
            from None


class ContextPool:
    """Starts each (kind, privileged) context once, on first use, and stops them all at the end."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[str, bool], Context] = {}
        self._failures: dict[tuple[str, bool], str] = {}

    def get(self, kind: str, privileged: bool = False) -> Context:
        key = (kind, privileged)
        if key in self._failures:
            raise ContextUnavailable(self._failures[key])
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._start(kind, privileged)
            self._contexts[key] = ctx
        return ctx

    def _start(self, kind: str, privileged: bool) -> Context:
        key = (kind, privileged)
        for attempt in (1, 2):   # one retry: runtimes fail transiently on a loaded machine
            ctx = make_context(kind, privileged)
            try:
                ctx.check()
                ctx.start()
                return ctx
            except ContextUnavailable as e:
                self._failures[key] = str(e)
                raise
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                if attempt == 2:
                    self._failures[key] = f"could not start a {ctx.label} container: {e}"
                    raise ContextUnavailable(self._failures[key]) from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        for ctx in self._contexts.values():
            try:
                ctx.stop()
            except Exception:  # noqa: BLE001 - cleanup of one context must not stop the others
                pass
        self._contexts.clear()

    def __enter__(self) -> ContextPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _leftover_bundles() -> list[Path]:
    """The simulator's runc bundles in the temporary directory: real directories (not symlinks)
    owned by us, as :func:`_mkdtemp` made them; anything else with that name is not ours."""
    parent = Path(os.environ.get(SIM_DIR_ENV) or tempfile.gettempdir())
    found = []
    for p in parent.glob(BUNDLE_PREFIX + "*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            found.append(p)
    return found


def cleanup_leftovers() -> list[str]:
    """Remove containers a killed simulator left behind: runc bundles (private directories
    ``falconet-sim-runc-*`` in the temporary directory) and docker containers labelled
    ``io.falconet.simulator=true``. Returns what was removed.
    (Not done automatically: another simulator may be running.)"""
    removed: list[str] = []
    bundles = _leftover_bundles()
    if bundles and shutil.which("runc"):
        try:
            listing = json.loads(_run(["runc", "list", "-f", "json"], check=False).stdout or "null")
        except ValueError:
            listing = None
        by_bundle = {c.get("bundle"): c.get("id") for c in listing or [] if isinstance(c, dict)}
        for bundle in bundles:
            ctx = RuncContext()
            ctx.bundle = bundle
            ctx.container_id = by_bundle.get(str(bundle)) or ""
            if ctx.container_id:
                ctx.cgroup_path = f"/falconet-sim/{ctx.container_id}"
                ctx.stop()
            else:           # its container is gone already: only the directory is left
                _remove_bundle(bundle)
            removed.append(f"runc {ctx.container_id[:12] or bundle.name}")
    if shutil.which("docker"):
        env = runtime_env()
        try:
            p = _run(["docker", "ps", "-aq", "--filter", "label=io.falconet.simulator=true"],
                     env=env, check=False, timeout=15)
        except subprocess.TimeoutExpired:
            return removed
        for cid in p.stdout.split():
            _run(["docker", "rm", "-f", cid], env=env, check=False, timeout=30)
            removed.append(f"docker {cid[:12]}")
    return removed
