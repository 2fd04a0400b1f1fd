"""Falco 0.44 multivalue transformers ``join``, ``concat``, ``getopt`` (libsinsp
``sinsp_filtercheck_multivalue_transformer.cpp`` and its unit tests): grammar, canonical form,
type checks with libsinsp's messages, and verdicts with both compilers on hand-built events."""

from __future__ import annotations

import pytest
from falconet.rules.errors import FilterSyntaxError
from falconet.rules.multivalue import OptString, getopt
from falconet.rules.parser import MultiTransform, TransformList, Value, as_string, parse_condition
from falconet.state.tables import FdInfo
from rulehelp import errors, load, loaded, matcher, rule
from stubfields import event, proc

FILE = FdInfo(3, "f", "/tmp/file_to_run", "/tmp/file_to_run")


def _evt():
    t = proc("bash", "/usr/bin/bash", ["-c", "ls"])
    t.fds = {0: FdInfo(0, "f"), 1: FdInfo(1, "4")}
    return event("openat", t, fd=FILE)


@pytest.fixture(params=["codegen", "closures"])
def both_compilers(request, monkeypatch):
    import falconet.rules.compiler as loader_mod
    monkeypatch.setattr(loader_mod, "USE_CODEGEN", request.param == "codegen")
    return request.param


# ------------------------------------------------------------------------------ grammar
@pytest.mark.parametrize("text, canonical", [
    ('join("-", (fd.name, fd.directory)) = x', 'join("-", (fd.name, fd.directory)) = x'),
    ("join('-',(fd.name,fd.directory))=x", 'join("-", (fd.name, fd.directory)) = x'),
    ('concat(fd.name, "a", 12) startswith x', 'concat(fd.name, "a", "12") startswith x'),
    ('getopt(("-n", "-t", "x"), "nt:")[t] = x', 'getopt(("-n", "-t", "x"), "nt:")[t] = x'),
    ('toupper(join(",", ())) = ""', 'toupper(join(",", ())) = ""'),
    ('len(getopt((), "n")) > 0', 'len(getopt((), "n")) > 0'),
    ('proc.name = concat(proc.name, "x")', 'proc.name = concat(proc.name, "x")'),
    ('join(",", (a.b, join("->", ("a", toupper(c.d))))) exists',
     'join(",", (a.b, join("->", ("a", toupper(c.d))))) exists'),
    ('concat("a\\"b", a.b) = x', 'concat("a\\"b", a.b) = x'),
])
def test_canonical_form_round_trips(text: str, canonical: str) -> None:
    out = as_string(parse_condition(text))
    assert out == canonical
    assert as_string(parse_condition(out)) == out


def test_ast_shape() -> None:
    ast = parse_condition('getopt((proc.name, "-n"), "n")[n] = n')
    mt = ast.left
    assert isinstance(mt, MultiTransform) and mt.name == "getopt" and mt.arg == "n"
    assert isinstance(mt.args[0], TransformList) and isinstance(mt.args[1], Value)


@pytest.mark.parametrize("text, msg, pos", [
    ("join() = x", "expected field transformer argument: field, transformer, quoted string, "
                   "number, or transformer list", 5),
    ('join("a" = x', "expected a ')' token closing the transformer", 9),
    ('join("a", (a b)) = x', "expected transformer list argument", 11),
    ('join("a", (bare)) = x', "expected transformer list argument", 11),
    ('join("a", (x.y z.w)) = x', "expected ')'", 15),
    ("concat(bare, x.y) = x", "expected field transformer argument", 7),
    ('getopt(("-n"), "n")[] = x', "expected a valid field argument", 20),
])
def test_syntax_errors_point_at_the_problem(text: str, msg: str, pos: int) -> None:
    with pytest.raises(FilterSyntaxError) as ei:
        parse_condition(text)
    assert msg in str(ei.value) and ei.value.pos == pos


