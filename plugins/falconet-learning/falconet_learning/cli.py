"""``falconet profiles ...`` and ``falconet learn suggest`` (contributed through the
``falconet_commands`` hook). They read the profile database directly: changes made while an
engine runs take effect at its next start (the engine keeps its profiles in memory)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from falconet_learning.store import MAX_IMPORT_LINE, ProfileStore, StoreError


def _state_dir(args: argparse.Namespace) -> str:
    if getattr(args, "state_dir", None):
        return str(args.state_dir)
    from falconet.commands.common import config_from_args  # noqa: PLC0415
    from falconet.plugin_config import check_or_raise  # noqa: PLC0415

    from falconet_learning.config import SCHEMA, learning_config  # noqa: PLC0415

    cfg = config_from_args(args)
    section = (cfg.data.get("plugins") or {}).get("learning")
    values = check_or_raise(SCHEMA, "learning", section, whole=cfg.data)
    return learning_config(values, cfg.data).state_dir


def _common(p: argparse.ArgumentParser) -> None:
    from falconet.commands.common import add_config_arguments  # noqa: PLC0415

    add_config_arguments(p)
    p.add_argument("--state-dir", metavar="DIR",
                   help="the learning state directory (default: plugins.learning.state_dir)")


def _err(msg: str, code: int = 1) -> int:
    print(f"falconet: error: {msg}", file=sys.stderr)
    return code


def _ts(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9)) if ns else "-"


class ProfilesCommand:
    NAME = "profiles"
    HELP = "list, show, reset, export or import learned workload profiles"
    DESCRIPTION = """Workload profiles of learning mode (plugin falconet-learning, docs/learning.md).

examples:
  falconet profiles list
  falconet profiles show 3f2a9c1b7d0e
  falconet profiles export > profiles.jsonl      # sorted JSON lines: review in git, ship
  falconet profiles import profiles.jsonl --state-dir /var/lib/falconet/learning
  falconet profiles reset 3f2a9c1b7d0e           # learns again from its next event
