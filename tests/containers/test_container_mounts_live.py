"""Live: container.mount* fields from real containers. A docker container with a read-only bind
mount (``-v <tmpdir>:/data:ro``) and a runc container whose OCI spec binds the same directory
read-only write a marker file; a rule that needs ``container.mount.rdwr[...] = false`` fires
(``falconet run``, eBPF), with the mount fields right in the alert; and a capture recorded with
such a container replays with the same mount fields after the container is gone."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, need_bcc
from container_runtimes import CI_RT_DIR, start_docker, start_runc, wait_until
from test_container_e2e import CONFIG, RULES, LiveEngine, wait_ready

pytestmark = [pytest.mark.root, pytest.mark.containers, pytest.mark.ebpf]

#: the bind source's name: the path arguments below are regexes searched in mount sources
SRC_NAME = "falconet-mnt-src"
RULE = "Read-only data mount in use"
MOUNT_RULES = RULES + f"""
- rule: {RULE}
  desc: a container with a read-only bind of a {SRC_NAME} directory opened a marker file
  condition: >
    evt.type in (open, openat, openat2) and fd.name startswith /tmp/falconet-mntmark-
    and container.mount.rdwr[{SRC_NAME}] = false and container.mount.dest[{SRC_NAME}] != ""
  output: >
    mount marker %fd.name type=%container.type dest=%container.mount.dest[{SRC_NAME}]
    rdwr=%container.mount.rdwr[{SRC_NAME}] mode=%container.mount.mode[{SRC_NAME}]
    prop=%container.mount.propagation[{SRC_NAME}] src=%container.mount.source[^/data$]
    one=%container.mount[{SRC_NAME}] all=%container.mounts
  priority: WARNING
