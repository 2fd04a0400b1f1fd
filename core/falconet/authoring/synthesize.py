"""``falconet rules synthesize``: a small, readable condition from evidence.

1. Every event in the focus of the positive and negative captures becomes a set of atoms
   (:mod:`.features`), extracted by the engine itself during an in-process replay; macros of the
   loaded rules are evaluated by the rules engine (one probe rule per macro).
2. Each distinct positive event is a seed. For each event-type restriction true on the seed
   (``evt.type = X`` or a macro that restricts event types, e.g. ``spawned_process``), a greedy
   set cover adds the atom of the seed that removes the most remaining negatives per unit of
   cost, until no negative is left (bitsets over the distinct negative events: fast and
   deterministic).
3. Redundant atoms are dropped, then each atom is generalised (exact path -> directory prefix,
   value -> a loaded list holding it) as far as the negatives still allow.
4. The cheapest cover wins (macros and lists are cheaper than raw values: reuse is preferred);
   the winner is proven by replay (:mod:`.prove`); when that fails, the next candidate is tried.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from falconet.app import App
from falconet.authoring.context import RulesContext, ruleset_of
from falconet.authoring.features import (
    Atom,
    Extractor,
    atom_cost,
    field_of,
    generality,
    render,
    render_all,
)
from falconet.authoring.focus import Focus, FocusFilter
from falconet.authoring.prove import ProveReport, prove
from falconet.authoring.replay import make_app, replay
from falconet.config import Config
from falconet.events import Event

PROBE = "<macro-probes>"
PROBE_PREFIX = "__probe__ "
#: seeds tried per synthesis (distinct positive events, most telling types first)
MAX_SEEDS = 400
MAX_ATOMS = 6
#: candidates proven by replay before giving up
MAX_PROVE = 4
#: event types that say little on their own: tried as seeds last
DULL_TYPES = frozenset({"read", "write", "close", "mmap", "fstat", "brk", "munmap", "pread64",
                        "lseek", "ioctl", "fcntl", "poll", "futex", "sendto", "recvfrom",
                        "procexit"})
DULL_PENALTY = 2.5
SPREAD_WEIGHT = 0.3
#: process creation is how everything starts, rarely the behaviour itself
CLONE_TYPES = frozenset({"clone", "clone3", "fork", "vfork", "procfork"})
CLONE_PENALTY = 1.0


#: output labels, Falco's wording
LABELS = {"evt.type": "evt_type", "user.name": "user", "proc.name": "process",
          "proc.pname": "parent", "proc.cmdline": "cmdline", "proc.pid": "pid",
          "fd.name": "file", "proc.exepath": "exepath", "container.id": "container_id",
          "container.image.repository": "image"}


class SynthesisError(Exception):
    """No condition separates the evidence (the message says what was tried)."""


@dataclass
class Evidence:
    """Distinct atom sets of a capture's events in focus, with how often each occurred."""

    path: str
    sets: Counter = field(default_factory=Counter)
    events: int = 0
    in_focus: int = 0


@dataclass
class Candidate:
    atoms: tuple[Atom, ...]
    cost: float
    seed: frozenset[Atom]
    rank: int

    @property
    def condition(self) -> str:
        return render_all(self.atoms)


@dataclass
class SynthesisResult:
    rule: dict[str, Any]
    yaml: str
    candidate: Candidate
    proof: ProveReport
    positives: list[Evidence]
    negatives: list[Evidence]
    seconds: float
    tried: int
    matched_positive_events: int

    def report(self) -> str:
        c = self.candidate
        lines = [f"condition: {c.condition}",
                 f"  from a seed event of type {_seed_type(c.seed)} (cost {c.cost:.1f}); "
                 f"{self.tried} candidate(s) proven",
                 f"  matches {self.matched_positive_events} positive event(s) in focus; 0 of "
                 f"{sum(n.in_focus for n in self.negatives)} negative events in focus "
                 f"({sum(len(n.sets) for n in self.negatives)} distinct)"]
        for a in c.atoms:
            lines.append(f"  - {render(a)}")
        lines.append(f"synthesis took {self.seconds:.2f}s")
        lines.append(self.proof.text())
        return "\n".join(lines)


