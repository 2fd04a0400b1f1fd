"""Which partition key keeps fd inheritance and ancestry right (issue 18, item 3): real captures
of the workloads where the key matters, replayed with 1 worker and with 2 under each key of
``collector.partition`` (lineage, tgid, cgroup).

The captures (tests/workers/real_captures.py) are recorded here on the real kernel with
``falconet record``: a shell pipeline, a prefork server sharing a listening socket, a
multi-process docker container, a reverse shell (dup2 of a socket onto stdio, then exec), each
cut out of the machine-wide capture by its process trees, and all four together.

Per key and workload:

- ``alerts``: Falco's stable rules (else the default rules): the 2-worker alerts against the
  1-worker ones (uuid removed): ``identical`` (same alerts, same order) and ``mismatches`` (the
  alerts one run has and the other lacks, as multisets);
- ``fields``: a probe rule that matches every event and outputs its ``fd.*`` and ``proc.p*`` /
  ``proc.a*`` (ancestry) fields, so every event's values are compared: the events whose fd
  fields differ (``fd_mismatches``), whose ancestry fields differ (``ancestry_mismatches``);
- ``balance``: the share of the events the busier worker owned;
- ``tgid-no-handoff``: ``tgid`` with the fork handoff off (a fork child's worker keeps its stale
  copy of the parent's fds), to show what the handoff repairs.

``throughput`` replays the combined capture with the rules (best of ``--repeat``, 1 and 2
workers alternating): events/s of the event phase and the ratio, with the load average.

Prints one JSON object. Usage: ``python bench/bench_partition.py [--scale N] [--repeat R]
[--keep DIR] [--captures DIR] [--no-container]``; ``--captures`` reuses the captures a run kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))
sys.path.insert(0, str(ROOT / "tests" / "workers"))

from falconet.upstream import falco_rules_path  # noqa: E402
from falconet.workers import KEYS  # noqa: E402
from real_captures import WORKLOADS, cut, docker_ok, record  # noqa: E402
from workers_helpers import DEFAULT_RULES, replay  # noqa: E402

FD_FIELDS = ("fd.num", "fd.name", "fd.type", "fd.typechar", "fd.directory", "fd.sip",
             "fd.sport", "fd.cip", "fd.cport", "fd.l4proto", "fd.connected", "fd.sockfamily",
             "fd.types[0]", "fd.types[1]", "fd.types[2]")
ANCESTRY_FIELDS = ("proc.ppid", "proc.pname", "proc.pcmdline", "proc.pexepath", "proc.apid[2]",
                   "proc.aname[2]", "proc.aname[3]", "proc.acmdline[2]", "proc.cwd")


def probe_rules(path: str) -> str:
    """A rules file whose one rule matches every event and prints the compared fields."""
    fields = " ".join(f"{f}=%{f}" for f in ("evt.num", "evt.type", "proc.pid",
                                             *FD_FIELDS, *ANCESTRY_FIELDS))
    with open(path, "w", encoding="utf-8") as f:
        f.write("- rule: partition probe\n"
                "  desc: every event's fd and ancestry fields (bench_partition)\n"
                "  condition: evt.num >= 0\n"
                f"  output: \"{fields}\"\n"
                "  priority: DEBUG\n")
    return path


def rules_file() -> tuple[str, str]:
    stable = falco_rules_path()
    return (str(stable), "falco stable") if stable.is_file() else (DEFAULT_RULES,
                                                                   "falconet default")


def compare_alerts(one: list[dict[str, Any]], two: list[dict[str, Any]]) -> dict[str, Any]:
    a = Counter(json.dumps(x, sort_keys=True) for x in one)
    b = Counter(json.dumps(x, sort_keys=True) for x in two)
    return {"identical": one == two, "alerts_1": len(one), "alerts_2": len(two),
            "mismatches": sum(((a - b) + (b - a)).values()),
            "rules_lost": sorted({json.loads(k)["rule"] for k in (a - b)}),
            "rules_extra": sorted({json.loads(k)["rule"] for k in (b - a)})}


def _by_event(alerts: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {a["output_fields"]["evt.num"]: a["output_fields"] for a in alerts}


def compare_fields(one: list[dict[str, Any]], two: list[dict[str, Any]]) -> dict[str, Any]:
    e1, e2 = _by_event(one), _by_event(two)
    fd = anc = 0
    examples: list[dict[str, Any]] = []
    for num, f1 in e1.items():
        f2 = e2.get(num, {})
        dfd = [k for k in FD_FIELDS if f1.get(k) != f2.get(k)]
        danc = [k for k in ANCESTRY_FIELDS if f1.get(k) != f2.get(k)]
        fd += bool(dfd)
        anc += bool(danc)
        if (dfd or danc) and len(examples) < 3:
            examples.append({"evt.num": num, "evt.type": f1.get("evt.type"),
                             "fields": {k: [f1.get(k), f2.get(k)] for k in dfd + danc}})
    return {"events": len(e1), "events_2": len(e2), "fd_mismatches": fd,
            "ancestry_mismatches": anc, "examples": examples}


#: the keys compared, and ``tgid`` without its fork handoff (what the handoff repairs)
VARIANTS = (*KEYS, "tgid-no-handoff")


#: the probe raises an alert per event: a queue that holds them all, and no learning (its
#: taint sink would queue every one)
PROBE_CONFIG = ["outputs_queue.capacity=10000000", "plugins.learning.enabled=false"]


def run(capture: str, rules: str, workers: int, out: str, key: str,
        config: list[str] | None = None) -> tuple[Any, list[Any]]:
    handoff = not key.endswith("-no-handoff")
    rc, app, alerts = replay(capture, rules, workers, out, partition_key=key.split("-")[0],
                             fork_handoff=handoff, config=config or [])
    if rc != 0 or app.losses():
        raise SystemExit(f"bench_partition: the replay of {capture} ({workers} workers, {key}) "
                         f"failed: {app.summary()}")
    return app, alerts


def correctness(captures: dict[str, str], rules: str, probe: str, out: str) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for name, path in captures.items():
        _, base = run(path, rules, 1, out, "lineage")
        _, pbase = run(path, probe, 1, out, "lineage", PROBE_CONFIG)
        res[name] = {}
        for key in VARIANTS:
            app, two = run(path, rules, 2, out, key)
            _, ptwo = run(path, probe, 2, out, key, PROBE_CONFIG)
            routed = app.worker_pool.routed
            res[name][key] = {"alerts": compare_alerts(base, two),
                              "fields": compare_fields(pbase, ptwo),
                              "handoffs": app.worker_pool.handoffs,
                              "balance": round(max(routed) / max(1, sum(routed)), 3)}
    return res


def throughput(capture: str, rules: str, out: str, repeat: int) -> dict[str, Any]:
    best: dict[str, float] = {}
    events = 0
    load0 = os.getloadavg()
    for _ in range(repeat):
        for label, workers, key in [("1", 1, "lineage")] + [(k, 2, k) for k in KEYS]:
            app, _ = run(capture, rules, workers, out, key)
            events = app.pipeline.events
            best[label] = min(best.get(label, float("inf")), app.events_seconds)
    load1 = os.getloadavg()
    one = events / best["1"]
    return {"events": events, "load_average_before": [round(x, 2) for x in load0],
            "load_average_after": [round(x, 2) for x in load1],
            "events_per_s_1_worker": round(one),
            "by_key": {k: {"events_per_s_2_workers": round(events / best[k]),
                           "ratio": round(events / best[k] / one, 3)} for k in KEYS}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=150, help="workload iterations")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--captures", metavar="DIR", help="reuse the captures of a --keep run")
    ap.add_argument("--keep", metavar="DIR", help="keep the captures here")
    ap.add_argument("--no-container", action="store_true")
    a = ap.parse_args()
    rules, rules_name = rules_file()
    with tempfile.TemporaryDirectory() as d:
        os.environ["FALCONET_STATE_DIR"] = os.path.join(d, "state")
        cdir = a.captures or a.keep or d
        os.makedirs(cdir, exist_ok=True)
        marks_path = os.path.join(cdir, "marks.json")
        t0 = time.perf_counter()
        if a.captures:
            with open(marks_path, encoding="utf-8") as f:
                marks = json.load(f)
        else:
            marks = record(os.path.join(cdir, "machine.fcap"), scale=a.scale,
                           container=not a.no_container and docker_ok())
            with open(marks_path, "w", encoding="utf-8") as f:
                json.dump(marks, f)
        record_s = time.perf_counter() - t0
        captures = {}
        sizes = {}
        for name in [w for w in WORKLOADS if w in marks] + ["all"]:
            path = os.path.join(cdir, f"{name}.fcap")
            sizes[name] = cut(os.path.join(cdir, "machine.fcap"), path,
                              list(marks.values()) if name == "all" else [marks[name]])
            captures[name] = path
        out = os.path.join(d, "out")
        os.makedirs(out)
        probe = probe_rules(os.path.join(d, "probe.yaml"))
        result = {
            "bench": "partition",
            "rules": rules_name,
            "cpus": len(os.sched_getaffinity(0)),
            "record_s": round(record_s, 1),
            "capture_events": sizes,
            "correctness": correctness({k: v for k, v in captures.items() if k != "all"},
                                       rules, probe, out),
            "throughput_all": throughput(captures["all"], rules, out, a.repeat),
        }
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
