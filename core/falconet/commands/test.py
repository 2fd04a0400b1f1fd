"""``falconet test SUITE``: run a detection suite against a live engine."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from falconet.simulate.live import LiveEngine, falconet_argv
from falconet.simulate.runner import CaseResult, host_canary, run_suite
from falconet.simulate.suite import SuiteError, load_suite

HELP = "run a detection suite (simulated attacks) against a live engine"
DESCRIPTION = """Start the engine live (`falconet run --json` with the suite's or the given rules),
perform each case's action (falconet simulate), and check that the expected alert arrives within
the timeout from the right container, with the right priority and fields; "expect: nothing" cases
must raise no alert. Reports pass/fail per case with the matching alert and the detection latency
(event time to alert received). Needs root (eBPF).

examples:
  falconet test suites/default.yaml
  falconet test suites/falco-stable.yaml --rules ../shared/falco/falco_rules.yaml
  falconet test suites/default.yaml --case reverse_shell --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", metavar="SUITE", help="suite YAML file")
    p.add_argument("-r", "--rules", action="append", metavar="FILE",
                   help="rules file or directory for the engine (repeatable; default: the "
                        "suite's 'rules', else the default rules)")
    p.add_argument("--case", action="append", metavar="NAME",
                   help="run only this case (name or action; repeatable)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="wait this long for each expected alert (default: the suite's, 5)")
    p.add_argument("--ready-timeout", type=float, default=90.0, metavar="SECONDS",
                   help="wait this long for the engine to start (default 90)")
    p.add_argument("--strict", action="store_true", default=None,
                   help="skipped cases fail the run (default when CI=true)")
    p.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for `falconet run` (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--validate", action="store_true",
                   help="only validate the suite file (no engine, no root needed)")


def _rules(args: argparse.Namespace, suite_rules: list[str], suite_path: str) -> list[str]:
    if args.rules:
        return list(args.rules)
    base = Path(suite_path).resolve().parent
    return [str((base / r).resolve()) if not os.path.isabs(r) else r for r in suite_rules]


def _rule_names(rules: list[str], extra_args: list[str]) -> tuple[set[str] | None, str]:
    """The rule names the engine will load (``falconet rules list --json`` with the same rules
    and config), or ``(None, why)`` when the rules do not load: found before the engine starts
    instead of as a timeout per case."""
    conf: list[str] = []          # the engine arguments that change which rules load
    it = iter(extra_args)
    for a in it:
        if a in ("-c", "--config", "-o"):
            conf += [a, next(it, "")]
        elif a.startswith(("--config=", "-o")):
            conf.append(a)
    argv = [*falconet_argv(), "rules", "list", "--json", *conf]
    for r in rules:
        argv += ["-r", r]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=120, check=False)
    if p.returncode != 0:
        return None, (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}")
    return {r["name"] for r in json.loads(p.stdout)}, ""


def _latency_text(lat: dict) -> str:
    if not lat["n"]:
        return "detection latency n/a (no alert received)"
    return f"detection latency p50={lat['p50']}ms p99={lat['p99']}ms max={lat['max']}ms " \
           f"(n={lat['n']})"


def main(args: argparse.Namespace) -> int:
    try:
        suite = load_suite(args.suite)
    except SuiteError as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:
        print(f"falconet test: error: cannot read {args.suite}: {e.strerror}", file=sys.stderr)
        return 2
    if args.validate:
        print(f"{suite.path}: {len(suite.cases)} cases OK")
        return 0
    if args.case:
        unmatched = [n for n in args.case if not suite.select([n])]
        if unmatched:
            print(f"falconet test: error: --case {', '.join(repr(n) for n in unmatched)}: no "
                  f"case of {suite.path} has this name or action", file=sys.stderr)
            return 2
    strict = args.strict if args.strict is not None else \
        os.environ.get("CI", "").lower() in ("1", "true", "yes")
    rules = _rules(args, suite.rules, suite.path)
    missing = [r for r in rules if not os.path.exists(r)]
    if missing:
        print(f"falconet test: error: rules file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    names, why = _rule_names(rules, args.engine_arg)
    if names is None:
        print(f"falconet test: error: the rules do not load:\n{why}", file=sys.stderr)
        return 2
    unknown = [c for c in suite.select(args.case)
               if c.expect.rule is not None and c.expect.rule not in names]
    if unknown:
        for c in unknown:
            print(f"{suite.path}:{c.line}: error: case '{c.name}' expects rule "
                  f"'{c.expect.rule}', which the loaded rules do not define", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("falconet test: error: needs root (the engine uses eBPF)", file=sys.stderr)
        return 2

    def show(r: CaseResult) -> None:
        if args.json:
            return
        lat = f" latency={r.latency_ms:.1f}ms" if r.latency_ms is not None else ""
        cid = f" container={r.container_id[:12]}" if r.container_id else ""
        line = f"{r.status.upper():<4} {r.case.name} [{r.context}]{cid}{lat}"
        if r.reason:
            line += f"\n       {r.reason}"
        if r.alert is not None and r.status == "pass":
            line += f"\n       {r.alert.priority.label} {r.alert.rule}: {r.alert.output[:160]}"
        print(line, flush=True)

    engine = LiveEngine(rules, extra_args=args.engine_arg, hosts=suite.engine_hosts)
    try:
        try:
            engine.start()
        except (OSError, RuntimeError) as e:      # no falconet or `unshare` (engine_hosts)
            print(f"falconet test: error: cannot start the engine: {e}", file=sys.stderr)
            return 1
        try:
            engine.wait_ready(args.ready_timeout, canary=host_canary)
        except RuntimeError as e:
            print(f"falconet test: error: {e}\n(engine log: {engine.log_path})", file=sys.stderr)
            return 1
        if not args.json:
            print(f"engine ready ({engine.ready_reason}); suite {suite.name}: "
                  f"{len(suite.cases)} cases", flush=True)
        report = run_suite(suite, engine, timeout=args.timeout, only=args.case, on_result=show)
    finally:
        engine.stop()
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"\n{report.count('pass')} passed, {report.count('fail')} failed, "
              f"{report.count('skip')} skipped, {report.count('n/a')} not applicable; "
              + _latency_text(report.latency_summary()))
    if not report.ok:
        return 1
    if strict and report.count("skip"):
        return 3
    return 0
