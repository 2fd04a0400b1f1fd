#!/usr/bin/env bash
# Container runtimes for the live tests (MODE=test only): containerd, dockerd, the podman wrapper
# and the locally built busybox image, all under CI_RT_DIR (default /tmp/falconet-ci).
# Idempotent: a rerun that finds everything running takes well under a second.
set -euo pipefail
[ "${MODE:-run}" = test ] || exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[setup] 50-runtimes: not root, container runtimes not started (live container tests will skip)" >&2
  exit 0
fi
exec bash "$(dirname "$0")/../ci-runtimes.sh" setup
