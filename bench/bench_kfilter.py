"""Kernel-filter benchmark (issue 18, the rule-derived side): what the derived filter would keep
out of userspace, and what it costs to derive and to decide.

- ``derive_ms``: ``derive()`` on Falco's stable rules (``$FALCONET_FALCO_RULES``) and the
  default rules (with *Setuid or Setgid Bit Set* disabled: see docs/kernel-filter.md);
- ``decide_ns``: one ``open_passes`` call in Python (the kernel runs the same decision in BPF;
  this is the replay emulation's cost);
- on the file-heavy capture of the soundness replay (``tests/core/kfilter_capgen.py``,
  ``--rounds``): events, the fraction filtered, and the CPU seconds of ``replay`` with the
  stable rules without and with ``--kernel-filter`` (in process, as ``falconet replay`` runs).

Prints one JSON object. Usage: ``python bench/bench_kfilter.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))
sys.path.insert(0, str(ROOT / "tests" / "core"))

from falconet.app import App  # noqa: E402
from falconet.config import load_config  # noqa: E402
from falconet.kfilter import open_passes  # noqa: E402
from falconet.rules.kfilter import derive  # noqa: E402
from falconet.upstream import falco_rules_path  # noqa: E402
from kfilter_capgen import write_capture  # noqa: E402

BASE = ["plugins.learning.enabled=false", "plugins.otel.enabled=false",
        "outputs.stdout.enabled=false"]


def engine(rules: list[str]) -> App:
    app = App(load_config(None, BASE), source_name="replay")
    app.load_plugins()
    app.load_ruleset(rules)
    return app


def replay_cpu(rules: list[str], cap: str, kernel_filter: bool) -> tuple[float, int, int]:
    app = engine(rules)
    app.build_pipeline()
    opts = {"path": cap, "progress": False,
            "kernel_filter": app.kernel_filter_plan(force=True) if kernel_filter else None}
    c0 = time.process_time()
    app.run("replay", opts)
    cpu = time.process_time() - c0
    return cpu, app.pipeline.events if app.pipeline else 0, sum(app.metrics.kernel_filtered.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    stable = falco_rules_path()
    out: dict = {"benchmark": "kfilter"}
    with tempfile.TemporaryDirectory() as d:
        off = os.path.join(d, "off.yaml")
        Path(off).write_text("- rule: Setuid or Setgid Bit Set\n  enabled: false\n"
                             "  override:\n    enabled: replace\n")
        sets = {"default": [str(ROOT / "rules"), off]}
        if stable.exists():
            sets["stable"] = [str(stable)]
        else:
            out["stable_skipped"] = f"{stable} is missing"
        for name, rules in sets.items():
            app = engine(rules)
            t0 = time.perf_counter()
            for _ in range(20):
                plan = derive(app.ruleset)
            out[f"derive_ms_{name}"] = round((time.perf_counter() - t0) / 20 * 1000, 2)
            out[f"filtered_types_{name}"] = sorted(plan.types)
        if "stable" in sets:
            tf = derive(engine(sets["stable"]).ruleset).types["openat"]
            paths = ["/usr/lib/python3.12/json/decoder.py", "/etc/shadow", "lib/x.so",
                     "/usr/share/zoneinfo/UTC"]
            n = 200_000
            t0 = time.perf_counter()
            for i in range(n):
                open_passes(tf, paths[i & 3], 0o2000000, 3, False)
            out["decide_ns"] = round((time.perf_counter() - t0) / n * 1e9)
            cap = write_capture(os.path.join(d, "kf.fcap"), rounds=a.rounds)
            cpu_plain, ev_plain, _ = replay_cpu(sets["stable"], cap, False)
            cpu_kf, ev_kf, n_f = replay_cpu(sets["stable"], cap, True)
            out.update({"capture_events": ev_plain, "events_after_filter": ev_kf,
                        "filtered": n_f, "filtered_fraction": round(n_f / max(ev_plain, 1), 3),
                        "replay_cpu_s_stable": round(cpu_plain, 3),
                        "replay_cpu_s_stable_kernel_filter": round(cpu_kf, 3)})
    out.update({"python": platform.python_version(), "cpu_count": os.cpu_count(),
                "load_average_1m": os.getloadavg()[0]})
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
