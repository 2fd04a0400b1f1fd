"""Run by test_simulate_symlinks.py inside a private mount namespace (``unshare --mount``) with
its own empty /tmp and /dev/shm: plants a symlink at every fixed path the simulator's actions
used to write (host, runc container, privileged runc container), each pointing at its own victim
file or directory, runs the actions, and prints as JSON what happened to every victim.

Private /tmp and /dev/shm: the planted links never disturb other simulators on the machine, and
theirs never disturb this one. /etc and /var/log are the real ones (their links are removed at
the end; the victims live in a private directory below /run, visible in both namespaces).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

#: what the old code wrote, per context: (path, "file" | "dir")
HOST_LINKS = [
    ("/tmp/falconet-sim", "dir"),                 # the runc work dir (rootfs, bundles)
    ("/tmp/.falconet-sim-procroot", "file"),
    ("/tmp/.falconet-sim-link", "file"),
    ("/tmp/falconet-sim-suid", "file"),           # `chmod u+s` through a link
    ("/tmp/falconet-sim-benign", "file"),
    ("/tmp/falconet-sim-login", "dir"),
    ("/dev/shm/falconet-sim-x", "dir"),
    ("/etc/falconet-sim.conf", "file"),
    ("/var/log/falconet-sim.log", "file"),
]
CONTAINER_LINKS = [
    ("/tmp/falconet-sim-cg", "dir"),
    ("/tmp/.falconet-sim-procroot", "file"),
    ("/tmp/.falconet-sim-link", "file"),
    ("/tmp/.falconet-sim-hlink", "file"),
    ("/tmp/falconet-sim-x", "dir"),
    ("/tmp/falconet-sim-dbg", "dir"),
    ("/tmp/falconet-sim-shred", "file"),
    ("/tmp/falconet-sim-suid", "file"),
    ("/tmp/falconet-sim-benign", "file"),
    ("/root/falconet-sim-x", "dir"),
    ("/root/.ash_history", "file"),
    ("/root/.ssh/id_rsa", "file"),
    ("/etc/falconet-sim.conf", "file"),
    ("/var/log/falconet-sim.log", "file"),
    ("/usr/bin/falconet-sim-drop", "file"),
]
HOST_ACTIONS = ["proc_root_write", "symlink_sensitive_file", "setuid_bit", "benign_tmp_write",
                "system_user_interactive", "exec_from_dev_shm", "write_below_etc", "log_truncate"]
RUNC_ACTIONS = ["proc_root_write", "symlink_sensitive_file", "hardlink_sensitive_file",
                "exec_from_tmp_in_container", "shred_file", "setuid_bit", "benign_tmp_write",
                "drop_and_exec_in_container", "shell_history_tamper", "read_ssh_key",
                "write_below_etc", "log_truncate", "write_below_bin"]
PRIVILEGED_RUNC_ACTIONS = ["release_agent_write", "debugfs_in_privileged_container"]

# Runs with python3 in the context itself (host or container): plant or inspect the links.
# argv: mode ("plant" | "check" | "unplant"), victims directory, JSON list of (path, kind).
_SNIPPET = r"""
import json, os, stat, sys
mode, victims, links = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {}
for i, (path, kind) in enumerate(links):
    victim = os.path.join(victims, f"victim-{i}")
    if mode == "plant":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            raise SystemExit(f"{path} exists: cannot plant a link there")
        if kind == "dir":
            os.mkdir(victim, 0o755)
        else:
            with open(victim, "w") as f:
                f.write("victim\n")
            os.chmod(victim, 0o644)
        os.symlink(victim, path)
    elif mode == "unplant":
        if os.path.islink(path) and os.readlink(path) == victim:
            os.unlink(path)
    else:
        st = os.lstat(victim)
        state = {"mode": oct(stat.S_IMODE(st.st_mode))}
        if kind == "dir":
            state["entries"] = sorted(os.listdir(victim))
        else:
            with open(victim) as f:
                state["content"] = f.read()
        out[path] = state
print(json.dumps(out))
"""
FILE_UNTOUCHED = {"mode": "0o644", "content": "victim\n"}
DIR_UNTOUCHED = {"mode": "0o755", "entries": []}


def _in_context(ctx: Any, mode: str, victims: str, links: list[tuple[str, str]]) -> dict[str, Any]:
    p = ctx.exec(["/usr/bin/python3", "-c", _SNIPPET, mode, victims, json.dumps(links)])
    if p.returncode != 0:
        raise RuntimeError(f"{mode} in {ctx.label}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def main() -> int:
    for mnt in ("/tmp", "/dev/shm"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "falconet-probe", mnt],
                       check=True)
    from falconet.simulate.contexts import ContextPool, HostContext, RuncContext
    from falconet.simulate.runner import run_action

    report: dict[str, Any] = {"victims": {}, "actions": {}}
    host_victims = tempfile.mkdtemp(prefix="falconet-victims-", dir="/run")
    host = HostContext()
    _in_context(host, "plant", host_victims, HOST_LINKS)
    try:
        with ContextPool() as pool:
            for name in HOST_ACTIONS:
                report["actions"][f"host {name}"] = run_action(pool, name, "host").status
            for privileged, names in ((False, RUNC_ACTIONS), (True, PRIVILEGED_RUNC_ACTIONS)):
                label = "runc (privileged)" if privileged else "runc"
                # the context's container exists once the pool started it: plant, then act
                ctx = pool.get("runc", privileged)
                assert isinstance(ctx, RuncContext)
                ctx.exec(["mkdir", "-p", "/falconet-victims"])
                _in_context(ctx, "plant", "/falconet-victims", CONTAINER_LINKS)
                for name in names:
                    report["actions"][f"{label} {name}"] = run_action(
                        pool, name, "runc", privileged).status
                for path, state in _in_context(ctx, "check", "/falconet-victims",
                                               CONTAINER_LINKS).items():
                    report["victims"][f"{label} {path}"] = state
    except Exception as e:  # noqa: BLE001 - reported: the old code may fail half-way
        report["error"] = f"{type(e).__name__}: {e}"
    finally:
        for path, state in _in_context(host, "check", host_victims, HOST_LINKS).items():
            report["victims"][f"host {path}"] = state
        _in_context(host, "unplant", host_victims, HOST_LINKS)
        subprocess.run(["rm", "-rf", "--", host_victims], check=False)
    # the pool is closed: nothing of the simulator may be left in /tmp or /dev/shm
    report["left_in_tmp"] = sorted(p for d in ("/tmp", "/dev/shm") for p in os.listdir(d)
                                   if p.startswith("falconet-sim") and not os.path.islink(
                                       os.path.join(d, p)))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
