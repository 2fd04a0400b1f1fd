"""``pause`` / ``stop`` through the container's runtime: the docker and podman HTTP APIs over
their unix sockets, containerd tasks through ``ctr`` (an argument vector, never a shell).
Undo: ``unpause`` / ``start``. Runtimes without an API here (cri-o, plain runc) are reported
as skipped: use ``freeze``, which works for every runtime."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from typing import Any

from falconet.alerts import Alert

from falconet_response.actions.base import Outcome, Target
from falconet_response.actions.common import check_keys, failed, seconds, skipped

DEFAULTS = {"docker_socket": "/var/run/docker.sock", "podman_socket": "/run/podman/podman.sock",
            "containerd_address": "/run/containerd/containerd.sock", "ctr": "ctr",
            "timeout": 10.0}


#: runtimes with an API here, in the order they are asked when container.type is unknown
RUNTIMES = ("docker", "podman", "containerd")


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def api_post(sock: str, path: str, timeout: float) -> tuple[int, str]:
    """POST to a docker-compatible API on a unix socket: (status, message)."""
    conn = _UnixHTTP(sock, timeout)
    try:
        conn.request("POST", path, headers={"Content-Length": "0"})
        r = conn.getresponse()
        body = r.read(4096).decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        msg = str(json.loads(body).get("message", "")) if body else ""
    except (ValueError, AttributeError):
        msg = body[:200]
    return r.status, msg


def runtime_settings(cfg: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULTS)
    env = os.environ.get("DOCKER_HOST", "")
    if env.startswith("unix://"):
        out["docker_socket"] = env.removeprefix("unix://")
    if os.environ.get("CONTAINERD_ADDRESS"):
        out["containerd_address"] = os.environ["CONTAINERD_ADDRESS"]
    out.update({k: v for k, v in (cfg or {}).items() if k in DEFAULTS})
    return out


class RuntimeAction:
    """One verb (``pause`` or ``stop``) through whichever runtime runs the container."""

    reversible = True

    def __init__(self, verb: str, settings: dict[str, Any] | None = None) -> None:
        self.name = verb
        self.verb = verb
        self.cfg = runtime_settings(settings)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        allowed = {"namespace": "containerd namespace (default: k8s.io in a pod, else default)"}
        if self.verb == "stop":
            allowed["grace"] = "seconds before SIGKILL (default 10)"
        check_keys(params, allowed)
        out: dict[str, Any] = {}
        if "namespace" in params:
            out["namespace"] = str(params["namespace"])
        if self.verb == "stop":
            out["grace"] = int(seconds(params, "grace", 10.0, lo=-1e-9, hi=3600) or 0)
        return out

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        cid, rt = target.container_id, target.container_runtime
        if cid is None:
            return skipped(f"{self.verb} acts on containers: the process is on the host")
        ns = params.get("namespace") or ("k8s.io" if target.k8s_pod_uid or target.k8s_pod
                                         else "default")
        verb = self.verb if self.verb == "pause" else f"stop?t={params.get('grace', 10)}"
        # container.type is missing until the container plugin's lookup finished: then ask
        # each runtime in turn (a runtime that does not know the id answers "not found")
        if rt in ("cri-o", "runc"):
            return skipped(f"{self.verb}: no API for runtime {rt} (use freeze)")
        out = skipped(f"{self.verb}: no runtime knows container {cid[:12]}")
        for cand in ([rt] if rt in RUNTIMES else list(RUNTIMES)):
            out = self._do(cand, cid, ns, verb, {"runtime": cand, "container_id": cid,
                                                 "namespace": ns})
            if out.result == "done" or rt in RUNTIMES:
                return out
        return out

    def undo(self, data: dict[str, Any]) -> Outcome:
        back = "unpause" if self.verb == "pause" else "start"
        cid = data.get("container_id")
        if not isinstance(cid, str) or not cid:
            return failed("undo data names no container")
        return self._do(data.get("runtime"), cid, str(data.get("namespace") or "default"),
                        back, None)

    def _do(self, rt: Any, cid: str, ns: str, verb: str, undo: dict[str, Any] | None
            ) -> Outcome:
        timeout = float(self.cfg["timeout"])
        if rt in ("docker", "podman"):
            sock = self.cfg[f"{rt}_socket"]
            if not os.path.exists(sock):
                return failed(f"{rt} API socket {sock} not found")
            try:
                status, msg = api_post(sock, f"/containers/{cid}/{verb}", timeout)
            except OSError as e:
                return failed(f"{rt} API: {e.strerror or e}")
            if status in (204, 304) or (status == 200 and not msg):
                return Outcome("done", f"{rt} {verb.split('?')[0]} {cid[:12]}", undo)
            return failed(f"{rt} API {verb.split('?')[0]}: HTTP {status} {msg}")
        if rt == "containerd":
            sub = {"pause": ["task", "pause", cid], "unpause": ["task", "resume", cid],
                   "start": ["task", "start", "-d", cid]}.get(verb.split("?")[0])
            if sub is None:      # stop: the task gets SIGTERM, then is gone
                sub = ["task", "kill", "-s", "SIGTERM", cid]
                undo = None
            argv = [self.cfg["ctr"], "--address", self.cfg["containerd_address"],
                    "--connect-timeout", "2s", "-n", ns, *sub]
            try:
                cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                    check=False, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as e:
                return failed(f"ctr: {e}")
            if cp.returncode != 0:
                return failed(f"ctr {' '.join(sub[:2])}: {cp.stderr.strip()[:200]}")
            return Outcome("done", f"containerd {' '.join(sub[:2])} {cid[:12]}", undo)
        return skipped(f"{self.verb}: no API for runtime {rt or 'unknown'} (use freeze)")
