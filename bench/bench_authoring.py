"""Rule synthesis benchmark and acceptance sweep (root, bcc, runc/docker; several minutes).

For every case of suites/default.yaml with a host or container context: the action is recorded
live (one batch recording), a rule is synthesised against a live recording of the benign
workload, and a fresh live engine must raise it on the action performed again and raise no
synthesised rule on a fresh benign run (see falconet.authoring.sweep). Prints one JSON object:
the share of cases that succeed, each case's condition and search time, the stage timings
(recording, extraction, search, proof by replay, live check) and three synthesised rules.

Usage: ``python bench/bench_authoring.py [--benign FILE] [--workdir DIR] [--only ACTION...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from falconet.authoring.sweep import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
