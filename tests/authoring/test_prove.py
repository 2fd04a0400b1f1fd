"""`falconet rules prove`: every check rejects with its own message and exit status, against
the real loader, field registry, capture reader and state parser (in-process replay), in the
context of the default rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from falconet.authoring.prove import EXIT_CODES

from tests.authoring.capgen import opens, process_capture, unlinks

GOOD = """\
- rule: Secret file deleted by cat
  desc: cat deleted a file below /tmp/secret
  condition: evt.type = unlinkat and evt.arg.name startswith /tmp/secret and proc.name = cat
  output: "deleted %evt.arg.name (process=%proc.name)"
  priority: WARNING
"""

CASES = {
    "load": ("- rule: broken\n  desc: [unclosed\n", "Invalid YAML"),
    "unknown_field": (GOOD.replace("proc.name = cat", "proc.nam = cat"),
                      "nonexistent field proc.nam"),
    "undefined_name": (GOOD.replace("proc.name = cat", "proc.name in (secret_deleters)"),
                       "'secret_deleters' looks like a list or macro name but none is defined"),
    "no_event_types": (GOOD.replace("evt.type = unlinkat and ", ""),
                       "is not restricted to event types"),
    "misses_positive": (GOOD.replace("proc.name = cat", "proc.name = dd"),
                        "no alert on the positive"),
    "fires_on_negative": (GOOD.replace(" and proc.name = cat", ""),
                          "alert(s) on the negative"),
}


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("prove")
    pos = process_capture(str(d / "pos.fcap"), "cat", unlinks("/tmp/secret-", 3))
    neg = process_capture(str(d / "neg.fcap"), "rm", unlinks("/tmp/secret-old-", 5), pid=200)
    return pos, neg


def _prove(tmp_path: Path, text: str, *evidence: str) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "candidate.yaml"
    rules.write_text(text)
    argv = [sys.executable, "-m", "falconet", "rules", "prove", str(rules)]
    if evidence:
        argv += ["--positive", evidence[0], "--negative", evidence[1]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_a_good_rule_is_proven(tmp_path: Path, evidence: tuple[str, str]) -> None:
    p = _prove(tmp_path, GOOD, *evidence)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PROVEN: Secret file deleted by cat" in p.stdout
    assert "positive " in p.stdout and "3 alert(s)" in p.stdout
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("check", list(CASES))
def test_each_failure_has_its_own_message_and_exit_status(tmp_path: Path, check: str,
                                                          evidence: tuple[str, str]) -> None:
    text, message = CASES[check]
    p = _prove(tmp_path, text, *evidence)
    assert p.returncode == EXIT_CODES[check], p.stdout + p.stderr
    assert f"[{check}]" in p.stdout and message in p.stdout, p.stdout
    assert "Traceback" not in p.stderr


def test_exit_statuses_are_distinct() -> None:
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)


def test_load_errors_carry_file_line_col(tmp_path: Path, evidence: tuple[str, str]) -> None:
    p = _prove(tmp_path, CASES["load"][0], *evidence)
    assert f"{tmp_path / 'candidate.yaml'}:3:1: error" in p.stdout


def test_without_evidence_the_rule_is_validated_but_unproven(tmp_path: Path) -> None:
    p = _prove(tmp_path, GOOD)
    assert p.returncode == EXIT_CODES["unproven"] == 9
    assert "UNPROVEN" in p.stdout and "no positive evidence" in p.stdout


def test_an_existing_rule_that_catches_the_positive_is_reported(tmp_path: Path) -> None:
    # /etc/shadow read by cat: the default rule 'Sensitive File Read by Untrusted Program'
    pos = process_capture(str(tmp_path / "shadow.fcap"), "cat", opens(["/etc/shadow"]))
    text = GOOD.replace("evt.type = unlinkat and evt.arg.name startswith /tmp/secret",
                        "evt.type = openat and fd.name = /etc/shadow")
    p = _prove(tmp_path, text, pos, pos)
    assert "already covered by: 'Sensitive File Read by Untrusted Program'" in p.stdout


def test_a_quoted_value_is_a_literal_not_an_undefined_name(tmp_path: Path,
                                                           evidence: tuple[str, str]) -> None:
    text = GOOD.replace("proc.name = cat", 'proc.name in ("cat", "secret_deleters")')
    p = _prove(tmp_path, text, *evidence)
    assert p.returncode == 0, p.stdout


def test_both_an_undefined_macro_and_an_unknown_field_are_reported(
        tmp_path: Path, evidence: tuple[str, str]) -> None:
    """The loader stops at the first error of a rule; a model needs every problem at once."""
    text = GOOD.replace("evt.type = unlinkat and", "spawned_proc and evt.type = unlinkat and") \
        .replace("proc.name = cat", "proc.nam = cat")
    p = _prove(tmp_path, text, *evidence)
    assert "Undefined macro 'spawned_proc'" in p.stdout
    assert "unknown field 'proc.nam'" in p.stdout


def test_unreadable_evidence_is_one_clear_error(tmp_path: Path, evidence: tuple[str, str]) -> None:
    not_a_capture = tmp_path / "x.fcap"
    not_a_capture.write_text("hello\n")
    p = _prove(tmp_path, GOOD, str(not_a_capture), evidence[1])
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert str(not_a_capture) in p.stderr
    bad_focus = tmp_path / "pos.fcap"
    bad_focus.write_bytes(Path(evidence[0]).read_bytes())
    (tmp_path / "pos.fcap.focus.json").write_text("{not json")
    p = _prove(tmp_path, GOOD, str(bad_focus), evidence[1])
    assert p.returncode == 1 and "unreadable focus file" in p.stderr
    assert "Traceback" not in p.stderr
