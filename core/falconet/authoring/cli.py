"""The ``falconet rules prove|synthesize|generate`` commands (wired in ``commands/rules.py``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from falconet.app import add_config_arguments, config_from_args, guarded, quiet_plugin_log

PROVE_EPILOG = """exit status (the first failed check; every failure is printed):
  0 proven   3 does not load (YAML/item/syntax error)   4 unknown field
  5 undefined macro/list (also a bare word that looks like an undefined list name)
  6 not restricted to event types   7 misses a positive   8 fires on a negative
  9 static checks pass but no positive evidence: unproven   1 other errors   2 usage
"""


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    pr = sub.add_parser("prove", help="validate a rule on evidence (loads, names, event types, "
                        "fires on positives, not on negatives)",
                        description="Prove rules on recorded evidence.", epilog=PROVE_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(pr)
    pr.add_argument("file", metavar="RULES", help="the rules file to prove")
    _evidence_args(pr)
    pr.add_argument("--json", action="store_true", help="print the report as JSON")

    sy = sub.add_parser("synthesize", help="synthesize a rule from positive and negative "
                        "evidence", description="Find a small condition that matches the "
                        "positive evidence and none of the negative, and print a proven rule.",
                        epilog=PROVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(sy)
    _evidence_args(sy)
    sy.add_argument("--simulate", metavar="ACTION", help="perform this simulator action live "
                    "and record it as the positive evidence (root)")
    sy.add_argument("--where", metavar="CONTEXT", help="context of --simulate: host, runc, docker")
    sy.add_argument("--record", action="store_true", help="run the command after -- live and "
                    "record it as the positive evidence (root)")
    sy.add_argument("--container", metavar="RUNTIME", nargs="?", const="runc",
                    help="with --record: run the command in a throwaway container "
                    "(runc, the default, or docker)")
    sy.add_argument("--save-positive", metavar="FILE", help="keep the recorded positive here")
    sy.add_argument("--save-negative", metavar="FILE", help="keep the recorded benign workload "
                    "here (reuse it with --negative FILE)")
    _rule_args(sy)
    sy.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS (with --record)")

    ge = sub.add_parser("generate", help="an LLM proposes a rule from a prompt; every "
                        "candidate is proven, failures are fed back",
                        description="Generate a rule with a model backend "
                        "(falconet_rule_authoring_backends); proven on the evidence.",
                        epilog=PROVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(ge)
    ge.add_argument("--prompt", required=True, help="what to detect, in words")
    _evidence_args(ge)
    ge.add_argument("--backend", metavar="NAME", help="model backend (default: the first "
                    "installed, e.g. openai)")
    ge.add_argument("--rounds", type=int, default=4, metavar="N",
                    help="feedback rounds at most (default 4)")
    _rule_args(ge)
    for p in (pr, sy, ge):
        p.set_defaults(_parser=p)
    return [pr, sy, ge]


def _evidence_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--rules", action="append", metavar="FILE",
                   help="context rules (default: the rules `falconet run` loads)")
    p.add_argument("--positive", nargs="+", action="extend", default=[], metavar="CAPTURE",
                   help="captures of the behaviour (a CAPTURE.focus.json beside one names the "
                   "events that are the behaviour)")
    p.add_argument("--negative", nargs="+", action="extend", default=[], metavar="CAPTURE",
                   help="captures of normal activity")


def _rule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="rule name (default: from the evidence)")
    p.add_argument("--priority", default="WARNING", help="rule priority (default WARNING)")
    p.add_argument("--tag", action="append", default=[], help="extra tag (repeatable)")
    p.add_argument("--write", dest="out", metavar="FILE", help="also write the rule to FILE (0600)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _context(args: argparse.Namespace) -> tuple[Any, Any]:
    from falconet.authoring.context import RulesContext  # noqa: PLC0415
    from falconet.authoring.replay import make_app  # noqa: PLC0415

    quiet_plugin_log()
    cfg = config_from_args(argparse.Namespace(config=args.config, overrides=args.overrides))
    app = make_app(cfg)
    return cfg, RulesContext.from_app(app, args.rules)


def _missing(paths: list[str]) -> int:
    bad = [p for p in paths if not os.path.isfile(p)]
    if bad:
        print(f"falconet: error: capture not found: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def prove_main(args: argparse.Namespace) -> int:
    from falconet.authoring.prove import prove  # noqa: PLC0415

    def body() -> int:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            print(f"falconet: error: {args.file}: {e.strerror or e}", file=sys.stderr)
            return 1
        if _missing(args.positive + args.negative):
            return 1
        cfg, ctx = _context(args)
        rep = prove(text, context=ctx, positives=args.positive, negatives=args.negative,
                    config=cfg, name=args.file)
        print(json.dumps(rep.to_dict(), indent=2) if args.json else rep.text())
        return rep.exit_code
    return guarded(body)


def _write(args: argparse.Namespace, text: str) -> None:
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)


def synthesize_main(args: argparse.Namespace) -> int:
    from falconet.authoring import evidence as ev  # noqa: PLC0415
    from falconet.authoring.synthesize import SynthesisError, Synthesizer  # noqa: PLC0415

    def body() -> int:
        cmd = [c for c in args.command if c != "--"] if args.command else []
        sources = sum(bool(x) for x in (args.positive, args.simulate, args.record))
        if sources != 1:
            print("falconet rules synthesize: give exactly one of --positive CAPTURE, "
                  "--simulate ACTION, --record -- CMD", file=sys.stderr)
            return 2
        if args.record and not cmd:
            print("falconet rules synthesize: --record needs a command after --", file=sys.stderr)
            return 2
        if _missing(args.positive + args.negative):
            return 1
        tmp = tempfile.mkdtemp(prefix="falconet-synth-")
        positives = list(args.positive)
        name = args.name
        try:
            if args.simulate:
                path = args.save_positive or os.path.join(tmp, "positive.fcap.gz")
                print(f"falconet: recording the action {args.simulate} ...", file=sys.stderr)
                ev.record_action(path, args.simulate, args.where)
                positives = [path]
                name = name or f"Synthesized {args.simulate.replace('_', ' ')}"
            elif args.record:
                path = args.save_positive or os.path.join(tmp, "positive.fcap.gz")
                print(f"falconet: recording {' '.join(cmd)} ...", file=sys.stderr)
                ev.record_command(path, cmd, args.container)
                positives = [path]
            negatives = list(args.negative)
            if not negatives:
                path = args.save_negative or os.path.join(tmp, "benign.fcap.gz")
                print("falconet: no --negative: recording the benign workload "
                      f"({ev.BENIGN_WORKLOAD.name}) ...", file=sys.stderr)
                ev.record_benign(path)
                negatives = [path]
        except (ev.RecordError, KeyError, OSError, RuntimeError) as e:
            print(f"falconet: error: {e}", file=sys.stderr)
            return 1
        name = name or "Synthesized " + os.path.basename(positives[0]).split(".")[0]
        cfg, ctx = _context(args)
        try:
            res = Synthesizer(ctx, cfg).synthesize(positives, negatives, name=name,
                                                   priority=args.priority, tags=args.tag)
        except SynthesisError as e:
            print(f"falconet: synthesis failed: {e}", file=sys.stderr)
            return 10
        _write(args, res.yaml)
        if args.json:
            print(json.dumps({"rule": res.rule, "yaml": res.yaml, "seconds": res.seconds,
                              "proof": res.proof.to_dict()}, indent=2))
        else:
            print(res.yaml.rstrip())
            print("\n# " + res.report().replace("\n", "\n# "))
        return res.proof.exit_code
    return guarded(body)


def generate_main(args: argparse.Namespace) -> int:
    from falconet.authoring.generate import GenerateError, generate  # noqa: PLC0415

    def body() -> int:
        if _missing(args.positive + args.negative):
            return 1
        cfg, ctx = _context(args)
        try:
            res = generate(args.prompt, context=ctx, positives=args.positive,
                           negatives=args.negative, config=cfg, backend=args.backend,
                           rounds=args.rounds, log=lambda m: print(f"falconet: {m}",
                                                                  file=sys.stderr))
        except GenerateError as e:
            print(f"falconet: error: {e}", file=sys.stderr)
            return 1
        if res.text is not None:
            _write(args, res.text)
        if args.json:
            print(json.dumps(res.to_dict(), indent=2))
        else:
            if res.text is not None:
                print(res.text.rstrip())
            print("\n# " + res.summary().replace("\n", "\n# "))
        return res.exit_code
    return guarded(body)
