"""deploy/systemd/falconet.service and `make install` (scripts/install.sh): systemd's own verifier
accepts the unit, its capabilities are the DaemonSet's (which test_daemonset_capabilities runs the
live engine with), and an install into a temporary prefix gives a working engine: its rules load,
its plugins are there, and the unit's own command line, run with the unit's capabilities, detects
a sensitive file read live."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from bundle_support import REPO
from conftest import free_port, need, need_bcc, need_binary, stop_process, wait_until
from test_daemonset_capabilities import daemonset_caps

UNIT = REPO / "deploy" / "systemd" / "falconet.service"


def unit_values(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, in order (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify(unit: Path) -> None:
    analyze = need_binary("systemd-analyze")
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       check=False)
    # a warning (an unknown key, a bad value) is printed but does not change the exit status
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr


def test_unit_capabilities_are_the_daemonsets() -> None:
    values = unit_values(UNIT.read_text())
    caps = {"cap_" + c for c in daemonset_caps()}
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        [line] = values[key]
        assert {c.lower() for c in line.split()} == caps, key
    assert values["NoNewPrivileges"] == ["yes"]
    assert values["ExecReload"] == ["/bin/kill -HUP $MAINPID"]     # hot reload of the rules


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's engine
    falconet = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "falconet"
    if not falconet.exists():
        falconet = REPO / ".venv" / "bin" / "falconet"
    unit = tmp_path / "falconet.service"
    unit.write_text(UNIT.read_text().replace("/opt/falconet/venv/bin/falconet", str(falconet)))
    verify(unit)


def test_systemd_analyze_rejects_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "falconet.service"
    unit.write_text(UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilegez=yes"))
    with pytest.raises(AssertionError, match="Unknown key 'NoNewPrivilegez'"):
        verify(unit)


@pytest.mark.root
@pytest.mark.ebpf
def test_make_install_gives_a_working_service(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "make install needs root")
    need_bcc()
    setpriv = need_binary("setpriv")
    prefix, etc, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "systemd"
    env = {**os.environ, "PREFIX": str(prefix), "ETC": str(etc), "UNIT_DIR": str(units)}
    r = subprocess.run(["bash", str(REPO / "scripts" / "install.sh")], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    installed = units / "falconet.service"
    text = installed.read_text()
    assert unit_values(text)["ExecStart"] == [
        f"{prefix}/venv/bin/falconet run -c {etc}/falconet.yaml"]
    verify(installed)
    # the configuration holds webhook/OTLP credentials (outputs.*.headers): root only
    assert (etc / "falconet.yaml").stat().st_mode & 0o077 == 0, oct((etc / "falconet.yaml").stat().st_mode)
    falconet = prefix / "venv" / "bin" / "falconet"
    # not an editable install: the engine must not come from this checkout
    where = subprocess.run([str(prefix / "venv" / "bin" / "python"), "-c",
                            "import falconet; print(falconet.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(prefix)), where
    listed = subprocess.run([str(falconet), "plugins", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert {"container", "otel"} <= {line.split()[0] for line in listed.splitlines()[1:] if line}
    rules = subprocess.run([str(falconet), "rules", "validate", str(etc / "rules")],
                           capture_output=True, text=True, check=False)
    assert rules.returncode == 0, rules.stdout + rules.stderr

    # the unit's own environment and command line, with exactly its capabilities
    values = unit_values(text)
    unit_env = dict(e.split("=", 1) for e in values["Environment"])
    assert unit_env["FALCONET_RULES_DIR"] == str(etc / "rules")
    caps = values["CapabilityBoundingSet"][0].lower().replace("cap_", "").split()
    bounding = ",".join(["-all", *(f"+{c}" for c in caps)])
    argv = [setpriv, f"--bounding-set={bounding}", "--inh-caps=-all", "--",
            *shlex.split(values["ExecStart"][0]), "--duration", "60",
            "--metrics-port", str(free_port())]
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                env={**os.environ, **unit_env})
    try:
        wait_until(lambda: b"falconet: watching" in err.read_bytes() or proc.poll() is not None,
                   60, "the installed engine to attach")
        assert proc.poll() is None, err.read_text()
        # the default rules: an untrusted program (cat) reads /etc/shadow
        def read_shadow() -> bool:
            subprocess.run(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, check=True)
            return "file=/etc/shadow" in out.read_text()
        wait_until(read_shadow, 15, "an /etc/shadow alert from the installed engine",
                   interval=0.3)
    finally:
        stop_process(proc)
    assert "Traceback" not in err.read_text()
