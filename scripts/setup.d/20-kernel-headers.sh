#!/usr/bin/env bash
# Kernel headers for bcc, and tracefs/debugfs mounts for tracepoints. Idempotent; MODE=run and test.
#
# bcc compiles the BPF programs at start and needs /lib/modules/$(uname -r)/build. Prefer the exact
# linux-headers-$(uname -r) package; when the distribution has none (custom or newer kernels), install
# the generic linux-headers-<arch> meta package and symlink build/source to it. Falconet's BPF code
# never reads kernel structs through these headers (see docs/collector.md), so a version mismatch is
# harmless: struct offsets come from /sys/kernel/btf/vmlinux.
set -euo pipefail
krel="$(uname -r)"
mod="/lib/modules/$krel"

mount_fs() {  # type target
  if ! grep -qs " $2 $1 " /proc/mounts; then
    mkdir -p "$2" 2>/dev/null || true
    mount -t "$1" nodev "$2" 2>/dev/null || echo "[setup] could not mount $1 on $2" >&2
  fi
}

if [ "$(id -u)" != 0 ]; then
  if [ -e "$mod/build/include" ]; then exit 0; fi
  echo "[setup] kernel headers for $krel missing: run as root (sudo $0)" >&2
  exit 1
fi

mount_fs debugfs /sys/kernel/debug
mount_fs tracefs /sys/kernel/tracing

if [ -e "$mod/build/include" ]; then exit 0; fi

have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_install() {
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

exact="linux-headers-$krel"
if have "$exact" || { apt-cache show "$exact" >/dev/null 2>&1 && apt_install "$exact"; }; then
  [ -e "$mod/build/include" ] && exit 0
fi

case "$(dpkg --print-architecture)" in
  amd64) arch=amd64 ;;
  arm64) arch=arm64 ;;
  *) echo "[setup] no generic kernel headers package known for $(dpkg --print-architecture)" >&2; exit 1 ;;
esac
have "linux-headers-$arch" || apt_install "linux-headers-$arch"

# newest installed header tree of that flavour, and its -common sibling
hdr="$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n1)"
[ -n "$hdr" ] || { echo "[setup] linux-headers-$arch installed no /usr/src/linux-headers-*-$arch" >&2; exit 1; }
common="${hdr%-"$arch"}-common"
mkdir -p "$mod"
ln -sfn "$hdr" "$mod/build"
if [ -d "$common" ]; then ln -sfn "$common" "$mod/source"; else ln -sfn "$hdr" "$mod/source"; fi
echo "[setup] linked $mod/build -> $hdr (headers for another kernel; BTF supplies struct offsets)" >&2
