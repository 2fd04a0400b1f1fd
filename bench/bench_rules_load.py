"""Benchmark: the loader's time on the largest legitimate rules this machine can assemble.

    .venv/bin/python bench/bench_rules_load.py [--copies 3] [--repeat 3]

Loads, in one ``load_rules`` call with the real field registry (the stand-in one when the core
fields are not installed): Falco's stable ruleset (``../shared/falco``), the repository's
``rules/`` and the plugins' rules files, ``--copies`` renamed copies of the stable ruleset (every
list, macro and rule renamed, so they add as much work as Falco's incubating and sandbox files
would; those are not on this machine) and a 20,000-item allowlist used by one rule. Prints JSON:
files, bytes, item counts, best-of-N seconds, errors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "rules"))
sys.path.insert(0, str(REPO / "bench"))

from bench_rules import FALCO_RULES, World, build_registry  # noqa: E402
from falconet.rules import load_rules  # noqa: E402

_ITEM_RE = re.compile(r"^- (list|macro): ([^\s]+)\s*$", re.M)
_RULE_RE = re.compile(r"^- rule: (.+)$", re.M)
_PLUGIN_REQ_RE = re.compile(r"^- required_plugin_versions:\n(?:[ \t#].*\n|\n)*", re.M)


def renamed_copy(text: str, n: int) -> str:
    """The ruleset with every list and macro (and every use of them) and every rule renamed
    (its plugin requirements are the original's: dropped)."""
    text = _PLUGIN_REQ_RE.sub("", text)
    names = sorted({m.group(2) for m in _ITEM_RE.finditer(text)}, key=len, reverse=True)
    rx = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, names)) + r")(?![\w.-])")
    text = rx.sub(lambda m: f"{m.group(1)}_c{n}", text)
    return _RULE_RE.sub(lambda m: f"- rule: {m.group(1).strip()} (copy {n})", text)


def allowlist(n: int) -> str:
    items = ", ".join(f"allowed-image-{i:05d}" for i in range(n))
    return (f"- list: big_allowlist\n  items: [{items}]\n"
            "- rule: Unlisted program started\n  desc: a program outside a large allowlist\n"
            "  condition: evt.type = execve and not proc.name in (big_allowlist)\n"
            "  output: unlisted %proc.name\n  priority: NOTICE\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    stable = FALCO_RULES.read_text()
    files = [str(FALCO_RULES), *sorted(str(p) for p in (REPO / "rules").glob("*.yaml")),
             *sorted(str(p) for p in REPO.glob("plugins/*/*/rules/*.yaml"))]
    with tempfile.TemporaryDirectory() as d:
        for i in range(1, a.copies + 1):
            p = Path(d) / f"stable_copy{i}.yaml"
            p.write_text(renamed_copy(stable, i))
            files.append(str(p))
        p = Path(d) / "allowlist.yaml"
        p.write_text(allowlist(20_000))
        files.append(str(p))
        registry, kind = build_registry(World())
        times, res = [], None
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            res = load_rules(files, registry, plugin_versions={"container": "0.6.0",
                                                                "example": "0.1.0"})
            times.append(time.perf_counter() - t0)
        assert res is not None
        sizes = sum(Path(f).stat().st_size for f in files)
    print(json.dumps({"benchmark": "rules_load", "files": [Path(f).name for f in files],
                      "bytes": sizes, "registry": kind, "counts": res.counts,
                      "compiled_rules": len(res.compiled), "errors": [str(e) for e in
                                                                     res.errors][:5],
                      "seconds_best": round(min(times), 3),
                      "seconds_all": [round(t, 3) for t in times],
                      "not_available": "Falco incubating/sandbox rules are not on this machine; "
                                       f"{a.copies} renamed copies of stable stand in for them"},
                     indent=2))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
