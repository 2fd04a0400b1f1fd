"""Per-event cost of ``fd.sip.name`` checks (falconet.state.dns) against plain ``fd.sip`` checks.

Compiles one-rule rulesets through the real loader, with a resolver whose names are already
resolved (fake lookup, no network), and times ``Ruleset.match`` on connect events whose server
address resolves (hit) or not (miss). The name check is an address read plus a frozenset lookup;
the goal is the same order of cost as ``fd.sip = <ip>``. Also the cost of one refresh pass over
100 names (on the resolver thread, not the hot loop). Prints JSON.

    .venv/bin/python bench/bench_dns.py [--events 200000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from falconet.events import Event
from falconet.fields.registry import FieldRegistry
from falconet.rules import load_rules_text
from falconet.state.dns import DomainResolver
from falconet.state.fields import core_field_defs
from falconet.state.tables import FdInfo, ThreadInfo

NAMES = {f"svc{i}.example": [f"10.0.{i // 250}.{i % 250 + 1}"] for i in range(100)}


def ruleset(reg: FieldRegistry, cond: str) -> Any:
    text = (f"- rule: r\n  desc: d\n  condition: '{cond}'\n  output: o\n  priority: warning\n")
    res = load_rules_text(text, reg, append_output=[])
    assert res.ok, [str(e) for e in res.errors]
    return res.ruleset


def events(n: int, dip: str) -> list[Event]:
    t = ThreadInfo(tid=1, pid=1)
    out = []
    for i in range(n):
        e = Event("syscall", "connect", i, 1, 1, {}, 0)
        e.thread = t
        e.fdinfo = FdInfo(3, "4", "x", sip="10.9.0.1", sport=40000, dip=dip, dport=443)
        out.append(e)
    return out


def per_event_ns(rs: Any, evts: list[Event], rounds: int = 5) -> float:
    best = []
    match = rs.match
    for _ in range(rounds):
        for e in evts:
            e.cache.clear()
        t0 = time.perf_counter()
        for e in evts:
            match(e)
        best.append((time.perf_counter() - t0) / len(evts) * 1e9)
    return round(statistics.median(best), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    args = ap.parse_args()
    dns = DomainResolver(resolve=lambda n: NAMES[n], autostart=False)
    reg = FieldRegistry()
    reg.register_all(core_field_defs(dns=dns, hostname="h"))
    name_eq = ruleset(reg, 'evt.type=connect and fd.sip.name = "svc42.example"')
    name_in = ruleset(reg, "evt.type=connect and fd.sip.name in ("
                      + ", ".join(sorted(NAMES)) + ")")
    ip_eq = ruleset(reg, "evt.type=connect and fd.sip = 10.0.0.43")
    t0 = time.perf_counter()
    dns.refresh_due()
    refresh_ms = (time.perf_counter() - t0) * 1e3
    hit, miss = events(args.events, "10.0.0.43"), events(args.events, "10.8.0.1")
    assert name_eq.match(hit[0]) and not name_eq.match(miss[0])
    print(json.dumps({
        "events": args.events,
        "ns_per_event": {
            "fd.sip.name = name (hit)": per_event_ns(name_eq, hit),
            "fd.sip.name = name (miss)": per_event_ns(name_eq, miss),
            "fd.sip.name in (100 names) (miss)": per_event_ns(name_in, miss),
            "fd.sip = ip (hit)": per_event_ns(ip_eq, hit),
            "fd.sip = ip (miss)": per_event_ns(ip_eq, miss),
        },
        "refresh_100_names_ms (resolver thread, fake lookup)": round(refresh_ms, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
