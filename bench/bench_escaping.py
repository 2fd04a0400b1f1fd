"""Benchmark: the cost of the output encoding policy (escaping + ``output_max_field_len``) per alert.

Prints JSON. For a typical alert (12 string fields, as Falco's stable rules output them) with
clean ASCII values, clean non-ASCII values, hostile values (bytes that are not UTF-8, C0/C1,
bidi and separator characters in every field) and huge values (one 1 MB argument), it reports:

- ``policy_us``: the policy alone on the alert's field values (what the rule formatter adds per
  rendered alert);
- ``json_us`` / ``text_us``: a whole JSON / text serialisation of the alert (policy included);
- ``json_without_policy_us``: the same JSON dump without the policy's walk over the values (what
  serialisation cost before the policy; for the clean cases the difference is its price);
- ``max_field_chars``: the longest field in the JSON output (bounded by the limit).

    .venv/bin/python bench/bench_escaping.py [--repeat 25] [--limit 4096]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert
from falconet.outputs import encoding
from falconet.outputs.encoding import field_text
from falconet.outputs.format import format_json, format_text, iso_time, text_time
from falconet.priorities import Priority

FIELDS = ("proc.name", "proc.exepath", "proc.cmdline", "proc.pname", "proc.aname[2]", "fd.name",
          "user.name", "user.loginuid", "container.id", "container.name",
          "container.image.repository", "evt.type")
CLEAN = {"proc.name": "cat", "proc.exepath": "/usr/bin/cat", "proc.cmdline": "cat /etc/shadow",
         "proc.pname": "bash", "proc.aname[2]": "sshd", "fd.name": "/etc/shadow",
         "user.name": "root", "user.loginuid": "-1", "container.id": "host",
         "container.name": "host", "container.image.repository": "docker.io/library/nginx",
         "evt.type": "openat"}
UNICODE = {k: v + " – ünïcødé 日本" for k, v in CLEAN.items()}
HOSTILE = {k: "\udcff\udcfe" + v + "\x1b[31m\x85\u202e\u2028\x00" + v for k, v in CLEAN.items()}
HUGE = {**CLEAN, "proc.cmdline": "cat " + "A" * 1_000_000}
HUGE_HOSTILE = {**CLEAN, "proc.cmdline": "cat " + "\udcff\u202e" * 500_000}


def alert_of(values: dict[str, str]) -> Alert:
    fields: dict[str, Any] = {k: field_text(v) for k, v in values.items()}
    fields["evt.time"] = 1_764_000_000_000_000_000
    fields["proc.pid"] = 4242
    text = "Sensitive file opened " + " ".join(f"{k}={fields[k]}" for k in FIELDS)
    return Alert("Read sensitive file untrusted", Priority.WARNING, "syscall",
                 ["T1555", "filesystem", "mitre_credential_access"], text, fields,
                 fields["evt.time"], "node-a")


def raw_json(a: Alert) -> str:
    """``format_json`` as it was before the policy: the same dict, values as they are."""
    d = {"hostname": a.hostname, "output_fields": a.output_fields, "priority": a.priority.label,
         "rule": a.rule, "source": a.source, "time": iso_time(a.time_ns),
         "output": f"{text_time(a.time_ns)}: {a.priority.label} {a.output}", "tags": list(a.tags)}
    return json.dumps(d, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))


def per_call_us(fn: Callable[[], Any], repeat: int, budget: float = 0.05) -> float:
    """Best of ``repeat`` short timed runs (about ``budget`` seconds each: on a shared machine the
    best short run is the one nobody else disturbed), in µs per call."""
    n = 1
    while True:                          # calibrate: enough calls for ~budget seconds
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > budget / 10 or n > 1 << 20:
            break
        n *= 2
    n = max(1, int(n * budget / max(dt, 1e-9) / 1))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return round(best * 1e6, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--limit", type=int, default=encoding.DEFAULT_MAX_FIELD_LEN)
    args = ap.parse_args()
    encoding.configure(args.limit)
    out: dict[str, Any] = {"benchmark": "escaping", "max_field_len": args.limit,
                           "fields_per_alert": len(FIELDS), "cases": {}}
    for name, values in (("clean_ascii", CLEAN), ("clean_unicode", UNICODE),
                         ("hostile", HOSTILE), ("huge_1mb_arg", HUGE),
                         ("huge_1mb_hostile_arg", HUGE_HOSTILE)):
        raw = list(values.values())
        a = alert_of(values)
        line = format_json(a)
        out["cases"][name] = {
            "policy_us": per_call_us(lambda raw=raw: [field_text(v) for v in raw], args.repeat),
            "json_us": per_call_us(lambda a=a: format_json(a), args.repeat),
            "text_us": per_call_us(lambda a=a: format_text(a), args.repeat),
            "json_without_policy_us": per_call_us(lambda a=a: raw_json(a), args.repeat),
            "json_bytes": len(line.encode()),
            "max_field_chars": max(len(v) for v in json.loads(line)["output_fields"].values()
                                   if isinstance(v, str)),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