def _only(ev: Evidence, types: set[str]) -> Evidence:
    out = Evidence(ev.path, Counter({s: n for s, n in ev.sets.items() if _seed_type(s) in types}),
                   ev.events, ev.in_focus)
    return out


def _seed_type(seed: frozenset[Atom]) -> str:
    return next((a[2] for a in seed if a[0] == "evt.type"), "?")


def expanded_lists(lists: dict[str, list[str]], limit: int = 500) -> dict[str, list[str]]:
    """Lists with their nested list names expanded (as the loader does)."""
    out: dict[str, list[str]] = {}

    def expand(name: str, seen: set[str]) -> list[str]:
        res: list[str] = []
        for it in lists.get(name, []):
            if it in lists and it not in seen:
                res += expand(it, seen | {it})
            else:
                res.append(it)
        return res
    for n in lists:
        items = expand(n, {n})
        if 0 < len(items) <= limit:
            out[n] = items
    return out


def probe_text(macros: Iterable[str]) -> str:
    """One rule per macro (``condition: <macro>``), to evaluate macros with the real engine."""
    items = []
    for m in macros:
        items.append({"rule": PROBE_PREFIX + m, "desc": "macro probe", "condition": m,
                      "output": "probe", "priority": "DEBUG", "skip-if-unknown-filter": True})
    return yaml.safe_dump(items, sort_keys=False) if items else "[]\n"


