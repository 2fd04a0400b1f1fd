"""``falconet record FILE``: write a capture of the live source (and alert as ``run`` does)."""

from __future__ import annotations

import argparse
import sys

from falconet.app import App, EmptyRuleset
from falconet.capture import CaptureWriter
from falconet.commands.common import add_engine_arguments, config_from_args, guarded, metrics_address

HELP = "record live events to a capture file for replay"
DESCRIPTION = """Record events from a live source into a capture file (JSON lines; gzip when FILE
ends in .gz). Plugin state (process table, container metadata) is written at the start and
whenever it changes, so `falconet replay FILE` sees the same world and raises the same alerts.
FILE is created with mode 0600 (it holds process environments and command lines); an existing
FILE is only replaced with --force, and a symbolic link at FILE is never followed.

examples:
  falconet record /tmp/host.fcap.gz --duration 30
  falconet record /tmp/x.fcap --no-rules --duration 5
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="capture file to write (.gz: compressed)")
    add_engine_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="replace FILE if it is a regular file (a symbolic link, device or FIFO is "
                        "still refused)")
    p.add_argument("--source", default="ebpf", metavar="NAME", help="live source (default: ebpf)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--no-rules", action="store_true",
                   help="only record (no rules, no alerts; the collector captures every event type)")


def main(args: argparse.Namespace) -> int:
    def body() -> int:
        cfg = config_from_args(args)
        app = App(cfg, source_name=args.source)
        app.load_plugins()
        ruleset = EmptyRuleset() if args.no_rules else app.load_ruleset(args.rules)
        src = app.source(args.source)
        try:
            writer = CaptureWriter(args.file, host=app.ctx.hostname, overwrite=args.force)
        except OSError as e:
            print(f"falconet: error: cannot write {args.file}: {e.strerror or e}", file=sys.stderr)
            return 1
        app.ctx.state_writer = writer.write_state
        # events are written after parsers ran, so state a parser emits precedes its event
        app.build_pipeline(ruleset, extra_parsers=[("capture", writer.write_event)])

        def dump_state() -> None:
            for name, data in app.host.call(app.host.hook.falconet_capture_state, engine=app.ctx):
                writer.write_state(name, data)

        options: dict = {}
        options["event_types"] = None if args.no_rules else ruleset.event_types(
            getattr(src, "source", "syscall"))
        # a capture holds every event: `replay --kernel-filter` applies the filter later
        options["kernel_filter"] = None
        # one process writes the capture, in order (a worker would write only its partition)
        options["workers"] = 1
        try:
            rc = app.run(args.source, options, duration=args.duration, before_open=dump_state,
                         metrics_addr=metrics_address(args, cfg, default_on=True))
        finally:
            app.ctx.state_writer = None
            writer.close()
        if writer.error is not None:
            print(app.summary(), file=sys.stderr)
            print(f"falconet: error: {args.file}: the capture is incomplete: "
                  f"{writer.error.strerror or writer.error}", file=sys.stderr)
            return 1
        print(app.summary() + f"; {writer.events} events recorded to {args.file}", file=sys.stderr)
        return rc
    return guarded(body)
