"""Synthesis, name checks and focus on synthetic captures (fast; real loader, state parser and
default rules; the live sweep is test_synthesis_live.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from falconet.app import default_rules_paths
from falconet.authoring.context import RulesContext
from falconet.authoring.focus import Focus, load_focus, save_focus
from falconet.authoring.names import check_names
from falconet.authoring.replay import make_app, replay
from falconet.authoring.synthesize import Synthesizer
from falconet.capture import CaptureWriter
from falconet.events import Event

from tests.authoring.capgen import T0, opens, process_capture, unlinks


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer(RulesContext(default_rules_paths()))


def test_separates_by_process_and_event_type(tmp_path: Path, synth: Synthesizer) -> None:
    pos = process_capture(str(tmp_path / "p.fcap"), "cat", unlinks("/tmp/secret-", 3))
    neg = process_capture(str(tmp_path / "n.fcap"), "rm", unlinks("/tmp/secret-old-", 5), pid=200)
    t = time.monotonic()
    r = synth.synthesize([pos], [neg], name="Cat deletes")
    assert time.monotonic() - t < 10
    assert r.proof.proven
    # the key event: cat's start (fires once) or its unlinks; never the shared /tmp/ prefix
    assert r.candidate.condition in ("falconet_spawned_process and proc.name = cat",
                                     "evt.type = unlinkat and proc.name = cat")
    rule = yaml.safe_load(r.yaml)[0]
    assert {"rule", "desc", "condition", "output", "priority", "tags"} <= set(rule)
    assert "process=%proc.name" in rule["output"] and rule["priority"] == "WARNING"


def test_paths_generalise_only_as_far_as_the_negatives_allow(tmp_path: Path,
                                                            synth: Synthesizer) -> None:
    pos = process_capture(str(tmp_path / "p.fcap"), "cat",
                          opens(["/etc/falconet-x/conf.d/a.conf"]))
    neg = process_capture(str(tmp_path / "n.fcap"), "cat",
                          opens(["/etc/passwd", "/etc/hosts", "/etc/falconet-y/b.conf"]), pid=200)
    r = synth.synthesize([pos], [neg], name="X conf read")
    # /etc/ would match the negatives; /etc/falconet-x/ is as general as they allow
    assert "startswith /etc/falconet-x/" in r.candidate.condition, r.candidate.condition
    assert "conf.d" not in r.candidate.condition


def test_macros_and_lists_of_the_loaded_rules_are_preferred(tmp_path: Path,
                                                            synth: Synthesizer) -> None:
    pos = process_capture(str(tmp_path / "p.fcap"), "cat", opens(["/etc/shadow"]))
    neg = process_capture(str(tmp_path / "n.fcap"), "cat", opens(["/etc/passwd"]), pid=200)
    r = synth.synthesize([pos], [neg], name="Shadow read")
    assert r.candidate.condition.startswith("falconet_open_read and "), r.candidate.condition
    assert "(falconet_sensitive_file_names)" in r.candidate.condition \
        or "falconet_sensitive_file" in r.candidate.condition
    assert "Sensitive File Read by Untrusted Program" in r.proof.covered_by


def test_indistinguishable_evidence_is_a_clear_failure(tmp_path: Path) -> None:
    pos = process_capture(str(tmp_path / "p.fcap"), "cat", unlinks("/tmp/secret-", 3))
    p = subprocess.run([sys.executable, "-m", "falconet", "rules", "synthesize", "--positive", pos,
                        "--negative", pos], capture_output=True, text=True, timeout=120)
    assert p.returncode == 10, p.stdout + p.stderr
    assert "synthesis failed: no condition" in p.stderr and "Traceback" not in p.stderr


def test_cli_prints_a_rule_that_loads(tmp_path: Path) -> None:
    pos = process_capture(str(tmp_path / "p.fcap"), "cat", unlinks("/tmp/secret-", 3))
    neg = process_capture(str(tmp_path / "n.fcap"), "rm", unlinks("/tmp/secret-old-", 5), pid=200)
    out = tmp_path / "rule.yaml"
    p = subprocess.run([sys.executable, "-m", "falconet", "rules", "synthesize", "--positive", pos,
                        "--negative", neg, "--name", "Cat deletes", "--write", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "# PROVEN: Cat deletes" in p.stdout
    v = subprocess.run([sys.executable, "-m", "falconet", "rules", "validate",
                        *default_rules_paths(), str(out)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout


def test_synthesize_needs_exactly_one_positive_source() -> None:
    p = subprocess.run([sys.executable, "-m", "falconet", "rules", "synthesize"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "exactly one of" in p.stderr


@pytest.mark.parametrize(("cond", "kind", "name"), [
    ("evt.type = open and proc.name in (shell_binaries)", "undefined_name", "shell_binaries"),
    ("evt.type = open and proc.name = my_tool_name", "undefined_name", "my_tool_name"),
    ("spawned_process and proc.name = sh", "undefined_macro", "spawned_process"),
    ("evt.type = open and proc.nme = sh", "unknown_field", "proc.nme"),
])
def test_name_checks(cond: str, kind: str, name: str) -> None:
    app = make_app()
    probs = check_names(cond, app.ctx.fields, macros=set(), lists=set())
    assert [(p.kind, p.name) for p in probs] == [(kind, name)]


@pytest.mark.parametrize("cond", [
    'evt.type = open and proc.name = "my_tool_name"',       # quoted: a literal on purpose
    "evt.type = ptrace and evt.arg.request = PTRACE_ATTACH",  # upper case constant
    "evt.type = open and fd.name = /etc/my_file",             # a path
    "evt.type = open and proc.name in (falconet_shell_binaries)",
])
def test_name_checks_accept(cond: str) -> None:
    app = make_app()
    assert check_names(cond, app.ctx.fields, set(), {"falconet_shell_binaries"}) == []


def test_focus_selects_the_process_tree_and_window(tmp_path: Path) -> None:
    path = str(tmp_path / "f.fcap")
    with CaptureWriter(path, start_ns=T0) as w:
        for pid, parent, comm, ts in ((10, 1, "root", 1), (11, 10, "child", 2),
                                      (12, 11, "grandchild", 3), (20, 1, "other", 4)):
            w.write_event(Event("syscall", "procfork", T0 + ts, parent, parent,
                                {"child_tid": pid, "child_pid": pid, "parent_tid": parent,
                                 "parent_pid": parent}))
            w.write_event(Event("syscall", "execve", T0 + ts, pid, pid,
                                {"filename": f"/bin/{comm}", "argv": [comm], "exepath":
                                 f"/bin/{comm}", "comm": comm}, 0))
        for ts, pid in ((10, 10), (11, 11), (12, 12), (13, 20), (99, 12)):
            w.write_event(Event("syscall", "unlinkat", T0 + ts, pid, pid,
                                {"dirfd": -100, "name": "/tmp/x", "flags": 0}, 0))
    save_focus(path, Focus(roots=[10], start_ns=T0 + 10, end_ns=T0 + 50))
    assert (Path(path + ".focus.json").stat().st_mode & 0o777) == 0o600
    seen: list[int] = []
    replay(path, [lambda e: seen.append(e.pid)], focus=load_focus(path))
    assert seen == [11, 12]          # descendants of 10 only, inside the window


def test_random_temporary_names_are_never_atoms_but_their_stem_is() -> None:
    """A rule on /tmp/falconet-sim-mZgRvj/ never fires again: mktemp picks a new name."""
    from falconet.authoring.features import prefixes, volatile
    assert volatile("/tmp/falconet-sim-mZgRvj/payload")
    assert prefixes("/tmp/falconet-sim-mZgRvj/x/a.conf") == ("/tmp/falconet-sim-", "/tmp/")
    assert not volatile("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert not volatile("containerd-shim") and not volatile("/tmp/falconet-sim-benign")

