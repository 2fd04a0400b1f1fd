"""The ``falconet`` command: argument parsing only; each subcommand lives in ``falconet.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from falconet import __version__
from falconet.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="falconet",
        description="Runtime security for Linux hosts and containers: eBPF events, "
                    "Falco-compatible rules, alerts to terminal, JSON, webhooks, OTel and Prometheus.")
    p.add_argument("--version", action="version", version=f"falconet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS:
        mod = importlib.import_module(modname)
        sp = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(sp)
        sp.set_defaults(_main=mod.main, _parser=sp)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # reported by the subcommand's parser: its usage line, not the top-level one
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    from falconet.commands.common import setup_logging  # noqa: PLC0415 - keep `--help` fast

    setup_logging(getattr(args, "verbose", False) is True)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