"""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        sub = p.add_subparsers(dest="profiles_cmd", metavar="ACTION", required=True)
        for name, help_ in (("list", "one line per profile"), ("show", "one profile's entries"),
                            ("reset", "forget a profile"), ("export", "write profiles as JSON lines"),
                            ("import", "load an export")):
            sp = sub.add_parser(name, help=help_)
            _common(sp)
            if name in ("show", "reset"):
                sp.add_argument("id", metavar="ID", help="profile id (or unique prefix, or identity)")
            if name == "export":
                sp.add_argument("ids", nargs="*", metavar="ID", help="only these profiles")
                sp.add_argument("--output", metavar="FILE", help="write to FILE (0600)")
            if name == "import":
                sp.add_argument("file", metavar="FILE", help="an export ('-' for stdin)")
            if name in ("list", "show"):
                sp.add_argument("--json", action="store_true", help="JSON output")

    @staticmethod
    def main(args: argparse.Namespace) -> int:
        from falconet.api import PluginConfigError  # noqa: PLC0415
        from falconet.commands.common import guarded  # noqa: PLC0415

        try:
            state_dir = _state_dir(args)
        except PluginConfigError as e:
            return _err(str(e), 2)
        except Exception:  # noqa: BLE001 - the config's own errors: guarded reports them
            def again() -> int:
                _state_dir(args)
                return 0
            return guarded(again)
        try:
            store = ProfileStore(state_dir)
        except StoreError as e:
            return _err(str(e))
        try:
            return _profiles(args, store)
        except StoreError as e:
            return _err(str(e))
        finally:
            store.close()


def _profiles(args: argparse.Namespace, store: ProfileStore) -> int:
    cmd = args.profiles_cmd
    if cmd == "list":
        rows = store.profiles()
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        print(f"{'ID':12}  {'STATE':8}  {'ENTRIES':>7}  {'CREATED':20}  IDENTITY")
        for r in rows:
            full = " (full)" if r["full"] else ""
            print(f"{r['id']:12}  {r['state']:8}  {r['entries']:>7}  {_ts(r['created_ns']):20}  "
                  f"{r['identity']}{full}")
        return 0
    if cmd in ("show", "reset"):
        p = store.find(args.id)
        if p is None:
            return _err(f"no profile '{args.id}' (see `falconet profiles list`)")
        if cmd == "reset":
            store.reset(p["id"])
            print(f"profile {p['id']} ({p['identity']}) reset: it learns again from its next event")
            return 0
        entries = store.entries(p["id"])
        alerts = store.alerts(p["id"])
        if args.json:
            print(json.dumps({**p, "entries": entries, "alerts": alerts}, indent=1))
            return 0
        print(f"profile {p['id']}  {p['identity']}\n  state {p['state']}, created "
              f"{_ts(p['created_ns'])}, ready {_ts(p['ready_ns'])}, {p['events']} events"
              f"{', full' if p['full'] else ''}")
        for kind, keys in entries.items():
            print(f"  {kind} ({len(keys)}):")
            for k in keys:
                print(f"    {json.dumps(k.replace(chr(0), ' -> '))}")
        if alerts:
            print(f"  alerts seen while learning ({len(alerts)}):")
            for a in alerts:
                print(f"    {a['rule']} x{a['count']}: {json.dumps(a['evidence'], sort_keys=True)}")
        return 0
    if cmd == "export":
        lines = list(store.export_lines(args.ids or None))
        text = "\n".join(lines) + "\n"
        if args.output:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    if cmd == "import":
        try:
            src = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            return _err(f"{args.file}: {e.strerror or e}")
        with src:    # lines read with a bound: a huge line costs an error, not the memory
            n = store.import_lines(iter(lambda: src.readline(MAX_IMPORT_LINE + 1), ""), args.file)
        print(f"imported {n} profile(s)")
        return 0
    return 2


class LearnCommand:
    NAME = "learn"
    HELP = "turn what learning mode saw into reviewed rule exceptions (learn suggest)"
    DESCRIPTION = """`falconet learn suggest` writes a Falco rules file that appends `exceptions` to the
