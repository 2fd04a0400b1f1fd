#!/usr/bin/env bash
# Idempotent setup. `setup.sh run` prepares live monitoring; `setup.sh test` also what tests need.
# Each step is a script in scripts/setup.d, run in name order with MODE=run|test exported.
# A step that only applies to tests checks "$MODE" itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export MODE="${1:-run}"
export VENV="${VENV:-.venv}" PYTHON="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive
for step in scripts/setup.d/*.sh; do
  t0=$(date +%s.%N)
  bash "$step" || { rc=$?; echo "[setup] $(basename "$step") failed (exit $rc)" >&2; exit "$rc"; }
  printf '[setup] %-28s %.1fs\n' "$(basename "$step")" "$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo 0)" >&2
done
