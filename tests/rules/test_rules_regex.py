"""The ``regex`` operator runs on Google RE2 in POSIX mode with a full match, as libsinsp does
(``re2::RE2(pattern, re2::RE2::POSIX)`` + ``RE2::FullMatch``): Falco's syntax and verdicts, linear
time whatever the pattern, and load errors (not crashes) for what RE2 rejects."""

from __future__ import annotations

import time

import pytest
from falconet.rules.errors import FilterCompileError
from falconet.rules.regex import compile_regex
from rulehelp import errors, load, matcher, rule
from stubfields import event, proc


@pytest.fixture(params=["codegen", "closures"])
def both_compilers(request, monkeypatch):
    import falconet.rules.compiler as loader_mod
    monkeypatch.setattr(loader_mod, "USE_CODEGEN", request.param == "codegen")
    return request.param


def _evt(name: str = "bash", **kw):
    return event("execve", proc(name, f"/usr/bin/{name}", **kw))


@pytest.mark.parametrize("cond, name, expected", [
    ("proc.name regex 'ba.h'", "bash", True),
    ("proc.name regex 'ba'", "bash", False),                          # anchored at both ends
    ("proc.name regex 'a.*'", "bash", False),
    ("proc.name regex '.*sh'", "bash", True),
    ("proc.name regex 'b(a|x)sh'", "bash", True),
    ("proc.name regex 'ba|bash'", "bash", True),                     # leftmost-longest
    # POSIX classes: RE2 knows them; Python's re reads '[[:alpha:]]+' as a set then ']+'
    ("proc.name regex '[[:alpha:]]+'", "bash", True),
    ("proc.name regex '[[:digit:]]+'", "bash", False),
    ("proc.name regex '[[:digit:]]+'", "1234", True),
    ("proc.name regex 'python[0-9.]*'", "python3.11", True),
    ("proc.exepath regex '/usr/(s)?bin/[^/]+'", "bash", True),
    ("proc.name regex 'b.sh'", "b\nsh", False),                       # '.' does not match \n
    ("proc.name regex 'café'", "café", True),                          # UTF-8
    ("proc.name regex 'caf.'", "café", True),                          # '.' is one character
    ("proc.name regex oneof ('ba.h', 'z.*')", "bash", True),
    ("proc.name regex anyof ('x', 'b.*')", "bash", True),
])
def test_verdicts(cond: str, name: str, expected: bool, both_compilers) -> None:
    assert matcher(cond)(_evt(name)) is expected


def test_missing_value_is_false(both_compilers) -> None:
    e = event("openat", proc("bash"))
    assert matcher("user.loginname regex '.*'")(e) is False
    assert matcher("not user.loginname regex '.*'")(e) is True


def test_non_utf8_bytes_in_values_do_not_crash(both_compilers) -> None:
    weird = "bad\udcffname"                        # a file name with an invalid UTF-8 byte
    assert matcher("proc.name regex 'bad.*'")(_evt(weird)) is False   # RE2: '.' needs UTF-8
    assert matcher("proc.name regex 'bad[^a]*'")(_evt(weird)) is False
    assert matcher("proc.name regex 'b.d'")(_evt("bad")) is True


def test_linear_time_on_a_catastrophic_pattern() -> None:
    """``(x+x+)+y`` against 'x' * 40 takes ~2^40 steps with a backtracking engine (Python's re
    would not finish); RE2 answers at once."""
    match = compile_regex("(x+x+)+y")
    start = time.process_time()
    for n in (40, 1000, 20000):
        assert match("x" * n) is False
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize("pattern, reason", [
    ("(a)\\1", "invalid escape sequence: \\1"),               # backreference
    ("a(?=b)", "no argument for repetition operator: ?"),      # lookahead
    ("(?<=a)b", "no argument for repetition operator: ?"),     # lookbehind
    ("(?i)abc", "no argument for repetition operator: ?"),     # inline flags: not POSIX
    ("(?:ab)+", "no argument for repetition operator: ?"),     # non-capturing group: not POSIX
    ("\\d+", "invalid escape sequence: \\d"),                 # Perl class: not POSIX
    ("[z-a]", "invalid character class range: z-a"),
    ("x{2,1}", "invalid repetition size: {2,1}"),
    ("(", "missing ): ("),
    ("a{1001}", "invalid repetition size: {1001}"),
])
def test_rejected_patterns_are_load_errors_with_location(pattern: str, reason: str) -> None:
    quoted = pattern.replace("\\", "\\\\")     # '\\' in a quoted condition string is one '\'
    cond = f"proc.name regex '{quoted}'"
    errs = errors(rule(cond))
    assert len(errs) == 1
    assert errs[0].startswith("<rules>:3:14: error: rule 'r': filter error: invalid regular "
                              f"expression '{pattern}': {reason}"), errs


