"""The repository's one external input: Falco's upstream stable rules file, used by tests,
benchmarks and the ``falco-stable`` detection suite to check that Falconet gives Falco's verdicts.

It is found through one setting, ``$FALCONET_FALCO_RULES``, defaulting to
``../shared/falco/falco_rules.yaml`` beside the repository (never copied into it). Falco's
incubating and sandbox files (same repository, falcosecurity/rules) are looked for beside it,
under their upstream names; none of them is ever vendored.
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


#: Falco's other maturity levels, by their upstream file names, beside the stable file
INCUBATING_FILE = "falco-incubating_rules.yaml"
SANDBOX_FILE = "falco-sandbox_rules.yaml"
#: how suites write them (``rules: [$FALCONET_FALCO_RULES, $FALCONET_FALCO_INCUBATING_RULES]``)
INCUBATING_PLACEHOLDER = "$FALCONET_FALCO_INCUBATING_RULES"
SANDBOX_PLACEHOLDER = "$FALCONET_FALCO_SANDBOX_RULES"


def falco_rules_files() -> list[Path]:
    """Stable, incubating and sandbox, in Falco's load order (a later file's macros and lists
    override an earlier one's); the last two beside :func:`falco_rules_path`."""
    stable = falco_rules_path()
    return [stable, stable.parent / INCUBATING_FILE, stable.parent / SANDBOX_FILE]


def expand(path: str) -> str:
    """A rules path as written in a suite: a placeholder becomes the upstream file it names."""
    bare = path.replace("${", "$").replace("}", "") if path.startswith("${") else path
    if bare == FALCO_RULES_PLACEHOLDER:
        return str(falco_rules_path())
    if bare == INCUBATING_PLACEHOLDER:
        return str(falco_rules_files()[1])
    if bare == SANDBOX_PLACEHOLDER:
        return str(falco_rules_files()[2])
    return path
