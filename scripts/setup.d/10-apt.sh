#!/usr/bin/env bash
# Debian/Ubuntu packages. bcc comes from the distribution (python3-bpfcc); the PyPI "bcc" is unrelated.
set -euo pipefail
pkgs=(python3-venv python3-bpfcc bpfcc-tools bc)
if [ "$MODE" = test ]; then
  pkgs+=(runc busybox-static containerd docker.io docker-compose podman prometheus prometheus-alertmanager
         systemd)   # systemd-analyze verifies deploy/systemd/falconet.service
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[setup] missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "[setup] apt-get install ${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
