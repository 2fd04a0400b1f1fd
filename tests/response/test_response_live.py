"""Live acceptance of the response plugin: ``falconet run`` (eBPF collector, default rules, the
container and response plugins) against real processes, a real docker container and a real runc
container. Every policy is keyed to the processes/containers this module starts (other tests on
the host trigger rules too), and the triggering rule is the default Critical rule
``Crypto Miner Launched`` (a process with ``stratum+tcp://`` on its command line)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, need_bcc, stop_process, wait_until
from falconet.capture import read_capture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "containers"))
from container_runtimes import (  # noqa: E402
    DOCKER_RUNC_ROOT,
    DOCKER_SOCK,
    ctr,
    sh,
    start_ctr,
    start_docker,
    start_runc,
)

pytestmark = [pytest.mark.root, pytest.mark.containers, pytest.mark.ebpf]

TOK = secrets.token_hex(4)
MINER = "stratum+tcp://pool.minexmr.com:4444"
RULE = "Crypto Miner Launched"
TTL = 3
KEEP = os.environ.get("FALCONET_KEEP_TEST_DIRS")   # debugging: keep the engine's files
#: a counter the container bumps every 50 ms: it stops advancing exactly while frozen
COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"]
LOOP = "import sys, time\nwhile True: time.sleep(0.01)"


def policies(docker_id: str, runc_id: str, net_id: str, pause_id: str, ctr_id: str
             ) -> list[dict]:
    def host(name: str, token: str, **kw) -> dict:
        return {"name": name, "match": {"rules": [RULE],
                                        "condition": f"proc.cmdline contains {token}"},
                "actions": [{"action": "kill"}], "allow_host": True, "dedup_seconds": 0, **kw}
    ids = f"container.id in ({docker_id[:12]}, {runc_id[:12]})"
    return [
        {"name": "offline", "match": {"priority": ">=Critical",
                                      "condition": f"container.id = {net_id[:12]}"},
         "actions": [{"action": "isolate_network"}], "dedup_seconds": 0},
        {"name": "pause", "match": {"priority": ">=Critical", "condition":
                                    f"container.id in ({pause_id[:12]}, {ctr_id[:12]})"},
         "actions": [{"action": "pause"}], "dedup_seconds": 0},
        {"name": "freeze-hold",
         "match": {"priority": ">=Critical", "condition": f"{ids} and proc.cmdline contains "
                                                          f"fnt-hold-{TOK}"},
         "actions": [{"action": "freeze"}], "dedup_seconds": 0},
        {"name": "freeze-containers",
         "match": {"priority": ">=Critical", "condition": ids},
         "actions": [{"action": "capture", "seconds": 1}, {"action": "freeze", "ttl": TTL}],
         "dedup_seconds": 0},
        host("kill-host", f"fnt-kill-{TOK}"),
        host("shadow", f"fnt-dry-{TOK}", dry_run=True),
        {**host("no-host", f"fnt-nohost-{TOK}"), "allow_host": False},
        host("guarded", f"fnt-guard-{TOK}"),
        host("storm", f"fnt-storm-{TOK}", breaker={"max_targets": 3, "window_seconds": 60}),
    ]


class Engine:
    def __init__(self, tmp: Path, *ids: str) -> None:
        self.audit = tmp / "audit.jsonl"
        cfg = {
            "plugins": {
                "container": {"runc_roots": ["/run/runc", "/run/containerd/runc",
                                             DOCKER_RUNC_ROOT], "docker_socket": DOCKER_SOCK},
                "response": {"audit_log": str(self.audit),
                             "protected": f"proc.cmdline contains fnt-guard-{TOK}"},
            },
            "responses": policies(*ids),
        }
        self.config = tmp / "falconet.yaml"
        self.config.write_text(json.dumps(cfg))
        self.out, self.err = tmp / "alerts.json", tmp / "stderr.txt"
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.exe = str(Path(sys.executable).parent / "falconet")
        self.proc = subprocess.Popen(
            [self.exe, "run", "-c", str(self.config), "--json", "--metrics-port", str(self.port)],
            cwd=REPO, stdout=self.out.open("w"), stderr=self.err.open("w"),
            stdin=subprocess.DEVNULL)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"falconet exited: {self.err.read_text()[-3000:]}")

    def records(self, **match) -> list[dict]:
        out = []
        if not self.audit.exists():
            return out
        for line in self.audit.read_text().splitlines():
            r = json.loads(line)
            if all(r.get(k) == v for k, v in match.items()):
                out.append(r)
        return out

    def alerts(self, rule: str) -> list[dict]:
        out = []
        for line in self.out.read_text().splitlines():
            try:
                a = json.loads(line)
            except ValueError:
                continue
            if a.get("rule") == rule:
                out.append(a)
        return out

    def metric(self, name: str, **labels: str) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in body.decode().splitlines():
            if line.startswith(name + "{"):
                got = ",".join(sorted(line[line.index("{") + 1:line.index("}")].split(",")))
                if got == want:
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def respond(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.exe, "respond", *args, "-c", str(self.config)],
                              capture_output=True, text=True, timeout=60, cwd=REPO)


def miner(token: str) -> subprocess.Popen:
    """A host process whose exec triggers the rule and that keeps running afterwards."""
    return subprocess.Popen([sys.executable, "-c", LOOP, MINER, token],
                            stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def rig(request):
    need_bcc()
    docker = start_docker(request, cmd=COUNTER)
    runc = start_runc(request, cmd=COUNTER)
    net = start_docker(request)
    paused = start_docker(request)
    task = start_ctr(request)
    # not tmp_path_factory: concurrent pytest runs of the same user prune each other's
    # basetemp, which would unlink the audit log under the running engine
    tmp = Path(tempfile.mkdtemp(prefix="falconet-response-live-"))
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True) if KEEP is None else None)
    eng = Engine(tmp, docker.full_id, runc.full_id, net.full_id, paused.full_id, task.full_id)

    def cleanup() -> None:
        stop_process(eng.proc, 15)
        thaw_all(eng)     # a failed test must not leave a frozen container to the runtimes
    request.addfinalizer(cleanup)
    # ready: a shadow (dry-run) policy records a "would have acted" for a probe process
    probes: list[subprocess.Popen] = []

    def ready() -> bool:
        eng.alive()
        p = miner(f"fnt-dry-{TOK}")
        probes.append(p)
        time.sleep(0.3)
        return bool(eng.records(policy="shadow"))
    try:
        wait_until(ready, 90, interval=0.5, what="the engine to act on a probe")
    finally:
        for p in probes:
            stop_process(p, 5, signal.SIGKILL)
    return eng, docker, runc, net, paused, task


def thaw_all(eng: Engine) -> None:
    for r in eng.records(type="action", action="freeze"):
        undo = r.get("undo") or {}
        f = "freezer.state" if undo.get("kind") == "v1" else "cgroup.freeze"
        try:
            Path(undo["dir"], f).write_text("THAWED" if undo.get("kind") == "v1" else "0")
        except (KeyError, OSError):
            pass


def counter(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/root/tmp/n").read_text().strip() or 0)
    except (OSError, ValueError):
        return -1


def advancing(pid: int, window: float = 0.6) -> bool:
    a = counter(pid)
    time.sleep(window)
    return counter(pid) > a


def frozen(pid: int) -> bool:
    """Checked from outside: the container's counter does not move for 0.6 s (12 ticks)."""
    return not advancing(pid)


