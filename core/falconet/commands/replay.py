"""``falconet replay FILE``: run the rules on a capture file, exactly as a live run would."""

from __future__ import annotations

import argparse
import sys

from falconet.app import App
from falconet.capture import read_header
from falconet.commands.common import add_engine_arguments, config_from_args, guarded, metrics_address
from falconet.workers import KEYS, parse_workers

HELP = "replay a capture file through the rules"
DESCRIPTION = """Replay a capture (from `falconet record`) through the same pipeline as `run`:
state records are restored in order, events are parsed and matched, alerts go to the outputs.
Malformed lines are reported with their line number, counted (drop cause capture_malformed)
and skipped; a truncated capture (a recording killed mid-write) is reported the same way. The
rest of the file still replays, and the exit status is then 1, so scripts notice the damage.
The same goes for anything lost on the way out: an alert an output failed to deliver or
dropped (summary: "outputs: file 2 sent, 1 failed"), or any other counted drop.

A big capture (4 MiB or more) is split across one worker process per core (collector.workers,
--workers N; docs/performance.md): the alerts are the same, in the same order.

exit status: 0 replayed cleanly, every alert delivered; 1 an error, the capture had malformed
lines or was truncated, or something was dropped or not delivered (see the summary line).

examples:
  falconet replay /tmp/host.fcap.gz --json
  falconet replay x.fcap -r my_rules.yaml --metrics-port 9876 --linger 30
  falconet replay big.fcap.gz --workers 2
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="capture file (.fcap, .fcap.gz)")
    add_engine_arguments(p, metrics_default=False)
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                   help="keep serving metrics for SECONDS after the replay ends")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--kernel-filter", action="store_true",
                   help="drop what the eBPF collector's kernel filter would drop (derived from "
                        "the rules, with its fd tracking): the soundness replay; filtered events "
                        "are counted in the summary and metrics (docs/kernel-filter.md)")
    p.add_argument("--rate", type=float, default=None, metavar="EVENTS_PER_SEC",
                   help="replay at most this many events per second (default: as fast as possible)")
    p.add_argument("--workers", default=None, metavar="N|auto",
                   help="worker processes (default: collector.workers, auto = one per core for "
                        "a capture of 4 MiB or more); alerts are the same with any number")
    p.add_argument("--partition-key", choices=KEYS, default=None,
                   help="how events are assigned to workers (default: collector.partition, "
                        "else lineage: a fork child stays on its parent's worker; tgid: each "
                        "process hashed alone, a fork child gets its parent's fds from the "
                        "parent's worker; cgroup: by the event's cgroup, docs/performance.md)")


def main(args: argparse.Namespace) -> int:
    def body() -> int:
        if args.rate is not None and not args.rate > 0:
            print("falconet replay: --rate must be a positive number of events per second",
                  file=sys.stderr)
            return 2
        try:
            workers = parse_workers(args.workers) if args.workers is not None else None
        except ValueError as e:
            print(f"falconet replay: --workers: {e}", file=sys.stderr)
            return 2
        cfg = config_from_args(args)
        read_header(args.file)      # a file that is not a capture fails before anything starts
        app = App(cfg, source_name="replay")
        app.load_plugins()
        app.source("replay")
        app.load_ruleset(args.rules)
        app.build_pipeline()
        options = {"path": args.file,
                   "restore_state": lambda plugin, data: app.host.restore_state(plugin, data,
                                                                                app.ctx),
                   "progress": False if args.no_progress else None,
                   "rate": args.rate,
                   "kernel_filter": app.kernel_filter_plan(force=True) if args.kernel_filter
                   else None,
                   # the kernel filter's emulation runs on the one event stream: one worker
                   "workers": 1 if args.kernel_filter else
                   (args.workers if workers is None else workers),
                   "partition_key": args.partition_key}
        rc = app.run("replay", options, linger=args.linger,
                     metrics_addr=metrics_address(args, cfg, default_on=False))
        print(app.summary(), file=sys.stderr)
        damaged = app.source("replay").reporter
        if rc == 0 and damaged is not None and damaged.count:
            print(f"falconet: {args.file}: replayed with {damaged.count} unreadable "
                  f"line(s) skipped: exit status 1", file=sys.stderr)
            rc = 1
        lost = app.losses()
        if rc == 0 and lost:
            print(f"falconet: {args.file}: {lost} drop(s) or failed deliveries (see the summary): "
                  "exit status 1", file=sys.stderr)
            rc = 1
        return rc
    return guarded(body)
