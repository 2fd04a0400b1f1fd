"""The acceptance sweep of rule synthesis (tests/authoring and ``bench/bench_authoring.py``).

For every case of a suite (a simulator action in a host or container context):

1. the benign workload is recorded once, and every action once, in one batch recording (one
   recorder, one focus per action: its container or process tree and time window);
2. a rule is synthesised per action against the benign recording; candidates are proven jointly
   (one replay of each recording for all rules, alerts attributed to each action's focus);
3. a fresh live engine (``falconet record`` with the synthesised rules, alerts on stdout) watches
   every action performed again in fresh containers, then a fresh benign workload run: a case
   succeeds when its rule fired on its action (same container or host, inside the window) and
   no synthesised rule fired on the benign workload's processes (its process tree, from the
   run's own capture).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from falconet.app import App
from falconet.authoring.context import RulesContext, ruleset_of
from falconet.authoring.evidence import BENIGN_WORKLOAD, record_actions, record_benign
from falconet.authoring.focus import Focus, FocusFilter
from falconet.authoring.replay import replay
from falconet.authoring.synthesize import MAX_PROVE, Candidate, Synthesizer
from falconet.events import Event
from falconet.simulate.live import LiveEngine, ReceivedAlert
from falconet.simulate.suite import load_suite

SWEEP_FILE = "<sweep>"
LIVE_READY = "falconet: watching"
WINDOW_SLACK_NS = 10_000_000
#: after the last action: let the engine's alerts arrive
LIVE_GRACE_S = 2.0


@dataclass
class SweepCase:
    key: str
    action: str
    where: str
    privileged: bool
    focus: Focus = field(default_factory=Focus)
    status: str = "pending"     # recorded | no_events | no_candidate | unproven | proven | ok | fail
    reason: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    chosen: int = 0
    rule: dict[str, Any] | None = None
    synth_seconds: float = 0.0
    live_fired: bool = False
    benign_alerts: int = 0
    negative: bool = False      # an ``expect: nothing`` case: negative evidence for all others

    @property
    def rule_name(self) -> str:
        return "Synthesized " + re.sub(r"[^A-Za-z0-9 ]+", " ", self.key).strip()

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.key, "status": self.status, "reason": self.reason,
                "condition": self.rule["condition"] if self.rule else None,
                "synth_seconds": round(self.synth_seconds, 3), "live_fired": self.live_fired,
                "benign_alerts": self.benign_alerts}


@dataclass
class SweepReport:
    cases: list[SweepCase]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return sum(c.status == "ok" for c in self.positive) / max(1, len(self.positive))

    @property
    def positive(self) -> list[SweepCase]:
        """The cases a rule is synthesised for (not the negatives, not what this kernel
        cannot do at all)."""
        return [c for c in self.cases if not c.negative and c.status != "n/a"]

    def rules_yaml(self, statuses: Sequence[str] = ("ok",)) -> str:
        return yaml.safe_dump([c.rule for c in self.cases if c.rule and c.status in statuses],
                              sort_keys=False, width=100)

    def to_dict(self) -> dict[str, Any]:
        return {"cases": [c.to_dict() for c in self.positive], "share_ok": round(self.share, 3),
                "ok": sum(c.status == "ok" for c in self.positive),
                "total": len(self.positive),
                "not_applicable": [c.key for c in self.cases if c.status == "n/a"],
                "negative_cases": [c.key for c in self.cases if c.negative],
                "timings_s": {k: round(v, 2) for k, v in self.timings.items()}}


def suite_cases(suite_path: str, only: Sequence[str] | None = None) -> list[SweepCase]:
    """The suite's cases, one per distinct (action, context, privileged). ``expect: nothing``
    cases are kept as negatives (the same contexts doing ordinary things: what a container
    exec looks like is not the behaviour); ``only`` selects among the others."""
    suite = load_suite(suite_path)
    out: dict[str, SweepCase] = {}
    for c in suite.cases:
        key = f"{c.action} {c.where}" + (" privileged" if c.privileged else "")
        if only and not c.expect.nothing and c.action not in only and key not in only:
            continue
        out.setdefault(key, SweepCase(key, c.action, c.where, c.privileged,
                                      negative=c.expect.nothing))
    return list(out.values())


def attribute(path: str, context: RulesContext, text: str, focuses: dict[str, Focus],
              config: Any = None) -> dict[str, Counter]:
    """Replay ``path`` once with the rules ``text``: alerts per rule, per focus."""
    hits: dict[str, Counter] = {k: Counter() for k in focuses}

    def setup(app: App) -> list[Any]:
        res = context.load(app, [(SWEEP_FILE, text)])
        if not res.ok:
            raise ValueError("; ".join(str(e) for e in res.errors[:3]))
        rs = ruleset_of(res, [SWEEP_FILE])
        filters = [(k, FocusFilter(f, app.ctx.fields.resolve)) for k, f in focuses.items()]

        def visit(evt: Event) -> None:
            alerts = rs.match(evt)
            if not alerts:
                return
            for k, f in filters:
                if f(evt):
                    for a in alerts:
                        hits[k][a.rule] += 1
        return [visit]
    replay(path, (), config=config, focus=Focus(), setup=setup)
    return hits


def focus_pids(path: str, focus: Focus, config: Any = None) -> set[int]:
    """The pids of the events of a capture in ``focus``."""
    pids: set[int] = set()

    def setup(app: App) -> list[Any]:
        get = app.ctx.fields.resolve("proc.pid").extract
        return [lambda evt: pids.add(get(evt))]
    replay(path, (), config=config, focus=focus, setup=setup)
    return pids


class RecordingEngine(LiveEngine):
    """``falconet record FILE --json`` with rules: live alerts on stdout and a capture."""

    def __init__(self, path: str, rules: Sequence[str]) -> None:
        super().__init__(rules)
        self.path = path

    @property
    def argv(self) -> list[str]:
        # every rule that matches an event alerts (the default rules fire on the same events)
        argv = [*self.base_argv, "record", self.path, "--json", "--no-metrics",
                "-o", "rule_matching=all"]
        for r in self.rules:
            argv += ["--rules", r]
        return argv

    def wait_watching(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while LIVE_READY not in self.stderr_tail:
            if not self.running():
                raise RuntimeError(f"the engine exited:\n{self.stderr_tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not start:\n{self.stderr_tail}")
            time.sleep(0.1)


def _same_place(a: ReceivedAlert, container_id: str) -> bool:
    got = a.container_id
    if not container_id:
        return got == ""
    return bool(got) and (container_id.startswith(got) or got.startswith(container_id))


def sweep(suite_path: str, workdir: str, *, benign: str | None = None,
          only: Sequence[str] | None = None, context_files: Sequence[str] | None = None,
          live: bool = True, log: Callable[[str], None] = lambda _m: None) -> SweepReport:
    from falconet.app import default_rules_paths  # noqa: PLC0415
    from falconet.simulate.contexts import ContextPool  # noqa: PLC0415
    from falconet.simulate.runner import run_action, warm_up  # noqa: PLC0415

    os.makedirs(workdir, exist_ok=True)
    t: dict[str, float] = {}
    cases = suite_cases(suite_path, only)
    report = SweepReport(cases, t)
    files = list(context_files or default_rules_paths())
    context = RulesContext(files)

    t0 = time.monotonic()
    if benign is None:
        benign = os.path.join(workdir, "benign.fcap.gz")
        record_benign(benign)
        t["record_benign"] = time.monotonic() - t0
    t0 = time.monotonic()
    batch = os.path.join(workdir, "actions.fcap.gz")
    done = record_actions(batch, [(c.action, c.where, c.privileged) for c in cases])
    for c, (res, focus) in zip(cases, done, strict=True):
        c.focus = focus
        c.status = {"done": "recorded", "n/a": "n/a"}.get(res.status, "fail")
        c.reason = "" if res.status == "done" else f"action {res.status}: {res.reason}"
    t["record_actions"] = time.monotonic() - t0
    log(f"recorded {len(cases)} actions in {t['record_actions']:.1f}s")

    t0 = time.monotonic()
    syn = Synthesizer(context)
    pos = syn.evidence_many(batch, {c.key: c.focus for c in cases if c.status == "recorded"})
    negs = [syn.evidence(benign), *(pos[c.key] for c in cases
                                    if c.negative and c.status == "recorded")]
    neg_focus = {c.key: c.focus for c in cases if c.negative and c.status == "recorded"}
    t["extract"] = time.monotonic() - t0
    t0 = time.monotonic()
    # the other behaviours of the suite are soft negatives: what many actions share (a shell
    # in a container running a command) is the context, not the behaviour; the same action in
    # another context is not held against it
    acting = [c for c in cases if c.status == "recorded" and not c.negative]
    soft = negs + [pos[c.key] for c in acting]
    universe = syn.universe(soft)
    owners: dict[frozenset, set[str]] = {}
    for c in acting:
        for st in pos[c.key].sets:
            owners.setdefault(st, set()).add(c.action)
    hard = set().union(*(n.sets for n in negs))
    ignore: dict[str, int] = {}
    for st, acts in owners.items():
        if len(acts) == 1 and st not in hard:
            a = next(iter(acts))
            ignore[a] = ignore.get(a, 0) | (1 << universe[st])
    for c in cases:
        if c.status != "recorded" or c.negative:
            continue
        t1 = time.monotonic()
        ev = pos[c.key]
        if not ev.sets:
            c.status, c.reason = "no_events", "no events in the action's focus"
            continue
        c.candidates = syn.candidates([ev], soft, limit=MAX_PROVE,
                                      ignore=ignore.get(c.action, 0))
        if not c.candidates:     # it shares everything with another behaviour: benign only
            c.candidates = syn.candidates([ev], negs, limit=MAX_PROVE)
        c.synth_seconds = time.monotonic() - t1
        if not c.candidates:
            c.status, c.reason = "no_candidate", "no condition separates it from the benign workload"
    t["search"] = time.monotonic() - t0

    t0 = time.monotonic()
    benign_focus = {"benign": Focus()}       # its sidecar focus applies in replay
    from falconet.authoring.focus import load_focus  # noqa: PLC0415
    benign_focus["benign"] = load_focus(benign)
    for _round in range(MAX_PROVE):
        todo = [c for c in cases if c.status == "recorded" and not c.negative
                and c.chosen < len(c.candidates)]
        if not todo:
            break
        for c in todo:
            c.rule = syn.rule_for(c.candidates[c.chosen], c.rule_name)
        text = yaml.safe_dump([c.rule for c in todo], sort_keys=False, width=100)
        on_pos = attribute(batch, context, text, {**{c.key: c.focus for c in todo}, **neg_focus})
        on_neg = attribute(benign, context, text, benign_focus)["benign"]
        for k in neg_focus:
            on_neg.update(on_pos[k])
        for c in todo:
            fired = on_pos[c.key][c.rule_name] > 0
            noisy = on_neg[c.rule_name] > 0
            if fired and not noisy:
                c.status, c.reason = "proven", ""
            else:
                c.reason = ("misses its action" if not fired else
                            f"{on_neg[c.rule_name]} alert(s) on the benign evidence")
                c.chosen += 1
    for c in cases:
        if c.status == "recorded" and not c.negative:
            c.status = "unproven"
    t["prove"] = time.monotonic() - t0
    log(f"proven {sum(c.status == 'proven' for c in cases)}/{len(cases)}")
    if not live:
        return report

    t0 = time.monotonic()
    proven = [c for c in cases if c.status == "proven"]
    rules_path = os.path.join(workdir, "synthesized.yaml")
    fd = os.open(rules_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump([c.rule for c in proven], sort_keys=False, width=100))
    fresh = os.path.join(workdir, "fresh.fcap.gz")
    eng = RecordingEngine(fresh, [*files, rules_path])
    names = {c.rule_name for c in proven}
    windows: dict[str, Any] = {}
    with eng:
        eng.wait_watching()
        with ContextPool() as pool:
            warm_up(pool, {(c.where, c.privileged) for c in proven if c.where != "host"})
            for c in proven:
                windows[c.key] = run_action(pool, c.action, c.where, c.privileged)
        b0 = time.time_ns()
        wp = subprocess.Popen([sys.executable, str(BENIGN_WORKLOAD)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wp.wait(900)
        b1 = time.time_ns()
        time.sleep(LIVE_GRACE_S)       # no signal for "no more alerts": bounded wait
    alerts = [a for a in eng.snapshot() if a.rule in names]
    pids = focus_pids(fresh, Focus(roots=[wp.pid], include_roots=True, start_ns=b0, end_ns=b1))
    for c in proven:
        res = windows[c.key]
        lo, hi = res.start_ns - WINDOW_SLACK_NS, res.end_ns + WINDOW_SLACK_NS
        c.live_fired = any(a.rule == c.rule_name and lo <= a.time_ns <= hi
                           and _same_place(a, res.container_id) for a in alerts)
        c.benign_alerts = sum(1 for a in alerts if a.rule == c.rule_name and b0 <= a.time_ns <= b1
                              and a.output_fields.get("proc.pid") in pids)
        if res.status != "done":
            c.status, c.reason = "fail", f"live action {res.status}: {res.reason}"
        elif c.live_fired and not c.benign_alerts:
            c.status = "ok"
        else:
            c.status = "fail"
            c.reason = ("did not fire live on its action" if not c.live_fired else
                        f"{c.benign_alerts} live alert(s) on the fresh benign run")
    t["live"] = time.monotonic() - t0
    return report


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # noqa: PLC0415
    import json  # noqa: PLC0415

    p = argparse.ArgumentParser(description="synthesis acceptance sweep (root)")
    p.add_argument("--suite", default=str(Path(__file__).resolve().parents[3] / "suites"
                                          / "default.yaml"))
    p.add_argument("--workdir", default="/tmp/falconet-sweep")
    p.add_argument("--benign", help="reuse this benign recording")
    p.add_argument("--only", nargs="*", help="actions (or 'action context') to run")
    p.add_argument("--no-live", action="store_true")
    a = p.parse_args(argv)
    rep = sweep(a.suite, a.workdir, benign=a.benign, only=a.only, live=not a.no_live,
                log=lambda m: print(m, file=sys.stderr, flush=True))
    d = rep.to_dict()
    ok = [c for c in rep.positive if c.status == "ok"]
    d["rules"] = [c.rule for c in ok][:3]
    times = sorted(c.synth_seconds for c in rep.positive if c.candidates)
    d["search_seconds_per_case"] = {"max": round(times[-1], 3) if times else None,
                                    "median": round(times[len(times) // 2], 3) if times else None}
    print(json.dumps(d, indent=2))
    return 0
