"""Long fuzz campaign of every input an attacker controls (issue 11): captures and rules files.

    nice -n 19 .venv/bin/python bench/fuzz_inputs.py [--minutes 5] [--seed N]

Properties (tests/core/inputfuzz.py, tests/rules/fuzzstrategies.py): captures round-trip any
bytes exactly; hostile capture lines never stop the reader and are each counted once; rules
files shaped like the loader attacks (blow-up macros, doubling lists, deep nesting, alias
chains, random bytes), random YAML documents and random conditions never make the loader raise
(every rejection is a located LoadMessage). Every example runs under a 10 CPU-second alarm
(CPU time, not wall time: under ``nice -n 19`` on a busy machine wall time says little): a hang
is a failure. Prints JSON: examples per property, failures (with input and traceback), the
slowest example per property in CPU and in wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "rules"))
sys.path.insert(0, str(REPO / "tests" / "core"))

from fuzzstrategies import (  # noqa: E402
    any_condition,
    check_load,
    check_parse,
    check_rules_file,
    documents,
    limit_documents,
)
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from inputfuzz import (  # noqa: E402
    capture_lines,
    check_capture_reader,
    check_capture_round_trip,
    records,
)

HANG_SECONDS = 10


class Hang(BaseException):
    """An example ran longer than HANG_SECONDS of CPU (a BaseException: the loader's
    one-bad-item-never-stops-the-load handlers must not swallow it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"example used more than {HANG_SECONDS} CPU-seconds")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--examples", type=int, default=300, help="examples per property per round")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGPROF, _alarm)
    deadline = time.monotonic() + a.minutes * 60
    counts: dict[str, int] = {}
    slowest: dict[str, float] = {}
    slowest_wall: dict[str, float] = {}
    failures: list[dict[str, str]] = []
    cfg = settings(max_examples=a.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))

    def timed(name: str, fn: Any, *args: Any) -> None:
        counts[name] = counts.get(name, 0) + 1
        t0, c0 = time.monotonic(), time.process_time()
        signal.setitimer(signal.ITIMER_PROF, HANG_SECONDS)
        try:
            fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            slowest[name] = max(slowest.get(name, 0.0), time.process_time() - c0)
            slowest_wall[name] = max(slowest_wall.get(name, 0.0), time.monotonic() - t0)

    props = {
        "capture_round_trip": cfg(given(records, st.booleans())(
            lambda recs, gz: timed("capture_round_trip", check_capture_round_trip, recs, gz))),
        "capture_reader": cfg(given(st.lists(capture_lines(), min_size=1, max_size=16),
                                    st.booleans())(
            lambda lines, gz: timed("capture_reader", check_capture_reader, lines, gz))),
        "rules_file_limits": cfg(given(limit_documents())(
            lambda data: timed("rules_file_limits", check_rules_file, data))),
        "rules_documents": cfg(given(st.lists(documents, min_size=1, max_size=3))(
            lambda docs: timed("rules_documents", check_load, docs))),
        "conditions": cfg(given(any_condition)(
            lambda text: timed("conditions", check_parse, text))),
    }
    rounds = 0
    while time.monotonic() < deadline:
        for name, prop in props.items():
            if time.monotonic() >= deadline:
                break
            try:
                seed(a.seed + rounds)(prop)()
            except (Exception, Hang) as e:  # noqa: BLE001 - report any failure with its input
                failures.append({"property": name, "error": f"{type(e).__name__}: {e}"[:2000],
                                 "traceback": traceback.format_exc()[-3000:]})
        rounds += 1
    hangs = sum(1 for f in failures if "Hang" in f["error"] or "Hang" in f["traceback"])
    print(json.dumps({"benchmark": "fuzz_inputs", "seed": a.seed, "minutes": a.minutes,
                      "rounds": rounds, "examples": counts, "examples_total": sum(counts.values()),
                      "failures_total": len(failures), "hangs_over_10s": hangs,
                      "max_cpu_seconds_per_example": {k: round(v, 3) for k, v in slowest.items()},
                      "max_wall_seconds_per_example": {k: round(v, 3)
                                                       for k, v in slowest_wall.items()},
                      "failures": failures}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
