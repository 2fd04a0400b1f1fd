"""The template plugin as a third party would use it: a FRESH virtualenv with only the falconet and
falconet-example wheels (and falconet's runtime dependencies) installed, then
`falconet plugins list` and one replay that uses the plugin's source, field and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from falconet.capture import CaptureWriter
from falconet.events import Event

PIP = [sys.executable, "-m", "pip"]
DEPS = ["pluggy", "PyYAML", "prometheus-client", "google-re2"]


def _pip(*args: str, timeout: float = 300) -> None:
    r = subprocess.run([*PIP, "-q", "--disable-pip-version-check", *args], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"pip {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"


def _no_isolation() -> list[str]:
    """Build with the test venv's setuptools/wheel when they are recent enough (the test extras
    install them): no isolated build env to create, no index to ask."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        ok = int(version("setuptools").split(".")[0]) >= 68 and bool(version("wheel"))
    except PackageNotFoundError:
        ok = False
    return ["--no-build-isolation"] if ok else []


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv (no pip of its own: the test venv's pip installs into it with --python)."""
    base = tmp_path_factory.mktemp("freshvenv")
    wheels = base / "wheels"
    # wheels of the repo and the plugin, plus the installed versions of falconet's dependencies
    _pip("wheel", "--no-deps", *_no_isolation(), "-w", str(wheels), str(REPO),
         str(REPO / "plugins" / "falconet-example"))
    from importlib.metadata import version
    _pip("download", "--no-deps", "-d", str(wheels), *[f"{d}=={version(d)}" for d in DEPS])
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    _pip("--python", str(venv / "bin" / "python"), "install", "--no-index", "--find-links",
         str(wheels), "falconet", "falconet-example")
    return venv


def test_plugin_loads_and_its_source_field_and_output_work_in_one_replay(
        fresh_venv: Path, tmp_path: Path) -> None:
    falconet = str(fresh_venv / "bin" / "falconet")
    # nothing from the development checkout leaks in: falconet comes from the wheel
    where = subprocess.run([str(fresh_venv / "bin" / "python"), "-c",
                            "import falconet, falconet_example; print(falconet.__file__); "
                            "print(falconet_example.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert str(REPO / "core") not in where and str(fresh_venv) in where

    r = subprocess.run([falconet, "plugins", "list", "--json"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)["plugins"]}
    assert plugins["example"]["version"] == "0.1.0"
    assert plugins["example"]["builtin"] is False
    assert set(plugins["example"]["kinds"]) >= {"input", "enrichment", "output"}
    assert "example.message" in plugins["example"]["fields"]
    assert "container" not in plugins and "otel" not in plugins

    # a capture with events of the plugin's source (as `falconet record --source example` writes)
    cap = tmp_path / "example.fcap.gz"
    with CaptureWriter(str(cap), host="h", start_ns=1) as w:
        for i, msg in enumerate(["hello", "curl http://evil.example/x", "bye"], 1):
            w.write_event(Event("example", "message", 1_700_000_000_000_000_000 + i,
                                args={"seq": i, "message": msg}))
    rules = tmp_path / "r.yaml"
    rules.write_text("""\
- rule: Example URL seen
  desc: the example source saw a URL
  condition: example.message contains "http://"
  output: URL in message (msg=%example.message seq=%example.seq)
  priority: NOTICE
  source: example
""")
    out = tmp_path / "plugin-alerts.jsonl"
    r = subprocess.run([falconet, "replay", str(cap), "-r", str(rules), "--json",
                        "-o", f"plugins.example.output={out}", "-o", "plugins.example.required=true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    [stdout_alert] = [json.loads(x) for x in r.stdout.splitlines()]
    assert stdout_alert["source"] == "example"
    assert stdout_alert["output_fields"]["example.seq"] == 2
    [plugin_alert] = [json.loads(x) for x in out.read_text().splitlines()]
    assert plugin_alert["rule"] == "Example URL seen"
    assert plugin_alert["output"] == "URL in message (msg=curl http://evil.example/x seq=2)"
