#!/usr/bin/env bash
# `make install`: Falconet as a host service. Installs the engine and its first-party plugins
# (not editable) in $PREFIX/venv, the default rules in /etc/falconet/rules, the example
# configuration as /etc/falconet/falconet.yaml (an existing one is kept), and the systemd unit.
# Root only. Does not start anything: `systemctl enable --now falconet` does.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/falconet}
ETC=${ETC:-/etc/falconet}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
PYTHON=${PYTHON:-python3}
if [ "$(id -u)" != 0 ]; then
  echo "[install] run as root (sudo make install)" >&2; exit 1
fi
MODE=run bash scripts/setup.d/10-apt.sh          # python3-venv, python3-bpfcc, bpfcc-tools
MODE=run bash scripts/setup.d/20-kernel-headers.sh
# bcc comes from the distribution (python3-bpfcc), never from PyPI: the engine imports it from
# /usr/lib/python3/dist-packages (falconet/collector/bccloader.py)
[ -x "$PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/venv"
args=(.)
for p in plugins/*/; do
  case "$p" in *-example/) continue ;; esac
  [ -f "$p/pyproject.toml" ] && args+=("$p")
done
# build backends print pages of deprecation notes: show pip's output only when it fails
log="$PREFIX/pip-install.log"
if ! { "$PREFIX/venv/bin/pip" install -q --upgrade pip &&
       "$PREFIX/venv/bin/pip" install -q "${args[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "[install] pip install failed (log: $log)" >&2
  exit 1
fi
install -d -m 0755 "$ETC/rules"
install -m 0644 rules/*.yaml "$ETC/rules/"
# 0600: the configuration is where webhook/OTLP credentials go (outputs.*.headers)
[ -e "$ETC/falconet.yaml" ] || install -m 0600 falconet.yaml "$ETC/falconet.yaml"
install -d -m 0755 "$UNIT_DIR"
sed "s#/opt/falconet/venv#$PREFIX/venv#g; s#/etc/falconet/#$ETC/#g" \
  deploy/systemd/falconet.service > "$UNIT_DIR/falconet.service"
chmod 0644 "$UNIT_DIR/falconet.service"
command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
echo "[install] $PREFIX/venv, $ETC, $UNIT_DIR/falconet.service; start with: systemctl enable --now falconet" >&2
