"""Falco's stable rules need ``container >= 0.4.0``: they load with this plugin installed and
fail with a clear message without it (the rule engine's required_plugin_versions check)."""

import subprocess

from conftest import REPO


def validate(falconet_bin, rules, *extra):
    return subprocess.run([falconet_bin, "rules", "validate", *extra, str(rules)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_stable_rules_load_with_the_plugin(falconet_bin, falco_rules_path):
    cp = validate(falconet_bin, falco_rules_path)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "25 rules" in cp.stdout + cp.stderr


def test_stable_rules_fail_clearly_without_it(falconet_bin, falco_rules_path):
    cp = validate(falconet_bin, falco_rules_path, "-o", "plugins.container.enabled=false")
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0
    assert "falco_rules.yaml:31:7: error: required_plugin_versions" in out
    assert "container (>= 0.4.0)" in out
    assert "Traceback" not in out


def test_plugin_is_listed_with_its_version(falconet_bin):
    cp = subprocess.run([falconet_bin, "plugins", "list"], cwd=REPO, capture_output=True,
                        text=True, timeout=60)
    line = next(x for x in cp.stdout.splitlines() if x.startswith("container "))
    assert "0.6.0" in line and "enrichment" in line
