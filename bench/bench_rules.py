"""Benchmark: the upstream stable Falco ruleset over a generated, mostly benign event stream.

Prints JSON: load time of falco_rules.yaml, events/s on one core through ``Ruleset.match`` (events
are fresh objects each time, so per-event field caches start empty as in the real pipeline), the
alert count, and (with ``--profile``) the cProfile top entries.

    .venv/bin/python bench/bench_rules.py [--events 200000] [--profile] [--regex]

Events are built with thread/fd state pre-attached (``falconet.state.tables`` objects). Fields come
from the real registry (core fields + container plugin) when those are installed, else from the
stand-in registry of the unit tests (``tests/rules/stubfields.py``); the JSON says which.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "rules"))

from falconet.events import Event  # noqa: E402
from falconet.fields.registry import FieldRegistry  # noqa: E402
from falconet.rules import load_rules  # noqa: E402
from falconet.state.tables import FdInfo, StateTables, ThreadInfo  # noqa: E402
from falconet.upstream import falco_rules_path  # noqa: E402
from stubfields import stub_registry  # noqa: E402

FALCO_RULES = falco_rules_path()       # $FALCONET_FALCO_RULES (falconet.upstream)


class World:
    """The state the extractors read: thread table and container table."""

    def __init__(self) -> None:
        self.tables = StateTables()
        self.containers: dict[str, object] = {}


def build_registry(world: World, force_stub: bool = False):
    """The engine's real registry (core fields bound to ``world.tables`` + the container
    plugin's fields), or the unit tests' stand-in when those are not installed."""
    if not force_stub:
        try:
            from falconet.fields.core_fields import core_field_defs  # noqa: PLC0415
            from falconet_container.enricher import ContainerEnricher  # noqa: PLC0415
            from falconet_container.fields import field_defs  # noqa: PLC0415

            enricher = ContainerEnricher()
            world.containers = enricher.containers
            reg = FieldRegistry()
            reg.register_all(core_field_defs(world.tables))
            reg.register_all(field_defs(enricher))
            return reg, "real"
        except ImportError:
            pass
    return stub_registry(), "stub"


def make_threads(rng: random.Random, world: World) -> list[ThreadInfo]:
    names = [("bash", "/usr/bin/bash"), ("python3", "/usr/bin/python3.11"),
             ("nginx", "/usr/sbin/nginx"), ("java", "/usr/lib/jvm/bin/java"),
             ("node", "/usr/bin/node"), ("cron", "/usr/sbin/cron"), ("sshd", "/usr/sbin/sshd"),
             ("containerd", "/usr/bin/containerd"), ("postgres", "/usr/lib/postgresql/bin/postgres"),
             ("ls", "/usr/bin/ls"), ("cat", "/usr/bin/cat"), ("grep", "/usr/bin/grep"),
             ("sh", "/usr/bin/dash")]
    threads = []
    init = ThreadInfo(1, 1, comm="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd")
    world.tables.threads[1] = init
    for i in range(200):
        comm, path = rng.choice(names)
        parent_comm, parent_path = rng.choice(names)
        grand = ThreadInfo(7000 + i, 7000 + i, ptid=1, comm="containerd-shim",
                           exe="containerd-shim", exepath="/usr/bin/containerd-shim-runc-v2")
        parent = ThreadInfo(5000 + i, 5000 + i, ptid=grand.pid, comm=parent_comm,
                            exe=parent_comm, exepath=parent_path, args=["-c", "run"], start_ts=1)
        t = ThreadInfo(10000 + i, 10000 + i, ptid=parent.pid, comm=comm, exe=comm, exepath=path,
                       args=rng.choice([["-l"], ["--config", "/etc/app.yaml"], ["/srv/app.py"], []]),
                       uid=rng.choice([0, 1000, 33]), cwd="/srv", tty=0, start_ts=1,
                       loginuid=-1)
        for x in (grand, parent, t):
            world.tables.threads[x.tid] = x
        t.extra["ancestors"] = [parent, grand, init]          # for the stand-in registry
        t.extra["caps"] = "CAP_CHOWN CAP_NET_BIND_SERVICE"
        if i % 2:
            cid = f"{i:064x}"
            t.container_id = cid
            meta = {"id": cid[:12], "name": f"app{i}", "repository": "docker.io/library/nginx",
                    "tag": "1.25", "privileged": False, "start_ts": 1}
            t.extra["container"] = meta
            try:
                from falconet_container.model import ContainerInfo  # noqa: PLC0415
                world.containers[cid] = ContainerInfo(
                    cid, type="docker", name=meta["name"], image="nginx:1.25",
                    image_repository=meta["repository"], image_tag="1.25", privileged=False,
                    start_ts=1)
            except ImportError:
                pass
        threads.append(t)
    return threads


def make_events(n: int, world: World, seed: int = 7) -> list[tuple]:
    """Event recipes (type, thread, fd, args, res): mostly benign activity."""
    rng = random.Random(seed)
    threads = make_threads(rng, world)
    files = ["/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/srv/data/log.txt",
             "/proc/self/status", "/var/log/nginx/access.log", "/etc/hosts", "/tmp/tmpa1b2",
             "/home/user/.cache/x", "/etc/passwd", "/dev/null"]
    mix = (["openat"] * 40 + ["execve"] * 12 + ["connect"] * 8 + ["read"] * 15 + ["close"] * 10
           + ["socket"] * 3 + ["dup2"] * 2 + ["sendto"] * 3 + ["ptrace"] * 1 + ["symlinkat"] * 1
           + ["mmap"] * 5)
    out = []
    for _ in range(n):
        ty = rng.choice(mix)
        t = rng.choice(threads)
        fd, args, res = None, {}, 0
        if ty == "openat":
            path = rng.choice(files)
            fd = FdInfo(rng.randint(3, 64), "f", path, path, flags=0)
            args = {"fd": fd.num, "name": path, "flags": 0o2000000, "mode": 0}   # O_RDONLY|O_CLOEXEC
            res = fd.num
        elif ty in ("connect", "sendto"):
            fd = FdInfo(5, "4", "10.0.0.5:40000->10.0.0.9:443", l4proto="tcp", sip="10.0.0.5",
                        sport=40000, dip=rng.choice(["10.0.0.9", "93.184.216.34"]), dport=443,
                        connected=True)
            args = {"fd": 5, "addr": fd.name}
        elif ty == "execve":
            args = {"filename": t.exepath, "flags": "0"}
        elif ty == "socket":
            args = {"domain": "AF_INET", "type": 1, "proto": 0}
            res = 7
        elif ty == "dup2":
            fd = FdInfo(1, "p", "pipe:[1234]")
            args = {"oldfd": 3, "newfd": 1}
        elif ty == "ptrace":
            args = {"request": "PTRACE_PEEKDATA", "pid": 4}
        elif ty == "symlinkat":
            args = {"target": "/srv/a", "linkpath": "/srv/b"}
        out.append((ty, t, fd, args, res))
    return out


def run(ruleset, recipes) -> tuple[float, int]:
    """Seconds of CPU time this process spent matching ``recipes`` (a per-core figure that other
    load on the machine does not distort much), and the alert count."""
    alerts = 0
    match = ruleset.match
    t0 = time.process_time()
    for i, (ty, t, fd, args, res) in enumerate(recipes, 1):
        e = Event("syscall", ty, 1_700_000_000_000_000_000 + i, t.tid, t.pid, args, res)
        e.thread = t
        e.fdinfo = fd
        e.num = i
        alerts += len(match(e))
    return time.process_time() - t0, alerts


#: (pattern, value) pairs for ``--regex``: typical rule patterns, a match and a miss each
REGEX_CASES = [("/usr/(s)?bin/[^/]+", "/usr/bin/bash"), ("/usr/(s)?bin/[^/]+", "/opt/x/y"),
               ("python[23](\\.[0-9]+)?", "python3.11"), (".*\\.(sh|py)", "/tmp/payload.sh"),
               ("[[:alnum:]_-]+", "kube-proxy")]


def regex_costs(n: int = 200_000) -> list[dict[str, object]]:
    """CPU ns per ``regex`` check: the engine's RE2 matcher (without and with its verdict cache;
    the same value again and again hits the cache) against Python's ``re.fullmatch`` (the
    engine's matcher before RE2), same pattern and value."""
    import re  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    import falconet.rules.regex as rx  # noqa: PLC0415
    out = []
    for pattern, value in REGEX_CASES:
        row: dict[str, object] = {"pattern": pattern, "value": value}
        with warnings.catch_warnings():          # re reads '[[:alnum:]]' as a nested set
            warnings.simplefilter("ignore")
            python_re = re.compile(pattern).fullmatch
        saved, rx.VERDICT_CACHE_SIZE = rx.VERDICT_CACHE_SIZE, 0
        uncached = rx.compile_regex(pattern)
        rx.VERDICT_CACHE_SIZE = saved
        for name, fn in (("re2_ns", uncached), ("re2_repeated_value_ns", rx.compile_regex(pattern)),
                         ("python_re_ns", python_re)):
            t0 = time.process_time()
            for _ in range(n):
                fn(value)
            row[name] = round((time.process_time() - t0) / n * 1e9)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="add the cProfile top entries")
    ap.add_argument("--rules", default=str(FALCO_RULES))
    ap.add_argument("--stub", action="store_true", help="use the unit tests' stand-in fields")
    ap.add_argument("--closures", action="store_true",
                    help="compile conditions to closure trees instead of generated functions")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timed runs (default 3)")
    ap.add_argument("--regex", action="store_true",
                    help="add the CPU cost of one regex check, RE2 vs Python re")
    a = ap.parse_args(argv)
    if a.closures:
        import falconet.rules.loader as loader_mod  # noqa: PLC0415
        loader_mod.USE_CODEGEN = False
    world = World()
    registry, kind = build_registry(world, a.stub)
    t0 = time.perf_counter()
    res = load_rules([a.rules], registry, plugin_versions={"container": "0.6.0"})
    load_s = time.perf_counter() - t0
    if not res.ok:
        print(json.dumps({"error": [str(m) for m in res.errors]}))
        return 1
    recipes = make_events(a.events, world)
    run(res.ruleset, recipes[:5000])                 # warm-up
    secs, alerts = min(run(res.ruleset, recipes) for _ in range(a.repeat))
    types = res.ruleset.event_types("syscall") or set()
    ruled = [r for r in recipes if r[0] in types]       # only events some rule looks at
    secs_ruled = min(run(res.ruleset, ruled)[0] for _ in range(a.repeat))
    out = {"benchmark": "rules", "registry": kind,
           "compiler": "closures" if a.closures else "codegen", "rules": res.counts["rules"],
           "load_seconds": round(load_s, 4), "events": a.events, "cpu_seconds": round(secs, 3),
           "events_per_second": round(a.events / secs), "alerts": alerts,
           "ruled_events": len(ruled), "ruled_events_per_second": round(len(ruled) / secs_ruled),
           "eval_errors": sum(res.ruleset.eval_errors.values())}
    if a.regex:
        out["regex_check_cost"] = regex_costs()
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(res.ruleset, recipes[:50_000])
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        out["profile_top"] = [ln.strip() for ln in s.getvalue().splitlines()
                              if ln.strip() and ln.strip()[0].isdigit()][:12]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