def trigger_in(kind: str, cid: str, *extra: str) -> subprocess.Popen:
    """Exec the miner command line in the container, without waiting: a freeze may land before
    the exec'd process exits, and `docker exec` then waits for the thaw."""
    argv = {"docker": ["docker", "exec", cid], "runc": ["runc", "exec", cid],
            "containerd": ["ctr", "-n", "default", "task", "exec", "--exec-id",
                           f"fnt-{secrets.token_hex(3)}", cid]}[kind]
    return subprocess.Popen([*argv, "/bin/true", MINER, *extra], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def exec_until(kind: str, cid: str, audited, what: str, *extra: str, timeout: float = 60,
               every: float = 4.0) -> list[subprocess.Popen]:
    """Trigger in the container until ``audited()``: on a loaded host the container plugin
    sometimes attributes a container's very first `exec` to the host (container.id = host),
    which no container policy matches; the next exec is attributed right."""
    execs: list[subprocess.Popen] = []
    deadline = time.monotonic() + timeout
    while True:
        execs.append(trigger_in(kind, cid, *extra))
        try:
            wait_until(audited, every, what=what)
            return execs
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.parametrize("kind", ["docker", "runc"])
def test_container_is_frozen_thaws_after_ttl_and_undo_by_id(rig, kind: str) -> None:
    eng, docker, runc = rig[:3]
    c = docker if kind == "docker" else runc
    wait_until(lambda: advancing(c.pid, 0.2), 10, what="the container's counter to run")
    done = {"policy": "freeze-containers", "action": "freeze", "result": "done"}
    before = len(eng.records(**done))
    execs = exec_until(kind, c.full_id if kind == "runc" else c.name,
                       lambda: len(eng.records(**done)) > before, "a freeze to be audited")
    rec = eng.records(**done)[-1]
    assert rec["target"]["container_id"] == c.full_id and rec["reversible"] and rec["ttl"] == TTL
    assert frozen(c.pid), "the container kept running after the freeze"
    # the capture ran first: the triggering exec is in a replayable capture file (0600)
    cap = eng.records(policy="freeze-containers", action="capture", result="done")[-1]
    path = cap["detail"].split(":", 1)[0]
    assert (os.stat(path).st_mode & 0o777) == 0o600 and cap["done_ns"] <= rec["done_ns"]
    pid = rec["target"]["pid"]
    wait_until(lambda: any(e.pid == pid and e.type == "execve" for e in read_capture(path)), 10,
               what="the triggering execve in the capture")
    # the ttl thaws it by itself
    wait_until(lambda: eng.records(type="undo", of=rec["id"], by="ttl", result="done"), TTL + 10,
               what="the ttl thaw")
    wait_until(lambda: advancing(c.pid, 0.2), 5, what="the counter to run again")

    # frozen again (a policy without ttl), then undone by id from the CLI
    held = len(eng.records(policy="freeze-hold", result="done"))
    execs += exec_until(kind, c.full_id if kind == "runc" else c.name,
                        lambda: len(eng.records(policy="freeze-hold", result="done")) > held,
                        "the second freeze", f"fnt-hold-{TOK}")
    rec2 = eng.records(policy="freeze-hold", result="done")[-1]
    assert frozen(c.pid)
    listed = eng.respond("list")
    assert listed.returncode == 0 and rec2["id"] in listed.stdout, listed
    r = eng.respond("undo", rec2["id"])
    assert r.returncode == 0, r.stderr
    assert "done" in r.stdout
    wait_until(lambda: advancing(c.pid, 0.2), 5, what="undo to thaw the container")
    again = eng.respond("undo", rec2["id"])
    assert again.returncode == 1 and "already undone" in again.stderr
    for p in execs:
        stop_process(p, 10)


def test_host_process_is_killed_and_another_is_untouched(rig) -> None:
    eng = rig[0]
    bystander = subprocess.Popen([sys.executable, "-c", LOOP, "fnt-bystander"],
                                 stdin=subprocess.DEVNULL)
    victim = miner(f"fnt-kill-{TOK}")
    try:
        wait_until(lambda: victim.poll() is not None, 10, what="the matching process to die")
        assert victim.returncode == -signal.SIGKILL
        rec = eng.records(policy="kill-host", result="done")[-1]
        assert rec["target"]["pid"] == victim.pid and rec["latency_ms"] < 1000
        assert bystander.poll() is None, "a process that matched nothing was hit"
        assert eng.metric("falconet_response_actions_total", policy="kill-host", action="kill",
                          result="done") >= 1
    finally:
        stop_process(bystander, 5, signal.SIGKILL)
        stop_process(victim, 5, signal.SIGKILL)


def test_dry_run_changes_nothing_and_counts(rig) -> None:
    eng = rig[0]
    n = eng.metric("falconet_response_actions_total", policy="shadow", action="kill",
                   result="dry_run")
    p = miner(f"fnt-dry-{TOK}")
    try:
        wait_until(lambda: eng.metric("falconet_response_actions_total", policy="shadow",
                                      action="kill", result="dry_run") > n, 15,
                   what="the dry run to be counted")
        assert p.poll() is None, "dry_run killed the process"
        assert any(r["target"].get("pid") == p.pid for r in eng.records(policy="shadow",
                                                                        result="dry_run"))
    finally:
        stop_process(p, 5, signal.SIGKILL)


@pytest.mark.parametrize("policy, token", [("no-host", "fnt-nohost"), ("guarded", "fnt-guard")])
def test_protected_targets_are_untouched_even_when_matched(rig, policy: str, token: str) -> None:
    """A host process without allow_host, and a process matching plugins.response.protected."""
    eng = rig[0]
    p = miner(f"{token}-{TOK}")
    try:
        wait_until(lambda: any(r["target"].get("pid") == p.pid
                               for r in eng.records(policy=policy, result="protected")), 15,
                   what="the protected decision to be audited")
        time.sleep(0.3)
        assert p.poll() is None, "a protected process was killed"
        assert not eng.records(policy=policy, result="done")
    finally:
        stop_process(p, 5, signal.SIGKILL)


def test_a_storm_of_targets_trips_the_breaker_and_sighup_rearms(rig) -> None:
    eng = rig[0]
    procs = []
    try:
        for _ in range(6):
            procs.append(miner(f"fnt-storm-{TOK}"))
            time.sleep(0.15)
        wait_until(lambda: eng.records(type="breaker", policy="storm", state="open"), 20,
                   what="the breaker to open")
        time.sleep(1.0)
        killed = [p for p in procs if p.poll() is not None]
        assert len(killed) == 3, "the breaker let more than max_targets through"
        assert eng.metric("falconet_response_policy_armed", policy="storm") == 0
        wait_until(lambda: eng.alerts("Falconet response circuit breaker open"), 10,
                   what="the internal alert")
        r = eng.respond("rearm")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: eng.records(type="breaker", policy="storm", state="rearmed"), 10,
                   what="the re-arm")
        assert eng.metric("falconet_response_policy_armed", policy="storm") == 1
    finally:
        for p in procs:
            stop_process(p, 5, signal.SIGKILL)
    assert os.path.exists(eng.audit) and (os.stat(eng.audit).st_mode & 0o777) == 0o600