rules that fired on benign behaviour (a capture of it, or a profile's alerts), as narrow as the
evidence allows (image, tag, namespace, process, parent, path). Before writing, it replays the
attack capture with and without the file: a suggestion that hides an attack alert is dropped
and reported; and it replays the learning capture with the file: the excepted alerts are gone.

Record the attack capture once, e.g. `falconet record attacks.fcap.gz` while
`falconet test suites/default.yaml` (or `falconet simulate --all`) runs.

examples:
  falconet learn suggest --capture benign.fcap.gz --attacks attacks.fcap.gz --output learned.yaml
  falconet learn suggest --profile 3f2a9c1b7d0e --attacks attacks.fcap.gz --output learned.yaml
"""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        sub = p.add_subparsers(dest="learn_cmd", metavar="ACTION", required=True)
        sp = sub.add_parser("suggest", help="suggest exceptions, proven by replay")
        _common(sp)
        src = sp.add_mutually_exclusive_group(required=True)
        src.add_argument("--capture", metavar="FILE", help="a capture of the benign workload")
        src.add_argument("--profile", metavar="ID", help="a profile (its alerts while learning)")
        sp.add_argument("--attacks", metavar="FILE", required=True,
                        help="a capture of the attack suite (every attack must stay detected)")
        sp.add_argument("-r", "--rules", action="append", metavar="FILE",
                        help="rules files (default: as `falconet run`)")
        sp.add_argument("--output", metavar="FILE", required=True,
                        help="the rules file to write (0600)")
        sp.add_argument("--max-priority", default="notice",
                        help="except alerts at this priority or lower (default notice: Warning "
                             "and above are never excepted automatically)")
        sp.add_argument("--json", action="store_true", help="print the report as JSON")

    @staticmethod
    def main(args: argparse.Namespace) -> int:
        from falconet.commands.common import guarded  # noqa: PLC0415

        return guarded(lambda: _suggest(args))


def _rules(args: argparse.Namespace) -> list[str]:
    from falconet.app import App  # noqa: PLC0415
    from falconet.commands.common import config_from_args  # noqa: PLC0415

    app = App(config_from_args(args), source_name="replay")
    app.load_plugins()
    files = app.rules_files(args.rules)
    plugin_rules = {f for _, f in app.plugin_rules}
    return [f for f in files if f not in plugin_rules]


def _suggest(args: argparse.Namespace) -> int:
    from falconet.priorities import Priority  # noqa: PLC0415

    from falconet_learning import suggest as sg  # noqa: PLC0415

    try:
        maxp = Priority.parse(args.max_priority)
    except ValueError as e:
        return _err(f"--max-priority: {e}", 2)
    for f in filter(None, (args.capture, args.attacks)):
        if not Path(f).is_file():
            return _err(f"{f}: no such capture file")
    rules = _rules(args)
    ov = list(args.overrides)
    replay = lambda cap, extra=(): sg.replay_alerts(cap, [*rules, *extra], args.config, ov)  # noqa: E731
    if args.capture:
        learned = replay(args.capture)
        items = [(a.rule, a.priority, sg.evidence(a), a.output, 1) for a in learned]
    else:
        store = ProfileStore(_state_dir(args))
        try:
            p = store.find(args.profile)
            if p is None:
                return _err(f"no profile '{args.profile}'")
            items = [(a["rule"], Priority.parse(a["priority"]), a["evidence"],
                      json.dumps(a["evidence"], sort_keys=True), a["count"])
                     for a in store.alerts(p["id"])]
        finally:
            store.close()
        learned = []
    cands, high = sg.candidates_from(items, maxp)
    res = sg.Suggestion(cands, not_excepted=high)
    attacks = replay(args.attacks)
    res.attack_baseline = len(attacks)
    for c in cands:                   # cheap pre-check: evidence equal to an attack alert's
        if not c.dropped and any(sg.matches(c, a) for a in attacks):
            c.dropped = "matches an alert of the attack capture"
    header = (f"Exceptions suggested by `falconet learn suggest` from "
              f"{args.capture or 'profile ' + args.profile}\n(proven against {args.attacks}). "
              "Review before loading.")
    with tempfile.TemporaryDirectory(prefix="falconet-suggest-") as tmp:
        trial = os.path.join(tmp, "suggested.yaml")
        base = {sg._alert_key(a) for a in attacks}
        for _round in range(5):
            Path(trial).write_text(sg.render(res.kept, header))
            after = replay(args.attacks, [trial])
            missing = [a for a in attacks if sg._alert_key(a) in
                       base - {sg._alert_key(x) for x in after}]
            res.attack_after = len(after)
            if not missing:
                break
            for c in res.kept:
                if any(sg.matches(c, a) for a in missing):
                    c.dropped = "hid an attack alert on replay"
        else:
            return _err("could not find a set of exceptions that keeps every attack detected")
        if args.capture and res.kept:
            excepted = {c.rule for c in res.kept}
            res.learning_before = sum(1 for a in learned if any(sg.matches(c, a) for c in res.kept))
            again = replay(args.capture, [trial])
            res.learning_after = sum(1 for a in again if a.rule in excepted and
                                     any(sg.matches(c, a) for c in res.kept))
        text = Path(trial).read_text()
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    rep = res.report()
    if args.json:
        print(json.dumps(rep, indent=1, sort_keys=True))
    else:
        print(f"wrote {args.output}: {len(res.kept)} exception value(s) for "
              f"{len({c.rule for c in res.kept})} rule(s); attack alerts {res.attack_baseline} "
              f"-> {res.attack_after}; excepted learning alerts {res.learning_before} -> "
              f"{res.learning_after}")
        for d in rep["dropped"]:
            print(f"  dropped: {d['rule']} {d['values']}: {d['reason']}")
        for rule, n in sorted(high.items()):
            print(f"  not excepted (Warning or above): {rule} x{n}")
    return 0 if res.learning_after == 0 else 1