# ------------------------------------------------------------------------------ verdicts
CASES = [
    # join (libsinsp multivalue_transformer_join)
    ('join("-", (fd.name, fd.directory)) = /tmp/file_to_run-/tmp', True),
    ("join(fd.name, (fd.name, fd.directory)) = /tmp/file_to_run/tmp/file_to_run/tmp", True),
    ('join("-", ("aaa", "bbb")) = aaa-bbb', True),
    ('join("->", ("aaa")) = aaa', True),
    ('join("->", (fd.name, "aaa", fd.directory)) = /tmp/file_to_run->aaa->/tmp', True),
    ('join("->", (toupper(fd.name), "aaa")) = /TMP/FILE_TO_RUN->aaa', True),
    ('join("-", (fd.directory, join("->", ("aaa", toupper(fd.name))))) = '
     "/tmp-aaa->/TMP/FILE_TO_RUN", True),
    ('join(",", ("aaa", "bbb")) = "aaa-bbb"', False),
    ('join(",", (fd.num, fd.num)) = "3,3"', True),
    ('join(",", ()) = ""', True),
    ('join(",", ()) = ","', False),
    ('join(",", fd.types) = "4,f"', True),                      # a list field
    # concat
    ("concat(fd.name, fd.directory) = /tmp/file_to_run/tmp", True),
    ('concat("aaa", "bbb", "ccc") = aaabbbccc', True),
    ('concat(fd.directory, concat("aaa", toupper(fd.name))) = /tmpaaa/TMP/FILE_TO_RUN', True),
    ('concat("aaa", "bbb") = "aaa-bbb"', False),
    ('proc.name = concat("ba", "sh")', True),                   # right-hand side
    # outer transformers and other operators
    ('toupper(join("-", (fd.name, fd.directory))) = /TMP/FILE_TO_RUN-/TMP', True),
    ('len(join("-", (fd.name, fd.directory))) = 21', True),
    ('b64(join("W", ("YWFhL", "JiYg"))) = "aaa-bbb"', True),
    ('b64(concat("YWFh", "YmJi")) = aaabbb', True),
    ("len(concat(fd.name, fd.directory)) < 21", True),
    ("toupper(concat(fd.name, fd.directory)) startswith /TMP", True),
    ('concat(fd.name, "x") regex ".*run[x]"', True),
    ('concat(fd.name, "x") in (/tmp/file_to_runx, y)', True),
    ('concat(fd.name, "x") endswith oneof (runx, y)', True),
    ('join("-", (fd.name, fd.directory)) exists', True),
    # getopt without selector: a list (in / intersects / exists / len)
    ('getopt(("-n", ""), "n") intersects ("n")', True),
    ('getopt(("-t", "hello"), "t:") intersects ("t", "hello")', True),
    ('getopt(("-nt", "hello"), "nt:") intersects ("n", "t", "hello")', True),
    ('getopt(("-thello"), "t:") intersects ("t", "hello")', True),
    ('getopt(("-n"), "n") intersects ("t")', False),
    ('getopt(("-n", "--", "-t"), "nt:") intersects ("t")', False),
    ('getopt(("-x", "-n"), "n") intersects ("n")', True),
    ('getopt(("-lpe", "/bin/sh"), "lpe:") intersects ("/bin/sh")', True),
    ('getopt(("-a", "x", "-b"), "ab") intersects (b)', False),   # stops at the first non-option
    ('getopt(("--exec", "-n"), "n") intersects (n)', True),        # long options are skipped
    ('getopt(("-n", "-t"), "") intersects ("n")', False),
    ('getopt(("-n", "-t"), "nt") in ("n", "t")', True),
    ('len(getopt(("-ab"), "ab")) = 2', True),
    ('getopt(("-x"), "n") intersects ("?")', True),
    # getopt with a selector: the last value, the option itself, "" when missing, else missing
    ('getopt(("-t", "a", "-t", "b"), "t:")[t] = b', True),
    ('getopt(("-n"), "n")[n] = n', True),
    ('getopt(("-t"), "t:")[t] = ""', True),
    ('getopt(("-x"), "t:")[t] exists', False),
    ('not getopt(("-x"), "t:")[t] = y', True),
    ('getopt(("-p8080", "-e", "/bin/sh"), "p:e:")[e] = /bin/sh', True),
    ('getopt(("-p8080", "-e", "/bin/sh"), "p:e:")[p] = 8080', True),
    ('getopt(fd.types, "4")[4] = 4', False),        # fd.types is (4, f): "4" is not an option
    # a missing argument makes the transformer's value missing: every check is false
    ('concat(user.loginname, "x") = x', False),
    ('not concat(user.loginname, "x") = x', True),
    ('concat(user.loginname, "x") != x', False),
    ('join("-", (proc.name, user.loginname)) exists', False),
]


@pytest.mark.parametrize("cond, expected", CASES)
def test_verdicts(cond: str, expected: bool, both_compilers) -> None:
    assert matcher(cond)(_evt()) is expected


