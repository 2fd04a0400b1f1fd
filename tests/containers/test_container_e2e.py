"""Live end to end: ``falconet run`` (eBPF collector + rules + this plugin) alerts on a marker file
written inside a runc, containerd, docker and podman container, and on the host; the alert carries
the container's id, name, image and type, and Falco's suggested output fields."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, need_bcc, stop_process
from container_runtimes import (
    DOCKER_RUNC_ROOT,
    DOCKER_SOCK,
    IMAGE,
    start_ctr,
    start_docker,
    start_podman,
    start_runc,
    wait_until,
)

pytestmark = [pytest.mark.root, pytest.mark.containers, pytest.mark.ebpf]

RULES = """
- rule: Marker file written
  desc: a file whose name starts with /tmp/falconet-marker- was opened
  condition: evt.type in (open, openat, openat2) and fd.name startswith /tmp/falconet-marker-
  output: marker %fd.name by %proc.name type=%container.type image=%container.image
  priority: WARNING
"""
CONFIG = {
    "append_output": [{"suggested_output": True}],
    "plugins": {"container": {"runc_roots": ["/run/runc", "/run/containerd/runc", DOCKER_RUNC_ROOT],
                              "docker_socket": DOCKER_SOCK}},
}
REPO_NAME, TAG = IMAGE.rsplit(":", 1)


class LiveEngine:
    def __init__(self, tmp: Path, rules: str = RULES,
                 rule: str | None = "Marker file written") -> None:
        self.rule = rule
        (tmp / "rules.yaml").write_text(rules)
        (tmp / "falconet.yaml").write_text(json.dumps(CONFIG))
        self.out = tmp / "alerts.json"
        self.err = tmp / "stderr.txt"
        exe = Path(sys.executable).parent / "falconet"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [str(exe), "run", "-c", str(tmp / "falconet.yaml"), "-r", str(tmp / "rules.yaml"),
             "--json", "--metrics-port", str(self.port)], cwd=REPO, stdout=self.out.open("w"),
            stderr=self.err.open("w"), stdin=subprocess.DEVNULL)

    def alerts(self) -> list[dict]:
        out = []
        for line in self.out.read_text().splitlines():
            try:
                a = json.loads(line)
            except ValueError:
                continue
            if self.rule is None or a.get("rule") == self.rule:
                out.append(a)
        return out

    def alert_for(self, token: str, timeout: float = 20.0, enriched: bool = False) -> dict:
        """The first alert on the marker ``token``; with ``enriched``, the first one whose
        container metadata had arrived (on a loaded machine an early write may beat the
        lookup: its alert has the id but ``container.name`` missing, by design)."""
        def find():
            if self.proc.poll() is not None:
                raise AssertionError(f"falconet exited: {self.err.read_text()[-2000:]}")
            for a in self.alerts():
                f = a["output_fields"]
                if token in f.get("fd.name", "") and (not enriched or f.get("container.name")):
                    return a
            return None
        return wait_until(find, timeout, interval=0.05)

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from the engine's /metrics, or ``None`` when absent."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in body.decode().splitlines():
            if line.startswith(name + ("{" if labels else " ")) and want in line:
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> None:
        stop_process(self.proc, 15)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    need_bcc()
    eng = LiveEngine(tmp_path_factory.mktemp("e2e"))
    try:
        wait_ready(eng)
        yield eng
    finally:
        eng.stop()


def wait_ready(eng: LiveEngine) -> None:
    """Until a host marker write alerts (the probe attach takes a few seconds); the engine's
    rules must include RULES."""
    token = secrets.token_hex(4)
    path = f"/tmp/falconet-marker-ready-{token}"

    def ready():
        subprocess.run(["sh", "-c", f"echo x > {path}"], check=True)
        if eng.proc.poll() is not None:
            raise AssertionError(f"falconet exited: {eng.err.read_text()[-2000:]}")
        return _seen(eng, token)
    try:
        wait_until(ready, 60, interval=0.2)
    finally:
        Path(path).unlink(missing_ok=True)


def _seen(eng: LiveEngine, token: str) -> bool:
    return any(token in a["output_fields"].get("fd.name", "") for a in eng.alerts())


def marker_cmd(token: str) -> list[str]:
    # the marker is written every 0.3 s, so some write comes after the metadata lookup finished
    return ["sh", "-c", f"while true; do echo x > /tmp/falconet-marker-{token}; sleep 0.3; done"]


def check(alert: dict, full_id: str, name: str, ctype: str, repo: str = REPO_NAME) -> None:
    f = alert["output_fields"]
    assert f["container.id"] == full_id[:12], alert
    assert f["container.name"] == name, alert
    assert f["container.type"] == ctype, alert
    assert f["container.image.repository"] == repo, alert
    assert f["container.image.tag"] == TAG, alert
    assert f"container_id={full_id[:12]}" in alert["output"]
    assert f"container_name={name}" in alert["output"]


def test_host(live):
    token = secrets.token_hex(4)
    subprocess.run(["sh", "-c", f"echo x > /tmp/falconet-marker-{token}"], check=True)
    a = live.alert_for(token)
    assert a["output_fields"]["container.id"] == "host"
    assert "container_id=host container_name=host" in a["output"]
    Path(f"/tmp/falconet-marker-{token}").unlink()


def test_runc(live, request):
    token = secrets.token_hex(4)
    c = start_runc(request, annotations={"io.kubernetes.cri-o.ImageName": IMAGE,
                                         "io.kubernetes.pod.name": "web-0",
                                         "io.kubernetes.pod.namespace": "shop",
                                         "io.kubernetes.container.name": "web"},
                   cmd=marker_cmd(token), cgroup="/kubepods/besteffort/pod1/crio-{id}")
    a = live.alert_for(token, enriched=True)
    check(a, c.full_id, "web", "cri-o")           # laid out as CRI-O does it
    assert "k8s_pod_name=web-0 k8s_ns_name=shop" in a["output"]


def test_containerd(live, request):
    token = secrets.token_hex(4)
    c = start_ctr(request, cmd=marker_cmd(token))
    check(live.alert_for(token, enriched=True), c.full_id, c.full_id, "containerd")


def test_docker(live, request):
    token = secrets.token_hex(4)
    c = start_docker(request, cmd=marker_cmd(token))
    a = live.alert_for(token, enriched=True)
    check(a, c.full_id, c.name, "docker", repo=REPO_NAME.removeprefix("docker.io/library/"))


def test_podman(live, request):
    token = secrets.token_hex(4)
    c = start_podman(request, cmd=marker_cmd(token))
    check(live.alert_for(token, enriched=True), c.full_id, c.name, "podman")


def test_metrics(live, request):
    """Lookups, their latency and the containers table size are on /metrics."""
    def hits():
        return live.metric("falconet_enrichment_lookups_total", plugin="container", result="hit") or 0
    before = hits()
    token = secrets.token_hex(4)
    start_docker(request, cmd=marker_cmd(token))
    live.alert_for(token, enriched=True)
    assert hits() > before
    assert live.metric("falconet_enrichment_lookup_seconds_count", plugin="container") >= 1
    assert live.metric("falconet_state_table_entries", table="containers") >= 1
    assert live.metric("falconet_state_table_entries", table="threads") > 0   # core's kept


def test_record_then_replay_sees_the_same_container(request, tmp_path):
    """A capture carries the container metadata: replaying it after the container is gone gives
    the alert the same container fields (no runtime is asked during replay)."""
    need_bcc()
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "falconet.yaml").write_text(json.dumps(CONFIG))
    exe = str(Path(sys.executable).parent / "falconet")
    cap = tmp_path / "c.fcap"
    rec_out = tmp_path / "rec.out"
    rec = subprocess.Popen([exe, "record", "-c", str(tmp_path / "falconet.yaml"), "-r",
                            str(tmp_path / "rules.yaml"), "--json", "--no-metrics", str(cap)],
                           cwd=REPO, stdout=rec_out.open("w"), stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    try:
        ready = secrets.token_hex(4)

        def recording():
            subprocess.run(["sh", "-c", f"echo x > /tmp/falconet-marker-ready-{ready}"], check=True)
            assert rec.poll() is None, "falconet record exited"
            return ready in rec_out.read_text()
        wait_until(recording, 60, interval=0.2)
        token = secrets.token_hex(4)
        c = start_docker(request, cmd=marker_cmd(token))
        def enriched_alert():
            for x in rec_out.read_text().splitlines():
                if token in x and json.loads(x)["output_fields"].get("container.name"):
                    return json.loads(x)
            return None
        live_alert = wait_until(enriched_alert, 20)
    finally:
        rec.terminate()
        rec.wait(30)
        Path(f"/tmp/falconet-marker-ready-{ready}").unlink(missing_ok=True)
    subprocess.run(["docker", "rm", "-f", c.name], capture_output=True, check=False)
    cp = subprocess.run([exe, "replay", "-c", str(tmp_path / "falconet.yaml"), "-r",
                         str(tmp_path / "rules.yaml"), "--json", "--no-progress", str(cap)],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    # the same event, replayed: same evt.time, same container fields
    replayed = next(json.loads(x) for x in cp.stdout.splitlines()
                    if token in x and json.loads(x)["output_fields"]["evt.time"] ==
                    live_alert["output_fields"]["evt.time"])
    check(replayed, c.full_id, c.name, "docker", repo=REPO_NAME.removeprefix("docker.io/library/"))
    keys = [k for k in live_alert["output_fields"] if k.startswith(("container.", "k8s."))]
    assert {k: replayed["output_fields"][k] for k in keys} == \
        {k: live_alert["output_fields"][k] for k in keys}