def _links(name: str) -> dict[str, bool]:
    """Link name -> administratively up, as the container's own `ip` sees it."""
    out = {}
    for line in sh("docker", "exec", name, "ip", "-o", "link").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            flags = parts[2].split("<", 1)[1].split(">", 1)[0].split(",")
            out[parts[1].strip().split("@")[0]] = "UP" in flags
    return out


def test_isolate_network_takes_links_down_and_undo_brings_them_back(rig) -> None:
    eng, net = rig[0], rig[3]
    from falconet_response.actions.netns import in_netns  # setup helper only

    fd = os.open(f"/proc/{net.pid}/ns/net", os.O_RDONLY)
    try:
        def veth(ipr):
            ipr.link("add", ifname="fnt0", kind="veth", peer="fnt1")
            for n in ("fnt0", "fnt1"):
                ipr.link("set", index=ipr.link_lookup(ifname=n)[0], state="up")
        in_netns(fd, veth)
    finally:
        os.close(fd)
    assert _links(net.name) == {"lo": True, "fnt0": True, "fnt1": True}
    execs = exec_until("docker", net.name, lambda: eng.records(policy="offline", result="done"),
                       "isolate_network to be audited")
    rec = eng.records(policy="offline", result="done")[-1]
    assert _links(net.name) == {"lo": True, "fnt0": False, "fnt1": False}
    r = eng.respond("undo", rec["id"])
    assert r.returncode == 0, r.stderr
    assert _links(net.name) == {"lo": True, "fnt0": True, "fnt1": True}
    for p in execs:
        stop_process(p, 10)


