"""Live helpers for the learning-mode acceptance tests: ``falconet run`` (eBPF collector, default
rules, the container and learning plugins) and busybox docker containers running a benign
workload, in which the simulator's attack actions are then performed."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "containers"))

from conftest import REPO, free_port, stop_process, wait_until  # noqa: E402
from container_runtimes import (  # noqa: E402
    DOCKER_IMAGE,
    DOCKER_RUNC_ROOT,
    DOCKER_SOCK,
    need_docker,
    sh,
)
from falconet.simulate.contexts import DockerContext  # noqa: E402

#: a web server under local load: busybox httpd on a loopback port, wget in a loop
WEB = ("mkdir -p /www && echo hello > /www/index.html && httpd -p 127.0.0.1:{port} -h /www && "
       "while true; do wget -q -O /dev/null http://127.0.0.1:{port}/; "
       "sh -c 'date > /dev/null'; sleep 0.2; done")
#: a worker running its usual commands
WORKER = ("while true; do sh -c 'date; ls /; cat /etc/hostname; echo job >> /tmp/worker.log; "
          "tail -n 1 /tmp/worker.log' > /dev/null; sleep 0.2; done")


class LiveEngine:
    """``falconet run --json`` with the learning plugin on ``state_dir``."""

    def __init__(self, tmp: Path, state_dir: Path, learning_seconds: float,
                 extra_rules: list[str] = ()) -> None:
        # rule_matching all: an attack a default rule catches first still shows its anomaly
        # alert too (with Falco's default "first", the earlier rule's alert is the only one)
        cfg = {"append_output": [{"suggested_output": True}], "rule_matching": "all",
               "plugins": {"container": {"runc_roots": ["/run/runc", "/run/containerd/runc",
                                                        DOCKER_RUNC_ROOT],
                                         "docker_socket": DOCKER_SOCK},
                           "learning": {"state_dir": str(state_dir), "required": True,
                                        "learning_seconds": learning_seconds,
                                        "quarantine_seconds": 1.0, "flush_interval": 0.2,
                                        "files": True}}}    # file learning too (off by default)
        tag = secrets.token_hex(3)
        conf = tmp / f"falconet-{tag}.yaml"
        conf.write_text(json.dumps(cfg))
        self.out = tmp / f"alerts-{tag}.jsonl"
        self.err = tmp / f"stderr-{tag}.txt"
        exe = Path(sys.executable).parent / "falconet"
        rules = [a for r in extra_rules for a in ("-r", r)]
        if rules:
            rules = ["-r", str(REPO / "rules"), *rules]
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(exe), "run", "-c", str(conf), *rules, "--json", "--metrics-port",
             str(self.port)], cwd=REPO, stdout=self.out.open("w"), stderr=self.err.open("w"),
            stdin=subprocess.DEVNULL)
        marker = f"/tmp/falconet-learning-ready-{tag}"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"falconet exited: {self.err.read_text()[-3000:]}")
            return "falconet: watching" in self.err.read_text()
        wait_until(ready, 90, what="the engine to attach", interval=0.2)
        Path(marker).unlink(missing_ok=True)

    def alerts(self) -> list[dict[str, Any]]:
        out = []
        for line in self.out.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from the engine's real /metrics (prometheus_client's own text parser),
        or ``None`` when absent."""
        from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        for fam in text_string_to_metric_families(body.decode()):
            for smp in fam.samples:
                if smp.name == name and all(smp.labels.get(k) == v for k, v in labels.items()):
                    return float(smp.value)
        return None

    def stop(self) -> None:
        stop_process(self.proc, 20)


class WorkloadContainer(DockerContext):
    """A simulator docker context whose container runs a benign workload from its own image tag
    (so each workload has its own profile), with the simulator's Python mounts."""

    def __init__(self, tag: str, script: str) -> None:
        super().__init__(False)
        self.image = f"{DOCKER_IMAGE.rsplit(':', 1)[0]}:{tag}"
        self.script = script
        self.name = f"fnt-learn-{secrets.token_hex(4)}"

    def start(self) -> None:
        argv = ["docker", "run", "-d", "--network", "none", "--name", self.name]
        for src, dst in self.python_mounts():
            argv += ["-v", f"{src}:{dst}:ro"]
        argv += [self.image, "sh", "-c", self.script]
        self.container_id = sh(*argv).strip()
        self.started = True

    def stop(self) -> None:
        sh("docker", "rm", "-f", self.name, check=False)
        self.started = False


__all__ = ["need_docker"]


def tag_image(tag: str) -> str:
    repo = DOCKER_IMAGE.rsplit(":", 1)[0]
    sh("docker", "tag", DOCKER_IMAGE, f"{repo}:{tag}")
    return f"{repo}:{tag}"


def untag_image(tag: str) -> None:
    repo = DOCKER_IMAGE.rsplit(":", 1)[0]
    sh("docker", "rmi", f"{repo}:{tag}", check=False)


def profile_states(state_dir: Path) -> dict[str, str]:
    """identity -> state, read from the engine's database (a WAL reader, as the CLI is)."""
    from falconet_learning.store import ProfileStore  # noqa: PLC0415

    st = ProfileStore(state_dir)
    try:
        return {p["identity"]: p["state"] for p in st.profiles()}
    finally:
        st.close()


def wait_ready(state_dir: Path, tags: list[str], timeout: float = 60) -> None:
    def ready() -> bool:
        states = profile_states(state_dir)
        return all(any(f":{t}" in i and s == "ready" for i, s in states.items()) for t in tags)
    wait_until(ready, timeout, what=f"profiles of {tags} to become ready", interval=0.3)


def anomaly_alerts(alerts: list[dict[str, Any]], container_id: str, t0: float, t1: float,
                   min_priority: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Alerts of the learning rules in ``container_id`` between wall times ``t0`` and ``t1``."""
    out = []
    for a in alerts:
        if "learning" not in (a.get("tags") or []):
            continue
        if a.get("output_fields", {}).get("container.id") != container_id[:12]:
            continue
        ts = a["output_fields"].get("evt.time")
        ts = ts / 1e9 if isinstance(ts, int | float) else _parse_time(a.get("time"))
        if t0 <= ts <= t1 and (min_priority is None or a["priority"] in min_priority):
            out.append(a)
    return out


def _parse_time(s: str | None) -> float:
    if not s:
        return 0.0
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def settle(engine: LiveEngine, containers: list[str], quiet: float = 1.5,
           timeout: float = 20) -> None:
    """Wait until no new alert of ``containers`` arrived for ``quiet`` seconds (the outputs
    caught up; other activity on the machine is ignored)."""
    ids = {c[:12] for c in containers}

    def count() -> int:
        return sum(1 for a in engine.alerts()
                   if a.get("output_fields", {}).get("container.id") in ids)
    last = [count(), time.monotonic()]

    def calm() -> bool:
        n = count()
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return time.monotonic() - last[1] >= quiet
    wait_until(calm, timeout, what="the alert stream to settle", interval=0.2)
