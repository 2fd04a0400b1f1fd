"""The Falco upstream rules file is found through one setting, $FALCONET_FALCO_RULES."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO
from falconet import upstream
from falconet.simulate.suite import load_suite


def test_the_default_is_beside_the_repository(monkeypatch) -> None:
    monkeypatch.delenv(upstream.FALCO_RULES_ENV, raising=False)
    assert upstream.falco_rules_path() == REPO.parent / "shared" / "falco" / "falco_rules.yaml"


def test_the_environment_variable_wins_and_suites_follow_it(monkeypatch, tmp_path: Path) -> None:
    mine = tmp_path / "my_falco_rules.yaml"
    monkeypatch.setenv(upstream.FALCO_RULES_ENV, str(mine))
    assert upstream.falco_rules_path() == mine
    suite = load_suite(str(REPO / "suites" / "falco-stable.yaml"))
    assert suite.rules == [str(mine)]
    assert upstream.expand("rules/") == "rules/"
