"""Loader limits (issue 11, finding 7): rules files that would stall or crash the loader are a
``file:line:col`` error in bounded time and memory, through the real ``falconet rules validate``
(a subprocess with a timeout: the old code ran for minutes, raised RecursionError or MemoryError).
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from falconet.rules import limits
from rulehelp import load

FALCONET = [sys.executable, "-m", "falconet"]
RULE = "- rule: r\n  desc: d\n  condition: {cond}\n  output: o\n  priority: WARNING\n"


def validate(path: Path | str, *opts: str, budget: float = 15.0) -> subprocess.CompletedProcess:
    """``falconet rules validate`` on ``path``: must end within ``budget`` seconds, exit 1,
    without a traceback."""
    t0 = time.monotonic()
    r = subprocess.run([*FALCONET, "rules", "validate", "-c", "/dev/null", *opts, str(path)],
                       capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert elapsed < budget, f"took {elapsed:.1f}s"
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    return r


def test_exponential_macro_expansion_fails_fast(tmp_path: Path) -> None:
    """39 macros that each use the previous one twice: 2**39 nodes (the old loader was killed
    after 30 s); now the first macro past the limit is an error at its condition."""
    text = "- macro: m0\n  condition: proc.name = a\n" + "".join(
        f"- macro: m{i}\n  condition: m{i - 1} or m{i - 1}\n" for i in range(1, 40))
    p = tmp_path / "macros.yaml"
    p.write_text(text + RULE.format(cond="evt.type = open and m39"))
    r = validate(p, budget=10)
    first = r.stdout.splitlines()[0]
    bad = next(i for i in range(40) if 2 ** (i + 1) - 1 > limits.MAX_CONDITION_NODES)
    assert first == (f"{p}:{2 * bad + 2}:14: error: macro 'm{bad}': Macro condition has more than "
                     f"{limits.MAX_CONDITION_NODES} nodes after expanding macros (a macro used "
                     "many times over?)")


def test_lists_doubling_39_times_fail_in_bounded_memory() -> None:
    text = "- list: l0\n  items: [a, b]\n" + "".join(
        f"- list: l{i}\n  items: [l{i - 1}, l{i - 1}]\n" for i in range(1, 40))
    tracemalloc.start()
    try:
        res = load([("lists.yaml", text + RULE.format(cond="proc.name in (l39)"))])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not res.ok
    e = res.errors[0]
    assert (e.file, e.line, e.col, e.item_name) == ("lists.yaml", 33, 3, "l16")
    assert e.message == (f"List 'l16' has more than {limits.MAX_LIST_ITEMS} items after expanding "
                         "the lists it names")
    assert peak < 100 << 20            # the old loader took 3 GB, then MemoryError


def test_deep_yaml_nesting_is_a_located_error(tmp_path: Path) -> None:
    p = tmp_path / "deep.yaml"
    p.write_text("- rule: r\n  desc: " + "[" * 10_000 + "]" * 10_000 + "\n")
    r = validate(p)
    assert r.stdout.startswith(f"{p}:2:{9 + limits.MAX_YAML_DEPTH - 2}: error: file '{p}': "
                               f"Invalid YAML: nested deeper than {limits.MAX_YAML_DEPTH} levels")
    block = tmp_path / "block.yaml"
    block.write_text("- rule: r\n  desc:\n" + "".join("  " * (i + 2) + f"k{i}:\n"
                                                      for i in range(200)))
    r = validate(block)
    assert f"Invalid YAML: nested deeper than {limits.MAX_YAML_DEPTH} levels" in r.stdout


def test_yaml_alias_bomb_is_refused_not_walked(tmp_path: Path) -> None:
    """40 aliases of aliases under a key the loader walks (exception fields): 2**40 paths."""
    anchors = "- list: anchors\n  items: []\n  junk:\n    a0: &a0 [x, x]\n" + "".join(
        f"    a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 40))
    p = tmp_path / "bomb.yaml"
    p.write_text(anchors + RULE.format(cond="evt.type = openat")
                 + "  exceptions:\n  - name: e\n    fields: *a39\n    comps: *a39\n")
    r = validate(p, budget=10)
    assert f"Invalid YAML: aliases expand to more than {limits.MAX_YAML_NODES} YAML nodes" \
        in r.stdout


def test_condition_nesting_matches_the_parser_limit_and_macros_cannot_exceed_it() -> None:
    deep = "(" * 10_000 + "proc.name = bash" + ")" * 10_000
    res = load([("c.yaml", RULE.format(cond=deep))])
    assert not res.ok and res.errors[0].message.endswith("exceeded max depth limit of 1000")
    # macros nest what one condition cannot: each level is one and/or/not after expansion
    text = "- macro: m0\n  condition: proc.name = bash\n" + "".join(
        f"- macro: m{i}\n  condition: proc.name = bash and m{i - 1}\n" for i in range(1, 600))
    res = load([("m.yaml", text + RULE.format(cond="evt.type = openat and m599"))])
    assert not res.ok
    e = res.errors[0]
    assert (e.line, e.item_name) == (2 * (limits.MAX_EXPANDED_DEPTH + 1) + 2, "m401")
    assert e.message == (f"Macro condition is nested deeper than {limits.MAX_EXPANDED_DEPTH} "
                         "levels after expanding macros")
    # transformers nest too (tolower(tolower(...))): the same budget, a clear message
    tl = "tolower(" * 600 + "proc.name" + ")" * 600 + " = bash"
    res = load([("t.yaml", RULE.format(cond=tl))])
    assert not res.ok
    assert res.errors[0].message == (f"Condition nests transformers deeper than "
                                     f"{limits.MAX_EXPANDED_DEPTH} levels")
    # just under the limit: loads and evaluates (no RecursionError at compile or match time)
    ok = load([("m.yaml", text.split("- macro: m399\n")[0]
                + RULE.format(cond="evt.type = openat and m398"))])
    assert ok.ok, [str(e) for e in ok.errors]


def test_list_substitution_cannot_grow_a_condition_without_bound() -> None:
    items = ", ".join(f"item{i:05d}" for i in range(50_000))
    uses = " or ".join("proc.name in (big)" for _ in range(20))        # 20 x 600 kB
    res = load([("s.yaml", f"- list: big\n  items: [{items}]\n" + RULE.format(cond=uses))])
    assert not res.ok
    assert res.errors[0].message == (f"Condition is longer than {limits.MAX_CONDITION_CHARS} "
                                     "characters after substituting lists")
    assert (res.errors[0].line, res.errors[0].col) == (5, 14)


def test_file_size_limit_is_configurable_and_reads_stop_at_it(tmp_path: Path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text(RULE.format(cond="evt.type = openat") + "# " + "x" * 2000 + "\n")
    r = validate(small, "-o", "rules_max_file_size=1000")
    assert r.stdout.startswith(f"{small}:1:1: error: file '{small}': Could not read file: larger "
                               "than 1000 bytes (rules_max_file_size in falconet.yaml)")
    ok = subprocess.run([*FALCONET, "rules", "validate", "-c", "/dev/null", str(small)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write(RULE.format(cond="evt.type = openat"))
        f.write("# " + "x" * (50 << 20) + "\n")
    r = validate(big, budget=10)
    assert f"larger than {limits.DEFAULT_MAX_FILE_BYTES} bytes" in r.stdout
    r = validate("/dev/zero", budget=10)
    assert r.stdout.startswith("/dev/zero:1:1: error: file '/dev/zero': Could not read file: "
                               f"larger than {limits.DEFAULT_MAX_FILE_BYTES} bytes")


def test_aliases_of_a_long_scalar_are_refused_not_copied(tmp_path: Path) -> None:
    """Few nodes, huge text: 2000 aliases of one 2 MB scalar (a 2 MB file) were 2000 copies
    (4 GB, MemoryError) and an exception condition joining them all; the node count alone
    never saw it. Second review of issue 11."""
    aliases = ", ".join(["*s"] * 2000)
    p = tmp_path / "scalar_bomb.yaml"
    p.write_text("- list: big\n  items: [&s " + "a" * (2 << 20) + "]\n"
                 + RULE.format(cond="evt.type = openat")
                 + "  exceptions:\n  - name: e\n    fields: proc.name\n    comps: in\n"
                 + f"    values: [[{aliases}]]\n")
    r = subprocess.run(["bash", "-c", "ulimit -v 2000000; exec \"$@\"", "validate", *FALCONET,
                        "rules", "validate", "-c", "/dev/null", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-2000:]
    assert (f"Invalid YAML: aliases expand to more than {limits.MAX_YAML_ALIAS_CHARS} "
            "characters") in r.stdout


def test_load_messages_escape_what_the_file_holds(tmp_path: Path) -> None:
    """A rule name with a terminal escape and a bidi override (a rules file from the internet)
    reached the operator's terminal raw in `rules validate`. Second review of issue 11."""
    p = tmp_path / "esc.yaml"
    p.write_text('- rule: "r\\x1b[31mRED\\u202e"\n  desc: d\n  condition: nosuchfield = 1\n'
                 "  output: o\n  priority: WARNING\n")
    r = validate(p)
    assert "rule 'r\\u001b[31mRED\\u202e': filter error" in r.stdout, r.stdout
    assert "\x1b" not in r.stdout + r.stderr and "\u202e" not in r.stdout + r.stderr


