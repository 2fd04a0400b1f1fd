"""Partitioned replay with real worker processes: the same alerts as one worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FALCO_RULES, need
from falconet.api import hookimpl
from falconet.state.tables import FdInfo
from falconet.workers import Partitioner
from multiproc_capture import generate
from workers_helpers import DEFAULT_RULES, Script, process, replay

STABLE_REDIRECT = "Redirect STDOUT/STDIN to Network Connection in Container"


@pytest.fixture(scope="module")
def multi_capture(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("multi") / "multi.fcap")
    generate(path, 30_000, n_procs=48)
    return path


def _rules(which: str) -> str:
    if which == "stable":
        need(FALCO_RULES.is_file(), f"Falco's stable rules are not at {FALCO_RULES} "
                                    "(set $FALCONET_FALCO_RULES)")
        return str(FALCO_RULES)
    return DEFAULT_RULES


@pytest.mark.parametrize("key", ["lineage", "tgid"])
@pytest.mark.parametrize("which", ["default", "stable"])
def test_two_workers_give_exactly_one_workers_alerts(multi_capture: str, tmp_path: Path,
                                                     which: str, key: str) -> None:
    rules = _rules(which)
    rc1, app1, one = replay(multi_capture, rules, 1, str(tmp_path))
    rc2, app2, two = replay(multi_capture, rules, 2, str(tmp_path), partition_key=key)
    assert rc1 == rc2 == 0
    assert app1.worker_pool is None and app2.worker_pool is not None
    assert len(one) > 100
    rules_fired = {a["rule"] for a in one}
    assert len(rules_fired) >= 3, rules_fired
    # same rules, same output fields, same count, same order (evt.num included)
    assert two == one
    assert app2.pipeline.events == app1.pipeline.events
    assert app2.losses() == 0
    pool = app2.worker_pool
    # both workers did a share, every event was owned once, each alert came from one worker
    assert min(pool.routed) > 0.25 * sum(pool.routed)
    assert sum(pool.routed) == app1.pipeline.events
    assert sum(pool.alerts) == len(one)
    assert (pool.handoffs > 0) == (key == "tgid")
    assert sum(f["stats"]["handoffs"] for f in pool.finals.values()) == pool.handoffs
    # the per-type event counters add up to one worker's
    assert dict(app2.metrics.events) == dict(app1.metrics.events)
    m = app2.metrics.gauges
    assert sum(m["worker_events"]().values()) == app1.pipeline.events
    assert sum(m["worker_alerts"]().values()) == len(one)
    assert "workers: 2 (0: " in app2.summary()


def _fork_pair(n: int, same: bool) -> tuple[int, int]:
    """A parent and a child pid that ``tgid`` hashes to different workers (or the same)."""
    p = Partitioner(n, "tgid")
    parent = 4000
    for child in range(5000, 6000):
        if (p.owner(child) == p.owner(parent)) == same:
            return parent, child
    raise AssertionError("no such pid")


def _inherited_socket_capture(path: str, parent: int, child: int) -> None:
    """A parent connects a socket and forks; the child dup2s the inherited socket onto its
    stdin and stdout, then opens a path relative to the cwd the parent set (by fd) before the
    fork."""
    s = Script(path, [process(parent, "python3")])
    s("socket", parent, {"fd": 5, "domain": 2, "type": 1, "proto": 6}, 5)
    s("connect", parent, {"fd": 5, "family": 2, "sip": "10.0.0.2", "sport": 40000,
                          "dip": "203.0.113.9", "dport": 4444, "path": "", "tuple": ""}, 0)
    # the cwd through an fd (fchdir): only the parent's worker can resolve it
    s("openat", parent, {"fd": 6, "dirfd": -100, "name": "/etc", "flags": 0o200000,
                         "mode": 0}, 6)
    s("fchdir", parent, {"fd": 6}, 0)
    s.fork(parent, child)
    s("dup2", child, {"fd": 0, "oldfd": 5, "newfd": 0}, 0)
    s("dup2", child, {"fd": 1, "oldfd": 5, "newfd": 1}, 1)
    s("openat", child, {"fd": 3, "dirfd": -100, "name": "shadow", "flags": 0, "mode": 0}, 3)
    s("procexit", child, {"status": 0}, None)
    s.close()


@pytest.mark.parametrize("which", ["default", "stable"])
def test_a_child_on_another_worker_uses_the_fds_and_cwd_it_inherited(tmp_path: Path,
                                                                    which: str) -> None:
    rules = _rules(which)
    parent, child = _fork_pair(2, same=False)
    cap = str(tmp_path / "inherit.fcap")
    _inherited_socket_capture(cap, parent, child)
    _, _, one = replay(cap, rules, 1, str(tmp_path))
    rc, app, two = replay(cap, rules, 2, str(tmp_path), partition_key="tgid")
    assert rc == 0
    redirect = STABLE_REDIRECT if which == "stable" else "Reverse Shell Redirect"
    fired = [a for a in one if a["rule"] == redirect]
    assert len(fired) == 2, [a["rule"] for a in one]
    assert fired[0]["output_fields"]["fd.name"] == "10.0.0.2:40000->203.0.113.9:4444"
    # both rule sets flag the child's read of the relative "shadow" in the inherited cwd (the
    # child's proc.name is its parent's exec-time name at fork, as in Falco)
    assert any("/etc/shadow" in a["output"] for a in one)
    assert two == one
    assert app.worker_pool.handoffs == 1
    # without the fork handoff the child's worker has a stale copy of the parent: the socket
    # and the cwd are unknown there, and the alerts are lost (what the handoff repairs)
    _, _, broken = replay(cap, rules, 2, str(tmp_path), partition_key="tgid",
                          fork_handoff=False)
    assert not [a for a in broken if a["rule"] == redirect]
    assert not any("/etc/shadow" in a["output"] for a in broken)
    assert len(broken) < len(one)


def test_lineage_key_keeps_the_child_with_its_parent(tmp_path: Path) -> None:
    parent, child = _fork_pair(2, same=False)
    cap = str(tmp_path / "inherit.fcap")
    _inherited_socket_capture(cap, parent, child)
    _, _, one = replay(cap, DEFAULT_RULES, 1, str(tmp_path))
    _, app, two = replay(cap, DEFAULT_RULES, 2, str(tmp_path))
    assert two == one and app.worker_pool.handoffs == 0
    assert app.worker_pool.partitioner.key == "lineage"


def test_malformed_lines_are_reported_and_counted_once(tmp_path: Path, capsys: Any) -> None:
    cap = str(tmp_path / "bad.fcap")
    _inherited_socket_capture(cap, *_fork_pair(2, same=False))
    with open(cap, "ab") as f:
        f.write(b'{"src":"syscall","type":"openat","ts":1,"tid":7,"pid":7,"args":[]}\n')
        f.write(b"not json\n")
    _, _, one = replay(cap, DEFAULT_RULES, 1, str(tmp_path))
    err1 = capsys.readouterr().err
    rc, app, two = replay(cap, DEFAULT_RULES, 2, str(tmp_path))
    assert app.metrics.drops["capture_malformed"] == 2
    err = capsys.readouterr().err
    assert err.count("malformed capture line skipped") == 2
    reported = sorted(ln for ln in err.splitlines() if "malformed capture line" in ln)
    assert reported == sorted(ln for ln in err1.splitlines() if "malformed capture line" in ln)
    assert two == one


def test_a_full_worker_queue_is_a_counted_drop(tmp_path: Path, monkeypatch: Any) -> None:
    """Not blocking (the mode of a live source): a batch with no credit left is dropped and
    counted, per worker and as ``worker_queue_full``; nothing vanishes silently."""
    from falconet.workers import pool as pool_mod  # noqa: PLC0415
    real = pool_mod.WorkerPool.__init__

    def no_credit(self: Any, *a: Any, **kw: Any) -> None:
        real(self, *a, **kw)
        self.blocking, self.credits = False, 0
    monkeypatch.setattr(pool_mod.WorkerPool, "__init__", no_credit)
    cap = str(tmp_path / "c.fcap")
    _inherited_socket_capture(cap, *_fork_pair(2, same=False))
    rc, app, alerts = replay(cap, DEFAULT_RULES, 2, str(tmp_path))
    pool = app.worker_pool
    assert alerts == []
    assert sum(pool.dropped) > 0
    assert app.metrics.drops["worker_queue_full"] == sum(pool.dropped)
    assert app.losses() >= sum(pool.dropped)
    assert "dropped (queue full)" in app.summary()


class _DieInWorker:
    """A parser that kills its process when it runs in a worker (a crashing plugin)."""

    @hookimpl
    def falconet_event_parsers(self, engine: Any) -> list[Any]:
        def parse(evt: Any) -> None:
            if os.environ.get("FALCONET_WORKER") and evt.type == "dup2":
                os._exit(3)
        return [parse]


def test_a_worker_that_dies_fails_the_run_and_never_hangs(tmp_path: Path, capsys: Any) -> None:
    cap = str(tmp_path / "c.fcap")
    _inherited_socket_capture(cap, *_fork_pair(2, same=False))
    rc, app, _ = replay(cap, DEFAULT_RULES, 2, str(tmp_path), extra=[("die", _DieInWorker())])
    assert rc == 1
    assert app.metrics.drops["worker_failed"] == 1
    assert "worker" in capsys.readouterr().err


def test_cli_replay_workers(tmp_path: Path) -> None:
    cap = str(tmp_path / "c.fcap")
    _inherited_socket_capture(cap, *_fork_pair(2, same=False))
    exe = [sys.executable, "-m", "falconet", "replay", cap, "-r", DEFAULT_RULES,
           "--no-progress", "--json"]
    ok = subprocess.run([*exe, "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "workers: 2 (0: " in ok.stderr
    assert ok.stdout.count("Reverse Shell Redirect") == 2
    bad = subprocess.run([*exe, "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "--workers" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("batch,credits", [(1, 1), (7, 1), (64, 2)])
def test_tiny_batches_and_one_credit_never_deadlock_the_handoffs(tmp_path: Path, monkeypatch: Any,
                                                                  batch: int, credits: int) -> None:
    """Fork handoffs make workers wait for each other; with one batch in flight and batches of
    a few records the router waits for credits all the time: still the same alerts, no hang."""
    from falconet.workers import pool as pool_mod  # noqa: PLC0415
    real = pool_mod.WorkerPool.__init__

    def small(self: Any, *a: Any, **kw: Any) -> None:
        real(self, *a, **kw)
        self.batch_lines, self.credits = batch, credits
    cap = str(tmp_path / "forky.fcap")
    generate(cap, 3000, n_procs=12, forks=0.4, sensitive=0.05)
    _, _, one = replay(cap, DEFAULT_RULES, 1, str(tmp_path))
    monkeypatch.setattr(pool_mod.WorkerPool, "__init__", small)
    monkeypatch.setattr("falconet.capture.BLOCK_BYTES", 64 * batch)   # a few records a block
    for n in (2, 3):
        rc, app, many = replay(cap, DEFAULT_RULES, n, str(tmp_path), partition_key="tgid")
        assert rc == 0 and many == one
        assert app.worker_pool.handoffs > 10


def test_gzip_capture_replays_the_same_on_two_workers(tmp_path: Path) -> None:
    cap = str(tmp_path / "multi.fcap.gz")
    generate(cap, 4000, n_procs=16)
    with open(cap, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    _, _, one = replay(cap, DEFAULT_RULES, 1, str(tmp_path))
    rc, app, two = replay(cap, DEFAULT_RULES, 2, str(tmp_path))
    assert rc == 0 and one and two == one


def test_per_worker_metrics_are_served(tmp_path: Path) -> None:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from conftest import free_port, stop_process  # noqa: PLC0415
    cap = str(tmp_path / "c.fcap")
    _inherited_socket_capture(cap, *_fork_pair(2, same=False))
    rc, app1, one = replay(cap, DEFAULT_RULES, 1, str(tmp_path))
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "falconet", "replay", cap, "-r", DEFAULT_RULES,
                          "--no-progress", "--workers", "2", "--metrics-port", str(port),
                          "--linger", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)

    # the counts are final once the replay says its source is done (the linger's first line)
    done = threading.Event()
    err: list[str] = []

    def read_stderr() -> None:
        assert p.stderr is not None
        for line in p.stderr:
            err.append(line)
            if "the source is done" in line:
                done.set()
    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        assert done.wait(60), f"the replay never finished: {''.join(err)[-2000:]}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert 'falconet_worker_alerts{worker="1"}' in body, "no per-worker series"
        series = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines()
                  if line.startswith("falconet_worker_")}
        events = sum(v for k, v in series.items() if k.startswith("falconet_worker_events"))
        alerts = sum(v for k, v in series.items() if k.startswith("falconet_worker_alerts"))
        assert events == app1.pipeline.events == 11
        assert alerts == len(one) >= 2
        assert series['falconet_worker_queue_drops{worker="0"}'] == 0
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    finally:
        stop_process(p)


def test_the_last_handoff_reaches_its_worker_before_the_sender_exits(tmp_path: Path) -> None:
    """A fork near the end of the stream whose handoff is bigger than a pipe holds: the
    sender finishes its last batch before the receiver reads the message; the message must
    not die with the sender's feeder thread (the run hung: the receiver waited forever)."""
    parent, child = _fork_pair(2, same=False)
    cap = str(tmp_path / "late.fcap")
    p = process(parent, "python3")
    for fd in range(3, 6000):                           # ~0.5 MB of fd table to hand over
        p.fds[fd] = FdInfo(fd, "f", f"/var/lib/app/data-{fd:05}.db", f"data-{fd:05}.db", 2)
    s = Script(cap, [p])
    s.fork(parent, child)
    s("dup2", child, {"fd": 0, "oldfd": 5, "newfd": 0}, 0)
    s("procexit", child, {"status": 0}, None)
    s.close()
    r = subprocess.run([str(Path(sys.executable).parent / "falconet"), "replay", "-r",
                        DEFAULT_RULES, "--workers", "2", "--partition-key", "tgid",
                        "--no-progress", cap], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "workers: 2" in r.stderr
