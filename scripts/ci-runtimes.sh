#!/usr/bin/env bash
# Real container runtimes for Falconet's live tests, started by hand (no systemd here).
#
# usage: scripts/ci-runtimes.sh [setup|stop|status|smoke]
#   setup  (default) build the busybox image, start containerd and dockerd, set up the podman
#          wrapper, import the image into containerd (default + k8s.io), docker and podman,
#          write $CI_RT_DIR/env.sh. Idempotent.
#   stop   remove test containers, stop the daemons this script started (by their pid files)
#   status show what runs
#   smoke  run one container per runtime and print its cgroup
#
# Facts this relies on (see docs/containers.md): cgroupfs driver only; root lacks
# CAP_SYS_RESOURCE here, hence restrict_oom_score_adj and podman's ulimits; podman takes
# --root/--runroot as flags (CONTAINERS_STORAGE_CONF makes `run --rm` hang 20 s); ctr needs
# --connect-timeout; dockerd must be told --containerd explicitly.
set -Eeuo pipefail

CI_RT_DIR=${CI_RT_DIR:-/tmp/falconet-ci}          # short: unix socket paths are limited to 108 bytes
CONTAINERD_SOCK=${CONTAINERD_SOCK:-/run/containerd/containerd.sock}
DOCKER_SOCK=${DOCKER_SOCK:-/var/run/docker.sock}
IMAGE=${IMAGE:-docker.io/library/busybox-local:latest}
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.k8s.io/pause:3.6}
PY=/usr/bin/python3
CTR="ctr --address $CONTAINERD_SOCK --connect-timeout 2s"
DOCKER="env DOCKER_HOST=unix://$DOCKER_SOCK /usr/bin/docker"

log() { echo "[ci-runtimes $(date +%T)] $*" >&2; }
# set -e exits without a word; say where, so a CI log shows the failing command
# (only while set -e is on: stop_all's `set +e` section expects failures)
trap 'rc=$?; [[ $- == *e* ]] && log "failed (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR

wait_for() {  # wait_for SECONDS PID CMD... : poll until CMD succeeds; fail early if PID died
  local deadline=$(( $(date +%s) + $1 )) pid=$2; shift 2
  while [ "$(date +%s)" -le "$deadline" ]; do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

drop_stale_pidfile() {  # drop_stale_pidfile FILE COMM: a daemon killed with -9 leaves its pid file
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  local state
  # no /proc entry (the usual case after a reboot or a killed session) is "gone", not an error
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || state=X
  # gone, reused by another program, or a zombie PID 1 has not reaped yet
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ] || [ "$state" = Z ] || [ "$state" = X ]; then
    rm -f "$f"
  fi
}

write_build_image_py() {
  [ -s "$CI_RT_DIR/build_image.py" ] && return 0
  cat > "$CI_RT_DIR/build_image.py" <<'PYEOF'
#!/usr/bin/env python3
"""Build a `docker save` format tarball from a rootfs dir (ctr import, docker/podman load).
usage: build_image.py ROOTFS OUT.tar REPO:TAG [CMD...]"""
import hashlib, io, json, os, sys, tarfile
rootfs, out, ref = sys.argv[1], sys.argv[2], sys.argv[3]
cmd = sys.argv[4:] or ["sh"]
sha = lambda b: hashlib.sha256(b).hexdigest()
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    for dp, dns, fns in os.walk(rootfs):
        dns.sort(); fns.sort()
        for n in dns + fns:
            full = os.path.join(dp, n)
            ti = t.gettarinfo(full, arcname=os.path.relpath(full, rootfs))
            ti.uid = ti.gid = 0; ti.uname = ti.gname = "root"; ti.mtime = 0
            if ti.isreg():
                with open(full, "rb") as f: t.addfile(ti, f)
            else:
                t.addfile(ti)
layer = buf.getvalue(); lid = sha(layer)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
    "config": {"Cmd": cmd, "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/",
               "Labels": {"org.falconet.test": "busybox"}},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + lid]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "build_image.py"}]},
    separators=(",", ":")).encode()
cid = sha(cfg)
repo, tag = ref.rsplit(":", 1)
def add(t, name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644; t.addfile(ti, io.BytesIO(data))
with tarfile.open(out, "w") as t:
    d = tarfile.TarInfo(lid); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    add(t, f"{lid}/VERSION", b"1.0")
    add(t, f"{lid}/json", json.dumps({"id": lid}).encode())
    add(t, f"{lid}/layer.tar", layer)
    add(t, f"{cid}.json", cfg)
    add(t, "manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": [ref],
                                         "Layers": [f"{lid}/layer.tar"]}]).encode())
    add(t, "repositories", json.dumps({repo: {tag: lid}}).encode())
print(out, ref, "sha256:" + cid)
PYEOF
}

