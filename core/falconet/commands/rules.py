"""``falconet rules``: validate and list rules files (like ``falco -V`` and ``falco -L``).

Both build the field registry exactly as the engine does (core fields plus every loaded plugin's
``falconet_fields``) and check ``required_plugin_versions`` against the loaded plugins.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from falconet.app import App
from falconet.commands.common import add_config_arguments, config_from_args, guarded, quiet_plugin_log
from falconet.priorities import Priority

HELP = "validate, list, prove, synthesize or generate rules"
DESCRIPTION = """Validate Falco-compatible rules files, or list the rules they define.

examples:
  falconet rules validate ../shared/falco/falco_rules.yaml
  falconet rules validate rules/ my_rules.yaml        # later files override earlier ones
  falconet rules list --json
  falconet rules list -r my_rules.yaml
  falconet rules prove my_rule.yaml --positive attack.fcap --negative normal.fcap
  falconet rules synthesize --simulate read_shadow --negative benign.fcap.gz
  falconet rules generate --prompt "shell spawned by redis" --positive redis.fcap

prove, synthesize and generate: see docs/authoring.md.

validate prints every error and warning as file:line:col, then "N rules, M macros, K lists";
it exits 0 only when there is no error (warnings do not fail).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="rules_command", metavar="ACTION")
    v = sub.add_parser("validate", help="check rules files, print errors and warnings",
                       description="Check rules files like `falco -V`: errors and warnings with "
                       "their location; exit status 0 only without errors.")
    add_config_arguments(v)
    v.add_argument("paths", nargs="+", metavar="FILE|DIR", help="rules files or directories, "
                   "loaded in order")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    ls = sub.add_parser("list", help="list rules: name, priority, source, tags, enabled, "
                        "event types")
    add_config_arguments(ls)
    ls.add_argument("paths", nargs="*", metavar="FILE|DIR",
                    help="rules files (default: the configured rules files)")
    ls.add_argument("-r", "--rules", action="append", default=[], metavar="FILE",
                    help="rules file or directory (repeatable)")
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.add_argument("--kernel-filter", action="store_true",
                    help="print only the kernel filter derived from the rules (with --json: "
                         "a JSON object); see docs/kernel-filter.md")
    from falconet.authoring.cli import add_parsers  # noqa: PLC0415 - prove, synthesize, generate
    add_parsers(sub)
    p.set_defaults(_rules_parser=p)
    v.set_defaults(_parser=v)       # cli.main reports unknown options with this usage line
    ls.set_defaults(_parser=ls)


def _engine(args: argparse.Namespace) -> App:
    quiet_plugin_log()
    app = App(config_from_args(args))
    app.load_plugins()
    return app


def _load(app: App, files: list[str]) -> Any:
    from falconet.rules import load_rules  # noqa: PLC0415 - keep `falconet --help` fast

    cfg = app.config
    return load_rules(files, app.ctx.fields, plugin_versions=app.plugin_versions,
                      sources=app.event_sources, min_priority=Priority.DEBUG,
                      rule_matching=cfg["rule_matching"], hostname=app.ctx.hostname,
                      append_output=cfg["append_output"],   # the same as `run` loads
                      max_file_bytes=cfg["rules_max_file_size"])


def _validate(args: argparse.Namespace) -> int:
    from falconet.rules import rules_files_in  # noqa: PLC0415

    files = rules_files_in(args.paths)
    if not files:        # only empty directories: "OK" would claim rules that are not there
        print(f"falconet: error: no rules files (*.yaml, *.yml) in {', '.join(args.paths)}",
              file=sys.stderr)
        return 1
    app = _engine(args)
    res = _load(app, files)
    summary = (f"{res.counts.get('rules', 0)} rules, {res.counts.get('macros', 0)} macros, "
               f"{res.counts.get('lists', 0)} lists")
    if args.json:
        print(json.dumps({"files": files, "ok": res.ok, "counts": res.counts,
                          "errors": [m.to_dict() for m in res.errors],
                          "warnings": [m.to_dict() for m in res.warnings]}, indent=2))
        return 0 if res.ok else 1
    for m in res.errors:
        print(m)
    if not args.quiet:
        for m in res.warnings:
            print(m)
    print(summary)
    if res.ok:
        print(f"OK: {', '.join(files)} ({len(res.warnings)} warnings)")
        return 0
    print(f"FAILED: {len(res.errors)} errors, {len(res.warnings)} warnings", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    app = _engine(args)
    files = app.rules_files((args.paths or []) + (args.rules or []) or None)
    if not files:
        print("falconet: error: no rules files (pass FILE or -r FILE)", file=sys.stderr)
        return 1
    res = _load(app, files)
    if not res.ok:
        for m in res.errors:
            print(m, file=sys.stderr)
        return 1
    plan = _plan(app, res)
    if args.kernel_filter:
        if args.json:
            print(json.dumps(plan.to_dict(), indent=2))
        else:
            print("\n".join(plan.describe()))
        return 0
    rows = [r.to_dict() for r in res.rules]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("RULE", "PRIORITY", "SOURCE", "ENABLED", "EVENT TYPES", "TAGS")
    table = [(r["name"], r["priority"], r["source"], "yes" if r["enabled"] else "no",
              ",".join(r["event_types"]) if r["event_types"] is not None else "(all)",
              ",".join(r["tags"])) for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h)
              for i, h in enumerate(header)]
    widths[-1] = 0
    for row in (header, *table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print()
    print("KERNEL FILTER (what the eBPF collector drops before userspace; docs/kernel-filter.md)")
    print("\n".join(plan.describe()))
    return 0


def _plan(app: App, res: Any) -> Any:
    """The kernel filter ``run`` would apply: from the rules at or above the configured
    priority (this listing loads every rule), with the plugins' unfiltered types."""
    from types import SimpleNamespace  # noqa: PLC0415

    from falconet.app.kernel_filter import unfiltered_event_types  # noqa: PLC0415
    from falconet.rules.kfilter import derive  # noqa: PLC0415

    min_prio = Priority.parse(app.config["priority"])
    rules = [r for r in res.ruleset.rules if r.priority <= min_prio]
    return derive(SimpleNamespace(rules=rules), unfiltered_event_types(app))


def main(args: argparse.Namespace) -> int:
    cmd = getattr(args, "rules_command", None)
    if cmd is None:
        args._rules_parser.print_help()
        return 2
    if cmd in ("prove", "synthesize", "generate"):
        from falconet.authoring import cli  # noqa: PLC0415
        return getattr(cli, f"{cmd}_main")(args)
    return guarded(lambda: _validate(args) if cmd == "validate" else _list(args))
