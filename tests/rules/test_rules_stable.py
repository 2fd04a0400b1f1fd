"""Acceptance: Falco's upstream stable rules load unmodified, with the event types Falco indexes
each rule under, through the API (stand-in registry), the real registry and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import FALCO_RULES, SHARED, need
from falconet.priorities import Priority
from falconet.rules import load_rules
from falconet.state.tables import FdInfo
from rulehelp import REG
from stubfields import event, proc

REFERENCE = SHARED / "reference" / "falco-fields-used.md"


def reference_event_types() -> dict[str, tuple[str, set[str]]]:
    """rule -> (priority, event types) from the reference's per-rule table."""
    need(REFERENCE.exists(), f"{REFERENCE} is missing")
    text = REFERENCE.read_text()
    section = text.split("## Per-rule computed evt.type set", 1)[1]
    out = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*([^|]+?)\s*\|\s*(True|False)\s*\|\s*(\w+)\s*\|\s*([^|]+?)\s*\|$", line)
        if m:
            out[m.group(1)] = (m.group(3), {t.strip() for t in m.group(4).split(",")})
    assert len(out) == 25
    return out


@pytest.fixture(scope="module")
def stable():
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    res = load_rules([FALCO_RULES], REG, plugin_versions={"container": "0.6.0"},
                     hostname="node-1")
    assert res.ok, [str(e) for e in res.errors]
    return res


def test_stable_rules_load_with_falco_event_types(stable) -> None:
    assert stable.counts == {"rules": 25, "macros": 87, "lists": 49}
    ref = reference_event_types()
    got = {r.name: (r.priority, set(r.event_types or ["<all>"])) for r in stable.rules}
    assert set(got) == set(ref)
    for name, (prio, types) in ref.items():
        assert got[name][1] == types, name
        assert got[name][0] == Priority.parse(prio), name
    assert stable.warnings == []


def test_stable_rules_need_the_container_plugin() -> None:
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    res = load_rules([FALCO_RULES], REG, plugin_versions={})
    assert [e.message for e in res.errors] == [
        "Plugin requirement not satisfied, must load one of: container (>= 0.4.0)"]


def test_stable_rules_load_with_the_real_registry() -> None:
    """The engine's own registry (core fields + container plugin), built as `falconet run` does."""
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    try:
        from falconet.app import App
        from falconet.config import load_config
    except ImportError as e:                      # pragma: no cover - core area not there yet
        need(False, f"falconet.app is not available: {e}")
    app = App(load_config(None, []))
    app.load_plugins()
    missing = [f for f in ("proc.name", "fd.name", "container.id", "k8s.ns.name")
               if f not in app.ctx.fields.fields]
    need(not missing, f"real registry lacks {missing} (core fields or container plugin missing)")
    res = load_rules([FALCO_RULES], app.ctx.fields, plugin_versions=app.plugin_versions,
                     sources=app.event_sources)
    assert res.ok, [str(e) for e in res.errors]
    assert res.counts == {"rules": 25, "macros": 87, "lists": 49}
    ref = reference_event_types()
    assert {r.name: set(r.event_types) for r in res.rules} == {k: v[1] for k, v in ref.items()}


# ------------------------------------------------------------------------------ verdicts
def container_proc(comm: str, **kw):
    kw.setdefault("container", {"id": "3ad7b26ded6d", "name": "web", "repository": "nginx",
                                "tag": "1.25", "privileged": False})
    return proc(comm, **kw)


def test_terminal_shell_in_container(stable) -> None:
    t = container_proc("bash", tty=34816, ancestors=[proc("runc"), proc("containerd-shim")])
    [a] = stable.ruleset.match(event("execve", t))
    assert a.rule == "Terminal shell in container" and a.priority == Priority.NOTICE
    assert "container_id=3ad7b26ded6d" in a.output and a.hostname == "node-1"
    assert a.ruleset == "falco_rules.yaml"
    # the same shell without a terminal, or on the host, is not this rule
    assert not [x for x in stable.ruleset.match(event("execve", container_proc("bash", tty=0)))
                if x.rule == "Terminal shell in container"]
    assert not [x for x in stable.ruleset.match(event("execve", proc("bash", tty=34816)))
                if x.rule == "Terminal shell in container"]