@pytest.mark.parametrize("argv, optstring, selector, expected", [
    (["-nt", "v"], "nt:", None, ("n", "t", "v")),
    (["-t"], "t:", None, ("",)),                    # missing value: "" (libsinsp 0.25)
    (["-x", "-n"], "n", None, ("?", "n")),
    (["-", "-n"], "n", None, ()),                   # "-" is not an option: stop
    (["", "-n"], "n", None, ()),
    (["-n-t"], "nt", None, ("n", "?", "t")),
    (["-abcvalue"], "abc:", None, ("a", "b", "c", "value")),
    (["-nat", "hello"], "na:t", None, ("n", "a", "t")),
    (["-t", "-123"], "t:", None, ("t", "-123")),
    (["-n", "-n"], ":n", None, ("n", "n")),          # a leading ':' changes nothing here
    (["-t", "a", "-t", "b"], "t:", "t", "b"),
    (["-n"], "n", "t", None),
    ([], "n", None, ()),
])
def test_getopt_scanner(argv, optstring, selector, expected) -> None:
    assert getopt(argv, OptString(optstring), selector) == expected


def test_optstring_can_be_a_field(both_compilers) -> None:
    t = proc("nt:")                                  # proc.name used as the optstring
    e = event("openat", t)
    assert matcher('getopt(("-t", "v"), proc.name)[t] = v')(e) is True
    assert matcher('getopt(("-t", "v"), user.loginname)[t] exists')(e) is False


# ------------------------------------------------------------------------------ compile errors
@pytest.mark.parametrize("cond, msg", [
    ('join("-") = x', "join() requires exactly 2 arguments: separator and list"),
    ('join("-", "a", "b") = x', "join() requires exactly 2 arguments: separator and list"),
    ('join(fd.types, ("a", "b")) = x', "join() first argument (separator) must be a single "
                                       "value, not a list"),
    ('join(("a", "b"), "a") = x', "join() first argument (separator) must be a single value"),
    ('join("a", "b") = x', "join() second argument must be a list"),
    ('concat("aaa") = x', "concat() requires at least 2 arguments"),
    ('concat(fd.types, "a") = x', "concat() arguments must be strings"),
    ('concat(("a", "b"), "a") = x', "concat() arguments must be strings"),
    ('concat(fd.num, "a") = x', "concat() arguments must be strings"),
    ('getopt(("a")) intersects (n)', "getopt() requires exactly 2 arguments: args list and "
                                     "optstring"),
    ('getopt(("a"), "n", "x") intersects (n)', "getopt() requires exactly 2 arguments"),
    ('getopt("x", "n") intersects (n)', "getopt() first argument must be a list"),
    ('getopt(("-n"), ("n")) intersects (n)', "getopt() second argument (optstring) must be a "
                                             "single value"),
    ('getopt(("-n"), "n")[ab] = x', "getopt() field argument must be a single option character"),
    ('join(",", ("a"))[x] = a', "transformer 'join' does not support field arguments"),
    ('concat("a", "b")[x] = a', "transformer 'concat' does not support field arguments"),
    ('getopt(("-n"), "n") = n', "'=' operator not supported for list filters"),
    ('concat(proc.aname, "x") = y', "field 'proc.aname' does not support transformer 'concat'"),
    ('concat(proc.nme, "x") = y', "nonexistent field proc.nme"),
    ('len(concat("a", "b")) contains 1', "'contains' operator not supported for numeric"),
])
def test_compile_errors_use_libsinsp_wording_with_location(cond: str, msg: str) -> None:
    errs = errors(rule(cond))
    assert any(msg in e for e in errs), errs
    assert all(e.startswith("<rules>:3:14: error: rule 'r': ") for e in errs), errs


def test_in_outputs() -> None:
    res = loaded(rule("proc.name = bash", output='cmd=%concat(proc.name, "!") '
                                                 'opts=%getopt(("-t", "v"), "t:")[t]'))
    alert = res.ruleset.match(_evt())[0]
    assert alert.output == "cmd=bash! opts=v"
    assert "concat(proc.name" not in str(alert.output_fields)      # transformer tokens excluded


def test_output_type_errors_are_output_compile_errors() -> None:
    res = load(rule("proc.name = bash", output='x=%concat("a")'))
    assert not res.ok
    assert res.errors[0].code == "LOAD_ERR_COMPILE_OUTPUT"
    assert "concat() requires at least 2 arguments" in str(res.errors[0])
