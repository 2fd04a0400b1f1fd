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
