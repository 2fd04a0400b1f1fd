"""``falconet rules prove``: the validation every authored rule goes through.

Checks, in order (the exit status names the first that failed; every failure is reported):

====  ====================  ==========================================================
exit  check                 fails when
====  ====================  ==========================================================
0     proven                every check passed on the evidence
3     load                  the rules text does not load (YAML error, bad item, syntax)
4     unknown_field         a condition names a field the registry does not have
5     undefined_name        an undefined macro, or a bare word that looks like an
                            undefined list/macro name (compared as a literal string)
6     no_event_types        a rule is not restricted to event types
7     misses_positive       a positive capture raises no alert of the rules
8     fires_on_negative     a negative capture raises an alert of the rules
9     unproven              all static checks passed, but there was no positive evidence
====  ====================  ==========================================================

1 is kept for other errors (unreadable capture, context rules that do not load), 2 for usage.
Replays run in-process with the engine's own capture reader, state parser and rules
(:mod:`falconet.authoring.replay`), in the context of the other loaded rules; a context rule
that already fires on a positive is reported ("already covered by ...").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from falconet.app import App
from falconet.authoring.context import RulesContext, read_items, ruleset_of
from falconet.authoring.focus import Focus
from falconet.authoring.names import check_names
from falconet.authoring.replay import make_app, replay
from falconet.config import Config
from falconet.events import Event
from falconet.rules import LoadResult

EXIT_CODES: dict[str, int] = {"proven": 0, "error": 1, "usage": 2, "load": 3,
                              "unknown_field": 4, "undefined_name": 5, "no_event_types": 6,
                              "misses_positive": 7, "fires_on_negative": 8, "unproven": 9}
#: the order checks are reported (and which exit status wins)
ORDER = ("error", "load", "unknown_field", "undefined_name", "no_event_types", "misses_positive",
         "fires_on_negative")
CANDIDATE = "<candidate>"
#: example alerts kept per capture in a report
MAX_EXAMPLES = 3


@dataclass
class Failure:
    check: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "message": self.message}


@dataclass
class CaptureResult:
    path: str
    events: int = 0
    in_focus: int = 0
    hits: Counter = field(default_factory=Counter)            # candidate rule -> alerts
    covered_by: Counter = field(default_factory=Counter)      # context rule -> alerts
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "events": self.events, "in_focus": self.in_focus,
                "hits": dict(self.hits), "covered_by": dict(self.covered_by),
                "examples": self.examples}


@dataclass
class ProveReport:
    rules: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    positives: list[CaptureResult] = field(default_factory=list)
    negatives: list[CaptureResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        for check in ORDER:
            if any(f.check == check for f in self.failures):
                return check
        return "proven" if self.positives else "unproven"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def proven(self) -> bool:
        return self.status == "proven"

    @property
    def covered_by(self) -> list[str]:
        names: Counter = Counter()
        for p in self.positives:
            names.update(p.covered_by)
        return [n for n, _ in names.most_common()]

    def feedback(self) -> list[str]:
        """One line per failure, for a model (or a person) to act on."""
        return [f"[{f.check}] {f.message}" for f in self.failures]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, "rules": self.rules,
                "failures": [f.to_dict() for f in self.failures],
                "warnings": self.warnings, "already_covered_by": self.covered_by,
                "positives": [p.to_dict() for p in self.positives],
                "negatives": [n.to_dict() for n in self.negatives]}

    def text(self) -> str:
        lines = []
        for f in self.failures:
            lines.append(f"FAIL [{f.check}] {f.message}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for p in self.positives:
            n = sum(p.hits.values())
            lines.append(f"positive {p.path}: {n} alert(s) from {p.in_focus} events in focus"
                         + (f" ({', '.join(f'{k}: {v}' for k, v in p.hits.items())})" if n else ""))
        for c in self.negatives:
            n = sum(c.hits.values())
            lines.append(f"negative {c.path}: {n} alert(s) from {c.in_focus} events in focus")
        if self.covered_by:
            lines.append("already covered by: " + ", ".join(f"'{r}'" for r in self.covered_by))
        st = self.status
        if st == "proven":
            lines.append(f"PROVEN: {', '.join(self.rules)} fires on every positive and on no "
                         "negative")
        elif st == "unproven":
            lines.append(f"UNPROVEN: {', '.join(self.rules) or 'the rules'} load(s) and pass(es) "
                         "the static checks, but no positive evidence was given: nothing shows "
                         "it fires (pass --positive CAPTURE)")
        else:
            lines.append(f"REJECTED ({st}, exit status {self.exit_code})")
        return "\n".join(lines)


def _classify(msg: Any) -> str:
    text = msg.message
    if "nonexistent field" in text:
        return "unknown_field"
    if "Undefined macro" in text:
        return "undefined_name"
    return "load"


def static_checks(res: LoadResult, app: App, context: RulesContext, text: str,
                  name: str = CANDIDATE) -> tuple[list[Failure], list[str], list[str]]:
    """(failures, rule names, warnings) of the candidate text's load and name checks."""
    failures: list[Failure] = []
    for m in res.errors:
        if m.file == name:
            failures.append(Failure(_classify(m), str(m)))
        else:
            failures.append(Failure("error", f"the context rules do not load: {m}"))
    warnings = [str(w) for w in res.warnings if w.file == name]
    mine = read_items([(name, text)])
    macros = set(context.items.macros) | set(mine.macros)
    lists = set(context.items.lists) | set(mine.lists)
    reported = {f.message for f in failures}
    # the candidate's own macros too: a bare undefined list inside one is as silent a literal
    conditions: list[tuple[str, Any]] = [(f"macro '{m}'", c) for m, c in mine.macros.items()]
    conditions += [(f"rule '{r}'", item.get("condition")) for r, item in mine.rules.items()]
    for what, cond in conditions:
        if not isinstance(cond, str):
            continue
        for p in check_names(cond, app.ctx.fields, macros, lists):
            check = "unknown_field" if p.kind == "unknown_field" else "undefined_name"
            msg = f"{name}: {what}: {p.message}"
            if not any(p.name in r and check == f.check for r in reported for f in failures):
                failures.append(Failure(check, msg))
    names = [r.name for r in res.rules if r.file == name]
    if not names:
        names = list(mine.rules)
    for r in res.rules:
        if r.file == name and r.enabled and r.event_types is None:
            failures.append(Failure("no_event_types", f"{name}: rule '{r.name}' is not "
                                    "restricted to event types (every event is evaluated "
                                    "against it): add an evt.type condition or a macro "
                                    "that has one, e.g. spawned_process"))
    return failures, names, warnings