def test_read_sensitive_file_untrusted(stable) -> None:
    t = proc("cat", ancestors=[proc("bash"), proc("sshd")])
    e = event("openat", t, fd=FdInfo(3, "f", "/etc/shadow"), args={"flags": "O_RDONLY",
                                                                    "flags_raw": 0}, res=3)
    assert [a.rule for a in stable.ruleset.match(e)] == ["Read sensitive file untrusted"]
    benign = event("openat", t, fd=FdInfo(3, "f", "/etc/hosts"),
                   args={"flags": "O_RDONLY", "flags_raw": 0}, res=3)
    assert stable.ruleset.match(benign) == []
    # trusted reader (sshd is in the exception lists of the rule's macros)
    trusted = event("openat", proc("sshd", ancestors=[proc("systemd")]),
                    fd=FdInfo(3, "f", "/etc/shadow"), args={"flags": "O_RDONLY", "flags_raw": 0},
                    res=3)
    assert stable.ruleset.match(trusted) == []


def test_fileless_execution_and_dev_shm(stable) -> None:
    t = proc("x", exepath="memfd:payload", exe_from_memfd=True, ancestors=[proc("bash")])
    assert [a.rule for a in stable.ruleset.match(event("execve", t))] == \
        ["Fileless execution via memfd_create"]
    shm = proc("evil", exepath="/dev/shm/evil", exe="/dev/shm/evil", ancestors=[proc("bash")])
    assert "Execution from /dev/shm" in [a.rule for a in stable.ruleset.match(event("execve", shm))]


# ------------------------------------------------------------------------------ CLI
def _cli(*args: str):
    return subprocess.run([sys.executable, "-m", "falconet", "rules", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_validate_stable_rules() -> None:
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    p = _cli("validate", str(FALCO_RULES))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "25 rules, 87 macros, 49 lists" in p.stdout
    assert "Traceback" not in p.stderr


def test_cli_validate_reports_errors_with_location(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- macro: m\n  condition: proc.name = a andb\n"
                   "- rule: R\n  desc: d\n  condition: evt.type = open and m\n"
                   "  output: o\n  priority: LOUD\n")
    p = _cli("validate", str(bad))
    assert p.returncode == 1
    assert f"{bad}:2:31: error: macro 'm': filter error at 17: expected blank or '(' after " \
           "'and'" in p.stdout
    assert f"{bad}:7:13: error: rule 'R': Invalid priority" in p.stdout
    assert "0 rules, 1 macros, 0 lists" in p.stdout
    assert "Traceback" not in p.stderr
    p = _cli("validate", str(tmp_path / "nope.yaml"))
    assert p.returncode == 1 and "LOAD" not in p.stdout and "nope.yaml:0:0: error" in p.stdout


def test_cli_list_json(tmp_path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("- rule: Shell\n  desc: d\n  condition: evt.type = execve and proc.name = bash\n"
                 "  output: o\n  priority: WARNING\n  tags: [b, a]\n"
                 "- rule: Off\n  desc: d\n  condition: evt.type = openat\n  output: o\n"
                 "  priority: DEBUG\n  enabled: false\n")
    p = _cli("list", "--json", str(f))
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert rows[0] == {"name": "Shell", "priority": "Warning", "source": "syscall",
                       "tags": ["a", "b"], "enabled": True, "event_types": ["execve"],
                       "file": str(f), "desc": "d"}
    assert rows[1]["enabled"] is False and rows[1]["event_types"] == ["openat"]
    p = _cli("list", str(f))
    assert p.returncode == 0 and "Shell" in p.stdout and "execve" in p.stdout
