"""The repository's one external input: Falco's upstream stable rules file, used by tests,
benchmarks and the ``falco-stable`` detection suite to check that Falconet gives Falco's verdicts.

It is found through one setting, ``$FALCONET_FALCO_RULES``, defaulting to
``../shared/falco/falco_rules.yaml`` beside the repository (never copied into it).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the environment variable naming the upstream rules file
FALCO_RULES_ENV = "FALCONET_FALCO_RULES"
#: how suites (``rules: [$FALCONET_FALCO_RULES]``) and docs write it
FALCO_RULES_PLACEHOLDER = "$" + FALCO_RULES_ENV

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_FALCO_RULES = _REPO.parent / "shared" / "falco" / "falco_rules.yaml"


def falco_rules_path() -> Path:
    """``$FALCONET_FALCO_RULES``, else ``../shared/falco/falco_rules.yaml`` beside the repo."""
    env = os.environ.get(FALCO_RULES_ENV)
    return Path(env) if env else DEFAULT_FALCO_RULES


def expand(path: str) -> str:
    """A rules path as written in a suite: the placeholder becomes :func:`falco_rules_path`."""
    if path in (FALCO_RULES_PLACEHOLDER, "${" + FALCO_RULES_ENV + "}"):
        return str(falco_rules_path())
    return path
