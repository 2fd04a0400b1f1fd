"""The ``falconet`` command: argument parsing only; each subcommand lives in ``falconet.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from falconet import __version__
from falconet.commands import COMMANDS


def plugin_commands() -> list[Any]:
    """Subcommands plugins contribute (``falconet_commands``), core names excluded."""
    from falconet.plugins import PluginHost  # noqa: PLC0415 - only when a plugin command runs

    host = PluginHost(builtins=[])
    try:
        host.load()
        found = host.call(host.hook.falconet_commands)
    except Exception:  # noqa: BLE001 - a broken plugin must not break the core commands
        return []
    core = {n for n, _ in COMMANDS}
    out = []
    for _plugin, cmds in found:
        for c in cmds:
            if getattr(c, "NAME", None) and c.NAME not in core and callable(getattr(c, "main", None)):
                out.append(c)
    return out


def _add(sub: Any, name: str, mod: Any) -> None:
    sp = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    mod.add_arguments(sp)
    sp.set_defaults(_main=mod.main, _parser=sp)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="falconet",
        description="Runtime security for Linux hosts and containers: eBPF events, "
                    "Falco-compatible rules, alerts to terminal, JSON, webhooks, OTel and Prometheus.")
    p.add_argument("--version", action="version", version=f"falconet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS:
        _add(sub, name, importlib.import_module(modname))
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    if first is None or first not in {n for n, _ in COMMANDS}:
        # plugin commands load plugins: only when no core command is asked for
        for mod in plugin_commands():
            _add(sub, mod.NAME, mod)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:   # reported by the subcommand's parser: its usage line, not the top-level one
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    from falconet.app import setup_logging  # noqa: PLC0415 - keep `--help` fast

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
