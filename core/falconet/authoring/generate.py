"""``falconet rules generate --prompt``: a model backend proposes a rule, ``prove`` checks it,
and every failure goes back to the model, for a bounded number of rounds.

Backends come from the ``falconet_rule_authoring_backends`` hook (``plugins/falconet-llm``:
OpenAI-compatible chat completions). The model is given the rule format, the fields with their
types, the macros and lists in scope, and summaries of the positive and negative evidence.
Without positive evidence the rule is still validated (load, names, event types) and the result
says plainly that it is unproven (exit status 9).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from falconet.authoring.context import RulesContext
from falconet.authoring.prove import ProveReport, prove
from falconet.authoring.replay import make_app
from falconet.config import Config

#: characters of the evidence summary per capture
SUMMARY_TOP = 12
MAX_MACRO_CHARS = 200

RULE_FORMAT = """Answer with one YAML document (a list) in a ```yaml fenced block, Falco rule format:

- rule: <Title Case name>
  desc: <what it detects and what to check>
  condition: <Falco filter expression>
  output: "<message> (user=%user.name process=%proc.name cmdline=%proc.cmdline ...)"
  priority: <EMERGENCY|ALERT|CRITICAL|ERROR|WARNING|NOTICE|INFORMATIONAL|DEBUG>
  tags: [<tags>]

Conditions: field op value joined with and/or/not and parentheses; ops =, !=, <, <=, >, >=,
contains, icontains, startswith, endswith, glob, in (a, b), pmatch, exists. Restrict the rule
to event types (evt.type = x, evt.type in (a, b), or a macro that does). Use only the fields,
macros and lists listed here; define new lists/macros in the same document if needed; quote
string values that contain spaces. Syscall events are exit events (evt.dir = <)."""


class GenerateError(Exception):
    """No backend, or the backend failed (the message says why)."""


@dataclass
class Round:
    text: str | None
    report: ProveReport | None
    reply: str


@dataclass
class GenerateResult:
    rounds: list[Round] = field(default_factory=list)
    evidence: bool = False

    @property
    def last(self) -> Round | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def text(self) -> str | None:
        return self.last.text if self.last else None

    @property
    def exit_code(self) -> int:
        if self.last is None or self.last.report is None:
            return 3
        return self.last.report.exit_code

    def summary(self) -> str:
        lines = [f"{len(self.rounds)} round(s)"]
        for i, r in enumerate(self.rounds, 1):
            st = r.report.status if r.report else "no YAML in the answer"
            lines.append(f"round {i}: {st}")
            if r.report:
                lines += [f"  {f}" for f in r.report.feedback()]
        if self.last and self.last.report:
            lines.append(self.last.report.text())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "text": self.text,
                "rounds": [{"text": r.text, "report": r.report.to_dict() if r.report else None}
                           for r in self.rounds]}


_FENCE = re.compile(r"```(?:ya?ml)?\s*\n(.*?)```", re.S)


def extract_yaml(reply: str) -> str | None:
    m = _FENCE.search(reply)
    if m:
        return m.group(1)
    return reply if "- rule:" in reply else None


def _fields_text(app: Any) -> str:
    rows = []
    for f in sorted(app.ctx.fields.fields.values(), key=lambda f: f.name):
        if "syscall" not in f.sources:
            continue
        t = getattr(f.type, "value", str(f.type))
        rows.append(f"{f.name} ({t}): {f.desc[:70]}")
    return "\n".join(rows)


def _scope_text(context: RulesContext) -> str:
    macros = "\n".join(f"{n}: {c.strip()[:MAX_MACRO_CHARS]}"
                       for n, c in context.items.macros.items())
    lists = "\n".join(f"{n}: [{', '.join(v[:8])}{', ...' if len(v) > 8 else ''}]"
                      for n, v in context.items.lists.items())
    return f"Macros in scope:\n{macros or '(none)'}\n\nLists in scope:\n{lists or '(none)'}"


def summarize(ev: Any) -> str:
    """A few lines on what the focus events of a capture did (types, processes, files)."""
    types: Counter = Counter()
    procs: Counter = Counter()
    files: Counter = Counter()
    for s, n in ev.sets.items():
        for a in s:
            if a[0] == "evt.type":
                types[a[2]] += n
            elif a[:2] == ("proc.name", "="):
                procs[a[2]] += n
            elif a[:2] == ("fd.name", "="):
                files[a[2]] += n

    def top(c: Counter) -> str:
        return ", ".join(f"{k} ({v})" for k, v in c.most_common(SUMMARY_TOP)) or "-"
    return (f"{ev.path}: {ev.in_focus} events in focus\n  event types: {top(types)}\n"
            f"  processes: {top(procs)}\n  files: {top(files)}")


def backends(app: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    host = app.host
    for _plugin, items in host.call(host.hook.falconet_rule_authoring_backends, engine=app.ctx):
        for b in items or []:
            if hasattr(b, "name") and callable(getattr(b, "propose", None)):
                out.setdefault(b.name, b)
    return out


def generate(prompt: str, *, context: RulesContext, positives: list[str], negatives: list[str],
             config: Config | None = None, backend: str | None = None, rounds: int = 4,
             log: Callable[[str], None] = lambda _m: None) -> GenerateResult:
    from falconet.authoring.synthesize import Synthesizer  # noqa: PLC0415

    app = make_app(config)
    found = backends(app)
    if not found:
        raise GenerateError("no rule authoring backend is installed (pip install "
                            "'falconet-llm[openai]', see docs/authoring.md)")
    if backend is not None and backend not in found:
        raise GenerateError(f"unknown backend '{backend}' (installed: {', '.join(found)})")
    model = found[backend] if backend else next(iter(found.values()))
    syn = Synthesizer(context, config)
    pos = "\n".join(summarize(syn.evidence(p)) for p in positives) or "(none: unproven)"
    neg = "\n".join(summarize(syn.evidence(n)) for n in negatives) or "(none)"
    system = (f"You write Falco rules for Falconet.\n\n{RULE_FORMAT}\n\nFields:\n"
              f"{_fields_text(app)}\n\n{_scope_text(context)}")
    user = (f"Detect: {prompt}\n\nPositive evidence (the rule must fire on it):\n{pos}\n\n"
            f"Negative evidence (the rule must not fire on it):\n{neg}")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    result = GenerateResult(evidence=bool(positives))
    for i in range(max(1, rounds)):
        try:
            reply = model.propose(messages)
        except RuntimeError as e:
            raise GenerateError(f"backend '{model.name}': {e}") from None
        text = extract_yaml(reply)
        if text is None:
            result.rounds.append(Round(None, None, reply))
            feedback = "Your answer has no ```yaml block with a rule. Answer with the YAML only."
        else:
            rep = prove(text, context=context, positives=positives, negatives=negatives,
                        config=config)
            result.rounds.append(Round(text, rep, reply))
            log(f"round {i + 1}: {rep.status}")
            if rep.status in ("proven", "unproven"):
                break
            feedback = ("The rule failed validation. Fix every problem and answer with the "
                        "whole corrected YAML:\n" + "\n".join(rep.feedback()))
        messages += [{"role": "assistant", "content": reply},
                     {"role": "user", "content": feedback}]
    return result
