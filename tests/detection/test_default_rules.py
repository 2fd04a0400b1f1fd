"""The default rules: they validate cleanly and every rule is documented and MITRE-tagged."""

from __future__ import annotations

import re
import subprocess

import yaml
from conftest import REPO

RULES = REPO / "rules" / "falconet_rules.yaml"


def test_rules_validate_clean(falconet_bin: str) -> None:
    r = subprocess.run([falconet_bin, "rules", "validate", str(REPO / "rules")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(0 warnings)" in r.stdout, r.stdout


def test_without_the_container_plugin_the_first_error_names_it(falconet_bin: str) -> None:
    r = subprocess.run([falconet_bin, "rules", "validate", str(REPO / "rules"),
                        "-o", "plugins.container.enabled=false"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    first = r.stdout.splitlines()[0]
    assert "error: required_plugin_versions: Plugin requirement not satisfied, must load one " \
           "of: container (>= 0.4.0)" in first, r.stdout


def test_every_rule_has_mitre_tags_and_useful_desc() -> None:
    items = yaml.safe_load(RULES.read_text())
    rules = [d for d in items if "rule" in d]
    assert len(rules) >= 30
    for r in rules:
        tags = r["tags"]
        assert any(t.startswith("mitre_") for t in tags), r["rule"]
        assert any(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in tags), r["rule"]
        assert len(r["desc"].split()) >= 25, f"{r['rule']}: desc must tell what to check"
        assert "check" in r["desc"].lower(), r["rule"]


def test_required_behaviours_are_covered() -> None:
    names = {d["rule"] for d in yaml.safe_load(RULES.read_text()) if "rule" in d}
    for needle in ["Shell Spawned in Container", "Terminal Shell in Container", "nsenter",
                   "Unshare", "Mount", "release_agent", "/proc Root", "Sensitive File Read",
                   "Write Below Etc", "Binary Directory", "Package Manager",
                   "Service Spawned", "Reverse Shell", "Netcat", "Mining Pool", "Ptrace Attach",
                   "Anti-Debug", "memfd", "/dev/shm", "/tmp", "New Binary", "Kernel Module",
                   "Shell History", "Log File", "Setuid", "Packet Socket", "BPF Program"]:
        assert any(needle in n for n in names), needle


def test_package_manager_rule_has_allowed_image_exception() -> None:
    items = yaml.safe_load(RULES.read_text())
    rule = next(d for d in items if d.get("rule") == "Package Manager Run in Container")
    exc = rule["exceptions"][0]
    assert exc["fields"] == ["container.image.repository", "proc.name"]
    assert ["centos", "yum"] in exc["values"]
