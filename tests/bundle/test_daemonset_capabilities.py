"""The Kubernetes DaemonSet's capability list is enough, on this kernel, for the real engine: a live
``falconet run`` (eBPF) started with exactly the capabilities of deploy/kubernetes (bounding set
restricted with setpriv, as a container runtime does) and the DaemonSet's falconet.yaml detects a
file open, serves /healthz and exports the alert over OTLP. Without CAP_BPF, bpf() fails."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from bundle_support import K8S, OtlpHttpReceiver, env_without_otel, http_json, wait_for
from conftest import free_port, need, need_bcc, need_binary, stop_process


def daemonset_caps() -> list[str]:
    for doc in yaml.safe_load_all((K8S / "falconet-daemonset.yaml").read_text()):
        if doc and doc["kind"] == "DaemonSet":
            sc = doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            return [c.lower() for c in sc["capabilities"]["add"]]
    raise AssertionError("no DaemonSet")


def start_engine(tmp: Path, caps: list[str], probe: Path, port: int,
                 otlp_url: str) -> subprocess.Popen[bytes]:
    setpriv = need_binary("setpriv")
    rules = tmp / "rules.yaml"
    rules.write_text(f"""
- rule: Bundle Capability Probe
  desc: the test opened its probe file
  condition: evt.type in (open, openat, openat2) and fd.name = {probe}
  output: "capability probe opened by %proc.name"
  priority: CRITICAL
""")
    cm = yaml.safe_load((K8S / "falconet-config.yaml").read_text())
    config = tmp / "falconet.yaml"
    config.write_text(cm["data"]["falconet.yaml"])
    falconet = str(Path(sys.executable).parent / "falconet")
    bounding = ",".join(["-all", *(f"+{c}" for c in caps)])
    return subprocess.Popen(
        [setpriv, f"--bounding-set={bounding}", "--inh-caps=-all", "--",
         falconet, "run", "-c", str(config), "-r", str(rules), "--duration", "60",
         "-o", "metrics.address=127.0.0.1", "--metrics-port", str(port),
         "-o", f"plugins.otel.endpoint={otlp_url}", "-o", f"state_dir={tmp / 'state'}"],
        stdout=open(tmp / "stdout", "wb"), stderr=open(tmp / "stderr", "wb"),  # noqa: SIM115
        stdin=subprocess.DEVNULL, env=env_without_otel())


@pytest.mark.root
@pytest.mark.ebpf
def test_engine_runs_with_exactly_the_daemonset_capabilities(tmp_path: Path) -> None:
    need_bcc()
    caps = daemonset_caps()
    assert "sys_admin" not in caps
    probe = tmp_path / f"probe-{uuid.uuid4().hex}"
    probe.write_text("x")
    port = free_port()
    otlp = OtlpHttpReceiver()
    proc = start_engine(tmp_path, caps, probe, port, otlp.url)
    try:
        def detected() -> bool:
            if proc.poll() is not None:
                err = (tmp_path / "stderr").read_text()[-2000:]
                raise AssertionError(f"engine exited {proc.returncode}: {err}")
            probe.read_text()                       # the event: open() of the probe file
            return b"capability probe opened by" in (tmp_path / "stdout").read_bytes()
        wait_for(detected, 60, "the live engine to detect the probe open", interval=0.3)
        code, health = http_json(f"http://127.0.0.1:{port}/healthz")
        assert code == 200 and health["status"] == "ok", health
        code, metrics = http_json(f"http://127.0.0.1:{port}/metrics")
        assert 'falconet_alerts_total{priority="Critical",rule="Bundle Capability Probe"' in metrics
        wait_for(lambda: any(r.severity_text == "Critical" for _, _, r in otlp.log_records()), 15,
                 "the live alert over OTLP")
    finally:
        stop_process(proc, 15)
        otlp.stop()


#: bpf(BPF_MAP_CREATE) of a 1-entry array map via ctypes: prints the errno (0 = created)
BPF_PROBE = r"""
import ctypes, os, struct
nr = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
attr = ctypes.create_string_buffer(struct.pack("IIII", 2, 4, 8, 1), 128)   # BPF_MAP_TYPE_ARRAY
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(nr, 0, attr, 128)                                        # BPF_MAP_CREATE
print(0 if fd >= 0 else ctypes.get_errno())
"""


@pytest.mark.root
@pytest.mark.parametrize(("drop", "expect"), [((), "0"), (("bpf",), "1")], ids=["daemonset", "without-bpf"])
def test_the_bounding_set_really_restricts_bpf(drop: tuple[str, ...], expect: str) -> None:
    """Negative control for the test above: the same setpriv restriction without CAP_BPF makes
    bpf() fail with EPERM (1), so the live test's success is due to the listed capabilities."""
    setpriv = need_binary("setpriv")
    need(os.geteuid() == 0, "needs root")
    caps = [c for c in daemonset_caps() if c not in drop]
    bounding = ",".join(["-all", *(f"+{c}" for c in caps)])
    r = subprocess.run([setpriv, f"--bounding-set={bounding}", "--inh-caps=-all", "--", sys.executable,
                        "-c", BPF_PROBE], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expect, r.stdout + r.stderr
