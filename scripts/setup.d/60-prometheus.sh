#!/usr/bin/env bash
# Prometheus and promtool for the tests (MODE=test only). Nothing is started here: each test starts
# its own Prometheus on 127.0.0.1 with a temp config and data dir (tests/metrics/prom_server.py).
set -euo pipefail
[ "${MODE:-run}" = test ] || exit 0
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[setup] prometheus/promtool missing (run as root, or: sudo apt-get install prometheus)" >&2
  exit 1
fi
echo "[setup] apt-get install prometheus" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# the Debian package may start a daemon where systemd/sysvinit runs; tests use their own instances
command -v prometheus >/dev/null && command -v promtool >/dev/null
