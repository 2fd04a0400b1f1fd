#!/usr/bin/env bash
# Run every test: core tests and each plugin's own tests. Exit 5 (no tests) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -f /tmp/falconet-ci/env.sh ] && . /tmp/falconet-ci/env.sh
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=15 tests plugins "$@"
rc=$?
exit $rc