def test_perl_syntax_gets_a_hint() -> None:
    with pytest.raises(FilterCompileError, match=r"RE2 POSIX syntax.*\[\[:digit:\]\]"):
        compile_regex("\\d+")
    with pytest.raises(FilterCompileError) as ei:
        compile_regex("[z-a]")
    assert "POSIX syntax" not in str(ei.value)                 # plain mistakes: RE2's reason only


def test_bad_regex_in_one_rule_does_not_stop_the_others() -> None:
    res = load(rule("proc.name regex '(a)\\\\1'", name="bad") + rule("proc.name = bash", name="ok"))
    assert not res.ok and len(res.errors) == 1 and "rule 'bad'" in str(res.errors[0])


def test_simple_pattern_still_warns() -> None:
    ws = [str(m) for m in load(rule("proc.name regex bash")).warnings]
    assert any("regex check with 'bash' may be optimized with simpler operators such as '=', "
               "'contains', 'startswith', 'endswith'" in w for w in ws)
    ws = [str(m) for m in load(rule("proc.name regex 'ba[sz]h'")).warnings]
    assert not any("may be optimized" in w for w in ws)


def test_nothing_is_logged_to_stderr_for_a_bad_pattern(capfd) -> None:
    """RE2 logs parse errors to stderr by default; the load error is the only report."""
    errors(rule("proc.name regex '[z-a]'"))
    assert "re2" not in capfd.readouterr().err.lower()


def test_verdict_cache_is_bounded_and_never_changes_a_verdict(monkeypatch) -> None:
    import falconet.rules.regex as rx
    monkeypatch.setattr(rx, "VERDICT_CACHE_SIZE", 3)
    match = rx.compile_regex("a+")
    values = ["a", "b", "aa", "bb", "aaa", "x", "a" * 50]
    for _ in range(2):
        assert [match(v) for v in values] == [True, False, True, False, True, False, True]
    cache = next(d for d in match.__defaults__ if isinstance(d, dict))
    assert len(cache) == 3


def test_verdict_cache_memory_is_bounded_whatever_the_value_length() -> None:
    """The cache is bounded in bytes, not only in entries: values are attacker-chosen (command
    lines, file names, plugin strings), and 4096 remembered 16 KB values would pin 64 MB per
    pattern in a root process. Long values are matched without being remembered."""
    import falconet.rules.regex as rx
    match = rx.compile_regex("x.*")
    cache = next(d for d in match.__defaults__ if isinstance(d, dict))
    for i in range(rx.VERDICT_CACHE_SIZE + 10):
        value = f"{i:08d}" + "y" * 16_000
        assert match(value) is False
        assert match("x" + value) is True           # verdicts unchanged for long values
    assert sum(len(k) for k in cache) <= rx.VERDICT_CACHE_SIZE * rx.VERDICT_CACHE_MAX_LEN
    for v in ("xa", "b", "x" * rx.VERDICT_CACHE_MAX_LEN):
        match(v)
    assert {"xa", "b", "x" * rx.VERDICT_CACHE_MAX_LEN} <= set(cache)   # short ones still are


def test_cli_validate_reports_rejected_syntax_without_traceback(tmp_path) -> None:
    import subprocess
    import sys
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: Backref\n  desc: d\n  condition: proc.name regex '(a)\\\\1'\n"
                   "  output: o\n  priority: INFO\n"
                   "- rule: Join\n  desc: d\n  condition: join(\"-\", \"a\") = a\n"
                   "  output: o\n  priority: INFO\n"
                   "- rule: Good\n  desc: d\n  condition: proc.name regex '[[:alpha:]]+'\n"
                   "  output: o\n  priority: INFO\n")
    p = subprocess.run([sys.executable, "-m", "falconet", "rules", "validate", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert f"{bad}:3:14: error: rule 'Backref': filter error: invalid regular expression " \
           "'(a)\\1': invalid escape sequence: \\1" in p.stdout
    assert f"{bad}:8:14: error: rule 'Join': filter error: join() second argument must be a " \
           "list" in p.stdout
    assert "3 rules, 0 macros, 0 lists" in p.stdout and "FAILED: 2 errors" in p.stderr
    assert "Traceback" not in p.stderr and "re2.cc" not in p.stderr
