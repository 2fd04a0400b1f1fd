"""``falconet fields``: every field rules and outputs can use (like ``falco --list``)."""

from __future__ import annotations

import argparse
import json
import sys

from falconet.app import App
from falconet.commands.common import add_config_arguments, config_from_args, guarded, quiet_plugin_log
from falconet.fields import ArgKind, FieldDef

HELP = "list the fields rules and outputs can use"
DESCRIPTION = """List every field with its type, source and description: core fields (evt, proc,
thread, fd, user, group) and those of loaded plugins.

examples:
  falconet fields
  falconet fields --source syscall --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--source", metavar="SOURCE", help="only fields of this event source")
    p.add_argument("--json", action="store_true", help="print a JSON array")


def _display_name(f: FieldDef) -> str:
    if f.arg is ArgKind.NONE:
        return f.name
    inner = "N" if f.arg_is_index else "arg"
    shown = f"{f.name}.<{inner}>" if f.dotted_arg else f"{f.name}[{inner}]"
    return shown if f.arg is ArgKind.REQUIRED else f"{f.name}, {shown}"


def _as_dict(f: FieldDef) -> dict[str, object]:
    return {"name": f.name, "type": f.type.value, "desc": f.desc, "provider": f.provider,
            "sources": sorted(f.sources), "arg": f.arg.value, "is_list": f.is_list,
            "suggested": f.suggested}


def main(args: argparse.Namespace) -> int:
    def body() -> int:
        quiet_plugin_log()
        app = App(config_from_args(args))
        app.load_plugins()
        fields = sorted(app.ctx.fields.fields.values(), key=lambda f: f.name)
        if args.source:
            known = app.event_sources
            if args.source not in known:
                print(f"falconet fields: error: unknown event source '{args.source}' (known: "
                      f"{', '.join(sorted(known))})", file=sys.stderr)
                return 2
            fields = [f for f in fields if args.source in f.sources]
        if args.json:
            print(json.dumps([_as_dict(f) for f in fields], indent=2))
            return 0
        group = None
        for f in fields:
            cls = f.name.split(".", 1)[0]
            if (cls, f.provider) != group:
                group = (cls, f.provider)
                srcs = ", ".join(sorted({s for g in fields if g.name.split(".", 1)[0] == cls
                                         for s in g.sources}))
                print(f"\nField Class: {cls} (provider: {f.provider}; sources: {srcs})\n")
            print(f"{_display_name(f):<32} {f.type.value:<8} {f.desc}")
        for fl in app.host.failures:
            print(f"\n(plugin '{fl.name}' not loaded: {fl.stage} failed: {fl.reason})")
        return 0
    return guarded(body)
