"""``falconet learn suggest``: Falco ``exceptions`` from alerts raised on benign behaviour,
proven by replay before anything is written.

1. evidence: the alerts the rules raised on the learning data (a capture, replayed here with the
   learning plugin off; or a profile's recorded alerts), below ``max_priority`` (Warning and
   above are never excepted automatically: they are what poisoning would hide);
2. candidates: per rule, one exception per set of evidence fields (image, tag, namespace,
   process, parent, path, whichever the alert carries) with one value tuple per distinct evidence;
3. proof: the attack capture is replayed without and with the candidate file; a value tuple that
   matches an attack alert that went missing is dropped (and reported), and the proof repeats;
   the learning capture is replayed with the final file: the excepted alerts must be gone.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from falconet.api import hookimpl
from falconet.priorities import Priority

from falconet_learning.learner import NO_IMAGE, evidence

#: why an alert of a container without a known image is not excepted
NO_IMAGE_REASON = ("a container whose image is unknown: an exception cannot be narrowed to its "
                   "workload and would cover every such container")

FIELD_ORDER = ("container.image.repository", "container.image.tag", "k8s.ns.name",
               "proc.exepath", "proc.name", "proc.pname", "fd.name")


class _Collector:
    """An extra plugin contributing one sink that keeps every alert of a replay."""

    def __init__(self) -> None:
        self.alerts: list[Any] = []
        outer = self

        class Sink:
            name = "learn-suggest"
            min_priority = Priority.DEBUG

            def start(self) -> None: ...
            def flush(self) -> None: ...
            def close(self) -> None: ...

            def send(self, alert: Any) -> None:
                outer.alerts.append(alert)
        self._sink = Sink()

    @hookimpl
    def falconet_alert_sinks(self, engine: Any) -> list[Any]:
        return [self._sink]


def replay_alerts(capture: str, rules: list[str], config_path: str | None,
                  overrides: list[str]) -> list[Any]:
    """Every alert of ``capture`` replayed in-process with ``rules`` (learning plugin off)."""
    from falconet.app import App  # noqa: PLC0415
    from falconet.config import default_config_path, load_config  # noqa: PLC0415

    ov = [*overrides, "plugins.learning.enabled=false", "outputs.stdout.enabled=false",
          "outputs.file.enabled=false", "outputs.webhook.enabled=false"]
    cfg = load_config(config_path or default_config_path(), ov)
    col = _Collector()
    app = App(cfg, source_name="replay", extra_plugins=[("learn-suggest", col)])
    app.load_plugins()
    app.load_ruleset(rules)
    app.build_pipeline()
    app.run("replay", {"path": capture, "progress": False,
                       "restore_state": lambda p, d: app.host.restore_state(p, d, app.ctx)})
    return col.alerts


def _tuple(ev: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, str(ev[k])) for k in FIELD_ORDER if ev.get(k) not in (None, ""))


@dataclass
class Candidate:
    rule: str
    values: tuple[tuple[str, str], ...]
    count: int
    sample: str
    dropped: str = ""


@dataclass
class Suggestion:
    candidates: list[Candidate] = field(default_factory=list)
    attack_baseline: int = 0
    attack_after: int = 0
    learning_before: int = 0
    learning_after: int = 0
    not_excepted: dict[str, int] = field(default_factory=dict)   # rule -> Warning+ alerts

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.dropped]

    def report(self) -> dict[str, Any]:
        return {"exceptions": [{"rule": c.rule, "values": dict(c.values), "suppressed": c.count}
                               for c in self.kept],
                "dropped": [{"rule": c.rule, "values": dict(c.values), "reason": c.dropped}
                            for c in self.candidates if c.dropped],
                "attack_alerts_baseline": self.attack_baseline,
                "attack_alerts_with_exceptions": self.attack_after,
                "learning_alerts_excepted_before": self.learning_before,
                "learning_alerts_excepted_after": self.learning_after,
                "warning_or_above_not_excepted": self.not_excepted}


def candidates_from(items: list[tuple[str, Priority, dict[str, Any], str, int]],
                    max_priority: Priority) -> tuple[list[Candidate], dict[str, int]]:
    """``items``: (rule, priority, evidence, output sample, count)."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    unnarrowable: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    high: Counter[str] = Counter()
    for rule, prio, ev, sample, n in items:
        if prio < max_priority:
            high[rule] += n
            continue
        key = (rule, _tuple(ev))
        if not key[1]:
            continue
        if ev.get(NO_IMAGE):
            unnarrowable.add(key)
        counts[key] += n
        samples.setdefault(key, sample)
    cands = [Candidate(r, v, n, samples[(r, v)],
                       NO_IMAGE_REASON if (r, v) in unnarrowable else "")
             for (r, v), n in sorted(counts.items())]
    return cands, dict(high)


def _alert_key(a: Any) -> tuple[Any, ...]:
    pid = a.lineage[0].get("pid") if a.lineage else None
    return (a.rule, a.time_ns, pid)


def render(cands: list[Candidate], header: str) -> str:
    """The Falco rules file: ``- rule: X`` / ``exceptions:`` / ``override: {exceptions: append}``."""
    out = [f"# {line}" if line else "#" for line in header.splitlines()]
    by_rule: dict[str, dict[tuple[str, ...], list[Candidate]]] = {}
    for c in cands:
        by_rule.setdefault(c.rule, {}).setdefault(tuple(k for k, _ in c.values), []).append(c)
    for rule in sorted(by_rule):
        out += ["", f"- rule: {json.dumps(rule)}", "  exceptions:"]
        for i, (fields, cs) in enumerate(sorted(by_rule[rule].items()), start=1):
            out += [f"    - name: learned_{i}",
                    f"      fields: [{', '.join(fields)}]",
                    "      comps: [" + ", ".join('"="' for _ in fields) + "]",
                    "      values:"]
            for c in cs:
                sample = " ".join(c.sample.split())[:160]
                out.append(f"        # suppressed {c.count} alert(s) on the learning data, "
                           f"e.g.: {sample}")
                out.append("        - [" + ", ".join(json.dumps(v) for _, v in c.values) + "]")
        out += ["  override:", "    exceptions: append"]
    return "\n".join(out) + "\n"


def matches(c: Candidate, a: Any) -> bool:
    if a.rule != c.rule:
        return False
    ev = evidence(a)
    return all(str(ev.get(k)) == v for k, v in c.values)