build_images() {
  local R="$CI_RT_DIR/rootfs"
  mkdir -p "$CI_RT_DIR"
  if [ ! -x "$R/bin/busybox" ]; then
    log "building busybox rootfs in $R"
    rm -rf "$R"; mkdir -p "$R/bin"
    cp /bin/busybox "$R/bin/busybox"
    for d in sbin usr/bin usr/sbin etc proc sys dev tmp root var/run; do mkdir -p "$R/$d"; done
    chroot "$R" /bin/busybox --install -s
    echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
    echo 'root:x:0:' > "$R/etc/group"
  fi
  write_build_image_py
  [ -s "$CI_RT_DIR/busybox-image.tar" ] ||
    $PY "$CI_RT_DIR/build_image.py" "$R" "$CI_RT_DIR/busybox-image.tar" "$IMAGE" sh >/dev/null
  [ -s "$CI_RT_DIR/pause-image.tar" ] ||
    $PY "$CI_RT_DIR/build_image.py" "$R" "$CI_RT_DIR/pause-image.tar" "$PAUSE_IMAGE" sleep 2147483647 >/dev/null
  # runc bundle template: copy config.json per container; the rootfs is shared (read-write)
  if [ ! -s "$CI_RT_DIR/bundle-template/config.json" ]; then
    mkdir -p "$CI_RT_DIR/bundle-template"
    (cd "$CI_RT_DIR/bundle-template" && rm -f config.json && runc spec)
    $PY - "$CI_RT_DIR/bundle-template/config.json" "$R" <<'PYEOF'
import json, sys
p, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["process"]["terminal"] = False          # runc run -d needs no console socket then
c["process"]["args"] = ["sleep", "300"]
c["root"] = {"path": rootfs, "readonly": False}
json.dump(c, open(p, "w"), indent=2)
PYEOF
  fi
}

start_containerd() {
  local D="$CI_RT_DIR/containerd"; mkdir -p "$D"
  if $CTR version >/dev/null 2>&1; then return 0; fi
  cat > "$D/config.toml" <<EOT
version = 2
root = "$D/root"
state = "$D/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  disable_apparmor = true
  sandbox_image = "$PAUSE_IMAGE"
  # the sandbox's oom_score_adj=-998 needs CAP_SYS_RESOURCE, which root lacks here
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
EOT
  mkdir -p "$(dirname "$CONTAINERD_SOCK")"
  log "starting containerd ($CONTAINERD_SOCK)"
  setsid containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 </dev/null &
  echo $! > "$D/containerd.pid"
  wait_for 30 $! $CTR version || { tail -20 "$D/containerd.log" >&2; exit 1; }
}

load_containerd_images() {
  local ns
  for ns in default k8s.io; do
    $CTR -n $ns image ls -q | grep -qx "$IMAGE" ||
      $CTR -n $ns image import "$CI_RT_DIR/busybox-image.tar" >/dev/null
  done
  $CTR -n k8s.io image ls -q | grep -qx "$PAUSE_IMAGE" ||
    $CTR -n k8s.io image import "$CI_RT_DIR/pause-image.tar" >/dev/null
}

start_dockerd() {
  local D="$CI_RT_DIR/docker"; mkdir -p "$D/data" "$D/exec"
  if $DOCKER version >/dev/null 2>&1; then return 0; fi
  local drv=overlay2
  case "$(stat -f -c %T "$D/data")" in overlayfs|tmpfs|fuseblk|nfs*) drv=vfs ;; esac
  drop_stale_pidfile "$D/dockerd.pid" dockerd
  # a dockerd killed with -9 leaves its netns bind mount behind
  mountpoint -q "$D/exec/netns/default" 2>/dev/null && umount "$D/exec/netns/default"
  log "starting dockerd ($DOCKER_SOCK, storage $drv)"
  setsid dockerd --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" \
    -H "unix://$DOCKER_SOCK" --containerd "$CONTAINERD_SOCK" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
    --storage-driver=$drv --exec-opt native.cgroupdriver=cgroupfs \
    >"$D/dockerd.log" 2>&1 </dev/null &
  wait_for 60 $! $DOCKER version || { tail -20 "$D/dockerd.log" >&2; exit 1; }
}

load_docker_image() {
  $DOCKER image inspect "${IMAGE#docker.io/library/}" >/dev/null 2>&1 ||
    $DOCKER load -q -i "$CI_RT_DIR/busybox-image.tar" >/dev/null
}

setup_podman() {
  local D="$CI_RT_DIR/podman"; mkdir -p "$D" "$CI_RT_DIR/bin"
  cat > "$D/containers.conf" <<'EOT'
[containers]
# podman asks for nofile=1048576; raising a hard rlimit needs CAP_SYS_RESOURCE (absent here)
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOT
  cat > "$CI_RT_DIR/bin/podman-ci" <<EOT
#!/bin/sh
# podman with this CI's storage; --root/--runroot must be flags (see docs/containers.md)
export CONTAINERS_CONF=$D/containers.conf
exec podman --root $D/root --runroot $D/runroot "\$@"
EOT
  chmod +x "$CI_RT_DIR/bin/podman-ci"
  "$CI_RT_DIR/bin/podman-ci" image exists "$IMAGE" ||
    "$CI_RT_DIR/bin/podman-ci" load -q -i "$CI_RT_DIR/busybox-image.tar" >/dev/null
}