class Synthesizer:
    def __init__(self, context: RulesContext, config: Config | None = None) -> None:
        self.context = context
        self.config = config
        self.lists = expanded_lists(context.items.lists)
        self.probes = probe_text(context.items.macros)
        app = make_app(config)
        res = context.load(app, [(PROBE, self.probes)])
        if not res.ok:      # a macro that does not compile alone: no macro atoms
            self.probes = "[]\n"
            res = context.load(app, [(PROBE, self.probes)])
        #: macro -> event types it restricts to (None: every type)
        self.macro_types: dict[str, frozenset[str] | None] = {}
        for r in res.rules:
            if r.name.startswith(PROBE_PREFIX):
                et = r.event_types
                self.macro_types[r.name[len(PROBE_PREFIX):]] = frozenset(et) if et else None
        self.registry = app.ctx.fields
        #: (path, event types, repr(focus)) -> the evidence of that replay
        self._cache: dict[tuple[str, frozenset[str] | None, str], Evidence] = {}
        self._indexes: dict[tuple[int, ...], Any] = {}

    # ------------------------------------------------------------------------ evidence
    def evidence(self, path: str, types: frozenset[str] | None = None,
                 focus: Focus | None = None) -> Evidence:
        key = (os.path.abspath(path), types, repr(focus))
        if key in self._cache:
            return self._cache[key]
        ev = Evidence(path)

        def setup(app: App) -> list[Any]:
            res = self.context.load(app, [(PROBE, self.probes)])
            probes = ruleset_of(res, [PROBE]) if res.ok else None
            ex = Extractor(app.ctx.fields.resolve, self.lists, probes, PROBE_PREFIX)

            def visit(evt: Event) -> None:
                if (types is not None and evt.type not in types) or evt.type in DULL_TYPES:
                    return
                ev.sets[ex.atoms(evt)] += 1
            return [visit]
        st = replay(path, (), config=self.config, focus=focus, setup=setup)
        ev.events, ev.in_focus = st.events, st.in_focus
        self._cache[key] = ev
        return ev

    def evidence_many(self, path: str, focuses: dict[str, Focus]) -> dict[str, Evidence]:
        """The evidence of several focuses of one capture, in one replay (a batch recording of
        many actions): atoms are computed once per event that is in any focus."""
        out = {k: Evidence(path) for k in focuses}

        def setup(app: App) -> list[Any]:
            res = self.context.load(app, [(PROBE, self.probes)])
            probes = ruleset_of(res, [PROBE]) if res.ok else None
            ex = Extractor(app.ctx.fields.resolve, self.lists, probes, PROBE_PREFIX)
            resolve = app.ctx.fields.resolve
            filters = [(k, FocusFilter(f, resolve)) for k, f in focuses.items()]

            def visit(evt: Event) -> None:
                atoms = None
                if evt.type in DULL_TYPES:
                    return
                for k, f in filters:
                    if f(evt):
                        ev = out[k]
                        ev.in_focus += 1
                        if atoms is None:
                            atoms = ex.atoms(evt)
                        ev.sets[atoms] += 1
            return [visit]
        st = replay(path, (), config=self.config, focus=Focus(), setup=setup)
        for ev in out.values():
            ev.events = st.events
        return out

    # ------------------------------------------------------------------------ search
    def candidates(self, positives: list[Evidence], negatives: list[Evidence],
                   limit: int = MAX_PROVE, ignore: int = 0) -> list[Candidate]:
        """The best conditions, cheapest first. ``ignore``: bits of distinct negative events
        (:meth:`universe`) that do not count (the same behaviour seen elsewhere)."""
        index = self._index(negatives)
        keep = ~ignore

        def mask(a: Atom) -> int:
            return index.get(a, 0) & keep

        first = positives[0]
        seeds = sorted(first.sets, key=lambda s: (self._rank(s), -first.sets[s],
                                                  sorted(s)))[:MAX_SEEDS]
        found: dict[tuple[Atom, ...], Candidate] = {}
        for seed in seeds:
            for tp in self._type_parts(seed):
                c = self._cover(seed, tp, mask, first, positives[1:])
                if c is not None and c.atoms not in found:
                    found[c.atoms] = c
        return sorted(found.values(), key=lambda c: (c.cost, c.rank, len(c.atoms),
                                                     c.condition))[:limit]

    def universe(self, negatives: list[Evidence]) -> dict[frozenset[Atom], int]:
        """distinct negative event -> its bit in the bitsets of :meth:`candidates`."""
        self._index(negatives)
        return self._indexes[tuple(id(n) for n in negatives)][2]

    def _index(self, negatives: list[Evidence]) -> dict[Atom, int]:
        """atom -> bitset of the distinct negative events it is true on (cached)."""
        key = tuple(id(n) for n in negatives)
        if key in self._indexes:
            return self._indexes[key][1]
        universe: dict[frozenset[Atom], int] = {}
        for n in negatives:
            for s in n.sets:
                universe.setdefault(s, len(universe))
        index: dict[Atom, int] = {}
        for s, i in universe.items():
            bit = 1 << i
            for a in s:
                index[a] = index.get(a, 0) | bit
        self._indexes[key] = (negatives, index, universe)   # holds the evidences: ids stay valid
        return index

    def _rank(self, seed: frozenset[Atom]) -> int:
        t = _seed_type(seed)
        if t in DULL_TYPES:
            return 5
        return 4 if t in CLONE_TYPES else 1

    def _type_parts(self, seed: frozenset[Atom]) -> list[Atom]:
        t = _seed_type(seed)
        out: list[Atom] = [("evt.type", "=", t)]
        for a in seed:
            if a[0] == "macro":
                types = self.macro_types.get(a[2])
                if types and t in types and len(types) <= 8:
                    out.append(a)
        return out

    def _cover(self, seed: frozenset[Atom], tp: Atom, mask: Any, positive: Evidence,
               others: list[Evidence]) -> Candidate | None:
        chosen = [tp]
        remaining = mask(tp)
        pool = sorted((a for a in seed if a != tp and a[0] != "evt.type"),
                      key=lambda a: (atom_cost(a), a))
        while remaining and len(chosen) < MAX_ATOMS:
            best, best_score = None, 0.0
            before = remaining.bit_count()
            for a in pool:
                if a in chosen:
                    continue
                gain = before - (remaining & mask(a)).bit_count()
                if gain <= 0:
                    continue
                score = gain / atom_cost(a)
                if score > best_score:
                    best, best_score = a, score
            if best is None:
                return None
            chosen.append(best)
            remaining &= mask(best)
        if remaining:
            return None

        def ok(atoms: list[Atom]) -> bool:
            m = -1
            for a in atoms:
                m &= mask(a)
                if not m:
                    break
            if m:
                return False
            return all(any(set(atoms) <= s for s in o.sets) for o in others)
        if not ok(chosen):
            return None
        # drop what the others already cover (most expensive first)
        for a in sorted(chosen[1:], key=atom_cost, reverse=True):
            trial = [x for x in chosen if x != a]
            if ok(trial):
                chosen = trial
        # generalise each atom as far as the negatives allow
        for i, a in enumerate(list(chosen)):
            if i == 0:
                continue
            wider = sorted((b for b in seed if field_of(b) == field_of(a)
                            and generality(b) > generality(a) and b not in chosen),
                           key=generality, reverse=True)
            for b in wider:
                trial = [b if x == a else x for x in chosen]
                if ok(trial):
                    chosen = trial
                    break
        atoms = tuple(chosen)
        rank = self._rank(seed)
        # the behaviour's key event fires once, not on every file its process reads: a
        # condition true on many positive events is a description of the process, not of it
        spread = sum(n for s, n in positive.sets.items() if s >= set(atoms))
        penalty_spread = SPREAD_WEIGHT * math.log2(1 + spread)
        # a dull event type (read, close...) is rarely the behaviour itself: last resort
        penalty = DULL_PENALTY if rank >= 5 else CLONE_PENALTY if rank == 4 else 0.0
        return Candidate(atoms, sum(atom_cost(a) for a in atoms) + penalty + penalty_spread,
                         seed, rank)

    # ------------------------------------------------------------------------ the rule
    def rule_for(self, c: Candidate, name: str, *, priority: str = "WARNING",
                 tags: Iterable[str] = (), desc: str = "") -> dict[str, Any]:
        fields = ["evt.type", "user.name", "proc.name", "proc.pname", "proc.cmdline", "proc.pid"]
        for a in c.atoms:
            f = field_of(a)
            if f not in ("macro", "evt.type", "list") and f not in fields and \
                    f not in ("proc.tty", "proc.aname", "proc.args"):
                fields.append(f)
        if any(a[0] in ("fd.name",) or a[0].startswith("evt.is_open") for a in c.atoms) \
                and "fd.name" not in fields:
            fields.append("fd.name")
        fields += ["container.id", "container.image.repository"]
        have = []
        for f in fields:
            try:
                self.registry.lookup(f)
                have.append(f)
            except LookupError:
                continue
        out = " ".join(f"{LABELS.get(f) or f.replace('.', '_')}=%{f}"
                       for f in dict.fromkeys(have))
        return {"rule": name,
                "desc": desc or f"Synthesized by `falconet rules synthesize`: {c.condition}",
                "condition": c.condition,
                "output": f"{name} ({out})",
                "priority": priority.upper(),
                "tags": sorted({"falconet_synthesized", *tags})}

    def synthesize(self, positives: list[str], negatives: list[str], *, name: str,
                   priority: str = "WARNING", tags: Iterable[str] = (),
                   focus: dict[str, Focus] | None = None) -> SynthesisResult:
        t0 = time.monotonic()
        focus = focus or {}
        pos = [self.evidence(p, None, focus.get(p)) for p in positives]
        empty = [p.path for p in pos if not p.sets]
        if empty:
            raise SynthesisError(f"no events in focus in {', '.join(empty)}")
        types = {_seed_type(s) for p in pos for s in p.sets}
        if types - DULL_TYPES:
            # reads, closes...: never the behaviour when anything else is there
            types -= DULL_TYPES
            pos = [_only(p, types) for p in pos]
        for t in self.macro_types.values():
            if t and types & t:
                types |= t
        neg = [self.evidence(n, frozenset(types), focus.get(n)) for n in negatives]
        cands = self.candidates(pos, neg)
        if not cands:
            raise SynthesisError(
                f"no condition of at most {MAX_ATOMS} predicates matches a positive event and "
                f"none of the {sum(len(n.sets) for n in neg)} distinct negative events "
                f"({len(sum((list(p.sets) for p in pos), []))} distinct positive events tried)")
        last: ProveReport | None = None
        for i, c in enumerate(cands, 1):
            rule = self.rule_for(c, name, priority=priority, tags=tags)
            text = yaml.safe_dump([rule], sort_keys=False, width=100, allow_unicode=True)
            proof = prove(text, context=self.context, positives=positives, negatives=negatives,
                          config=self.config, focus=focus)
            last = proof
            if proof.proven:
                matched = sum(n for p in pos for s, n in p.sets.items() if set(c.atoms) <= s)
                return SynthesisResult(rule, text, c, proof, pos, neg,
                                       time.monotonic() - t0, i, matched)
        raise SynthesisError("no candidate survived the proof; the last: "
                             + "; ".join(last.feedback() if last else []))
