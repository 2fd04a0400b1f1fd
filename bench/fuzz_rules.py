"""Long fuzz run of the condition parser and the rules loader (hypothesis).

    .venv/bin/python bench/fuzz_rules.py [--minutes 3] [--seed N]

Properties: no input makes parsing raise anything but ``FilterSyntaxError``, nor makes loading
raise at all; a generated condition that loads (multivalue transformers, RE2 ``regex``,
``<strop> oneof list_name`` included) gives the same verdicts with generated code and with
closures and never raises while evaluating. Prints JSON with the number of examples and any
failure (with its input).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "rules"))

from fuzzstrategies import (  # noqa: E402
    any_condition,
    check_compilers_agree,
    check_load,
    check_parse,
    conditions,
    documents,
)
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args(argv)
    deadline = time.monotonic() + a.minutes * 60
    counts = {"parse": 0, "load": 0, "agree": 0}
    failures: list[dict[str, str]] = []
    cfg = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck),
                   database=None)

    @cfg
    @given(any_condition)
    def parse_prop(text: str) -> None:
        counts["parse"] += 1
        check_parse(text)

    @cfg
    @given(st.lists(documents, min_size=1, max_size=3))
    def load_prop(docs: list[str]) -> None:
        counts["load"] += 1
        check_load(docs)

    @cfg
    @given(conditions())
    def agree_prop(cond: str) -> None:
        counts["agree"] += 1
        check_compilers_agree(cond)

    rounds = 0
    while time.monotonic() < deadline and not failures:
        for name, prop in (("parse", parse_prop), ("load", load_prop), ("agree", agree_prop)):
            try:
                seed(a.seed + rounds)(prop)()
            except Exception as e:  # noqa: BLE001 - report any failure with its input
                failures.append({"property": name, "error": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()[-2000:]})
        rounds += 1
    print(json.dumps({"benchmark": "fuzz_rules", "seed": a.seed, "minutes": a.minutes,
                      "rounds": rounds, "examples": counts, "failures": failures}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
