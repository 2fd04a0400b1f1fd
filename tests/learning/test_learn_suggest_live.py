"""``falconet learn suggest`` live (issue 15 acceptance): the false-positive budget's benign
workload (scripts/benign-workload.py) and the default attack suite (suites/default.yaml's
actions) are recorded with the real eBPF collector; suggest turns every lower-priority alert of
the workload's own processes into an exception (proven by replay), and the suite's cases for
the excepted rules still pass live with the file loaded (`falconet test`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, need_bcc, stop_process, wait_until
from falconet.priorities import Priority
from falconet.simulate.contexts import ContextPool
from falconet.simulate.runner import run_action
from falconet.simulate.suite import load_suite
from learning_live import need_docker

pytestmark = [pytest.mark.root, pytest.mark.containers, pytest.mark.ebpf, pytest.mark.slow]
FALCONET = str(Path(sys.executable).parent / "falconet")
SUITE = REPO / "suites" / "default.yaml"


def record(path: Path, err: Path, body: Callable[[], None]) -> None:
    """``falconet record`` (default rules, learning off) around ``body``."""
    proc = subprocess.Popen([FALCONET, "record", str(path), "--no-metrics",
                             "-o", "plugins.learning.enabled=false",
                             "-o", "outputs.stdout.enabled=false"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=err.open("w"),
                            stdin=subprocess.DEVNULL)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"record exited: {err.read_text()[-2000:]}")
            return "falconet: watching" in err.read_text()
        wait_until(ready, 90, what="the recorder to attach", interval=0.2)
        body()
    finally:
        stop_process(proc, 60, signal.SIGINT)


def run_attack_suite() -> None:
    suite = load_suite(SUITE)
    with ContextPool() as pool:
        for case in suite.cases:
            if case.expect.nothing:
                continue
            run_action(pool, case.action, case.where, case.privileged)


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    need_bcc()
    need_docker()
    tmp = tmp_path_factory.mktemp("suggest-live")
    benign, attacks = tmp / "benign.fcap.gz", tmp / "attacks.fcap.gz"
    pids: list[int] = []

    def workload() -> None:
        p = subprocess.Popen([sys.executable, str(REPO / "scripts" / "benign-workload.py")],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pids.append(p.pid)
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    record(benign, tmp / "record-benign.txt", workload)
    record(attacks, tmp / "record-attacks.txt", run_attack_suite)
    return {"tmp": tmp, "benign": benign, "attacks": attacks, "workload_pid": pids[0]}


def _workload_alerts(capture: Path, rules: list[str], pid: int) -> list:
    """Alerts of the benign workload's own processes (the machine is shared: other activity
    in the capture is left out, as scripts/benign-workload.py --check does)."""
    from falconet_learning.suggest import replay_alerts  # noqa: PLC0415

    alerts = replay_alerts(str(capture), rules, None, [])
    return [a for a in alerts if any(x.get("pid") == pid for x in a.lineage)]


def test_suggest_excepts_every_lower_priority_alert_and_attacks_stay_detected(captures) -> None:
    tmp = captures["tmp"]
    out = tmp / "learned.yaml"
    cp = subprocess.run([FALCONET, "learn", "suggest", "--capture", str(captures["benign"]),
                         "--attacks", str(captures["attacks"]), "--output", str(out), "--json",
                         "--state-dir", str(tmp / "state")], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr[-3000:]
    report = json.loads(cp.stdout)
    (tmp / "suggest-report.json").write_text(json.dumps(report, indent=1))
    assert report["attack_alerts_with_exceptions"] == report["attack_alerts_baseline"] > 0
    assert report["learning_alerts_excepted_after"] == 0
    # every lower-priority alert the workload's processes raised is gone with the file loaded,
    # except those whose suggestion was dropped because it would hide an attack (reported)
    rules = [str(REPO / "rules")]
    pid = captures["workload_pid"]
    before = [a for a in _workload_alerts(captures["benign"], rules, pid)
              if a.priority > Priority.WARNING]
    after = _workload_alerts(captures["benign"], [*rules, str(out)], pid)
    dropped = {d["rule"] for d in report["dropped"]}
    left = [a for a in after if a.priority > Priority.WARNING and a.rule not in dropped]
    assert left == [], [a.output for a in left]
    print(json.dumps({"workload_lower_priority_alerts": len(before),
                      "excepted_rules": sorted({e["rule"] for e in report["exceptions"]}),
                      "dropped": report["dropped"]}, indent=1))
    # the attack suite still passes live with the file loaded (the cases of excepted rules)
    excepted = {e["rule"] for e in report["exceptions"]}
    cases = [c.name for c in load_suite(SUITE).cases if c.expect.rule in excepted]
    if cases:
        argv = [FALCONET, "test", str(SUITE), "-r", str(REPO / "rules"), "-r", str(out), "--json"]
        for c in cases:
            argv += ["--case", c]
        t = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert t.returncode == 0, (t.stdout[-3000:], t.stderr[-2000:])
