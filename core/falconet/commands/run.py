"""``falconet run``: live monitoring (the eBPF collector by default)."""

from __future__ import annotations

import argparse
import signal
import sys

from falconet.app import App
from falconet.commands.common import add_engine_arguments, config_from_args, guarded, metrics_address

HELP = "monitor this host live and print alerts"
DESCRIPTION = """Watch the kernel with eBPF, evaluate the rules and print alerts.

examples:
  falconet run                               # default rules, text alerts on stdout
  falconet run --json -r rules/ --duration 60
  kill -HUP <pid>                            # reload the rules (also on file change, see
                                             # watch_rules_files in falconet.yaml)
  falconet run -o outputs.webhook.enabled=true -o outputs.webhook.url=http://127.0.0.1:2801/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_engine_arguments(p)
    p.add_argument("--source", default="ebpf", metavar="NAME",
                   help="event source to read (default: ebpf; see `falconet plugins list`)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def main(args: argparse.Namespace) -> int:
    # SIGHUP reloads the rules, but its default action kills: a `systemctl reload` while the
    # engine still loads rules and compiles the BPF program is remembered and done afterwards
    early_hups: list[int] = []
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, _f: early_hups.append(s))

    def body() -> int:
        cfg = config_from_args(args)
        app = App(cfg, source_name=args.source)
        app.load_plugins()
        app.load_ruleset(args.rules)
        app.build_pipeline()
        src = app.source(args.source)
        options: dict = {}
        options["event_types"] = app.ruleset.event_types(getattr(src, "source", "syscall"))
        options["ruleset"] = app.ruleset       # what else the rules need (proc.env: the exec env)
        rc = app.run(args.source, options, duration=args.duration,
                     metrics_addr=metrics_address(args, cfg, default_on=True),
                     hot_reload=True, early_hups=early_hups)
        print(app.summary(), file=sys.stderr)
        return rc
    return guarded(body)
