"""Rule authoring that proves itself (``falconet rules prove|synthesize|generate``).

- :mod:`.focus`: which events of a capture are the behaviour (container, process tree, window).
- :mod:`.replay`: in-process replay of a capture through the engine's own parsers and rules.
- :mod:`.context`: the rules a new rule is written against (their macros, lists, fields).
- :mod:`.names`: static checks Falco does not make (unknown fields, undefined names as bare words).
- :mod:`.prove`: the shared validation, with one exit status per failed check.
- :mod:`.features`, :mod:`.synthesize`: a small condition from positive and negative evidence.
- :mod:`.evidence`: recording evidence live (simulator actions, commands, the benign workload).
- :mod:`.generate`: an LLM proposes, ``prove`` disposes (bounded feedback rounds).

Only the rules engine's public API is used (``load_rules``, ``load_rules_text``, ``LoadResult``,
``Ruleset``, ``parse_condition``), so the rules stages can change underneath.
"""
