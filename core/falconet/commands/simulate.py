"""``falconet simulate``: perform real attack behaviours, safely, to check detection."""

from __future__ import annotations

import argparse
import json
import sys

from falconet.simulate.actions import ACTIONS
from falconet.simulate.contexts import CONTEXT_KINDS
from falconet.simulate.runner import ActionResult, run_actions

HELP = "perform real attack behaviours (safely) to test detection"
DESCRIPTION = """Perform real attack behaviours on this host or inside real containers (runc,
docker), like Falco's event-generator. Every action is harmless: nothing leaves loopback, files are
created in private temporary paths and removed, kernel module and eBPF loads use inert input.
Actions whose context is missing (not root, no container runtime) are skipped with the reason.

examples:
  falconet simulate --list
  falconet simulate shell_in_container reverse_shell
  falconet simulate --all --where docker
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("actions", nargs="*", metavar="ACTION", help="actions to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the actions and the rule each "
                                                        "should trigger")
    p.add_argument("--all", action="store_true", help="run every action")
    p.add_argument("--where", choices=CONTEXT_KINDS,
                   help="run in this context instead of each action's default")
    p.add_argument("--privileged", action="store_true", default=None,
                   help="use a privileged container")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--cleanup", action="store_true",
                   help="remove containers left behind by a simulator that was killed")


def _list(as_json: bool) -> int:
    acts = sorted(ACTIONS.values(), key=lambda a: a.name)
    if as_json:
        print(json.dumps([{"action": a.name, "where": list(a.where), "rule": a.rule,
                           "falco_rule": a.falco_rule, "privileged": a.privileged,
                           "summary": a.summary} for a in acts], indent=1))
        return 0
    w = max(len(a.name) for a in acts)
    print(f"{'ACTION':<{w}}  {'WHERE':<17}  RULE (default rules) / FALCO STABLE RULE")
    for a in acts:
        where = ",".join(a.where) + ("*" if a.privileged else "")
        print(f"{a.name:<{w}}  {where:<17}  {a.rule or '-'} / {a.falco_rule or '-'}")
        print(f"{'':<{w}}  {'':<17}  {a.summary}")
    print("\n* runs in a privileged container by default")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if args.cleanup:
        from falconet.simulate.contexts import cleanup_leftovers  # noqa: PLC0415

        removed = cleanup_leftovers()
        print("\n".join(f"removed {r}" for r in removed) or "nothing to clean up")
        return 0
    names = sorted(ACTIONS) if args.all else list(args.actions)
    if not names:
        print("falconet simulate: error: name actions to run, or use --all / --list",
              file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in ACTIONS]
    if unknown:
        print(f"falconet simulate: error: unknown action(s): {', '.join(unknown)} "
              f"(see `falconet simulate --list`)", file=sys.stderr)
        return 2

    def show(r: ActionResult) -> None:
        if args.json:
            return
        extra = f" container={r.container_id[:12]}" if r.container_id else ""
        why = f": {r.reason}" if r.reason else ""
        print(f"{r.status.upper():<7} {r.action} [{r.context}]{extra}{why}", flush=True)

    results = run_actions(names, args.where, args.privileged, on_result=show)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    failed = sum(r.status == "failed" for r in results)
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    if not args.json:
        print(f"{done} done, {skipped} skipped, {failed} failed", file=sys.stderr)
    return 1 if failed else 0