"""
MOUNT_FIELDS = [f"container.mount.dest[{SRC_NAME}]", f"container.mount.rdwr[{SRC_NAME}]",
                f"container.mount.mode[{SRC_NAME}]", f"container.mount.propagation[{SRC_NAME}]",
                "container.mount.source[^/data$]", f"container.mount[{SRC_NAME}]",
                "container.mounts"]


def cmd(token: str) -> list[str]:
    # written every 0.3 s: some write comes after the metadata lookup finished
    return ["sh", "-c", f"while true; do echo x > /tmp/falconet-mntmark-{token}; sleep 0.3; done"]


def bind_source(tmp_path: Path) -> str:
    src = tmp_path / SRC_NAME
    src.mkdir(exist_ok=True)
    return str(src)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    need_bcc()
    eng = LiveEngine(tmp_path_factory.mktemp("mounts"), rules=MOUNT_RULES, rule=None)
    try:
        wait_ready(eng)
        yield eng
    finally:
        eng.stop()


def mount_alert(eng: LiveEngine, token: str, timeout: float = 30.0) -> dict:
    def find():
        if eng.proc.poll() is not None:
            raise AssertionError(f"falconet exited: {eng.err.read_text()[-2000:]}")
        return next((a for a in eng.alerts() if a.get("rule") == RULE
                     and token in a["output_fields"].get("fd.name", "")), None)
    return wait_until(find, timeout, interval=0.05)


def test_docker_read_only_bind_mount(live, request, tmp_path):
    src = bind_source(tmp_path)
    token = secrets.token_hex(4)
    c = start_docker(request, extra=("-v", f"{src}:/data:ro"), cmd=cmd(token))
    f = mount_alert(live, token)["output_fields"]
    assert f["container.id"] == c.full_id[:12]
    # docker inspect's Mounts: Mode "ro", RW false, Propagation "rprivate"
    assert {k: f[k] for k in MOUNT_FIELDS} == {
        f"container.mount.dest[{SRC_NAME}]": "/data",
        f"container.mount.rdwr[{SRC_NAME}]": "false",
        f"container.mount.mode[{SRC_NAME}]": "ro",
        f"container.mount.propagation[{SRC_NAME}]": "rprivate",
        "container.mount.source[^/data$]": src,
        f"container.mount[{SRC_NAME}]": f"{src}:/data:ro:false:rprivate",
        "container.mounts": f"{src}:/data:ro:false:rprivate",
    }


def test_runc_oci_read_only_bind_mount(live, request, tmp_path):
    src = bind_source(tmp_path)
    token = secrets.token_hex(4)
    spec = json.loads((CI_RT_DIR / "bundle-template" / "config.json").read_text())
    mounts = spec["mounts"] + [{"destination": "/data", "type": "bind", "source": src,
                                "options": ["rbind", "ro"]}]
    c = start_runc(request, spec_update={"mounts": mounts}, cmd=cmd(token))
    f = mount_alert(live, token)["output_fields"]
    assert f["container.id"] == c.full_id[:12] and f["container.type"] == "runc"
    # the OCI reading of the container plugin: no mode= option → "", propagation from the
    # spec's rootfsPropagation (the template has none) → ""; every spec mount is listed
    prop = spec["linux"].get("rootfsPropagation", "")
    assert f[f"container.mount.dest[{SRC_NAME}]"] == "/data"
    assert f[f"container.mount.rdwr[{SRC_NAME}]"] == "false"
    assert f[f"container.mount.mode[{SRC_NAME}]"] == ""
    assert f[f"container.mount.propagation[{SRC_NAME}]"] == prop
    assert f["container.mount.source[^/data$]"] == src
    assert f[f"container.mount[{SRC_NAME}]"] == f"{src}:/data::false:{prop}"
    listed = f["container.mounts"].split(",")
    assert len(listed) == len(mounts) and listed[0].startswith("proc:/proc:")
    assert listed[-1] == f"{src}:/data::false:{prop}"


def test_record_then_replay_gives_the_same_mount_fields(request, tmp_path):
    need_bcc()
    src = bind_source(tmp_path)
    (tmp_path / "rules.yaml").write_text(MOUNT_RULES)
    (tmp_path / "falconet.yaml").write_text(json.dumps(CONFIG))
    exe = str(Path(sys.executable).parent / "falconet")
    cap = tmp_path / "m.fcap"
    rec_out = tmp_path / "rec.out"
    rec = subprocess.Popen([exe, "record", "-c", str(tmp_path / "falconet.yaml"), "-r",
                            str(tmp_path / "rules.yaml"), "--json", "--no-metrics", str(cap)],
                           cwd=REPO, stdout=rec_out.open("w"), stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    ready = secrets.token_hex(4)
    try:
        def recording():
            subprocess.run(["sh", "-c", f"echo x > /tmp/falconet-marker-ready-{ready}"], check=True)
            assert rec.poll() is None, "falconet record exited"
            return ready in rec_out.read_text()
        wait_until(recording, 60, interval=0.2)
        token = secrets.token_hex(4)
        c = start_docker(request, extra=("-v", f"{src}:/data:ro"), cmd=cmd(token))

        def live_alert():
            for x in rec_out.read_text().splitlines():
                if token in x and json.loads(x).get("rule") == RULE:
                    return json.loads(x)
            return None
        live_a = wait_until(live_alert, 30)
    finally:
        rec.terminate()
        rec.wait(30)
        Path(f"/tmp/falconet-marker-ready-{ready}").unlink(missing_ok=True)
    subprocess.run(["docker", "rm", "-f", c.name], capture_output=True, check=False)
    cp = subprocess.run([exe, "replay", "-c", str(tmp_path / "falconet.yaml"), "-r",
                         str(tmp_path / "rules.yaml"), "--json", "--no-progress", str(cap)],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    t = live_a["output_fields"]["evt.time"]
    replayed = next(json.loads(x) for x in cp.stdout.splitlines()
                    if token in x and json.loads(x).get("rule") == RULE
                    and json.loads(x)["output_fields"]["evt.time"] == t)
    assert {k: replayed["output_fields"][k] for k in MOUNT_FIELDS} == \
        {k: live_a["output_fields"][k] for k in MOUNT_FIELDS}
    assert live_a["output_fields"][f"container.mount.rdwr[{SRC_NAME}]"] == "false"
    assert replayed["output"] == live_a["output"]