def test_many_rules_sharing_a_big_macro_have_a_load_wide_budget(tmp_path: Path) -> None:
    """Each condition under MAX_CONDITION_NODES (a macro of 16k nodes), but 300 rules use it:
    5 million nodes to compile (~75 s, and 100k such rules fit in the file limit). The whole
    load has a budget. Second review of issue 11."""
    macros = "- macro: m0\n  condition: proc.name = a\n" + "".join(
        f"- macro: m{i}\n  condition: (m{i - 1} or m{i - 1})\n" for i in range(1, 14))
    rules = "".join(f"- rule: r{i}\n  desc: d\n  condition: evt.type = openat and m13\n"
                    "  output: o\n  priority: WARNING\n" for i in range(300))
    p = tmp_path / "many.yaml"
    p.write_text(macros + rules)
    r = validate(p, budget=15)
    assert (f"the conditions of this load expand to more than "
            f"{limits.MAX_LOADED_CONDITION_NODES} nodes in total") in r.stdout, r.stdout[-500:]


def test_many_rules_sharing_a_big_list_have_a_load_wide_budget(tmp_path: Path) -> None:
    """A 50k-item list is one node, 450 KB of condition text per rule that uses it: 150 rules
    were ~37 s (and a set of 50k strings each). Second review of issue 11."""
    items = ", ".join(f"p{i:06d}" for i in range(50_000))
    rules = "".join(f"- rule: r{i}\n  desc: d\n  condition: evt.type = openat and proc.name in "
                    "(big)\n  output: o\n  priority: WARNING\n" for i in range(150))
    p = tmp_path / "biglist.yaml"
    p.write_text(f"- list: big\n  items: [{items}]\n" + rules)
    r = validate(p, budget=15)
    assert (f"the conditions of this load are longer than "
            f"{limits.MAX_LOADED_CONDITION_CHARS} characters in total") in r.stdout, r.stdout[-500:]


def test_many_macros_sharing_a_big_list_spend_the_same_budget(tmp_path: Path) -> None:
    items = ", ".join(f"p{i:06d}" for i in range(50_000))
    macros = "".join(f"- macro: m{i}\n  condition: proc.name in (big)\n" for i in range(150))
    p = tmp_path / "biglist_macros.yaml"
    p.write_text(f"- list: big\n  items: [{items}]\n" + macros
                 + RULE.format(cond="evt.type = openat and m149"))
    r = validate(p, budget=15)
    assert f"longer than {limits.MAX_LOADED_CONDITION_CHARS} characters" in r.stdout, \
        r.stdout[-500:]