def _replay_one(path: str, focus: Focus | None, context: RulesContext, text: str,
                config: Config | None, name: str, covered: bool = True) -> CaptureResult:
    out = CaptureResult(path)

    def setup(app: App) -> list[Any]:
        res = context.load(app, [(name, text)])
        if not res.ok:
            raise ValueError("; ".join(str(e) for e in res.errors[:3]))
        mine = ruleset_of(res, [name])
        theirs = ruleset_of(res, context.files if covered else [])

        def visit(evt: Event) -> None:
            for a in mine.match(evt):
                out.hits[a.rule] += 1
                if len(out.examples) < MAX_EXAMPLES:
                    out.examples.append(f"{a.rule}: {a.output}")
            for a in theirs.match(evt):
                out.covered_by[a.rule] += 1
        return [visit]

    st = replay(path, (), config=config, focus=focus, setup=setup)
    out.events, out.in_focus = st.events, st.in_focus
    return out


def prove(text: str, *, context: RulesContext, positives: Iterable[str] = (),
          negatives: Iterable[str] = (), config: Config | None = None,
          name: str = CANDIDATE, focus: dict[str, Focus] | None = None) -> ProveReport:
    """Validate the rules ``text`` (see the module docstring). ``focus`` overrides the sidecar
    focus of a capture."""
    focus = focus or {}
    app = make_app(config)
    res = context.load(app, [(name, text)])
    failures, names, warnings = static_checks(res, app, context, text, name)
    report = ProveReport(rules=names, failures=failures, warnings=warnings)
    if not res.ok:
        return report
    for p in positives:
        r = _replay_one(p, focus.get(p), context, text, config, name)
        report.positives.append(r)
        if not r.hits:
            report.failures.append(Failure("misses_positive", f"no alert on the positive "
                                           f"{p} ({r.in_focus} events in focus of {r.events})"
                                           + (f"; it is caught by '{r.covered_by.most_common(1)[0][0]}'"
                                              if r.covered_by else "")))
    for n in negatives:
        r = _replay_one(n, focus.get(n), context, text, config, name, covered=False)
        report.negatives.append(r)
        if r.hits:
            report.failures.append(Failure("fires_on_negative", f"{sum(r.hits.values())} alert(s) "
                                           f"on the negative {n}, e.g. {r.examples[0]}"))
    return report
