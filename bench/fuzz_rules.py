"""Long fuzz run of the condition parser and the rules loader (hypothesis).

    .venv/bin/python bench/fuzz_rules.py [--minutes 3] [--seed N]

Property: no input makes parsing raise anything but ``FilterSyntaxError``, nor makes loading
raise at all. Prints JSON with the number of examples and any failure (with its input).
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

from fuzzstrategies import any_condition, check_load, check_parse, documents  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args(argv)
    deadline = time.monotonic() + a.minutes * 60
    counts = {"parse": 0, "load": 0}
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

    rounds = 0
    while time.monotonic() < deadline and not failures:
        for name, prop in (("parse", parse_prop), ("load", load_prop)):
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
