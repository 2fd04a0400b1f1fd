#!/usr/bin/env bash
# The virtualenv with falconet and every first-party plugin installed (editable), as a user would
# pip-install them. bcc is imported from the distribution's dist-packages at run time.
set -euo pipefail
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.falconet-installed"
newest=$(ls -t pyproject.toml plugins/*/pyproject.toml 2>/dev/null | head -1)
if [ ! -f "$stamp" ] || [ "$newest" -nt "$stamp" ]; then
  args=(-e ".[test]")
  for p in plugins/*/; do
    [ -f "$p/pyproject.toml" ] && args+=(-e "$p")
  done
  # build backends print pages of deprecation notes: show pip's output only when it fails
  log="$VENV/.falconet-pip.log"
  if ! "$VENV/bin/pip" install -q "${args[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "[setup] pip install failed (log: $log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