write_env() {
  cat > "$CI_RT_DIR/env.sh" <<EOT
export CI_RT_DIR=$CI_RT_DIR
export DOCKER_HOST=unix://$DOCKER_SOCK
export CONTAINERD_ADDRESS=$CONTAINERD_SOCK
export CONTAINERS_CONF=$CI_RT_DIR/podman/containers.conf
export FALCONET_PODMAN_ROOT=$CI_RT_DIR/podman/root
export FALCONET_PODMAN_RUNROOT=$CI_RT_DIR/podman/runroot
export TEST_IMAGE=$IMAGE
export PATH=$CI_RT_DIR/bin:\$PATH
EOT
}

stop_all() {
  set +e
  [ -x "$CI_RT_DIR/bin/podman-ci" ] && "$CI_RT_DIR/bin/podman-ci" rm -af -t 0 >/dev/null 2>&1
  if $DOCKER version >/dev/null 2>&1; then
    ids=$($DOCKER ps -aq)
    [ -n "$ids" ] && $DOCKER rm -f $ids >/dev/null
  fi
  # only runc containers whose bundle is ours: /run/runc is shared with podman and anything else
  for id in $(runc list -f json 2>/dev/null | $PY -c 'import json,sys
for c in json.load(sys.stdin) or []:
    if c.get("bundle", "").startswith(sys.argv[1] + "/"): print(c["id"])' "$CI_RT_DIR"); do
    runc kill "$id" KILL; sleep 0.2; runc delete -f "$id"
  done
  if $CTR version >/dev/null 2>&1; then
    for ns in $($CTR ns ls -q); do
      for t in $($CTR -n "$ns" task ls -q); do
        $CTR -n "$ns" task kill -s KILL "$t"; sleep 0.2; $CTR -n "$ns" task rm -f "$t" >/dev/null
      done
      for c in $($CTR -n "$ns" c ls -q); do $CTR -n "$ns" c rm "$c" >/dev/null; done
    done
  fi
  for pf in "$CI_RT_DIR/docker/dockerd.pid" "$CI_RT_DIR/containerd/containerd.pid"; do
    [ -s "$pf" ] || continue
    pid=$(cat "$pf")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $(basename "$pf" .pid) pid $pid"; kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pf"
  done
  # dockerd bind-mounts its data-root and netns; a killed one leaves them behind
  for m in "$CI_RT_DIR/docker/exec/netns/default" "$CI_RT_DIR/docker/data"; do
    while mountpoint -q "$m" 2>/dev/null; do umount "$m" || break; done
  done
  set -e
}

status() {
  if $CTR version >/dev/null 2>&1; then echo "containerd: up ($CONTAINERD_SOCK)"; else echo "containerd: down"; fi
  if $DOCKER version >/dev/null 2>&1; then echo "dockerd: up ($DOCKER_SOCK)"; else echo "dockerd: down"; fi
  [ -x "$CI_RT_DIR/bin/podman-ci" ] && echo "podman: $CI_RT_DIR/bin/podman-ci" || echo "podman: not set up"
}

smoke() {
  local rc=0 B="$CI_RT_DIR/smoke-bundle"
  rm -rf "$B"; mkdir -p "$B"; cp "$CI_RT_DIR/bundle-template/config.json" "$B/"
  $PY - "$B/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["sh", "-c", "tail -1 /proc/self/cgroup"]
c["linux"]["cgroupsPath"] = "/falconet-smoke/runc-smoke"
json.dump(c, open(sys.argv[1], "w"))
PYEOF
  log runc;       runc run --bundle "$B" runc-smoke </dev/null || rc=1
  log containerd; $CTR run --rm "$IMAGE" ctr-smoke sh -c 'tail -1 /proc/self/cgroup' || rc=1
  log docker;     $DOCKER run --rm --network none "${IMAGE#docker.io/library/}" sh -c 'tail -1 /proc/self/cgroup' || rc=1
  log podman;     "$CI_RT_DIR/bin/podman-ci" run --rm "$IMAGE" sh -c 'tail -1 /proc/self/cgroup' || rc=1
  rmdir /sys/fs/cgroup/*/falconet-smoke/runc-smoke /sys/fs/cgroup/*/falconet-smoke 2>/dev/null || true
  return $rc
}

case "${1:-setup}" in
  setup)
    T0=$(date +%s%N)
    build_images; start_containerd; load_containerd_images
    start_dockerd; load_docker_image; setup_podman; write_env
    log "ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms; source $CI_RT_DIR/env.sh" ;;
  stop)   stop_all ;;
  status) status ;;
  smoke)  smoke ;;
  *) echo "usage: $0 [setup|stop|status|smoke]" >&2; exit 2 ;;
esac