def test_pause_through_the_docker_api_and_undo(rig) -> None:
    eng, paused = rig[0], rig[4]
    execs = exec_until("docker", paused.name, lambda: eng.records(policy="pause", result="done"),
                       "pause to be audited")
    rec = eng.records(policy="pause", result="done")[-1]
    assert sh("docker", "inspect", "-f", "{{.State.Paused}}", paused.name).strip() == "true"
    r = eng.respond("undo", rec["id"])
    assert r.returncode == 0, r.stderr
    assert sh("docker", "inspect", "-f", "{{.State.Paused}}", paused.name).strip() == "false"
    for p in execs:
        stop_process(p, 10)


def _task_status(cid: str) -> str:
    for line in ctr("task", "ls").splitlines():
        parts = line.split()
        if parts and parts[0] == cid:
            return parts[-1]
    return ""


def test_pause_of_a_containerd_task_through_ctr_and_undo(rig) -> None:
    eng, task = rig[0], rig[5]
    before = len(eng.records(policy="pause", result="done"))
    execs = exec_until("containerd", task.full_id,
                       lambda: len(eng.records(policy="pause", result="done")) > before,
                       "pause to be audited")
    rec = eng.records(policy="pause", result="done")[-1]
    assert rec["target"]["container_id"] == task.full_id
    assert _task_status(task.full_id) == "PAUSED"
    r = eng.respond("undo", rec["id"])
    assert r.returncode == 0, r.stderr
    assert _task_status(task.full_id) == "RUNNING"
    for p in execs:
        stop_process(p, 10)
