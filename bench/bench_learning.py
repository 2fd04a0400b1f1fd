"""Learning-mode benchmark (plugin falconet-learning). Prints one JSON object:

- ``lookup_ns``: CPU ns per event of the hot-path work, warm (profiles ready, path classes
  memoised), on fresh events as in the pipeline: the parser alone, and per event type the parser
  plus every ``profile.*`` field the default learning rules read for that type, through the real
  field registry (per-event cache included), minus the cost of building the event;
- ``memory_per_profile_bytes`` (and per entry) for profiles of ``--entries`` keys;
- ``sqlite_rows_per_s``: the writer's batch inserts into the real WAL database;
- ``stable_rules``: events/s of Falco's stable rules over bench_rules.py's event stream without
  the plugin, and with it loaded (its parser on every event and its rules loaded too).

    .venv/bin/python bench/bench_learning.py [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "rules"))

from bench_rules import FALCO_RULES, World, build_registry, make_events  # noqa: E402
from falconet.events import Event  # noqa: E402
from falconet.rules import load_rules  # noqa: E402
from falconet_learning.fields import field_defs  # noqa: E402
from falconet_learning.learner import Learner, LearningConfig  # noqa: E402
from falconet_learning.plugin import RULES_FILE  # noqa: E402
from falconet_learning.profile import KINDS, READY, Profile, profile_id  # noqa: E402
from falconet_learning.store import ProfileStore  # noqa: E402

#: the profile.* fields the default learning rules read, per event type
RULE_FIELDS = {"execve": ["profile.kind", "profile.proc.new", "profile.spawn.new"],
               "connect": ["profile.kind", "profile.net.new"],
               "openat": ["profile.kind", "profile.file.new"]}


def learned_world(n: int, state_dir: str) -> tuple[World, object, Learner, list[tuple]]:
    world = World()
    registry, _kind = build_registry(world)
    learner = Learner(LearningConfig(state_dir=state_dir, learning_seconds=1e9,
                                     queue_size=10**7))
    learner._state = world.tables
    registry.register_all(field_defs(learner))
    learner.bind_fields(registry)
    recipes = make_events(n, world)
    for i, r in enumerate(recipes):                      # the learning window: every key seen
        learner.parse(_event(r, i))
    learner.flush(final=True)
    for p in learner.profiles.values():
        p.state = READY
    return world, registry, learner, recipes


def _event(r: tuple, i: int) -> Event:
    ty, t, fd, args, res = r
    e = Event("syscall", ty, 1_700_000_000_000_000_000 + i, t.tid, t.pid, args, res)
    e.thread, e.fdinfo, e.num = t, fd, i
    return e


def cpu_ns(fn, recipes: list[tuple], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for i, r in enumerate(recipes):
            fn(_event(r, i))
        best = min(best, time.process_time() - t0)
    return best / len(recipes) * 1e9


def lookup_costs(registry, learner: Learner, recipes: list[tuple], repeat: int) -> dict:
    base = cpu_ns(lambda e: None, recipes, repeat)
    out = {"parser_all_events_ns": round(cpu_ns(learner.parse, recipes, repeat) - base, 1)}
    for ty, names in RULE_FIELDS.items():
        sub = [r for r in recipes if r[0] == ty]
        fns = [registry.resolve(n).extract for n in names]
        parse = learner.parse

        def body(e, _fns=fns, _p=parse) -> None:
            _p(e)
            for f in _fns:
                f(e)
        base_t = cpu_ns(lambda e: None, sub, repeat)
        out[f"{ty}_parser_plus_rule_fields_ns"] = round(cpu_ns(body, sub, repeat) - base_t, 1)
    return out


def memory(profiles: int, entries: int) -> dict:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep = []
    for i in range(profiles):
        p = Profile(profile_id(f"image:bench/app{i}:1.0"), f"image:bench/app{i}:1.0")
        for j in range(entries):
            p.add(KINDS[j % len(KINDS)], f"/srv/app{i}/data/file-{j:06d}.json")
        keep.append(p)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return {"profiles": profiles, "entries_per_profile": entries,
            "memory_per_profile_bytes": round(total / profiles),
            "memory_per_entry_bytes": round(total / profiles / entries, 1)}


def sqlite_rate(batches: int = 50, rows: int = 1000) -> dict:
    with tempfile.TemporaryDirectory() as d:
        st = ProfileStore(d)
        p = Profile("benchprofile", "image:bench:1")
        row = {"id": p.id, "identity": p.identity, "state": "learning", "created_ns": 1,
               "ready_ns": 0, "events": 0, "full": 0}
        t0 = time.perf_counter()
        for b in range(batches):
            st.write_batch([row], [(p.id, "file_r", f"/srv/{b}/{i}", i) for i in range(rows)])
        secs = time.perf_counter() - t0
        st.close()
    return {"sqlite_rows_per_s": round(batches * rows / secs),
            "sqlite_batch_ms": round(secs / batches * 1e3, 2), "rows_per_batch": rows}


def stable_rules(n: int, repeat: int) -> dict:
    out = {}
    for loaded in (False, True):
        with tempfile.TemporaryDirectory() as d:
            world = World()
            registry, _ = build_registry(world)
            files = [str(FALCO_RULES)]
            parse = None
            learner = None
            if loaded:
                learner = Learner(LearningConfig(state_dir=d, learning_seconds=1e9,
                                                 queue_size=10**7))
                learner._state = world.tables
                registry.register_all(field_defs(learner))
                learner.bind_fields(registry)
                files.append(str(RULES_FILE))
                parse = learner.parse
            res = load_rules(files, registry, plugin_versions={"container": "0.6.0"})
            assert res.ok, [str(m) for m in res.errors]
            recipes = make_events(n, world)
            if learner is not None:
                for i, r in enumerate(recipes):
                    learner.parse(_event(r, i))
                learner.flush(final=True)
                for p in learner.profiles.values():
                    p.state = READY
            match = res.ruleset.match
            best = float("inf")
            for _ in range(repeat):
                t0 = time.process_time()
                for i, r in enumerate(recipes):
                    e = _event(r, i)
                    if parse is not None:
                        parse(e)
                    match(e)
                best = min(best, time.process_time() - t0)
            out["with_plugin_events_per_s" if loaded else "without_plugin_events_per_s"] = \
                round(n / best)
    out["slowdown_pct"] = round((out["without_plugin_events_per_s"] /
                                 out["with_plugin_events_per_s"] - 1) * 100, 1)
    return out


def python_call_ns(n: int = 1_000_000) -> float:
    def f(_x: object) -> None:
        return None
    t0 = time.process_time()
    for i in range(n):
        f(i)
    loop = time.process_time() - t0
    t0 = time.process_time()
    for _i in range(n):
        pass
    return (loop - (time.process_time() - t0)) / n * 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--entries", type=int, default=300, help="entries per profile (memory)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        _world, registry, learner, recipes = learned_world(a.events, d)
        report = {"events": a.events, "workload_profiles": len(learner.profiles),
                  "lookup_ns": lookup_costs(registry, learner, recipes, a.repeat)}
    report.update(memory(1000, a.entries))
    report.update(sqlite_rate())
    report["stable_rules"] = stable_rules(a.events, a.repeat)
    # figures scale with the machine's load (one Python process on shared vCPUs): say it, with
    # the cost of one trivial Python call measured now (~50 ns on an idle core) to compare with
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    report["python_call_ns_now"] = round(python_call_ns(), 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
