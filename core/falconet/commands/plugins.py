"""``falconet plugins list``: loaded plugins (built-in and installed), and any that failed."""

from __future__ import annotations

import argparse
import json

from falconet.app import App
from falconet.commands.common import add_config_arguments, config_from_args, guarded, quiet_plugin_log

HELP = "list plugins: name, version, kind, hooks, fields"
DESCRIPTION = """Show every plugin the engine loads: the built-ins (core-state, ebpf, replay,
outputs) and those installed from the `falconet` entry-point group, with their version, kind
(input, enrichment, output, rules), the hooks they implement and the fields they declare.
Plugins that failed to load or configure are listed with the reason.

examples:
  falconet plugins list
  falconet plugins list --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list"], help="what to do")
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    def body() -> int:
        quiet_plugin_log()
        app = App(config_from_args(args))
        app.load_plugins()
        infos = list(app.host.info.values())
        failures = app.host.failures
        if args.json:
            print(json.dumps({"plugins": [i.to_dict() for i in infos],
                              "failed": [vars(f) for f in failures]}, indent=2))
            return 0
        print(f"{'NAME':<14} {'VERSION':<9} {'KIND':<30} {'FIELDS':>6}  HOOKS")
        for i in infos:
            hooks = ", ".join(h.removeprefix("falconet_") for h in i.hooks)
            kind = ",".join(i.kinds) or "-"
            origin = "" if not i.builtin else " (built-in)"
            print(f"{i.name:<14} {i.version:<9} {kind:<30} {len(i.fields):>6}  {hooks}{origin}")
        for f in failures:
            print(f"{f.name:<14} {'-':<9} {'FAILED':<22} {'-':>6}  {f.stage}: {f.reason}")
        return 0
    return guarded(body)
